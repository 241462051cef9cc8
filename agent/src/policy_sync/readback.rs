//! The policy table read back from the kernel: the periodic resync's repair when someone else
//! deleted the table (`nft delete table inet weft_policy`, `nft flush ruleset`) or added or
//! removed one of its chains, rules, sets or set elements. Remembering what was applied is not
//! enough: the kernel is the truth, and a table that is gone must come back without waiting
//! for the next policy change.
//!
//! What is compared with what was applied: the chains (for base chains also their type, hook,
//! priority and policy), the number of rules in each chain, and the sets and maps with every
//! element. Rules are counted, not compared: nft prints a rule in its own normal form, not in
//! the text the compiler wrote, so a rule edited in place (`nft replace rule`) keeping its
//! chain's count is not seen. Reading is one `nft -j list table`; a table that matches makes
//! no write, so a converged node's resync leaves the ruleset (and its generation) alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use weft_policy::nft::{NamedSet, Ruleset};

use super::{POLICY_TABLE, PolicySync};
use crate::kernel::{Kernel, KernelError};

impl PolicySync {
    /// Compares the kernel's policy table with what was last applied. When they differ, what
    /// was applied is forgotten, so the next [`PolicySync::sync`] replaces the whole table in
    /// one transaction; returns whether they matched. Nothing applied yet (after a start or a
    /// failed write) counts as a match: the next sync writes the whole table anyway. Writes
    /// nothing to the kernel.
    pub fn verify(&mut self, kernel: &Kernel) -> Result<bool, KernelError> {
        let Some(applied) = &self.applied else {
            return Ok(true);
        };
        let listing = kernel.nft_table_json(POLICY_TABLE)?;
        match difference(applied, listing.as_ref()) {
            None => Ok(true),
            Some(difference) => {
                tracing::warn!(
                    table = POLICY_TABLE,
                    %difference,
                    "the kernel's policy table is not what was applied; replacing it whole"
                );
                self.applied = None;
                Ok(false)
            }
        }
    }
}

/// A base chain's declaration: type, hook, priority (when numeric) and policy.
#[derive(Debug, PartialEq, Eq)]
struct BaseChain {
    kind: Option<String>,
    hook: Option<String>,
    priority: Option<i64>,
    policy: Option<String>,
}

/// A chain of the kernel's table: its declaration when hooked, and how many rules it holds.
#[derive(Debug, Default)]
struct KernelChain {
    base: Option<BaseChain>,
    rules: usize,
}

/// A set or map of the kernel's table with its elements in the compiler's text form.
#[derive(Debug)]
struct KernelSet {
    map: bool,
    elements: BTreeSet<String>,
}

/// The kernel's table, in the terms it is compared in.
#[derive(Debug, Default)]
struct KernelTable {
    chains: BTreeMap<String, KernelChain>,
    sets: BTreeMap<String, KernelSet>,
    /// Objects of kinds the compiler never creates (flowtables, counters, ...).
    others: Vec<String>,
}

/// The first difference between what was applied and the kernel's listing of the table
/// (`nft -j list table` output, `None` when the table is missing); `None` when they match.
pub fn difference(applied: &Ruleset, listing: Option<&Value>) -> Option<String> {
    let Some(listing) = listing else {
        return Some("the table is missing".to_owned());
    };
    let kernel = match parse(listing) {
        Ok(kernel) => kernel,
        Err(problem) => return Some(format!("the listing cannot be read: {problem}")),
    };
    if let Some(other) = kernel.others.first() {
        return Some(format!(
            "the table holds a {other}, which policy never creates"
        ));
    }
    for (name, chain) in &applied.chains {
        let Some(found) = kernel.chains.get(name) else {
            return Some(format!("chain {name} is missing"));
        };
        let wanted = chain.hook.as_deref().map(base_chain);
        if found.base != wanted {
            return Some(format!(
                "chain {name} is declared {:?}, applied {:?}",
                found.base, wanted
            ));
        }
        if found.rules != chain.rules.len() {
            return Some(format!(
                "chain {name} holds {} rules, applied {}",
                found.rules,
                chain.rules.len()
            ));
        }
    }
    if let Some(name) = kernel
        .chains
        .keys()
        .find(|name| !applied.chains.contains_key(*name))
    {
        return Some(format!("chain {name} was not applied"));
    }
    for (name, set) in &applied.sets {
        let Some(found) = kernel.sets.get(name) else {
            return Some(format!("set {name} is missing"));
        };
        if let Some(problem) = set_difference(name, set, found) {
            return Some(problem);
        }
    }
    kernel
        .sets
        .keys()
        .find(|name| !applied.sets.contains_key(*name))
        .map(|name| format!("set {name} was not applied"))
}

