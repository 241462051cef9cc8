//! The objects `weftctl check` creates, built purely so they are tested without a cluster.
//!
//! Every pod runs agnhost `netexec`: its `/dial` endpoint makes the connection under test from
//! inside the pod and reports what came back, so the check needs no `exec`. Echo pods serve HTTP
//! on 80 and 81 (two containers; the blue policy allows one port and not the other). The client
//! is labelled `color: red`, a second client `color: green`, echo pods `color: blue`, like the
//! seed's blue policy. A host-network pod on the client's node dials as the node does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodSpec, Service, ServicePort, ServiceSpec, Toleration,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label every object of one check run carries.
pub const RUN_LABEL: &str = "check.weft.dev/run";
/// Port the client pods' netexec listens on (the API server proxies to it).
pub const CLIENT_PORT: u16 = 8080;
/// The echo Service's name.
pub const ECHO_SERVICE: &str = "echo";

/// What a pod is for; decides its labels, ports and network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Dials: `color: red`, `role: client`.
    Client,
    /// Dials, matched by no allow rule: `color: green`.
    Stranger,
    /// Answers on 80 and 81: `color: blue`, `app: echo`.
    Echo,
    /// Dials from the node's network namespace on the given port.
    Host(u16),
}

fn labels(run: &str, role: Role) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(RUN_LABEL.to_owned(), run.to_owned())]);
    let extra: &[(&str, &str)] = match role {
        Role::Client => &[("color", "red"), ("role", "client")],
        Role::Stranger => &[("color", "green"), ("role", "stranger")],
        Role::Echo => &[("color", "blue"), ("app", "echo")],
        Role::Host(_) => &[("role", "host")],
    };
    labels.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    labels
}

/// The check's namespace.
pub fn namespace(name: &str, run: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_owned(), run.to_owned())])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn netexec(name: &str, image: &str, port: u16) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "netexec".to_owned(),
            format!("--http-port={port}"),
            "--udp-port=-1".to_owned(),
        ]),
        ..Container::default()
    }
}

/// A pod of `role` pinned to `node`.
pub fn pod(name: &str, run: &str, role: Role, node: &str, image: &str) -> Pod {
    let containers = match role {
        Role::Client | Role::Stranger => vec![netexec("netexec", image, CLIENT_PORT)],
        Role::Echo => vec![netexec("http-80", image, 80), netexec("http-81", image, 81)],
        Role::Host(port) => vec![netexec("netexec", image, port)],
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels(run, role)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            host_network: matches!(role, Role::Host(_)).then_some(true),
            containers,
            termination_grace_period_seconds: Some(1),
            // a one-node cluster has only its control plane
            tolerations: Some(vec![Toleration {
                key: Some("node-role.kubernetes.io/control-plane".to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoSchedule".to_owned()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The ClusterIP Service in front of every echo pod, port 80.
pub fn echo_service(run: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(ECHO_SERVICE.to_owned()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_owned(), run.to_owned())])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_owned(), "echo".to_owned())])),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                target_port: Some(IntOrString::Int(80)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn policy(name: &str, run: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_owned(), run.to_owned())])),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
    }
}

fn select(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..LabelSelector::default()
    }
}

/// Denies all ingress to every pod of the namespace.
pub fn deny_ingress(run: &str) -> NetworkPolicy {
    policy(
        "default-deny-ingress",
        run,
        NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ..NetworkPolicySpec::default()
        },
    )
}

/// Denies all egress from every pod of the namespace.
pub fn deny_egress(run: &str) -> NetworkPolicy {
    policy(
        "default-deny-egress",
        run,
        NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Egress".to_owned()]),
            ..NetworkPolicySpec::default()
        },
    )
}

