//! Shared fixtures: the namespaces x, y, z with pods a, b, c of the upstream netpol suite, and
//! the scenarios with their expected reachability tables.

#![allow(dead_code)]

pub mod scenarios;
pub mod weft_scenarios;

use weft_policy::eval::Traffic;
use weft_policy::load::load;
use weft_policy::matrix::Matrix;
use weft_policy::model::{Cluster, Protocol};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// The address of pod `pod` in namespace `namespace`: 10.250.<ns 1..3>.<pod 1..3>.
pub fn pod_ip(namespace: &str, pod: &str) -> String {
    let ns = NAMESPACES.iter().position(|n| *n == namespace).unwrap() + 1;
    let p = PODS.iter().position(|n| *n == pod).unwrap() + 1;
    format!("10.250.{ns}.{p}")
}

/// Namespaces labelled `ns: <name>` and pods labelled `pod: <name>`, each serving TCP and UDP
/// on 80 and 81 through container ports named `serve-<port>-<tcp|udp>`.
pub fn base_yaml() -> String {
    let mut out = String::new();
    for ns in NAMESPACES {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    ns: {ns}\n---\n"
        ));
        for pod in PODS {
            out.push_str(&format!(
                "apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  namespace: {ns}
  labels:
    pod: {pod}
spec:
  serviceAccountName: sa-{pod}
  containers:
  - name: main
    ports:
    - {{name: serve-80-tcp, containerPort: 80}}
    - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}
    - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}
    - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}
status:
  podIP: {ip}
---
",
                ip = pod_ip(ns, pod)
            ));
        }
    }
    out
}

/// The base fixture plus the given policy documents.
pub fn cluster_with(policies: &str) -> Cluster {
    let sources = vec![
        ("base.yaml".to_string(), base_yaml()),
        ("policies.yaml".to_string(), policies.to_string()),
    ];
    load(&sources).unwrap_or_else(|e| panic!("fixture does not load: {e}"))
}

pub fn tcp(port: u16) -> Traffic {
    Traffic {
        protocol: Protocol::Tcp,
        port,
    }
}

pub fn udp(port: u16) -> Traffic {
    Traffic {
        protocol: Protocol::Udp,
        port,
    }
}

/// Asserts the evaluator's matrix equals the expected table, printing both on failure.
pub fn assert_matrix(name: &str, cluster: &Cluster, traffic: Traffic, expected: &str) {
    let expected = Matrix::from_table(expected).unwrap_or_else(|e| panic!("{name}: {e}"));
    let actual = Matrix::compute(cluster, traffic);
    let differences = expected.differences(&actual);
    assert!(
        differences.is_empty(),
        "{name}: {traffic:?} differs from the expected table (expected vs actual):\n{}\nexpected:\n{}actual:\n{}",
        differences.join("\n"),
        expected.to_table(),
        actual.to_table()
    );
}
