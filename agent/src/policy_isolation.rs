//! When nft refuses the node's policy table, one policy must cost only itself, and fail closed:
//! the policies the kernel refuses are found by bisection (each probe an `nft --check` of the
//! table compiled from a subset, which changes nothing), and each is replaced by a policy that
//! denies everything for the endpoints it selects, in the directions it governs, at its place in
//! the order. Every other policy is programmed as written; the refused ones are named so they
//! can be reported, and stay replaced until they change.

use std::collections::BTreeMap;

use weft_policy::model::{Action, Entity, Policy, PolicyId, Rule};

/// Policies the kernel refused, with the error nft gave for each.
pub type Refused = BTreeMap<PolicyId, String>;

/// The policies among `policies` that `refuses` (an nft check of a table compiled from a
/// subset) rejects. A subset that fails while both its halves pass cannot be split further:
/// all of it is returned, so nothing refused is ever programmed.
pub fn find_refused(
    policies: &[Policy],
    refuses: &mut impl FnMut(&[Policy]) -> Option<String>,
) -> Refused {
    let mut refused = Refused::new();
    if let Some(error) = refuses(policies) {
        split(policies, error, refuses, &mut refused);
    }
    refused
}

fn split(
    policies: &[Policy],
    error: String,
    refuses: &mut impl FnMut(&[Policy]) -> Option<String>,
    refused: &mut Refused,
) {
    if policies.len() <= 1 {
        for policy in policies {
            refused.insert(policy.id.clone(), error.clone());
        }
        return;
    }
    let (left, right) = policies.split_at(policies.len() / 2);
    let left_error = refuses(left);
    let right_error = refuses(right);
    if left_error.is_none() && right_error.is_none() {
        // Only together are they refused: keep none of them.
        for policy in policies {
            refused.insert(policy.id.clone(), error.clone());
        }
        return;
    }
    if let Some(error) = left_error {
        split(left, error, refuses, refused);
    }
    if let Some(error) = right_error {
        split(right, error, refuses, refused);
    }
}

/// `policy` denying all traffic of the endpoints it selects, in the directions it governs.
pub fn fail_closed(policy: &Policy) -> Policy {
    let deny_all = || {
        vec![Rule {
            action: Action::Deny,
            protocol: None,
            not_protocol: None,
            source: Entity::default(),
            destination: Entity::default(),
        }]
    };
    Policy {
        ingress: policy.ingress.as_ref().map(|_| deny_all()),
        egress: policy.egress.as_ref().map(|_| deny_all()),
        ..policy.clone()
    }
}

/// Replaces the policies refused before, while they are unchanged, by their fail-closed form;
/// forgets the ones that changed or are gone (they are tried again).
pub fn apply_known(
    policies: &mut [Policy],
    known: &mut BTreeMap<PolicyId, (Policy, String)>,
) -> Refused {
    let mut still = Refused::new();
    let current: BTreeMap<PolicyId, &Policy> = policies
        .iter()
        .map(|policy| (policy.id.clone(), policy))
        .collect();
    known.retain(|id, (original, _)| current.get(id).is_some_and(|now| *now == original));
    for policy in policies.iter_mut() {
        if let Some((_, error)) = known.get(&policy.id) {
            still.insert(policy.id.clone(), error.clone());
            *policy = fail_closed(policy);
        }
    }
    still
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy::model::PolicyKind;
    use weft_policy::selector::Selector;

    fn policy(name: &str) -> Policy {
        Policy {
            id: PolicyId {
                kind: PolicyKind::Kubernetes,
                namespace: Some("ns".into()),
                name: name.into(),
            },
            order: None,
            namespace: Some("ns".into()),
            selector: Selector::parse("all()").unwrap(),
            namespace_selector: None,
            ingress: Some(vec![]),
            egress: None,
        }
    }

    fn names(refused: &Refused) -> Vec<&str> {
        refused.keys().map(|id| id.name.as_str()).collect()
    }

    #[test]
    fn bisection_finds_each_refused_policy_with_few_checks() {
        let policies: Vec<Policy> = (0..64).map(|n| policy(&format!("p{n:02}"))).collect();
        let mut checks = 0;
        let mut refuses = |subset: &[Policy]| {
            checks += 1;
            subset
                .iter()
                .find(|p| p.id.name == "p07" || p.id.name == "p40")
                .map(|p| format!("rule of {} refused", p.id.name))
        };
        let refused = find_refused(&policies, &mut refuses);
        assert_eq!(names(&refused), vec!["p07", "p40"]);
        assert!(refused.values().any(|error| error.contains("p40")));
        assert!(checks < 30, "{checks} checks for 64 policies");
    }

    #[test]
    fn nothing_refused_costs_one_check_and_an_inseparable_pair_is_refused_whole() {
        let policies: Vec<Policy> = (0..4).map(|n| policy(&format!("p{n}"))).collect();
        let mut checks = 0;
        let refused = find_refused(&policies, &mut |_: &[Policy]| {
            checks += 1;
            None
        });
        assert!(refused.is_empty());
        assert_eq!(checks, 1);
        let together = |subset: &[Policy]| {
            let has = |name: &str| subset.iter().any(|p| p.id.name == name);
            (has("p0") && has("p3")).then(|| "conflict".to_owned())
        };
        let refused = find_refused(&policies, &mut { together });
        assert_eq!(names(&refused), vec!["p0", "p1", "p2", "p3"]);
    }

    #[test]
    fn a_refused_policy_denies_everything_it_governs_until_it_changes() {
        let mut broken = policy("broken");
        broken.ingress = Some(vec![]);
        broken.egress = None;
        let closed = fail_closed(&broken);
        let ingress = closed.ingress.as_deref().unwrap();
        assert_eq!(ingress.len(), 1);
        assert_eq!(ingress[0].action, Action::Deny);
        assert!(
            closed.egress.is_none(),
            "a direction it did not govern stays ungoverned"
        );

        let mut known = BTreeMap::from([(broken.id.clone(), (broken.clone(), "e".to_owned()))]);
        let mut policies = vec![broken.clone(), policy("fine")];
        let still = apply_known(&mut policies, &mut known);
        assert_eq!(names(&still), vec!["broken"]);
        assert_eq!(policies[0], closed);
        assert_eq!(policies[1], policy("fine"));
        // Edited: tried again as written.
        let mut edited = broken.clone();
        edited.order = Some(5.0);
        let mut policies = vec![edited.clone()];
        assert!(apply_known(&mut policies, &mut known).is_empty());
        assert_eq!(policies[0], edited);
        assert!(known.is_empty());
    }
}