/// Keeps the check's own channel open under a default deny: the API server, which may run on
/// another node, reaches the dialling pods' netexec on CLIENT_PORT through its pod proxy, and a
/// node's traffic to a pod on another node is subject to that pod's ingress policy.
pub fn allow_probe(run: &str) -> NetworkPolicy {
    policy(
        "allow-check-probe",
        run,
        NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "role".to_owned(),
                    operator: "In".to_owned(),
                    values: Some(vec!["client".to_owned(), "stranger".to_owned()]),
                }]),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".to_owned()),
                    port: Some(IntOrString::Int(i32::from(CLIENT_PORT))),
                    end_port: None,
                }]),
            }]),
            ..NetworkPolicySpec::default()
        },
    )
}

/// Allows ingress to echo pods from pods labelled `role: client` (on top of a default deny).
pub fn allow_client(run: &str) -> NetworkPolicy {
    policy(
        "allow-client-to-echo",
        run,
        NetworkPolicySpec {
            pod_selector: Some(select("app", "echo")),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(select("role", "client")),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: None,
            }]),
            ..NetworkPolicySpec::default()
        },
    )
}

/// The seed's blue policy (config/samples/networkpolicy-blue.yaml) in the check's namespace:
/// blue endpoints accept TCP 80 from red ones and nothing else.
pub fn blue_policy(run: &str, namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "network.weft.dev/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "blue-policy", "namespace": namespace, "labels": {RUN_LABEL: run}},
        "spec": {
            "selector": "color == 'blue'",
            "ingress": [{
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": "color == 'red'"},
                "destination": {"ports": [80]},
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_pods_serve_two_ports_and_carry_the_blue_label() {
        let pod = pod("echo-a", "r1", Role::Echo, "node-a", "agnhost:1");
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        let args: Vec<_> = spec
            .containers
            .iter()
            .map(|c| c.args.clone().unwrap_or_default())
            .collect();
        assert!(args[0].contains(&"--http-port=80".to_owned()));
        assert!(args[1].contains(&"--http-port=81".to_owned()));
        let labels = pod.metadata.labels.expect("labels");
        assert_eq!(labels["color"], "blue");
        assert_eq!(labels[RUN_LABEL], "r1");
        assert_eq!(spec.host_network, None);
    }

    #[test]
    fn host_pods_use_the_node_network_on_their_port() {
        let spec = pod("host", "r1", Role::Host(9123), "n", "img")
            .spec
            .expect("spec");
        assert_eq!(spec.host_network, Some(true));
        assert!(
            spec.containers[0]
                .args
                .as_ref()
                .expect("args")
                .contains(&"--http-port=9123".to_owned())
        );
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
    }

    #[test]
    fn allow_rule_selects_clients_into_echo_pods() {
        let spec = allow_client("r").spec.expect("spec");
        assert_eq!(spec.pod_selector, Some(select("app", "echo")));
        let from = spec.ingress.expect("ingress")[0]
            .from
            .clone()
            .expect("from");
        assert_eq!(from[0].pod_selector, Some(select("role", "client")));
    }

    #[test]
    fn probe_rule_opens_only_the_dialling_pods_netexec_port() {
        let spec = allow_probe("r").spec.expect("spec");
        let selector = spec.pod_selector.expect("selector");
        let requirement = &selector.match_expressions.expect("expressions")[0];
        assert_eq!(requirement.key, "role");
        assert_eq!(
            requirement.values.as_deref(),
            Some(&["client".to_owned(), "stranger".to_owned()][..])
        );
        let rule = &spec.ingress.expect("ingress")[0];
        assert!(rule.from.is_none(), "any source: the API server's node");
        let ports = rule.ports.as_ref().expect("ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(
            ports[0].port,
            Some(IntOrString::Int(i32::from(CLIENT_PORT)))
        );
    }

    #[test]
    fn blue_policy_is_a_valid_weft_network_policy() {
        let value = blue_policy("r", "weft-check-x");
        let policy: weft_api::NetworkPolicy = serde_json::from_value(value).expect("weft policy");
        assert_eq!(policy.spec.selector.as_deref(), Some("color == 'blue'"));
        assert_eq!(policy.metadata.namespace.as_deref(), Some("weft-check-x"));
    }
}
