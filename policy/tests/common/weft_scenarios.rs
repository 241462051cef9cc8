//! Scenarios for weft NetworkPolicy and GlobalNetworkPolicy: actions Allow, Deny, Log and Pass,
//! order and name ties, interplay with Kubernetes policies (order 1000), nets, ports, protocols,
//! named ports, service accounts and the default policy types.

use super::scenarios::{
    ALL_ALLOWED, Scenario, X_A_CLOSED, X_INGRESS_ONLY_FROM_Y, X_PODS_REFUSE_SAME_NAMESPACE_B,
    check, scenario,
};
use super::{tcp, udp};

pub fn all() -> Vec<Scenario> {
    vec![
        scenario(
            "gnp-deny-from-namespace-z-then-allow",
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: no-z}
spec:
  order: 10
  selector: all()
  ingress:
  - {action: Deny, source: {namespaceSelector: \"ns == 'z'\"}}
  - {action: Allow}
",
            vec![check(
                tcp(80),
                "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a X X X X X X . X X
z/b X X X X X X X . X
z/c X X X X X X X X .",
            )],
        ),
        scenario(
            "weft-allow-decides-before-kubernetes-deny",
            concat!(
                "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: from-y, namespace: x}
spec:
  order: 100
  ingress: [{action: Allow, source: {namespaceSelector: \"ns == 'y'\"}}]
---",
                "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
"
            ),
            vec![check(tcp(80), X_INGRESS_ONLY_FROM_Y)],
        ),
        scenario(
            "weft-deny-beats-kubernetes-allow",
            "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
---
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: no-b-into-x}
spec:
  order: 10
  namespaceSelector: ns == 'x'
  ingress: [{action: Deny, source: {selector: \"pod == 'b'\"}}]
",
            vec![check(
                tcp(80),
                "
x/a . . . . . . . . .
x/b X . X . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b X X X . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b X X X . . . . . .
z/c . . . . . . . . .",
            )],
        ),
        scenario(
            "weft-pass-skips-kubernetes-deny",
            concat!(
                "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-y}
spec:
  order: 10
  namespaceSelector: ns == 'x'
  ingress: [{action: Pass, source: {namespaceSelector: \"ns == 'y'\"}}]
---",
                "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
"
            ),
            vec![check(tcp(80), X_INGRESS_ONLY_FROM_Y)],
        ),
        scenario(
            "weft-log-continues-to-next-rule",
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: log-then-allow-x}
spec:
  order: 10
  selector: pod == 'a'
  ingress:
  - {action: Log}
  - {action: Allow, source: {namespaceSelector: \"ns == 'x'\"}}
",
            vec![check(
                tcp(80),
                "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a X . . . . . X . .
y/b X . . X . . X . .
y/c X . . X . . X . .
z/a X . . X . . . . .
z/b X . . X . . X . .
z/c X . . X . . X . .",
            )],
        ),
        scenario(
            "weft-equal-order-ties-by-name",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: b-allow, namespace: x}
spec: {order: 100, ingress: [{action: Allow}]}
---
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: a-deny, namespace: x}
spec: {order: 100, ingress: [{action: Deny, source: {selector: \"pod == 'b'\"}}]}
",
            vec![check(tcp(80), X_PODS_REFUSE_SAME_NAMESPACE_B)],
        ),
        scenario(
            "weft-lower-order-before-name",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: a-allow, namespace: x}
spec: {order: 100, ingress: [{action: Allow}]}
---
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: z-deny, namespace: x}
spec: {order: 50, ingress: [{action: Deny, source: {selector: \"pod == 'b'\"}}]}
---
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: no-order-deny-all, namespace: x}
spec: {ingress: [{action: Deny}]}
",
            vec![check(tcp(80), X_PODS_REFUSE_SAME_NAMESPACE_B)],
        ),
        scenario(
            "weft-not-selector-within-policy-namespace",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: not-c, namespace: x}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, source: {notSelector: \"pod == 'c'\"}}]
",
            vec![check(
                tcp(80),
                "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c X . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .",
            )],
        ),
        scenario(
            "weft-port-range-with-not-ports",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: range, namespace: x}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: ['79:85'], notPorts: [80]}}]
",
            vec![
                check(tcp(80), X_A_CLOSED),
                check(tcp(81), ALL_ALLOWED),
                check(udp(81), X_A_CLOSED),
            ],
        ),
        scenario(
            "weft-not-protocol",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: no-udp, namespace: x}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, notProtocol: UDP}]
",
            vec![check(tcp(80), ALL_ALLOWED), check(udp(80), X_A_CLOSED)],
        ),
        scenario(
            "weft-nets-and-not-nets",
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: nets}
spec:
  selector: pod == 'a'
  namespaceSelector: ns == 'x'
  ingress: [{action: Allow, source: {nets: [10.250.0.0/16], notNets: [10.250.2.0/24]}}]
",
            vec![check(
                tcp(80),
                "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a X . . . . . . . .
y/b X . . . . . . . .
y/c X . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .",
            )],
        ),
        scenario(
            "weft-egress-deny-to-namespace-y",
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: x-not-to-y}
spec:
  namespaceSelector: ns == 'x'
  types: [Egress]
  egress:
  - {action: Deny, destination: {namespaceSelector: \"ns == 'y'\"}}
  - {action: Allow}
",
            vec![check(
                udp(80),
                "
x/a . . . X X X . . .
x/b . . . X X X . . .
x/c . . . X X X . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .",
            )],
        ),
        scenario(
            "weft-named-port",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec:
  selector: pod == 'a'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [serve-81-tcp]}}]
",
            vec![check(tcp(81), ALL_ALLOWED), check(tcp(80), X_A_CLOSED)],
        ),
        scenario(
            "weft-service-account-names",
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: from-sa-b}
spec:
  selector: pod == 'a'
  namespaceSelector: ns == 'x'
  ingress: [{action: Allow, source: {serviceAccounts: {names: [sa-b]}}}]
",
            vec![check(
                tcp(80),
                "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c X . . . . . . . .
y/a X . . . . . . . .
y/b . . . . . . . . .
y/c X . . . . . . . .
z/a X . . . . . . . .
z/b . . . . . . . . .
z/c X . . . . . . . .",
            )],
        ),
        scenario(
            // Without `types`, a policy with only egress rules governs egress alone (as in
            // Calico): x/a may send only UDP, and stays open for ingress.
            "weft-default-types-with-egress-rules-only",
            "
apiVersion: network.weft.dev/v1
kind: NetworkPolicy
metadata: {name: egress-rules, namespace: x}
spec:
  selector: pod == 'a'
  egress: [{action: Allow, protocol: UDP}]
",
            vec![
                check(udp(80), ALL_ALLOWED),
                check(
                    tcp(80),
                    "
x/a . X X X X X X X X
x/b . . . . . . . . .
x/c . . . . . . . . .
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c . . . . . . . . .
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c . . . . . . . . .
",
                ),
            ],
        ),
        scenario(
            "weft-deny-all-egress-except-dns-like-udp",
            "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: udp-out-only}
spec:
  selector: pod == 'c'
  types: [Egress]
  egress: [{action: Allow, protocol: UDP, destination: {ports: [80]}}]
",
            vec![
                check(udp(80), ALL_ALLOWED),
                check(
                    tcp(80),
                    "
x/a . . . . . . . . .
x/b . . . . . . . . .
x/c X X . X X X X X X
y/a . . . . . . . . .
y/b . . . . . . . . .
y/c X X X X X . X X X
z/a . . . . . . . . .
z/b . . . . . . . . .
z/c X X X X X X X X .",
                ),
            ],
        ),
        scenario(
            "kubernetes-deny-all-with-weft-log",
            concat!(
                "
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: log-all}
spec: {order: 1, ingress: [{action: Log}]}
---",
                "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-y, namespace: y}
spec: {podSelector: {}, ingress: [{}]}
"
            ),
            vec![check(
                tcp(80),
                "
x/a . X X . . . X X X
x/b X . X . . . X X X
x/c X X . . . . X X X
y/a X X X . . . X X X
y/b X X X . . . X X X
y/c X X X . . . X X X
z/a X X X . . . . X X
z/b X X X . . . X . X
z/c X X X . . . X X .",
            )],
        ),
    ]
}
