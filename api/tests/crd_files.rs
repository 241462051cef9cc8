//! The CRD YAML checked into `crds/` matches what the Rust types generate, `config/crd` builds
//! them all with kustomize, and the Installation CRD stays small enough for client-side
//! `kubectl apply`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kube::CustomResourceExt;
use weft_api::crds::{crd_file_name, render_crd};

const FIX: &str = "run `make crds` to regenerate crds/ from the Rust types, then commit the result";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[test]
fn checked_in_crd_files_match_the_generated_crds() {
    let mut stale = Vec::new();
    for crd in weft_api::crds() {
        let path = crds_dir().join(crd_file_name(&crd));
        let generated = render_crd(&crd).expect("CRD renders as YAML");
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == generated => {}
            Ok(_) => stale.push(format!("{} differs from the generated CRD", path.display())),
            Err(err) => stale.push(format!("{}: {err}", path.display())),
        }
    }
    assert!(stale.is_empty(), "{}; {FIX}", stale.join("; "));
}

#[test]
fn crds_dir_holds_exactly_one_file_per_crd_plus_its_kustomization() {
    let mut expected: BTreeSet<String> = weft_api::crds().iter().map(crd_file_name).collect();
    expected.insert("kustomization.yaml".into());
    let present: BTreeSet<String> = std::fs::read_dir(crds_dir())
        .expect("crds/ is readable")
        .map(|entry| {
            entry
                .expect("crds/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        present, expected,
        "crds/ holds unexpected or missing files; {FIX}"
    );

    let kustomization = std::fs::read_to_string(crds_dir().join("kustomization.yaml")).unwrap();
    for crd in weft_api::crds() {
        let file = crd_file_name(&crd);
        assert!(
            kustomization
                .lines()
                .any(|line| line.trim() == format!("- {file}")),
            "crds/kustomization.yaml does not list {file}"
        );
    }
}

#[test]
fn installation_crd_fits_the_client_side_apply_annotation_limit() {
    // `kubectl apply` (client side) stores the whole object as JSON in the
    // last-applied-configuration annotation, and annotations are limited to 256 KiB in total.
    let json = serde_json::to_vec(&weft_api::Installation::crd()).unwrap();
    assert!(
        json.len() < 256 * 1024,
        "Installation CRD is {} bytes as JSON",
        json.len()
    );
    for crd in weft_api::crds() {
        let json = serde_json::to_vec(&crd).unwrap();
        let name = crd.metadata.name.unwrap_or_default();
        assert!(
            json.len() < 256 * 1024,
            "CRD {name} is {} bytes as JSON",
            json.len()
        );
    }
}

#[test]
fn config_crd_kustomization_builds_every_crd() -> anyhow::Result<()> {
    let kubectl = weft_e2e::Binaries::locate()?.path("kubectl");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/crd");
    let output = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl kustomize config/crd failed: {stderr}"
    );
    let built: BTreeSet<String> = String::from_utf8(output.stdout)?
        .split("\n---\n")
        .map(|doc| {
            let crd: serde_json::Value =
                serde_saphyr::from_str(doc).expect("kustomize output is YAML");
            crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = weft_api::crds()
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    assert_eq!(built, expected);
    Ok(())
}