fn set_difference(name: &str, applied: &NamedSet, found: &KernelSet) -> Option<String> {
    let map = applied.declaration.contains(" : ");
    if found.map != map {
        return Some(format!(
            "{name} is a {} in the kernel, applied as a {}",
            kind(found.map),
            kind(map)
        ));
    }
    let wanted: BTreeSet<String> = applied
        .elements
        .iter()
        .map(|e| applied_element(e))
        .collect();
    if let Some(element) = wanted.difference(&found.elements).next() {
        return Some(format!("{} {name} lacks {element}", kind(map)));
    }
    if let Some(element) = found.elements.difference(&wanted).next() {
        return Some(format!("{} {name} holds {element}, not applied", kind(map)));
    }
    None
}

fn kind(map: bool) -> &'static str {
    if map { "map" } else { "set" }
}

fn parse(listing: &Value) -> Result<KernelTable, String> {
    let objects = listing
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no \"nftables\" array")?;
    let mut table = KernelTable::default();
    for object in objects {
        let Some((kind, body)) = object.as_object().and_then(|o| o.iter().next()) else {
            return Err(format!("an entry that is not an object: {object}"));
        };
        let name = || {
            body.get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("a {kind} without a name"))
        };
        match kind.as_str() {
            "metainfo" | "table" => {}
            "chain" => {
                let base = body.get("hook").map(|_| BaseChain {
                    kind: text(body.get("type")),
                    hook: text(body.get("hook")),
                    priority: body.get("prio").and_then(Value::as_i64),
                    policy: text(body.get("policy")),
                });
                table.chains.entry(name()?).or_default().base = base;
            }
            "rule" => {
                let chain = body
                    .get("chain")
                    .and_then(Value::as_str)
                    .ok_or("a rule without a chain")?;
                table.chains.entry(chain.to_owned()).or_default().rules += 1;
            }
            "set" | "map" => {
                let elements = body
                    .get("elem")
                    .and_then(Value::as_array)
                    .map(|elements| elements.iter().map(kernel_element).collect())
                    .unwrap_or_default();
                table.sets.insert(
                    name()?,
                    KernelSet {
                        map: kind == "map",
                        elements,
                    },
                );
            }
            other => table.others.push(other.to_owned()),
        }
    }
    Ok(table)
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

/// The priority keywords nft accepts for the inet family, by their numbers.
fn priority(word: &str) -> Option<i64> {
    match word {
        "raw" => Some(-300),
        "mangle" => Some(-150),
        "dstnat" => Some(-100),
        "filter" => Some(0),
        "security" => Some(50),
        "srcnat" => Some(100),
        number => number.parse().ok(),
    }
}

/// `type filter hook forward priority 0; policy accept;` as its parts.
fn base_chain(declaration: &str) -> BaseChain {
    let words: Vec<&str> = declaration
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|word| !word.is_empty())
        .collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|word| *word == key)
            .and_then(|at| words.get(at + 1))
            .copied()
    };
    BaseChain {
        kind: after("type").map(str::to_owned),
        hook: after("hook").map(str::to_owned),
        priority: after("priority").and_then(priority),
        policy: after("policy").map(str::to_owned),
    }
}

/// One part of an element in a normal form both sides share: addresses as Rust prints them,
/// strings without their quotes.
fn atom(text: &str) -> String {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return ip.to_string();
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return net.to_string();
    }
    text.to_owned()
}

