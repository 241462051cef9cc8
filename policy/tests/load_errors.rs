//! Invalid input is refused with the document's position, kind, name and the offending field.

use weft_policy::load::{LoadError, load};

fn error(yaml: &str) -> String {
    let sources = vec![("input.yaml".to_string(), yaml.to_string())];
    match load(&sources) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(error) => error.to_string(),
    }
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\n---\n";

fn k8s(spec: &str) -> String {
    format!(
        "{POD}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: x}}\nspec: {spec}\n"
    )
}

fn weft(spec: &str) -> String {
    format!(
        "{POD}apiVersion: network.weft.dev/v1\nkind: NetworkPolicy\nmetadata: {{name: wp, namespace: x}}\nspec: {spec}\n"
    )
}

#[test]
fn each_invalid_document_is_named_with_its_field() {
    let cases = [
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n".to_string(),
            "input.yaml: document 1 (Service s): kind: unknown kind \"v1\" \"Service\"",
        ),
        (
            format!("{POD}{POD}"),
            "document 2 (Pod x/p): metadata.name: the same object is already defined by document 1",
        ),
        (
            k8s("{podSelector: {}, policyTypes: [Sideways]}"),
            "document 2 (NetworkPolicy x/np): spec.policyTypes[0]: \"Sideways\" is not a policy type",
        ),
        (
            k8s("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/24]}}]}]}"),
            "spec.ingress[0].from[0].ipBlock.except[0]: 11.0.0.0/24 is not inside the block's cidr 10.0.0.0/8",
        ),
        (
            k8s("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}"),
            "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (
            k8s("{ingress: [{from: [{}]}]}"),
            "spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock",
        ),
        (
            k8s("{egress: [{ports: [{port: http, endPort: 90}]}]}"),
            "spec.egress[0].ports[0].endPort: endPort needs a numeric port",
        ),
        (
            k8s("{ingress: [{ports: [{port: 90, endPort: 80}]}]}"),
            "spec.ingress[0].ports[0].endPort: endPort 80 is below port 90",
        ),
        (
            k8s("{ingress: [{ports: [{protocol: ICMP}]}]}"),
            "spec.ingress[0].ports[0].protocol: \"ICMP\" is not a protocol here",
        ),
        (
            k8s("{podSelector: {matchExpressions: [{key: a, operator: Near, values: [b]}]}}"),
            "spec.podSelector.matchExpressions[0].operator: \"Near\" is not an operator",
        ),
        (
            k8s("{podSelector: {matchLabels: {'bad key!': v}}}"),
            "spec.podSelector.matchLabels: label key \"bad key!\" is not valid",
        ),
        (
            k8s("{ingress: {from: []}}"),
            "document 2 (NetworkPolicy x/np): spec.ingress: invalid type",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.300}\n".to_string(),
            "document 1 (Pod p): status.podIP: \"10.0.0.300\" is not an IP address",
        ),
        (
            weft("{selector: \"color = 'blue'\"}"),
            "document 2 (NetworkPolicy x/wp): spec.selector: invalid selector at position 6: expected `==`",
        ),
        (
            weft("{ingress: [{action: Allow, source: {notSelector: 'has('}}]}"),
            "spec.ingress[0].source.notSelector: invalid selector at position 4",
        ),
        (
            weft("{ingress: [{action: Allow, destination: {ports: [80]}}]}"),
            "spec.ingress[0].protocol: destination ports need protocol TCP, UDP, SCTP or UDPLite",
        ),
        (
            weft("{ingress: [{action: Allow, protocol: TCP, source: {ports: [80]}}]}"),
            "spec.ingress[0].source.ports: source ports are not supported",
        ),
        (
            weft("{ingress: [{action: Allow, protocol: ICMP, icmp: {type: 8}}]}"),
            "spec.ingress[0].icmp: matching ICMP types and codes is not supported",
        ),
        (
            weft("{egress: [{action: Allow, protocol: XTP}]}"),
            "spec.egress[0].protocol: protocol \"XTP\" is not valid",
        ),
        (
            weft("{egress: [{action: Allow, destination: {nets: [10.0.0.0/33]}}]}"),
            "spec.egress[0].destination.nets[0]: \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            weft("{ingress: [{action: Allow, source: {serviceAccounts: {selector: all()}}}]}"),
            "spec.ingress[0].source.serviceAccounts.selector: selecting service accounts by label is not supported",
        ),
        (
            weft("{serviceAccountSelector: \"role == 'x'\"}"),
            "spec.serviceAccountSelector: selecting by service account labels is not supported",
        ),
        (
            "apiVersion: network.weft.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {doNotTrack: true}\n".to_string(),
            "document 1 (GlobalNetworkPolicy g): spec.doNotTrack: only applies to host endpoints",
        ),
        (
            "apiVersion: network.weft.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {namespaceSelector: 'ns =='}\n".to_string(),
            "document 1 (GlobalNetworkPolicy g): spec.namespaceSelector: invalid selector at position 5",
        ),
    ];
    for (yaml, expected) in cases {
        let message = error(&yaml);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn yaml_syntax_errors_name_the_source() {
    let sources = vec![("broken.yaml".to_string(), "a: [1, 2\n".to_string())];
    match load(&sources) {
        Err(LoadError::Yaml { source_name, .. }) => assert_eq!(source_name, "broken.yaml"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn valid_input_fills_the_model() {
    let yaml = "
apiVersion: v1
kind: Namespace
metadata: {name: 'no', labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: 'no', labels: {app: web}}
spec:
  serviceAccountName: runner
  containers: [{name: c, ports: [{name: dns, containerPort: 53, protocol: UDP}, {containerPort: 9}]}]
status: {podIPs: [{ip: 10.250.0.1}, {ip: 'fd00::1'}]}
";
    let cluster = load(&[("in.yaml".into(), yaml.into())]).unwrap();
    let pod = cluster.endpoint("no/p").unwrap();
    assert_eq!(pod.ips.len(), 2);
    assert_eq!(pod.service_account, "runner");
    assert_eq!(pod.ports.len(), 1, "only named ports are kept");
    assert_eq!(
        pod.named_port("dns", weft_policy::model::Protocol::Udp),
        Some(53)
    );
    let labels = cluster.namespace_labels("no");
    assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(
        labels
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("no")
    );
}
