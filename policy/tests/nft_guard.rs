//! The workload guard of a node's table: the (interface . address) sets of programmed pods, the
//! guard chains that drop everything else on workload interfaces, where the base chains enter
//! them, and the diff when a pod is programmed. The kernel's side is proven by the agent's
//! `policy_*` tests on real namespaces.

mod common;

use std::collections::BTreeSet;

use common::cluster_with;
use weft_policy::nft::{Guard, compile_for_node, compile_guarded, diff};

const TABLE: &str = "weft_policy";

fn guard(bindings: &[(&str, &str)]) -> Guard {
    Guard {
        interface_prefix: "weft".into(),
        exempt: vec!["weft.vxlan".into()],
        bindings: bindings
            .iter()
            .map(|(name, ip)| ((*name).to_owned(), ip.parse().unwrap()))
            .collect(),
    }
}

#[test]
fn guarded_table_binds_each_programmed_pod_to_its_interface() {
    let cluster = cluster_with("");
    let local = BTreeSet::from(["x/a".to_string()]);
    let ruleset = compile_guarded(
        &cluster,
        TABLE,
        &local,
        &guard(&[
            ("weft00000000001", "10.250.1.1"),
            ("weft00000000001", "fd00::1"),
        ]),
    );
    let v4 = &ruleset.sets["endpoints_v4"];
    assert_eq!(v4.declaration, "type ifname . ipv4_addr;");
    assert_eq!(
        v4.elements,
        BTreeSet::from(["\"weft00000000001\" . 10.250.1.1".to_string()])
    );
    assert_eq!(
        ruleset.sets["endpoints_v6"].elements,
        BTreeSet::from(["\"weft00000000001\" . fd00::1".to_string()])
    );
    // The guard comes before the established accept in the forward and input base chains,
    // and alone on the output hook.
    let egress = &ruleset.chains["egress"].rules;
    assert_eq!(
        egress[0],
        "iifname \"weft*\" iifname != { \"weft.vxlan\" } jump from_workload"
    );
    assert_eq!(
        egress[1],
        "oifname \"weft*\" oifname != { \"weft.vxlan\" } jump to_workload"
    );
    assert!(egress[2].starts_with("ct state established"), "{egress:?}");
    let host = &ruleset.chains["egress_host"].rules;
    assert!(host[0].ends_with("jump from_workload"), "{host:?}");
    assert!(host[1].starts_with("ct state established"), "{host:?}");
    let output = &ruleset.chains["to_pods"];
    assert_eq!(
        output.hook.as_deref(),
        Some("type filter hook output priority 0; policy accept;")
    );
    assert!(output.rules[0].ends_with("jump to_workload"));
    let from = &ruleset.chains["from_workload"].rules;
    assert!(
        from.contains(&"meta nfproto ipv4 iifname . ip saddr @endpoints_v4 return".to_string())
    );
    assert!(
        from.contains(&"meta nfproto ipv6 iifname . ip6 saddr @endpoints_v6 return".to_string())
    );
    assert_eq!(from.last().map(String::as_str), Some("drop"));
    let to = &ruleset.chains["to_workload"].rules;
    assert!(to.contains(&"meta nfproto ipv4 oifname . ip daddr @endpoints_v4 return".to_string()));
    assert_eq!(to.last().map(String::as_str), Some("drop"));
}

#[test]
fn guard_is_installed_with_no_pod_and_no_policy() {
    let cluster = cluster_with("");
    let ruleset = compile_guarded(&cluster, TABLE, &BTreeSet::new(), &guard(&[]));
    let script = ruleset.full_script();
    assert!(script.contains("add set inet weft_policy endpoints_v4 { type ifname . ipv4_addr; }"));
    assert!(
        script.contains("add rule inet weft_policy from_workload drop"),
        "{script}"
    );
    assert!(
        script.contains("add rule inet weft_policy to_workload drop"),
        "{script}"
    );
    assert!(ruleset.sets["endpoints_v4"].elements.is_empty());
}

#[test]
fn programming_a_pod_is_one_element_add_and_the_unguarded_table_is_unchanged() {
    let cluster = cluster_with("");
    let local = BTreeSet::from(["x/a".to_string()]);
    let before = compile_guarded(&cluster, TABLE, &local, &guard(&[]));
    let after = compile_guarded(
        &cluster,
        TABLE,
        &local,
        &guard(&[("weft00000000001", "10.250.1.1")]),
    );
    let change = diff(&before, &after);
    assert_eq!(change.elements_added, 1, "{}", change.script);
    assert_eq!(change.chains_rewritten, 0, "{}", change.script);
    assert_eq!(
        change.script.trim(),
        "add element inet weft_policy endpoints_v4 { \"weft00000000001\" . 10.250.1.1 }"
    );
    let plain = compile_for_node(&cluster, TABLE, &local);
    assert!(!plain.chains.contains_key("from_workload"));
    assert!(!plain.sets.contains_key("endpoints_v4"));
}
