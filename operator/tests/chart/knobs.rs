//! The values users of the Cilium, tigera-operator and cert-manager charts expect, rendered where
//! they expect them: names and namespace overrides, common, pod and ServiceAccount metadata, extra
//! flags and environment, placement, the Deployment's history and strategy, a disruption budget
//! with several replicas, the ServiceMonitor's settings, an image pinned by digest and the
//! Installation's registry following the operator's image.

use serde_json::{Value, json};

use super::{BOTH, chart_dir, documents, helm, template};
use crate::offline::refused;

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the render has {kind}/{name}"))
}

#[test]
fn every_knob_of_the_full_values_renders_where_users_expect_it() {
    let full = chart_dir().join("ci/full-values.yaml");
    for major in BOTH {
        let helm = helm(major);
        let objects = documents(&template(&helm, &["--values", full.to_str().unwrap()]));
        for object in &objects {
            let labels = &object["metadata"]["labels"];
            assert_eq!(
                labels["team"], "networking",
                "commonLabels on {} {}",
                object["kind"], object["metadata"]["name"]
            );
            let namespace = &object["metadata"]["namespace"];
            let kind = object["kind"].as_str().unwrap();
            match kind {
                "ServiceMonitor" => assert_eq!(namespace, "monitoring"),
                "ClusterRole" | "ClusterRoleBinding" | "Installation" => {
                    assert!(namespace.is_null())
                }
                _ => assert_eq!(
                    namespace, "weft-control-plane",
                    "namespaceOverride on {kind}"
                ),
            }
        }

        let deployment = find(&objects, "Deployment", "weft-control");
        assert_eq!(deployment["spec"]["revisionHistoryLimit"], 3);
        assert_eq!(
            deployment["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        );
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "weft-ctl"})
        );
        let pod = &deployment["spec"]["template"];
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app.kubernetes.io/name": "weft-ctl", "app.kubernetes.io/part-of": "weft",
                   "example.com/tier": "control"})
        );
        assert_eq!(
            pod["metadata"]["annotations"],
            json!({"example.com/scrape": "false"})
        );
        assert_eq!(pod["spec"]["serviceAccountName"], "weft-operator-identity");
        assert_eq!(
            pod["spec"]["topologySpreadConstraints"][0]["topologyKey"],
            "topology.kubernetes.io/zone"
        );
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["image"],
            "registry.example.com/weft/weft-operator@sha256:\
             0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args.last(),
            Some(&"--example-flag=1"),
            "extraArgs last: {args:?}"
        );
        assert!(
            args.contains(&"--log-level=debug"),
            "the chart's own flags stay: {args:?}"
        );
        let env = container["env"].as_array().unwrap();
        assert_eq!(
            env.last().unwrap(),
            &json!({"name": "EXAMPLE", "value": "1"})
        );
        assert_eq!(
            env[1]["name"], "POD_NAMESPACE",
            "the chart's own env stays first"
        );

        let account = find(&objects, "ServiceAccount", "weft-operator-identity");
        assert_eq!(
            account["metadata"]["annotations"],
            json!({"iam.example.com/role": "weft-operator"})
        );
        for kind in ["ClusterRoleBinding", "RoleBinding"] {
            let name = if kind == "RoleBinding" {
                "weft-control-leader-election"
            } else {
                "weft-control"
            };
            let binding = find(&objects, kind, name);
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "weft-operator-identity",
                        "namespace": "weft-control-plane"}])
            );
        }
        find(&objects, "ClusterRole", "weft-control");

        let budget = find(&objects, "PodDisruptionBudget", "weft-control");
        assert_eq!(
            budget["spec"],
            json!({"maxUnavailable": 1,
                   "selector": {"matchLabels": {"app.kubernetes.io/name": "weft-ctl"}}})
        );

        let monitor = find(&objects, "ServiceMonitor", "weft-control");
        assert_eq!(
            monitor["spec"]["namespaceSelector"],
            json!({"matchNames": ["weft-control-plane"]})
        );
        let endpoint = &monitor["spec"]["endpoints"][0];
        assert_eq!(endpoint["interval"], "1m");
        assert_eq!(endpoint["scrapeTimeout"], "30s");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
        assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
        find(&objects, "Service", "weft-control-metrics");
        println!(
            "helm {}: every knob of ci/full-values.yaml rendered",
            helm.version
        );
    }
}

