//! Differential test on real network namespaces shaped like a weft node (needs root, `ip`,
//! `nft` and the workspace's `weft` and `weft-ipam` plugins): one namespace per pod attached by the
//! `weft` CNI plugin to a "host" namespace in the role of the node, the ruleset the agent
//! programs ([`compile_guarded`] with every pod local and bound: pod to pod on the forward hook, a pod's
//! traffic to its node through its egress policy on the input hook) applied there, and TCP/UDP
//! probes compared cell by cell with the evaluator: every pair of pods, every pod to its node
//! (the evaluator's egress towards an address outside the pods), and the node to every pod
//! (never filtered).
//!
//! Every scenario of `common::scenarios` runs here. They share one topology: the first ruleset
//! is applied whole, every later one as the incremental diff from the previous, so the diff is
//! proven on the dataplane too.

mod common;
mod netns;

use std::collections::BTreeSet;

use common::scenarios;
use weft_policy::eval::{Traffic, egress_to_address};
use weft_policy::matrix::Matrix;
use weft_policy::model::Cluster;
use weft_policy::nft::{Guard, Ruleset, compile_guarded, diff};

use netns::Topology;

const TABLE: &str = "weft_policy";

/// What the node agent compiles when every endpoint of the cluster runs on its node, with
/// every pod of `topology` bound in the workload guard (as the agent binds programmed pods):
/// the guard must not change a single verdict.
fn compile_all_local(cluster: &Cluster, topology: &Topology) -> Ruleset {
    let local: BTreeSet<String> = cluster.endpoints.iter().map(|e| e.key()).collect();
    let guard = Guard {
        interface_prefix: "weft".into(),
        exempt: vec!["weft.vxlan".into()],
        bindings: topology.bindings(),
    };
    compile_guarded(cluster, TABLE, &local, &guard)
}

/// Probes pod to pod, pod to node and node to pod, and asserts each equals the evaluator.
fn assert_dataplane(topology: &Topology, cluster: &Cluster, traffic: Traffic, context: &str) {
    let expected = Matrix::compute(cluster, traffic);
    let observed = topology.probe_matrix(traffic);
    let differences = expected.differences(&observed);
    assert!(
        differences.is_empty(),
        "{context}: {traffic:?}: pod to pod differs from the evaluator (evaluator vs dataplane):\n{}\nevaluator:\n{}dataplane:\n{}",
        differences.join("\n"),
        expected.to_table(),
        observed.to_table()
    );
    let to_node = topology.probe_pods_to_node(traffic);
    for (key, reached) in &to_node {
        let source = cluster
            .endpoints
            .iter()
            .find(|e| e.key() == *key)
            .expect("every probed pod is in the cluster");
        let address = if source.primary_ip().is_some_and(|ip| ip.is_ipv4()) {
            netns::NODE_V4
        } else {
            netns::NODE_V6
        };
        let verdict = egress_to_address(cluster, source, address, traffic);
        assert_eq!(
            *reached,
            verdict.decision.allows(),
            "{context}: {traffic:?}: {key} to its node: the dataplane {} but the evaluator says {verdict}",
            if *reached {
                "let it through"
            } else {
                "dropped it"
            }
        );
    }
    let from_node = topology.probe_node_to_pods(traffic);
    let blocked: Vec<&String> = from_node
        .iter()
        .filter(|(_, reached)| !reached)
        .map(|(key, _)| key)
        .collect();
    assert!(
        blocked.is_empty(),
        "{context}: {traffic:?}: the node must always reach its pods, blocked: {blocked:?}"
    );
}

#[test]
fn dataplane_matches_evaluator_for_every_scenario() {
    netns::require_root_tools();
    let base = common::cluster_with("");
    let topology = Topology::build(&format!("wp-{}", std::process::id() % 100_000), &base);
    let mut applied: Option<Ruleset> = None;
    let all = scenarios::all();
    let mut on_kernel = 0;
    for scenario in &all {
        let cluster = common::cluster_with(scenario.policies);
        let ruleset = compile_all_local(&cluster, &topology);
        let script = match &applied {
            None => ruleset.full_script(),
            Some(previous) => diff(previous, &ruleset).script,
        };
        topology.apply(&script).unwrap_or_else(|e| {
            panic!("{}: nft refused the ruleset: {e}\n{script}", scenario.name)
        });
        applied = Some(ruleset);
        for check in &scenario.checks {
            assert!(
                netns::SERVED_PORTS.contains(&check.traffic.port),
                "{}: port {} is not served by the probe servers (netns::SERVED_PORTS)",
                scenario.name,
                check.traffic.port
            );
            assert_dataplane(&topology, &cluster, check.traffic, scenario.name);
        }
        on_kernel += 1;
    }
    assert_eq!(on_kernel, all.len());
    assert!(
        on_kernel >= 41,
        "only {on_kernel} scenarios ran on the dataplane"
    );
}

