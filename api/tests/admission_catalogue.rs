//! The catalogue of bad objects: each is server-side applied to a real API server with the weft
//! CRDs installed, must be refused with a message naming the offending field, and must leave
//! nothing behind. Offline admission (`weft_api::admission`, what `weftctl render` runs) must
//! give the same verdict for every case, naming a field the server's refusal names too. Run
//! with `--nocapture` to see every case with both messages.

mod support;

use kube::api::{Api, DynamicObject};

/// One bad object and the texts its refusal must contain (see `catalogue.yaml`).
#[derive(serde::Deserialize)]
struct Case {
    name: String,
    /// With `spec`: the kind of the object to build.
    kind: Option<String>,
    spec: Option<serde_json::Value>,
    /// A whole object, instead of `kind` + `spec`.
    object: Option<String>,
    expect: Vec<String>,
}

impl Case {
    fn object(&self) -> serde_json::Value {
        if let Some(text) = &self.object {
            return support::yaml(text);
        }
        let kind = self.kind.as_deref().expect("a case has `object` or `kind`");
        let (api_version, metadata) = match kind {
            "Installation" => (
                "operator.weft.dev/v1",
                serde_json::json!({"name": "default"}),
            ),
            "IPPool" => (
                "network.weft.dev/v1",
                serde_json::json!({"name": "catalogue-pool"}),
            ),
            "NetworkPolicy" => (
                "network.weft.dev/v1",
                serde_json::json!({"name": "catalogue-policy", "namespace": "catalogue"}),
            ),
            "GlobalNetworkPolicy" => (
                "network.weft.dev/v1",
                serde_json::json!({"name": "catalogue-global"}),
            ),
            other => panic!("case {}: no header for kind {other}", self.name),
        };
        serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": self.spec})
    }
}

fn catalogue() -> Vec<Case> {
    let text = include_str!("catalogue.yaml");
    serde_saphyr::from_str(text).expect("catalogue.yaml parses")
}

async fn exists(api: &Api<DynamicObject>, name: &str) -> anyhow::Result<bool> {
    Ok(api.get_opt(name).await?.is_some())
}

/// Why the offline verdict differs from the server's refusal `message`, if it does: the object
/// must be refused offline too, and the first field the offline refusal names (or, for a rule
/// on the whole object, its message) must appear in the server's message.
fn offline_disagrees(
    offline: &Result<(), weft_api::admission::AdmissionError>,
    message: &str,
) -> Option<String> {
    use weft_api::admission::AdmissionError;
    match offline {
        Ok(()) => Some("accepted it".into()),
        Err(AdmissionError::UnknownKind { .. }) => Some(format!("{offline:?}")),
        Err(AdmissionError::Refused(errors)) => {
            let first = errors.first()?;
            println!("|   offline | {} |", offline.as_ref().unwrap_err());
            let named = if first.field.is_empty() {
                &first.message
            } else {
                &first.field
            };
            (!message.contains(named.as_str()))
                .then(|| format!("names {named:?}, the server does not: {first}"))
        }
    }
}

