//! The chart without a cluster: `helm lint --strict`, golden output, the values schema (generated
//! part and refusals), the CRD copies and equality with `config/default`.

use std::path::Path;

use serde_json::Value;
use weft_e2e::HelmMajor;

use super::{BOTH, chart_dir, documents, helm, helm_offline, template, text, workspace_dir};

#[test]
fn helm_lint_strict_passes_with_default_and_full_values() {
    let chart = chart_dir();
    let full = chart.join("ci/full-values.yaml");
    for major in BOTH {
        let helm = helm(major);
        for values in [None, Some(&full)] {
            let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
            if let Some(values) = values {
                args.extend(["--values", values.to_str().unwrap()]);
            }
            let output = helm_offline(&helm, &args);
            let (stdout, stderr) = text(&output);
            println!("helm {} {}:\n{stdout}", helm.version, args.join(" "));
            assert!(output.status.success(), "{stdout}{stderr}");
            assert!(stdout.contains("1 chart(s) linted, 0 chart(s) failed"));
        }
    }
}

fn check_golden(name: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/chart/golden/{name}"));
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    // Rewriting never passes: a green run is always one that compared.
    if std::env::var_os("UPDATE_FIXTURES").is_some() && golden != rendered {
        std::fs::write(&path, rendered).expect("write golden file");
        panic!("{}: fixtures updated, rerun", path.display());
    }
    assert!(
        golden == rendered,
        "helm template differs from {}; rerun with UPDATE_FIXTURES=1 and review the diff",
        path.display()
    );
}

/// One golden file per Helm major version: Helm 4 separates documents with an extra blank line.
#[test]
fn helm_template_matches_the_golden_files_with_both_helm_versions() {
    let full = chart_dir().join("ci/full-values.yaml");
    let full = full.to_str().unwrap();
    for (major, suffix) in [(HelmMajor::V3, "helm3"), (HelmMajor::V4, "helm4")] {
        let helm = helm(major);
        check_golden(&format!("default.{suffix}.yaml"), &template(&helm, &[]));
        check_golden(
            &format!("full.{suffix}.yaml"),
            &template(&helm, &["--values", full]),
        );
    }
}

/// `helm template` with `values` (YAML) must fail; returns Helm's message.
pub(super) fn refused(major: HelmMajor, values: &str) -> String {
    let helm = helm(major);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let chart = chart_dir();
    let output = helm_offline(
        &helm,
        &[
            "template",
            "weft",
            chart.to_str().unwrap(),
            "--values",
            file.to_str().unwrap(),
        ],
    );
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "helm accepted {values}");
    println!("helm {} refuses {values:?}:\n{stderr}", helm.version);
    stderr
}

#[test]
fn the_schema_refuses_bad_values_naming_the_key() {
    let cases: [(&str, &[&str]); 8] = [
        (
            "replica: 2",
            &["additional properties 'replica' not allowed"],
        ),
        (
            "metrics: {port: \"9442\"}",
            &["/metrics/port", "got string, want integer"],
        ),
        (
            "installation: {spec: {network: {mtu: 5}}}",
            &["/installation/spec/network/mtu", "576"],
        ),
        (
            "installation: {spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/16, encapsulation: GRE}]}}}",
            &[
                "/installation/spec/network/ipPools/0/encapsulation",
                "VXLANCrossSubnet",
            ],
        ),
        (
            "installation: {spec: {netwrok: {mtu: 1450}}}",
            &[
                "/installation/spec",
                "additional properties 'netwrok' not allowed",
            ],
        ),
        (
            "log: {level: verbose}",
            &["/log/level", "value must be one of"],
        ),
        (
            "replicas: 2\nleaderElection: {enabled: false}",
            &["more than 1 replica needs leaderElection.enabled: true"],
        ),
        (
            "health: {port: 9442}",
            &["health.port: must differ from metrics.port"],
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

#[test]
fn the_schema_of_installation_spec_is_generated_from_the_crd() {
    let path = chart_dir().join("values.schema.json");
    let text = std::fs::read_to_string(&path).expect("values.schema.json");
    let mut schema: Value = serde_json::from_str(&text).expect("values.schema.json is JSON");
    let expected = super::schema::installation_spec_schema();
    let actual = &mut schema["properties"]["installation"]["properties"]["spec"];
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        *actual = expected.clone();
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        std::fs::write(&path, text).expect("write values.schema.json");
        return;
    }
    assert!(
        *actual == expected,
        "installation.spec in {} is not the Installation CRD's schema; rerun with \
         UPDATE_FIXTURES=1 and review the diff",
        path.display()
    );
}

#[test]
fn the_chart_carries_the_generated_crds() {
    let crds = workspace_dir().join("crds");
    let mut names = Vec::new();
    for crd in weft_api::crds() {
        let name = weft_api::crds::crd_file_name(&crd);
        let generated = std::fs::read_to_string(crds.join(&name)).expect("crds/ file");
        let carried = std::fs::read_to_string(chart_dir().join("crds").join(&name))
            .unwrap_or_else(|_| panic!("charts/weft/crds/{name} is missing; run `make crds`"));
        assert!(
            generated == carried,
            "charts/weft/crds/{name} differs from crds/{name}; run `make crds`"
        );
        names.push(name);
    }
    let mut in_chart: Vec<String> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_chart.sort();
    names.sort();
    assert_eq!(
        in_chart, names,
        "charts/weft/crds holds exactly weft's CRDs"
    );
}

/// Labels Helm's chart adds for release bookkeeping; config/ has no release to name.
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
];

fn key(object: &Value) -> String {
    format!(
        "{}/{}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn without_helm_labels(mut object: Value) -> Value {
    if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
        for label in HELM_LABELS {
            labels.remove(label);
        }
    }
    object
}

#[test]
fn with_default_values_the_chart_is_config_default() {
    let mut config = Vec::new();
    for file in [
        "rbac/service_account.yaml",
        "rbac/cluster_role.yaml",
        "rbac/cluster_role_binding.yaml",
        "manager/deployment.yaml",
    ] {
        let path = workspace_dir().join("config").join(file);
        config.extend(documents(&std::fs::read_to_string(&path).unwrap()));
    }
    config.sort_by_key(key);
    for major in BOTH {
        let helm = helm(major);
        let rendered = template(&helm, &[]);
        let mut chart: Vec<Value> = documents(&rendered)
            .into_iter()
            .filter(|object| object["metadata"]["annotations"]["helm.sh/hook"].is_null())
            .filter(|object| object["kind"] != "Installation")
            .map(without_helm_labels)
            .collect();
        chart.sort_by_key(key);
        let chart_keys: Vec<String> = chart.iter().map(key).collect();
        let config_keys: Vec<String> = config.iter().map(key).collect();
        assert_eq!(
            chart_keys, config_keys,
            "helm {}: the same objects",
            helm.version
        );
        for (from_chart, from_config) in chart.iter().zip(&config) {
            assert_eq!(
                from_chart,
                from_config,
                "helm {}: {} differs from config/",
                helm.version,
                key(from_config)
            );
        }
        println!(
            "helm {}: {} objects equal config/: {}",
            helm.version,
            chart.len(),
            chart_keys.join(", ")
        );
    }
}

#[test]
fn chart_yaml_ships_the_workspace_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart: Value = serde_saphyr::from_str(&text).expect("Chart.yaml is YAML");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "weft");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    for key in ["kubeVersion", "home", "sources", "maintainers", "keywords"] {
        assert!(!chart[key].is_null(), "Chart.yaml has {key}");
    }
}
