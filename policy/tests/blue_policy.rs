//! The blue-policy example in both forms: in namespace production, red may reach blue on TCP 80
//! only, green may not reach blue, and blue's own traffic is unaffected.

use weft_policy::eval::{Decision, Traffic, verdict};
use weft_policy::load::load;
use weft_policy::model::{Action, Cluster, PolicyKind, Protocol};

const PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: production}
---
apiVersion: v1
kind: Pod
metadata: {name: red, namespace: production, labels: {color: red}}
status: {podIP: 10.250.9.1}
---
apiVersion: v1
kind: Pod
metadata: {name: blue, namespace: production, labels: {color: blue}}
status: {podIP: 10.250.9.2}
---
apiVersion: v1
kind: Pod
metadata: {name: green, namespace: production, labels: {color: green}}
status: {podIP: 10.250.9.3}
";

const KUBERNETES_FORM: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: blue-policy, namespace: production}
spec:
  podSelector: {matchLabels: {color: blue}}
  ingress:
  - from: [{podSelector: {matchLabels: {color: red}}}]
    ports: [{protocol: TCP, port: 80}]
";

const WEFT_FORM: &str = "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: blue-policy, namespace: production}
spec:
  selector: color == 'blue'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: color == 'red'}
    destination: {ports: [80]}
";

fn cluster(policy: &str) -> Cluster {
    load(&[
        ("pods.yaml".into(), PODS.into()),
        ("policy.yaml".into(), policy.into()),
    ])
    .unwrap()
}

fn allowed(cluster: &Cluster, from: &str, to: &str, protocol: Protocol, port: u16) -> bool {
    let src = cluster.endpoint(&format!("production/{from}")).unwrap();
    let dst = cluster.endpoint(&format!("production/{to}")).unwrap();
    verdict(cluster, src, dst, Traffic { protocol, port }).allowed
}

fn truth_table(policy: &str) {
    let cluster = cluster(policy);
    let table = [
        ("red", "blue", Protocol::Tcp, 80, true),
        ("red", "blue", Protocol::Tcp, 81, false),
        ("red", "blue", Protocol::Udp, 80, false),
        ("green", "blue", Protocol::Tcp, 80, false),
        ("green", "blue", Protocol::Tcp, 81, false),
        ("blue", "red", Protocol::Tcp, 80, true),
        ("blue", "red", Protocol::Tcp, 81, true),
        ("blue", "green", Protocol::Udp, 53, true),
        ("red", "green", Protocol::Tcp, 80, true),
        ("blue", "blue", Protocol::Tcp, 81, true),
    ];
    for (from, to, protocol, port, expected) in table {
        assert_eq!(
            allowed(&cluster, from, to, protocol, port),
            expected,
            "{from} -> {to} {protocol:?} {port}"
        );
    }
}

#[test]
fn kubernetes_form_truth_table() {
    truth_table(KUBERNETES_FORM);
}

#[test]
fn weft_form_truth_table() {
    truth_table(WEFT_FORM);
}

#[test]
fn deciding_rule_and_default_deny_are_named() {
    for (policy, kind) in [
        (KUBERNETES_FORM, PolicyKind::Kubernetes),
        (WEFT_FORM, PolicyKind::Namespaced),
    ] {
        let cluster = cluster(policy);
        let red = cluster.endpoint("production/red").unwrap();
        let blue = cluster.endpoint("production/blue").unwrap();
        let green = cluster.endpoint("production/green").unwrap();
        let tcp80 = Traffic {
            protocol: Protocol::Tcp,
            port: 80,
        };
        let ingress = verdict(&cluster, red, blue, tcp80).ingress.unwrap();
        match &ingress.decision {
            Decision::Rule {
                policy,
                rule,
                action,
            } => {
                assert_eq!(
                    (policy.kind, policy.name.as_str(), *rule),
                    (kind, "blue-policy", 0)
                );
                assert_eq!(*action, Action::Allow);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            ingress
                .to_string()
                .contains("blue-policy ingress rule 0 (Allow)"),
            "{ingress}"
        );

        let denied = verdict(&cluster, green, blue, tcp80).ingress.unwrap();
        let text = denied.to_string();
        assert!(
            text.contains("default deny because policies")
                && text.contains("production/blue-policy select the destination"),
            "{text}"
        );
    }
}