#[test]
fn label_change_is_an_incremental_update_on_the_dataplane() {
    netns::require_root_tools();
    let policies = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-red, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {color: red}}}]}]
";
    let before = common::cluster_with(policies);
    let topology = Topology::build(&format!("wp-{}-lc", std::process::id() % 100_000), &before);
    let first = compile_all_local(&before, &topology);
    topology.apply(&first.full_script()).unwrap();
    let traffic = common::tcp(80);
    assert_dataplane(&topology, &before, traffic, "before the label change");

    let mut after = before.clone();
    let pod = after
        .endpoints
        .iter_mut()
        .find(|e| e.key() == "z/b")
        .unwrap();
    pod.labels.insert("color".into(), "red".into());
    let second = compile_all_local(&after, &topology);
    let change = diff(&first, &second);
    assert_eq!(
        (
            change.elements_added,
            change.elements_deleted,
            change.chains_rewritten
        ),
        (1, 0, 0),
        "a pod joining a selector is one set element:\n{}",
        change.script
    );
    topology.apply(&change.script).unwrap();
    let expected = Matrix::compute(&after, traffic);
    assert!(expected.allowed[7][0], "z/b -> x/a must now be allowed");
    assert_dataplane(&topology, &after, traffic, "after the label change");
}

#[test]
fn nft_accepts_every_scenario_whole_and_as_a_diff() {
    netns::require_root_tools();
    let empty = weft_policy::model::Cluster::default();
    let topology = Topology::build(&format!("wp-{}-nf", std::process::id() % 100_000), &empty);
    let mut previous: Option<Ruleset> = None;
    for scenario in scenarios::all() {
        let ruleset = compile_all_local(&common::cluster_with(scenario.policies), &topology);
        let whole = ruleset.full_script();
        topology
            .apply(&whole)
            .unwrap_or_else(|e| panic!("{}: {e}\n{whole}", scenario.name));
        if let Some(previous) = &previous {
            let whole_state = topology.table_state(TABLE);
            topology.apply(&previous.full_script()).unwrap();
            let change = diff(previous, &ruleset).script;
            topology
                .apply(&change)
                .unwrap_or_else(|e| panic!("{} as a diff: {e}\n{change}", scenario.name));
            assert_eq!(
                topology.table_state(TABLE),
                whole_state,
                "{}: the diff from the previous scenario leaves another table than the whole script",
                scenario.name
            );
        }
        previous = Some(ruleset);
    }
}

/// Pods with IPv6 addresses only, so the ip6 half of the compiled rules is exercised.
const IPV6_PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: 'y', labels: {ns: 'y'}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {containers: [{name: c, ports: [{name: serve-81-tcp, containerPort: 81}]}]}
status: {podIP: 'fd00:250::1:1'}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {containers: [{name: c, ports: [{name: serve-81-tcp, containerPort: 81}]}]}
status: {podIP: 'fd00:250::1:2'}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: 'y', labels: {pod: a}}
spec: {containers: [{name: c, ports: [{name: serve-81-tcp, containerPort: 81}]}]}
status: {podIP: 'fd00:250::2:1'}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: 'y', labels: {pod: b}}
spec: {containers: [{name: c, ports: [{name: serve-81-tcp, containerPort: 81}]}]}
status: {podIP: 'fd00:250::2:2'}
";

const IPV6_POLICIES: [&str; 4] = [
    "",
    "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 'fd00:250::2:0/112', except: ['fd00:250::2:2/128']}}]}]
",
    "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: x-not-to-y-b}
spec:
  namespaceSelector: ns == 'x'
  types: [Egress]
  egress:
  - {action: Deny, destination: {selector: \"pod == 'b'\", namespaceSelector: \"ns == 'y'\"}}
  - {action: Allow}
",
    "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: named, namespace: 'y'}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [serve-81-tcp]}}]
",
];

#[test]
fn ipv6_dataplane_matches_evaluator() {
    netns::require_root_tools();
    let load = |policies: &str| {
        weft_policy::load::load(&[
            ("pods.yaml".into(), IPV6_PODS.into()),
            ("policies.yaml".into(), policies.into()),
        ])
        .unwrap()
    };
    let base = load("");
    let topology = Topology::build(&format!("wp-{}-v6", std::process::id() % 100_000), &base);
    for policies in IPV6_POLICIES {
        let cluster = load(policies);
        let ruleset = compile_all_local(&cluster, &topology);
        topology.apply(&ruleset.full_script()).unwrap();
        let mut denied_somewhere = false;
        for traffic in [common::tcp(80), common::tcp(81), common::udp(80)] {
            let expected = Matrix::compute(&cluster, traffic);
            denied_somewhere |= expected.allowed.iter().flatten().any(|allowed| !allowed);
            assert_dataplane(&topology, &cluster, traffic, policies);
        }
        assert!(
            policies.is_empty() || denied_somewhere,
            "every IPv6 policy denies something"
        );
    }
}
