//! Tests of weft's Helm chart (`charts/weft`) with Helm 3 and Helm 4 built from their Go modules
//! (`make helm`): lint, the rendered output against golden files, the values schema (its
//! installation part generated from the CRD, and the values it refuses), the chart against
//! `config/default`, and install → upgrade → `helm test` → uninstall → install again on the local
//! control plane (see `lifecycle.rs` for what runs for real there).

mod checks;
mod knobs;
mod lifecycle;
mod offline;
mod schema;

use std::path::{Path, PathBuf};
use std::process::Output;

use weft_e2e::{Helm, HelmMajor};

/// `charts/weft` in this workspace.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weft")
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pinned Helm of `major`; fails the test when it was not built.
pub fn helm(major: HelmMajor) -> Helm {
    Helm::locate(major).unwrap_or_else(|error| panic!("{error}"))
}

pub const BOTH: [HelmMajor; 2] = [HelmMajor::V3, HelmMajor::V4];

/// Runs `helm <args>` without a cluster; returns its output.
pub fn helm_offline(helm: &Helm, args: &[&str]) -> Output {
    let state = tempfile::tempdir().expect("a temporary directory for Helm's state");
    helm.offline(state.path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm.path.display()))
}

/// Text of a command's stdout and stderr.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `helm template weft charts/weft -n weft-operator <extra>`, which must succeed.
pub fn template(helm: &Helm, extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "weft",
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        "weft-operator",
    ];
    args.extend_from_slice(extra);
    let output = helm_offline(helm, &args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "helm {} template failed: {stderr}",
        helm.version
    );
    stdout
}

/// The documents of multi-document YAML, as JSON values (empty documents dropped).
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    let documents: Vec<Option<serde_json::Value>> =
        serde_saphyr::from_str_multiple(yaml).expect("valid YAML documents");
    documents
        .into_iter()
        .flatten()
        .filter(|d| !d.is_null())
        .collect()
}
