//! Scenarios in the style of the upstream Kubernetes netpol suite: policies over namespaces
//! x, y, z with pods a, b, c, and for each kind of traffic the reachability table expected from
//! the documented semantics (rows are sources, columns destinations, `.` allowed, `X` denied).

use weft_policy::eval::Traffic;

use super::{tcp, udp};

pub const HEADER: &str = "x/a x/b x/c y/a y/b y/c z/a z/b z/c";

pub struct Check {
    pub traffic: Traffic,
    /// Nine rows, sources x/a .. z/c, each with the source name and nine cells.
    pub expected: &'static str,
}

pub struct Scenario {
    pub name: &'static str,
    pub policies: &'static str,
    pub checks: Vec<Check>,
}

impl Check {
    pub fn table(&self) -> String {
        format!("{HEADER}\n{}", self.expected)
    }
}

pub const ALL_ALLOWED: &str = "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .";

/// Column x/a closed to everyone but itself.
pub const X_A_CLOSED: &str = "
x/a . . . . . . . . .
x/b X . . . . . . . .
x/c X . . . . . . . .
y/a X . . . . . . . .
y/b X . . . . . . . .
y/c X . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .";

pub const X_INGRESS_CLOSED: &str = "
x/a . X X . . . . . .
x/b X . X . . . . . .
x/c X X . . . . . . .
y/a X X X . . . . . .
y/b X X X . . . . . .
y/c X X X . . . . . .
z/a X X X . . . . . .
z/b X X X . . . . . .
z/c X X X . . . . . .";

pub const X_INGRESS_ONLY_FROM_Y: &str = "
x/a . X X . . . . . .
x/b X . X . . . . . .
x/c X X . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a X X X . . . . . .
z/b X X X . . . . . .
z/c X X X . . . . . .";

pub const X_PODS_REFUSE_SAME_NAMESPACE_B: &str = "
x/a . . . . . . . . .
x/b X . X . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .";

pub const KUBE_DENY_ALL_INGRESS_X: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
";

pub fn check(traffic: Traffic, expected: &'static str) -> Check {
    Check { traffic, expected }
}

pub fn scenario(name: &'static str, policies: &'static str, checks: Vec<Check>) -> Scenario {
    Scenario {
        name,
        policies,
        checks,
    }
}

pub fn all() -> Vec<Scenario> {
    let mut list = kubernetes();
    list.extend(super::weft_scenarios::all());
    list
}

fn kubernetes() -> Vec<Scenario> {
    vec![
        scenario("no-policies", "", vec![check(tcp(80), ALL_ALLOWED), check(udp(81), ALL_ALLOWED)]),
        scenario("deny-all-ingress-in-x", KUBE_DENY_ALL_INGRESS_X, vec![check(tcp(80), X_INGRESS_CLOSED)]),
        scenario("allow-all-ingress-in-x", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
", vec![check(tcp(80), ALL_ALLOWED)]),
        scenario("deny-all-egress-in-x", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
", vec![check(tcp(80), "
x/a . X X X X X X X X
x/b X . X X X X X X X
x/c X X . X X X X X X
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("ingress-x-a-from-same-namespace-pod-b", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c X . . . . . . . .
y/a X . . . . . . . .
y/b X . . . . . . . .
y/c X . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .")]),
        scenario("ingress-x-a-from-namespace-y", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b X . . . . . . . .
x/c X . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .")]),
        scenario("ingress-x-a-from-namespace-y-and-pod-c", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-y-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
      podSelector: {matchLabels: {pod: c}}
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b X . . . . . . . .
x/c X . . . . . . . .
y/a X . . . . . . . .
y/b X . . . . . . . .
y/c . . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .")]),
        scenario("ingress-x-a-from-namespace-y-or-pod-c", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-y-or-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
    - podSelector: {matchLabels: {pod: c}}
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b X . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .")]),
        scenario("ingress-x-a-from-all-namespaces", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-everywhere, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {}}]}]
", vec![check(tcp(80), ALL_ALLOWED)]),
        scenario("ingress-x-a-from-namespaces-not-y", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-not-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}}]
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a X . . . . . . . .
y/b X . . . . . . . .
y/c X . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("ingress-x-a-port-81-only", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-port-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 81}]}]
", vec![check(tcp(80), X_A_CLOSED), check(tcp(81), ALL_ALLOWED), check(udp(81), X_A_CLOSED)]),
        scenario("ingress-x-a-named-port", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-named-port, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: serve-81-tcp}]}]
", vec![check(tcp(81), ALL_ALLOWED), check(tcp(80), X_A_CLOSED), check(udp(81), X_A_CLOSED)]),
        scenario("ingress-x-a-end-port", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-range, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: TCP, port: 81, endPort: 90}]}]
", vec![check(tcp(80), X_A_CLOSED), check(tcp(81), ALL_ALLOWED), check(tcp(90), ALL_ALLOWED), check(tcp(91), X_A_CLOSED)]),
        scenario("ingress-x-a-udp-80-only", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-udp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: UDP, port: 80}]}]
", vec![check(udp(80), ALL_ALLOWED), check(tcp(80), X_A_CLOSED), check(udp(81), X_A_CLOSED)]),
        scenario("egress-x-a-to-namespace-y", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
", vec![check(tcp(80), "
x/a . X X . . . X X X
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("egress-x-a-to-pod-b-port-80", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-b-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]
", vec![check(tcp(80), "
x/a . . X X X X X X X
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . ."), check(tcp(81), "
x/a . X X X X X X X X
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("x-a-isolated-both-ways-egress-to-y", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-both, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
", vec![check(tcp(80), "
x/a . X X . . . X X X
x/b X . . . . . . . .
x/c X . . . . . . . .
y/a X . . . . . . . .
y/b X . . . . . . . .
y/c X . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .")]),
        scenario("ingress-x-a-ip-block-except", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 10.250.2.0/24, except: [10.250.2.2/32]}}]}]
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b X . . . . . . . .
x/c X . . . . . . . .
y/a . . . . . . . . .
y/b X . . . . . . . .
y/c . . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c X . . . . . . . .")]),
        scenario("egress-x-a-ip-block-z", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.250.3.0/24}}]}]
", vec![check(tcp(80), "
x/a . X X X X X . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("union-of-two-policies", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-y-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-z-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: c}}}]}]
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b X . . . . . . . .
x/c X . . . . . . . .
y/a X . . . . . . . .
y/b . . . . . . . . .
y/c X . . . . . . . .
z/a X . . . . . . . .
z/b X . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("policy-in-y-affects-only-y", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-a, namespace: y}
spec: {podSelector: {matchLabels: {pod: a}}, ingress: []}
", vec![check(tcp(80), "
x/a . . . X . . . . .
x/b . . . X . . . . .
x/c . . . X . . . . .
y/a . . . . . . . . .
y/b . . . X . . . . .
y/c . . . X . . . . .
z/a . . . X . . . . .
z/b . . . X . . . . .
z/c . . . X . . . . .")]),
        scenario("egress-x-only-to-pod-c", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-to-c, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {pod: c}}}]}]
", vec![check(tcp(80), "
x/a . X . X X X X X X
x/b X . . X X X X X X
x/c X X . X X X X X X
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
        scenario("egress-type-ignores-ingress-rules", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-only, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{}]
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
", vec![check(tcp(80), ALL_ALLOWED)]),
        scenario("ingress-x-a-match-expressions", "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b-or-c, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}
      namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}
", vec![check(tcp(80), "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a X . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a X . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .")]),
    ]
}
