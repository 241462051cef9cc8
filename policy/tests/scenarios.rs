//! Every scenario's expected reachability table against the evaluator, for each traffic kind.

mod common;

use common::{assert_matrix, cluster_with, scenarios};

#[test]
fn there_are_at_least_thirty_scenarios() {
    assert!(scenarios::all().len() >= 30, "{}", scenarios::all().len());
}

#[test]
fn every_scenario_matches_its_expected_table() {
    for scenario in scenarios::all() {
        let cluster = cluster_with(scenario.policies);
        for check in &scenario.checks {
            assert_matrix(scenario.name, &cluster, check.traffic, &check.table());
        }
    }
}

#[test]
fn cached_evaluator_agrees_with_plain_verdicts() {
    use weft_policy::eval::{Evaluator, verdict};
    for scenario in scenarios::all() {
        let cluster = cluster_with(scenario.policies);
        let evaluator = Evaluator::new(&cluster);
        for check in &scenario.checks {
            for src in &cluster.endpoints {
                for dst in &cluster.endpoints {
                    assert_eq!(
                        evaluator.verdict(src, dst, check.traffic),
                        verdict(&cluster, src, dst, check.traffic),
                        "{}: {} -> {}",
                        scenario.name,
                        src.key(),
                        dst.key()
                    );
                }
            }
        }
    }
}

#[test]
fn egress_to_an_address_outside_the_pods_matches_only_address_peers() {
    use weft_policy::eval::{Decision, egress_to_address};
    let cluster = cluster_with(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-all-pods-and-a-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}}]
  - to: [{ipBlock: {cidr: 10.249.0.0/16, except: [10.249.1.0/24]}}]
    ports: [{port: 81}]
",
    );
    let source = |key: &str| {
        cluster
            .endpoints
            .iter()
            .find(|e| e.key() == key)
            .expect("fixture pod")
    };
    let decide = |key: &str, address: &str, traffic| {
        egress_to_address(&cluster, source(key), address.parse().unwrap(), traffic).decision
    };
    // "All pods in all namespaces" does not include an address no pod has.
    assert!(!decide("x/a", "10.249.255.254", common::tcp(80)).allows());
    assert!(decide("x/a", "10.249.255.254", common::tcp(81)).allows());
    assert!(!decide("x/a", "10.249.1.1", common::tcp(81)).allows());
    // A pod no policy selects for egress is not isolated.
    assert_eq!(
        decide("x/b", "10.249.255.254", common::tcp(80)),
        Decision::NotIsolated
    );
}