/// An element as the compiler writes it (`10.0.0.1`, `10.0.0.1 . 80`, `10.0.0.1 : jump ep_x`),
/// in the normal form.
fn applied_element(element: &str) -> String {
    let (key, value) = match element.split_once(" : ") {
        Some((key, value)) => (key, Some(value)),
        None => (element, None),
    };
    let key = key.split(" . ").map(atom).collect::<Vec<_>>().join(" . ");
    match value {
        Some(value) => format!(
            "{key} : {}",
            value.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        None => key,
    }
}

/// An element of `nft -j` output in the normal form.
fn kernel_element(element: &Value) -> String {
    match element {
        Value::Array(pair) if pair.len() == 2 => {
            format!("{} : {}", kernel_key(&pair[0]), verdict(&pair[1]))
        }
        key => kernel_key(key),
    }
}

fn kernel_key(key: &Value) -> String {
    match key {
        Value::String(text) => atom(text),
        Value::Number(number) => number.to_string(),
        Value::Object(object) => {
            if let Some(parts) = object.get("concat").and_then(Value::as_array) {
                parts.iter().map(kernel_key).collect::<Vec<_>>().join(" . ")
            } else if let Some(prefix) = object.get("prefix") {
                let address = prefix.get("addr").map(kernel_key).unwrap_or_default();
                let length = prefix.get("len").map(kernel_key).unwrap_or_default();
                atom(&format!("{address}/{length}"))
            } else if let Some(range) = object.get("range").and_then(Value::as_array) {
                range.iter().map(kernel_key).collect::<Vec<_>>().join("-")
            } else if let Some(inner) = object.get("elem").and_then(|e| e.get("val")) {
                kernel_key(inner)
            } else {
                key.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// A map value: `jump <chain>`, `goto <chain>`, `accept`, `drop`, ...
fn verdict(value: &Value) -> String {
    let Some((word, body)) = value.as_object().and_then(|o| o.iter().next()) else {
        return kernel_key(value);
    };
    match body.get("target").and_then(Value::as_str) {
        Some(target) => format!("{word} {target}"),
        None if body.is_null() => word.clone(),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_policy::nft::Chain;

    /// A table as the compiler gives it: one base chain, one endpoint chain, a plain set, a
    /// named-port set and a dispatch map.
    fn applied() -> Ruleset {
        let set = |declaration: &str, elements: &[&str]| NamedSet {
            declaration: declaration.to_owned(),
            elements: elements.iter().map(|e| (*e).to_owned()).collect(),
        };
        Ruleset {
            table: POLICY_TABLE.to_owned(),
            sets: BTreeMap::from([
                (
                    "sel_v6".to_owned(),
                    set("type ipv6_addr;", &["2001:db8:0:0::1", "2001:db8::2"]),
                ),
                (
                    "np_v4".to_owned(),
                    set("type ipv4_addr . inet_service;", &["10.1.0.1 . 8080"]),
                ),
                (
                    "ingress_v4".to_owned(),
                    set("type ipv4_addr : verdict;", &["10.1.0.1 : jump ep_a_in"]),
                ),
            ]),
            chains: BTreeMap::from([
                (
                    "ingress".to_owned(),
                    Chain {
                        hook: Some(
                            "type filter hook forward priority 10; policy accept;".to_owned(),
                        ),
                        rules: vec![
                            "ct state established,related accept".to_owned(),
                            "ip daddr vmap @ingress_v4".to_owned(),
                        ],
                    },
                ),
                (
                    "ep_a_in".to_owned(),
                    Chain {
                        hook: None,
                        rules: vec!["drop".to_owned()],
                    },
                ),
            ]),
        }
    }

    /// What `nft -j list table inet weft_policy` prints for [`applied`] (shape taken from
    /// nftables 1.0).
    fn listing() -> Value {
        let table = POLICY_TABLE;
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": table, "handle": 1}},
            {"set": {"family": "inet", "name": "sel_v6", "table": table, "type": "ipv6_addr",
                     "handle": 1, "elem": ["2001:db8::1", "2001:db8::2"]}},
            {"set": {"family": "inet", "name": "np_v4", "table": table,
                     "type": ["ipv4_addr", "inet_service"], "handle": 2,
                     "elem": [{"concat": ["10.1.0.1", 8080]}]}},
            {"map": {"family": "inet", "name": "ingress_v4", "table": table, "type": "ipv4_addr",
                     "handle": 3, "map": "verdict",
                     "elem": [["10.1.0.1", {"jump": {"target": "ep_a_in"}}]]}},
            {"chain": {"family": "inet", "table": table, "name": "ep_a_in", "handle": 4}},
            {"chain": {"family": "inet", "table": table, "name": "ingress", "handle": 5,
                       "type": "filter", "hook": "forward", "prio": 10, "policy": "accept"}},
            {"rule": {"family": "inet", "table": table, "chain": "ep_a_in", "handle": 6,
                      "expr": [{"drop": null}]}},
            {"rule": {"family": "inet", "table": table, "chain": "ingress", "handle": 7,
                      "expr": [{"accept": null}]}},
            {"rule": {"family": "inet", "table": table, "chain": "ingress", "handle": 8,
                      "expr": [{"vmap": {}}]}},
        ]})
    }

    /// Removes the objects of `listing` for which `drop` holds.
    fn without(mut listing: Value, drop: impl Fn(&Value) -> bool) -> Value {
        listing["nftables"]
            .as_array_mut()
            .unwrap()
            .retain(|object| !drop(object));
        listing
    }

    #[test]
    fn the_table_as_applied_matches() {
        assert_eq!(difference(&applied(), Some(&listing())), None);
    }

    #[test]
    fn a_missing_table_differs() {
        assert_eq!(
            difference(&applied(), None).as_deref(),
            Some("the table is missing")
        );
    }

    #[test]
    fn a_deleted_rule_differs() {
        let listing = without(listing(), |o| o["rule"]["handle"] == 8);
        let found = difference(&applied(), Some(&listing)).unwrap();
        assert!(found.contains("chain ingress holds 1 rules"), "{found}");
    }

    #[test]
    fn an_added_rule_or_chain_differs() {
        let mut extra = listing();
        let objects = extra["nftables"].as_array_mut().unwrap();
        objects.push(json!({"rule": {"chain": "ep_a_in", "expr": [{"accept": null}]}}));
        assert!(difference(&applied(), Some(&extra)).is_some());
        let mut extra = listing();
        let objects = extra["nftables"].as_array_mut().unwrap();
        objects.push(json!({"chain": {"name": "mine", "table": POLICY_TABLE}}));
        let found = difference(&applied(), Some(&extra)).unwrap();
        assert!(found.contains("chain mine was not applied"), "{found}");
    }

    #[test]
    fn a_base_chain_with_another_policy_differs() {
        let mut changed = listing();
        for object in changed["nftables"].as_array_mut().unwrap() {
            if object["chain"]["name"] == "ingress" {
                object["chain"]["policy"] = json!("drop");
            }
        }
        let found = difference(&applied(), Some(&changed)).unwrap();
        assert!(found.contains("chain ingress is declared"), "{found}");
    }

    #[test]
    fn a_changed_or_missing_element_differs() {
        let mut changed = listing();
        for object in changed["nftables"].as_array_mut().unwrap() {
            if object["map"]["name"] == "ingress_v4" {
                object["map"]["elem"] = json!([["10.1.0.1", {"accept": null}]]);
            }
            if object["set"]["name"] == "np_v4" {
                object["set"]["elem"] = json!([{"concat": ["10.1.0.1", 8081]}]);
            }
        }
        let found = difference(&applied(), Some(&changed)).unwrap();
        assert!(found.contains("lacks"), "{found}");
        let emptied = without(listing(), |o| o["set"]["name"] == "sel_v6");
        let found = difference(&applied(), Some(&emptied)).unwrap();
        assert_eq!(found, "set sel_v6 is missing");
    }

    #[test]
    fn an_added_element_or_object_differs() {
        let mut changed = listing();
        for object in changed["nftables"].as_array_mut().unwrap() {
            if object["map"]["name"] == "ingress_v4" {
                object["map"]["elem"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(["10.9.9.9", {"accept": null}]));
            }
        }
        let found = difference(&applied(), Some(&changed)).unwrap();
        assert!(found.contains("holds 10.9.9.9 : accept"), "{found}");
        let mut changed = listing();
        let objects = changed["nftables"].as_array_mut().unwrap();
        objects.push(json!({"flowtable": {"name": "f"}}));
        assert!(difference(&applied(), Some(&changed)).is_some());
    }

    #[test]
    fn elements_compare_in_one_normal_form() {
        assert_eq!(applied_element("2001:db8:0:0::1"), "2001:db8::1");
        assert_eq!(applied_element("\"weft0a1b\""), "weft0a1b");
        assert_eq!(
            applied_element("10.1.0.1 :  jump ep_a_in"),
            "10.1.0.1 : jump ep_a_in"
        );
        assert_eq!(
            kernel_element(&json!({"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 8}}}})),
            "10.0.0.0/8"
        );
        assert_eq!(kernel_element(&json!("weft0a1b")), "weft0a1b");
        assert_eq!(
            kernel_element(&json!(["fd00::1", {"goto": {"target": "x"}}])),
            "fd00::1 : goto x"
        );
        assert_eq!(
            base_chain("type filter hook input priority filter; policy accept;"),
            BaseChain {
                kind: Some("filter".into()),
                hook: Some("input".into()),
                priority: Some(0),
                policy: Some("accept".into()),
            }
        );
    }
}
