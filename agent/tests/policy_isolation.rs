//! One policy nft refuses costs only itself, and fails closed: on a real kernel, a policy whose
//! compiled rule nft rejects (a port range ending before it starts, which the API refuses but a
//! compiler fault could still emit) is found, programmed as a deny-all of what it governs, and
//! reported, while every other policy is programmed as written; once it changes it is tried
//! again as written.

mod common;

use std::collections::BTreeMap;

use common::policy::*;
use common::*;
use weft_agent::addresses::AddressClaim;
use weft_agent::kernel::Kernel;
use weft_agent::policy_sync::PolicySync;
use weft_agent::view::{ClusterView, PodView};
use weft_policy::model::{
    Action, Endpoint, Entity, Policy, PolicyId, PolicyKind, PortMatch, PortSpec, Protocol, Rule,
};
use weft_policy::selector::Selector;

/// A network namespace of its own, deleted on drop.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = try_sh(&["ip", "netns", "del", &self.0]);
    }
}

fn pod(name: &str, node: &str, ip: &str, app: &str) -> PodView {
    PodView {
        node: node.into(),
        endpoint: Endpoint {
            namespace: "ns".into(),
            name: name.into(),
            labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
            ips: vec![ip.parse().unwrap()],
            ports: vec![],
            service_account: "default".into(),
        },
        claim: AddressClaim {
            live: true,
            created: None,
        },
    }
}

/// Lets app=client into the pods `selector` picks on TCP `port`.
fn allow(name: &str, selector: &str, port: PortMatch) -> Policy {
    Policy {
        id: PolicyId {
            kind: PolicyKind::Kubernetes,
            namespace: Some("ns".into()),
            name: name.into(),
        },
        order: None,
        namespace: Some("ns".into()),
        selector: Selector::parse(selector).unwrap(),
        namespace_selector: None,
        ingress: Some(vec![Rule {
            action: Action::Allow,
            protocol: Some(Protocol::Tcp),
            not_protocol: None,
            source: Entity::default(),
            destination: Entity {
                ports: vec![PortSpec {
                    protocol: Some(Protocol::Tcp),
                    port: Some(port),
                }],
                ..Entity::default()
            },
        }]),
        egress: None,
    }
}

#[test]
fn a_policy_nft_refuses_denies_what_it_governs_and_the_others_are_programmed() {
    require_root_tools();
    let scratch = Scratch(format!("wti-{}", std::process::id()));
    sh(&["ip", "netns", "add", &scratch.0]);
    let netns = scratch.0.as_str();
    let kernel = Kernel::open(Some(&netns_path(netns))).expect("open the namespace");
    let mut view = ClusterView::default();
    view.namespaces.insert("ns".into(), BTreeMap::new());
    for (name, ip, app) in [
        ("a", "10.77.0.2", "a"),
        ("b", "10.77.0.3", "b"),
        ("client", "10.77.0.4", "client"),
    ] {
        view.pods
            .insert(format!("ns/{name}"), pod(name, "node", ip, app));
    }
    view.kubernetes_policies.insert(
        "ns/broken".into(),
        allow("broken", "app == 'a'", PortMatch::Range(90, 80)),
    );
    view.kubernetes_policies.insert(
        "ns/fine".into(),
        allow("fine", "app == 'b'", PortMatch::Number(8080)),
    );
    let mut policy = PolicySync::default();
    policy
        .sync(&kernel, &view, "node")
        .expect("the table is programmed although one policy is refused");
    let refused: Vec<&str> = policy.refused().keys().map(|id| id.name.as_str()).collect();
    assert_eq!(refused, vec!["broken"]);
    assert!(
        policy.refused().values().next().unwrap().contains("90-80"),
        "nft's error is kept: {:?}",
        policy.refused()
    );
    let written = policy_table(netns).expect("the policy table");
    assert!(
        written.contains("tcp dport 8080") || written.contains("th dport 8080"),
        "{written}"
    );
    assert!(!written.contains("90-80"), "{written}");
    // The refused policy is programmed as a deny-all: a policy chain that only drops.
    let policy_chains: Vec<&str> = written
        .split("chain ")
        .filter(|chain| chain.starts_with("po_"))
        .collect();
    assert_eq!(policy_chains.len(), 2, "{written}");
    assert!(
        policy_chains
            .iter()
            .any(|chain| chain.contains("drop") && !chain.contains("accept")),
        "{written}"
    );

    // Fixed: tried again as written, and no longer refused.
    view.kubernetes_policies.insert(
        "ns/broken".into(),
        allow("broken", "app == 'a'", PortMatch::Range(80, 90)),
    );
    policy
        .sync(&kernel, &view, "node")
        .expect("the fixed policy is programmed");
    assert!(policy.refused().is_empty());
    assert!(
        policy_table(netns)
            .expect("the policy table")
            .contains("80-90")
    );
}