#[test]
fn one_replica_has_no_disruption_budget_and_an_existing_service_account_is_bound() {
    for major in BOTH {
        let helm = helm(major);
        let objects = documents(&template(&helm, &[]));
        assert!(
            !objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"),
            "one replica: a budget would block every drain"
        );
        let objects = documents(&template(
            &helm,
            &[
                "--set",
                "serviceAccount.create=false",
                "--set",
                "serviceAccount.name=existing",
                "--set",
                "replicas=3",
                "--set",
                "podDisruptionBudget.maxUnavailable=34%",
            ],
        ));
        let accounts: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "ServiceAccount")
            .filter(|o| o["metadata"]["annotations"]["helm.sh/hook"].is_null())
            .collect();
        assert!(
            accounts.is_empty(),
            "no operator ServiceAccount: {accounts:?}"
        );
        let deployment = find(&objects, "Deployment", "weft-operator");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["serviceAccountName"],
            "existing"
        );
        assert_eq!(
            find(&objects, "ClusterRoleBinding", "weft-operator")["subjects"][0]["name"],
            "existing"
        );
        assert_eq!(
            find(&objects, "PodDisruptionBudget", "weft-operator")["spec"]["maxUnavailable"],
            "34%"
        );
    }
}

#[test]
fn the_installation_pulls_from_the_operators_registry_unless_it_names_its_own() {
    let registry = |extra: &[&str], helm: &weft_e2e::Helm| {
        let objects = documents(&template(helm, extra));
        find(&objects, "Installation", "default")["spec"]["registry"].clone()
    };
    for major in BOTH {
        let helm = helm(major);
        assert_eq!(registry(&[], &helm), "ghcr.io/weft", "the default images");
        let mirror = ["--set", "image.registry=mirror.example:5000"];
        assert_eq!(
            registry(&mirror, &helm),
            "mirror.example:5000/weft",
            "a mirror set once in image.registry"
        );
        let flat = [
            "--set",
            "image.registry=mirror.example",
            "--set",
            "image.repository=weft-operator",
        ];
        assert_eq!(
            registry(&flat, &helm),
            "mirror.example",
            "a repository without a directory"
        );
        let own = [
            "--set",
            "image.registry=mirror.example",
            "--set",
            "installation.spec.registry=agents.example/weft",
        ];
        assert_eq!(
            registry(&own, &helm),
            "agents.example/weft",
            "installation.spec.registry wins"
        );
    }
}

#[test]
fn the_schema_refuses_bad_knobs_naming_the_key() {
    let cases: [(&str, &[&str]); 6] = [
        ("image: {digest: sha256:abc}", &["/image/digest"]),
        (
            "updateStrategy: {type: OnDelete}",
            &["/updateStrategy/type", "value must be one of"],
        ),
        (
            "serviceAccount: {nam: x}",
            &["additional properties 'nam' not allowed"],
        ),
        ("extraArgs: --verbose", &["/extraArgs", "want array"]),
        ("revisionHistoryLimit: -1", &["/revisionHistoryLimit"]),
        (
            "metrics: {serviceMonitor: {scrapeTimeout: soon}}",
            &["/metrics/serviceMonitor/scrapeTimeout"],
        ),
    ];
    for major in BOTH {
        for (values, expected) in cases {
            let message = refused(major, values);
            for part in expected {
                assert!(
                    message.contains(part),
                    "refusing {values:?}, helm {major:?} should say {part:?}; it said:\n{message}"
                );
            }
        }
    }
}
