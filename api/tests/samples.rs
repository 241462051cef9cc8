//! Every sample in `config/samples/` matches the Rust types exactly and is accepted by a real
//! API server with the generated CRDs installed, and by offline admission.

mod support;

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_api::{GlobalNetworkPolicy, Installation, IpPool, IpamBlock, NetworkPolicy};

fn samples() -> Vec<(String, serde_json::Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/samples is readable")
        .map(|entry| entry.expect("config/samples entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the samples in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                support::yaml(&text),
            )
        })
        .collect()
}

/// The sample survives a trip through the typed struct unchanged (so no field is unknown).
fn round_trips<T: DeserializeOwned + Serialize>(file: &str, sample: &serde_json::Value) {
    let typed: T = serde_json::from_value(sample.clone())
        .unwrap_or_else(|e| panic!("{file} does not parse as its Rust type: {e}"));
    let back = numbers_as_f64(serde_json::to_value(&typed).unwrap());
    assert_eq!(
        back,
        numbers_as_f64(sample.clone()),
        "{file} changed on a trip through its Rust type"
    );
}

/// `order: 100` and `order: 100.0` are the same value; compare numbers by value.
fn numbers_as_f64(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Number(n)),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_f64(v)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn every_sample_round_trips_through_its_rust_type() {
    for (file, sample) in samples() {
        match sample["kind"].as_str() {
            Some("Installation") => round_trips::<Installation>(&file, &sample),
            Some("IPPool") => round_trips::<IpPool>(&file, &sample),
            Some("IPAMBlock") => round_trips::<IpamBlock>(&file, &sample),
            Some("NetworkPolicy") => round_trips::<NetworkPolicy>(&file, &sample),
            Some("GlobalNetworkPolicy") => round_trips::<GlobalNetworkPolicy>(&file, &sample),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }
}

#[test]
fn the_blue_policy_example_reads_as_calico_wrote_it() {
    let blue = samples()
        .into_iter()
        .find(|(file, _)| file == "networkpolicy-blue.yaml")
        .unwrap()
        .1;
    let policy: NetworkPolicy = serde_json::from_value(blue).unwrap();
    assert_eq!(policy.spec.selector.as_deref(), Some("color == 'blue'"));
    let rule = &policy.spec.ingress.as_ref().unwrap()[0];
    assert_eq!(rule.action, weft_api::Action::Allow);
    assert_eq!(
        weft_api::parse_protocol(rule.protocol.as_ref().unwrap()),
        Ok(weft_api::Protocol::Tcp)
    );
    assert_eq!(
        rule.source.as_ref().unwrap().selector.as_deref(),
        Some("color == 'red'")
    );
    let ports = rule.destination.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(
        weft_api::parse_port(&ports[0]),
        Ok(weft_api::PortMatch::Number(80))
    );
}

/// Offline admission (what `weftctl render` runs) accepts what the API server accepts.
#[test]
fn every_sample_is_accepted_offline() {
    for (file, sample) in samples() {
        if let Err(error) = weft_api::admission::admit(&sample) {
            panic!("{file} is refused offline: {error}");
        }
    }
}

#[tokio::test]
async fn every_sample_is_accepted_by_the_api_server() -> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;
    support::ensure_namespace(&client, "production").await?;
    for (file, sample) in samples() {
        let applied = support::apply(&client, &sample)
            .await
            .map_err(|e| anyhow::anyhow!("{file} was refused: {e}"))?;
        let stored = serde_json::to_value(&applied)?;
        assert_eq!(
            numbers_as_f64(stored["spec"].clone()),
            numbers_as_f64(sample["spec"].clone()),
            "{file}: the API server changed the spec"
        );
    }
    Ok(())
}
