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