/// Without a server: every case is refused offline, and the offline refusal names the field the
/// case expects the server to name (its first `expect` text).
#[test]
fn every_bad_object_is_refused_offline_naming_the_expected_field() {
    let mut failures = Vec::new();
    for case in catalogue() {
        let offline = weft_api::admission::admit(&case.object());
        println!("| {} | {offline:?} |", case.name);
        let expected = &case.expect[0];
        match &offline {
            Ok(()) => failures.push(format!("{}: accepted offline", case.name)),
            Err(error) => {
                let text = error.to_string();
                if !text.contains(expected.as_str()) && !expected.contains(text.as_str()) {
                    failures.push(format!("{}: {text:?} lacks {expected:?}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_bad_object_is_refused_with_its_field_named_and_nothing_is_stored()
-> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;
    support::ensure_namespace(&client, "catalogue").await?;

    let cases = catalogue();
    assert!(
        cases.len() >= 25,
        "the catalogue must hold at least 25 cases"
    );
    let mut failures = Vec::new();
    for case in &cases {
        let object = case.object();
        let (api, name) = support::api_for(&client, &object)?;
        let offline = weft_api::admission::admit(&object);
        match support::apply(&client, &object).await {
            Ok(_) => failures.push(format!("{}: was accepted", case.name)),
            Err(kube::Error::Api(status)) => {
                let message = status.message.clone();
                println!("| {} | {} |", case.name, message.replace('|', "\\|"));
                if let Some(problem) = offline_disagrees(&offline, &message) {
                    failures.push(format!("{}: offline admission {problem}", case.name));
                }
                let missing: Vec<&String> = case
                    .expect
                    .iter()
                    .filter(|text| !message.contains(text.as_str()))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: message lacks {missing:?}: {message}",
                        case.name
                    ));
                }
                // Values whose type or list keys do not fit the schema fail while the API server
                // builds the apply patch, which it reports as 500; nothing is written either way.
                let patch_build_error = status.code == 500
                    && message.starts_with("failed to create typed patch object");
                if status.code != 422 && !patch_build_error {
                    failures.push(format!(
                        "{}: status code {}: {message}",
                        case.name, status.code
                    ));
                }
            }
            Err(other) => failures.push(format!("{}: unexpected error {other}", case.name)),
        }
        if exists(&api, &name).await? {
            failures.push(format!("{}: an object named {name} was stored", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn ippool_cidr_and_block_size_are_immutable() -> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;

    let header =
        "apiVersion: network.weft.dev/v1\nkind: IPPool\nmetadata: {name: immutable-pool}\n";
    let original = support::yaml(&format!(
        "{header}spec: {{cidr: 10.251.0.0/16, blockSize: 26}}"
    ));
    support::apply(&client, &original).await?;
    let (api, name) = support::api_for(&client, &original)?;

    let changes = [
        (
            "spec: {cidr: 10.252.0.0/16, blockSize: 26}",
            ["spec.cidr", "cidr is immutable"],
        ),
        (
            "spec: {cidr: 10.251.0.0/16, blockSize: 28}",
            ["spec.blockSize", "blockSize is immutable"],
        ),
        (
            "spec: {cidr: 10.251.0.0/16}",
            ["spec.blockSize", "blockSize is immutable"],
        ),
    ];
    for (spec, expect) in changes {
        let changed = support::yaml(&format!("{header}{spec}"));
        let err = support::apply(&client, &changed).await.expect_err(spec);
        let message = err.to_string();
        println!("| IPPool change `{spec}` | {message} |");
        for text in expect {
            assert!(
                message.contains(text),
                "{spec}: message lacks {text:?}: {message}"
            );
        }
        let stored = api.get(&name).await?;
        assert_eq!(
            stored.data["spec"], original["spec"],
            "{spec}: the stored pool changed"
        );
    }

    // Fields that are not immutable still change.
    let relabelled = support::yaml(&format!(
        "{header}spec: {{cidr: 10.251.0.0/16, blockSize: 26, disabled: true}}"
    ));
    support::apply(&client, &relabelled).await?;
    assert_eq!(api.get(&name).await?.data["spec"]["disabled"], true);
    Ok(())
}

#[tokio::test]
async fn a_second_claim_of_the_same_block_is_refused_by_name() -> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;

    let blocks: Api<weft_api::IpamBlock> = Api::all(client.clone());
    let cidr = "10.244.9.128/26".parse()?;
    let first = weft_api::IpamBlock::for_cidr(cidr, "default-ipv4-ippool", "node-a");
    let second = weft_api::IpamBlock::for_cidr(cidr, "default-ipv4-ippool", "node-b");
    blocks.create(&Default::default(), &first).await?;
    let err = blocks
        .create(&Default::default(), &second)
        .await
        .expect_err("double claim");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected AlreadyExists, got {other}"),
    }
    let stored = blocks.get("10-244-9-128-26").await?;
    assert_eq!(stored.spec.node, "node-a");
    Ok(())
}
