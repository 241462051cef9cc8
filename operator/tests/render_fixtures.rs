//! The pure render against checked-in YAML fixtures: each `fixtures/NAME.installation.yaml`
//! renders to `fixtures/NAME.rendered.yaml` byte for byte. Set `UPDATE_FIXTURES=1` to rewrite
//! the expected files after an intended change: a run that rewrites a file fails with "fixtures
//! updated, rerun", so a green run always compared; then review the diff.

use std::path::{Path, PathBuf};

use weft_api::Installation;
use weft_operator::prepare::{offline_facts, prepare};
use weft_operator::render::{Rendered, render, to_yaml};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn render_fixture(name: &str) -> (Rendered, String) {
    let input = fixtures().join(format!("{name}.installation.yaml"));
    let text = std::fs::read_to_string(&input).expect("fixture is readable");
    let installation: Installation = serde_saphyr::from_str(&text).expect("fixture parses");
    let facts = offline_facts();
    let computed = prepare(&installation, &facts, &Default::default()).expect("fixture is valid");
    let rendered = render(&computed, &facts, None);
    let yaml = to_yaml(&rendered).expect("render encodes");
    (rendered, yaml)
}

/// Compares `yaml` with the file at `expected_path`. With `update`, a differing (or missing)
/// file is rewritten and the comparison still fails: only an unchanged file passes.
fn compare_with_fixture(expected_path: &Path, yaml: &str, update: bool) -> Result<(), String> {
    let expected = std::fs::read_to_string(expected_path);
    if expected.as_deref().ok() == Some(yaml) {
        return Ok(());
    }
    if update {
        std::fs::write(expected_path, yaml)
            .map_err(|error| format!("{}: {error}", expected_path.display()))?;
        return Err(format!(
            "fixtures updated, rerun: {} was rewritten; review the diff",
            expected_path.display()
        ));
    }
    Err(match expected {
        Ok(_) => format!(
            "render differs from {}; rerun with UPDATE_FIXTURES=1 and review the diff",
            expected_path.display()
        ),
        Err(error) => format!("{}: {error}", expected_path.display()),
    })
}

fn check(name: &str) -> Rendered {
    let (rendered, yaml) = render_fixture(name);
    let expected_path = fixtures().join(format!("{name}.rendered.yaml"));
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    if let Err(message) = compare_with_fixture(&expected_path, &yaml, update) {
        panic!("{name}: {message}");
    }
    rendered
}

#[test]
fn updating_fixtures_fails_the_run_that_rewrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.rendered.yaml");
    std::fs::write(&path, "old\n").unwrap();
    let error = compare_with_fixture(&path, "new\n", true).unwrap_err();
    assert!(error.starts_with("fixtures updated, rerun"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    // The rerun compares against the rewritten file and passes.
    compare_with_fixture(&path, "new\n", true).unwrap();
    compare_with_fixture(&path, "new\n", false).unwrap();
    let error = compare_with_fixture(&path, "other\n", false).unwrap_err();
    assert!(error.contains("UPDATE_FIXTURES=1"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
}

#[test]
fn minimal_installation_renders_the_whole_stack() {
    let rendered = check("minimal");
    assert_eq!(rendered.config_maps.len(), 1);
    assert_eq!(rendered.ip_pools.len(), 1, "one default pool");
    let node = &rendered.daemon_sets[0];
    let pod = node.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.init_containers.as_ref().unwrap()[0].name, "install-cni");
}

#[test]
fn custom_installation_sets_mtu_pools_replicas_and_resources() {
    let rendered = check("custom");
    let conflist = &rendered.config_maps[0].data.as_ref().unwrap()["10-weft.conflist"];
    assert!(conflist.contains("\"mtu\": 1400"), "{conflist}");
    let names: Vec<_> = rendered
        .ip_pools
        .iter()
        .map(|pool| pool.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["pods-a", "pods-b"]);
    let deployment = rendered.deployments[0].spec.as_ref().unwrap();
    assert_eq!(deployment.replicas, Some(3));
}

#[test]
fn external_cni_renders_no_cni_config_and_no_install_step() {
    let rendered = check("external");
    assert!(rendered.config_maps.is_empty());
    assert!(rendered.ip_pools.is_empty());
    let pod = rendered.daemon_sets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert!(pod.init_containers.is_none());
}

#[test]
fn a_changed_mtu_changes_the_pod_template_hash() {
    let (minimal, _) = render_fixture("minimal");
    let (custom, _) = render_fixture("custom");
    let hash = |rendered: &Rendered| {
        rendered.daemon_sets[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["operator.weft.dev/cni-config-hash"]
            .clone()
    };
    assert_ne!(hash(&minimal), hash(&custom));
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render_fixture("custom").1, render_fixture("custom").1);
}
