//! Differential test on real network namespaces (needs root, `ip` and `nft`): one namespace per
//! pod on a bridge in a host namespace, the compiled ruleset programmed there, TCP/UDP probes
//! between every pair, and the observed matrix compared cell by cell with the evaluator's.
//!
//! All scenarios share one topology: the first ruleset is applied whole, every later one as the
//! incremental diff from the previous, so the diff is proven on the dataplane too.

mod common;
mod netns;

use common::scenarios;
use weft_policy::matrix::Matrix;
use weft_policy::nft::{Ruleset, compile, diff};

use netns::Topology;

const TABLE: &str = "weft_policy";

#[test]
fn dataplane_matches_evaluator_for_every_dataplane_scenario() {
    netns::require_root_tools();
    let base = common::cluster_with("");
    let topology = Topology::build(&format!("wp-{}", std::process::id() % 100_000), &base);
    let mut applied: Option<Ruleset> = None;
    let mut checked = 0;
    for scenario in scenarios::all().into_iter().filter(|s| s.on_dataplane) {
        let cluster = common::cluster_with(scenario.policies);
        let ruleset = compile(&cluster, TABLE);
        let script = match &applied {
            None => ruleset.full_script(),
            Some(previous) => diff(previous, &ruleset).script,
        };
        topology.apply(&script).unwrap_or_else(|e| {
            panic!("{}: nft refused the ruleset: {e}\n{script}", scenario.name)
        });
        applied = Some(ruleset);
        for check in &scenario.checks {
            let expected = Matrix::compute(&cluster, check.traffic);
            let observed = topology.probe_matrix(check.traffic);
            let differences = expected.differences(&observed);
            assert!(
                differences.is_empty(),
                "{}: {:?}: dataplane differs from evaluator (evaluator vs dataplane):\n{}\nevaluator:\n{}dataplane:\n{}",
                scenario.name,
                check.traffic,
                differences.join("\n"),
                expected.to_table(),
                observed.to_table()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} dataplane checks ran");
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
    let first = compile(&before, TABLE);
    topology.apply(&first.full_script()).unwrap();
    let traffic = common::tcp(80);
    assert_eq!(
        Matrix::compute(&before, traffic).differences(&topology.probe_matrix(traffic)),
        Vec::<String>::new()
    );

    let mut after = before.clone();
    let pod = after
        .endpoints
        .iter_mut()
        .find(|e| e.key() == "z/b")
        .unwrap();
    pod.labels.insert("color".into(), "red".into());
    let second = compile(&after, TABLE);
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
    assert_eq!(
        expected.differences(&topology.probe_matrix(traffic)),
        Vec::<String>::new()
    );
}

#[test]
fn nft_accepts_every_scenario_whole_and_as_a_diff() {
    netns::require_root_tools();
    let empty = weft_policy::model::Cluster::default();
    let topology = Topology::build(&format!("wp-{}-nf", std::process::id() % 100_000), &empty);
    let mut previous: Option<Ruleset> = None;
    for scenario in scenarios::all() {
        let ruleset = compile(&common::cluster_with(scenario.policies), TABLE);
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
        let ruleset = compile(&cluster, TABLE);
        topology.apply(&ruleset.full_script()).unwrap();
        let mut denied_somewhere = false;
        for traffic in [common::tcp(80), common::tcp(81), common::udp(80)] {
            let expected = Matrix::compute(&cluster, traffic);
            denied_somewhere |= expected.allowed.iter().flatten().any(|allowed| !allowed);
            let observed = topology.probe_matrix(traffic);
            assert_eq!(
                expected.differences(&observed),
                Vec::<String>::new(),
                "{policies}\n{traffic:?}\nevaluator:\n{}dataplane:\n{}",
                expected.to_table(),
                observed.to_table()
            );
        }
        assert!(
            policies.is_empty() || denied_somewhere,
            "every IPv6 policy denies something"
        );
    }
}
