//! The nftables compiler's structure and its incremental diff, without a dataplane: sets per
//! selector, chains per endpoint and policy, and the size of changes between states.

mod common;

use common::{cluster_with, scenarios};
use weft_policy::nft::{compile, diff};

const TABLE: &str = "weft_policy";

const A_FROM_RED: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-red, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {color: red}}}]}]
";

#[test]
fn compiling_is_deterministic_and_a_state_diffs_to_nothing() {
    for scenario in scenarios::all() {
        let cluster = cluster_with(scenario.policies);
        let first = compile(&cluster, TABLE);
        let second = compile(&cluster, TABLE);
        assert_eq!(first, second, "{}", scenario.name);
        assert!(diff(&first, &second).is_empty(), "{}", scenario.name);
    }
}

#[test]
fn full_script_replaces_the_table_in_one_go() {
    let ruleset = compile(&cluster_with(A_FROM_RED), TABLE);
    let script = ruleset.full_script();
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(
        &lines[..3],
        [
            "add table inet weft_policy",
            "delete table inet weft_policy",
            "add table inet weft_policy"
        ]
    );
    assert!(script.contains(
        "add chain inet weft_policy egress { type filter hook forward priority 0; policy accept; }"
    ));
    assert!(script.contains("add chain inet weft_policy ingress { type filter hook forward priority 10; policy accept; }"));
    // Only x/a is isolated: one ingress dispatch element, to its chain.
    let dispatch: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("add element inet weft_policy ingress_v4"))
        .collect();
    assert_eq!(dispatch.len(), 1, "{script}");
    assert!(dispatch[0].contains("10.250.1.1 : jump ep_"), "{script}");
    assert!(!script.contains("egress_v4 { 10.250"), "{script}");
}

#[test]
fn a_pod_joining_a_selector_is_one_element_add() {
    let before = cluster_with(A_FROM_RED);
    let mut after = before.clone();
    after
        .endpoints
        .iter_mut()
        .find(|e| e.key() == "y/c")
        .unwrap()
        .labels
        .insert("color".into(), "red".into());
    let change = diff(&compile(&before, TABLE), &compile(&after, TABLE));
    assert_eq!(change.elements_added, 1, "{}", change.script);
    assert_eq!(change.elements_deleted, 0);
    assert_eq!(
        change.chains_rewritten + change.chains_added + change.chains_deleted,
        0
    );
    assert_eq!(change.script.lines().count(), 1, "{}", change.script);
    assert!(
        change
            .script
            .starts_with("add element inet weft_policy sel_")
    );
    assert!(
        change.script.trim_end().ends_with("{ 10.250.2.3 }"),
        "{}",
        change.script
    );

    let back = diff(&compile(&after, TABLE), &compile(&before, TABLE));
    assert_eq!(
        (back.elements_added, back.elements_deleted),
        (0, 1),
        "{}",
        back.script
    );
}

#[test]
fn a_pod_becoming_selected_gets_an_endpoint_chain_and_a_dispatch_entry() {
    let before = cluster_with(A_FROM_RED);
    let mut after = before.clone();
    let pod = after
        .endpoints
        .iter_mut()
        .find(|e| e.key() == "x/b")
        .unwrap();
    pod.labels.insert("pod".into(), "a".into());
    let change = diff(&compile(&before, TABLE), &compile(&after, TABLE));
    assert_eq!(change.chains_added, 1, "{}", change.script);
    assert_eq!(change.elements_added, 1, "{}", change.script);
    assert_eq!(change.chains_rewritten, 0, "{}", change.script);
    assert!(
        change.script.contains("10.250.1.2 : jump ep_"),
        "{}",
        change.script
    );
}

#[test]
fn adding_and_removing_a_policy_adds_and_removes_its_chains_and_sets() {
    let empty = compile(&cluster_with(""), TABLE);
    let with_policy = compile(&cluster_with(A_FROM_RED), TABLE);
    let added = diff(&empty, &with_policy);
    assert!(
        added.chains_added >= 2 && added.sets_added >= 2,
        "{}",
        added.script
    );
    let removed = diff(&with_policy, &empty);
    assert_eq!(
        removed.chains_deleted, added.chains_added,
        "{}",
        removed.script
    );
    assert_eq!(removed.sets_deleted, added.sets_added, "{}", removed.script);
    let flush = removed.script.find("flush chain").unwrap();
    let delete = removed.script.find("delete chain").unwrap();
    assert!(flush < delete, "chains are emptied before any is deleted");
}

#[test]
fn weft_actions_become_nft_verdicts() {
    let ruleset = compile(
        &cluster_with(
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: actions}
spec:
  ingress:
  - {action: Log, protocol: UDP}
  - {action: Deny, source: {nets: [10.250.3.0/24]}}
  - {action: Pass, protocol: TCP, destination: {ports: [80, '90:99'], notPorts: [95]}}
  - {action: Allow}
",
        ),
        TABLE,
    );
    let policy_chain = ruleset
        .chains
        .iter()
        .find(|(name, _)| name.starts_with("po_"))
        .map(|(_, chain)| chain.rules.clone())
        .unwrap();
    assert_eq!(policy_chain.len(), 4, "{policy_chain:#?}");
    assert!(policy_chain[0].starts_with("meta l4proto 17 log prefix"));
    assert_eq!(
        policy_chain[1],
        "meta nfproto ipv4 ip saddr { 10.250.3.0/24 } drop"
    );
    assert_eq!(
        policy_chain[2],
        "meta l4proto 6 th dport { 80, 90-99 } th dport != { 95 } accept"
    );
    assert_eq!(policy_chain[3], "accept");
}

#[test]
fn two_endpoints_reporting_one_address_get_one_dispatch_entry() {
    let mut cluster = cluster_with(A_FROM_RED);
    // x/b reports x/a's address too (as a deleted pod's object can while its address is handed
    // out again), and is selected by the same policy: both have an ingress chain.
    let shared = cluster
        .endpoints
        .iter()
        .find(|e| e.key() == "x/a")
        .unwrap()
        .ips
        .clone();
    let b = cluster
        .endpoints
        .iter_mut()
        .find(|e| e.key() == "x/b")
        .unwrap();
    b.ips = shared;
    b.labels.insert("pod".into(), "a".into());
    let ruleset = compile(&cluster, TABLE);
    let dispatch = &ruleset.sets["ingress_v4"].elements;
    assert_eq!(dispatch.len(), 1, "{dispatch:?}");
    assert!(
        dispatch
            .iter()
            .next()
            .unwrap()
            .starts_with("10.250.1.1 : jump ep_"),
        "{dispatch:?}"
    );
    assert_eq!(
        ruleset
            .chains
            .keys()
            .filter(|name| name.starts_with("ep_") && name.ends_with("_in"))
            .count(),
        2,
        "both endpoints keep their chains"
    );
}
