//! natOutgoing: one nftables table, `inet weft_nat`, whose postrouting chain masquerades traffic
//! from pools with natOutgoing Enabled to destinations outside every pool. Pod-to-pod traffic
//! (destination in a pool) is never translated, whichever node the peer is on.
//!
//! The table is written whole in one `nft -f` transaction (delete + add), so there is never a
//! moment without it; it holds two small interval sets and one rule.

use std::collections::BTreeSet;
use std::fmt::Write;

use ipnet::Ipv4Net;

use crate::kernel::Kernel;

/// The table the agent owns for NAT.
pub const NAT_TABLE: &str = "weft_nat";

/// The pools as NAT sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    /// Every pool's CIDR.
    pub all_pools: BTreeSet<Ipv4Net>,
    /// The CIDRs of pools with natOutgoing Enabled.
    pub masquerade: BTreeSet<Ipv4Net>,
}

fn elements(nets: &BTreeSet<Ipv4Net>) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The script that replaces the table with `state`.
pub fn script(state: &NatState) -> String {
    let table = format!("inet {NAT_TABLE}");
    let mut out = String::new();
    let _ = writeln!(out, "add table {table}");
    let _ = writeln!(out, "delete table {table}");
    let _ = writeln!(out, "add table {table}");
    for (name, nets) in [
        ("pool_cidrs", &state.all_pools),
        ("nat_sources", &state.masquerade),
    ] {
        let _ = writeln!(
            out,
            "add set {table} {name} {{ type ipv4_addr; flags interval; }}"
        );
        if !nets.is_empty() {
            let _ = writeln!(out, "add element {table} {name} {{ {} }}", elements(nets));
        }
    }
    let _ = writeln!(
        out,
        "add chain {table} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}"
    );
    let _ = writeln!(
        out,
        "add rule {table} postrouting ip saddr @nat_sources ip daddr != @pool_cidrs masquerade"
    );
    out
}

/// Whether the kernel's NAT table holds `state` (both sets with their elements and the one
/// masquerade rule); false when it is gone, flushed or changed, or cannot be read.
pub fn present(kernel: &Kernel, state: &NatState) -> bool {
    let Ok(Some(json)) = kernel.nft_table_json(NAT_TABLE) else {
        return false;
    };
    let objects = json
        .get("nftables")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let set_elements = |name: &str| -> Option<BTreeSet<String>> {
        let set = objects
            .iter()
            .filter_map(|object| object.get("set"))
            .find(|set| set.get("name").and_then(serde_json::Value::as_str) == Some(name))?;
        Some(
            set.get("elem")
                .and_then(serde_json::Value::as_array)
                .map(|elements| elements.iter().filter_map(element_text).collect())
                .unwrap_or_default(),
        )
    };
    let as_text = |nets: &BTreeSet<Ipv4Net>| nets.iter().map(ToString::to_string).collect();
    let rules = objects
        .iter()
        .filter(|object| object.get("rule").is_some())
        .count();
    set_elements("pool_cidrs") == Some(as_text(&state.all_pools))
        && set_elements("nat_sources") == Some(as_text(&state.masquerade))
        && rules == 1
}

/// One interval-set element as `addr/len` (`nft -j` prints a /32 as a bare address).
fn element_text(element: &serde_json::Value) -> Option<String> {
    if let Some(address) = element.as_str() {
        return Some(format!("{address}/32"));
    }
    let prefix = element.get("prefix")?;
    Some(format!(
        "{}/{}",
        prefix.get("addr")?.as_str()?,
        prefix.get("len")?.as_u64()?
    ))
}

/// The script that removes the table (uninstall).
pub fn delete_script() -> String {
    format!("add table inet {NAT_TABLE}\ndelete table inet {NAT_TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_masquerades_only_enabled_pools_to_outside_destinations() {
        let state = NatState {
            all_pools: ["10.1.0.0/16", "10.2.0.0/16"]
                .iter()
                .map(|n| n.parse().unwrap())
                .collect(),
            masquerade: ["10.1.0.0/16"].iter().map(|n| n.parse().unwrap()).collect(),
        };
        let text = script(&state);
        assert!(text.contains("add element inet weft_nat pool_cidrs { 10.1.0.0/16, 10.2.0.0/16 }"));
        assert!(text.contains("add element inet weft_nat nat_sources { 10.1.0.0/16 }"));
        assert!(text.contains("ip saddr @nat_sources ip daddr != @pool_cidrs masquerade"));
    }

    #[test]
    fn empty_sets_have_no_element_line() {
        let text = script(&NatState::default());
        assert!(!text.contains("add element"));
    }
}
