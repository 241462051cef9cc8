//! `weftctl render -f installation.yaml`: prints, as multi-document YAML in apply order, exactly the
//! objects the operator applies for that Installation, without a cluster (the operator adds only
//! the controller owner reference, which needs the live Installation's uid). The manifest is first
//! judged as the API server would judge it (`weft_api::admission`: the CRD schema and its CEL
//! rules), then validated as the operator validates it. Invalid input exits non-zero with
//! field-path errors on stderr and prints nothing on stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use weft_api::Installation;
use weft_operator::prepare::{offline_facts, prepare};
use weft_operator::render::{render, to_yaml};

#[derive(clap::Args)]
pub struct Args {
    /// The Installation manifest to render (`-` reads standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// The cluster's pod CIDR, as the operator detects it (kubeadm's podSubnet or the nodes' pod
    /// CIDRs); only used for the default pool of an Installation that lists no pools. Without it
    /// that pool gets 192.168.0.0/16.
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Option<ipnet::IpNet>,
}

const EXPECTED_API_VERSION: &str = "operator.weft.dev/v1";

fn read(file: &PathBuf) -> Result<String, String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| format!("reading standard input: {error}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))
}

/// Parses the manifest, checking what the API server's schema would check first.
fn parse(text: &str, source: &str) -> Result<Installation, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|error| format!("{source}: not a YAML document: {error}"))?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    let kind = value.get("kind").and_then(|v| v.as_str());
    if api_version != Some(EXPECTED_API_VERSION) || kind != Some("Installation") {
        return Err(format!(
            "{source}: apiVersion/kind: {}/{} is not allowed; expected apiVersion \
             {EXPECTED_API_VERSION} and kind Installation",
            api_version.unwrap_or("<missing>"),
            kind.unwrap_or("<missing>")
        ));
    }
    weft_api::admission::admit(&value).map_err(|error| format!("{source}: {error}"))?;
    let installation: Installation = serde_path_to_error::deserialize(value)
        .map_err(|error| format!("{source}: {}: {}", error.path(), error.inner()))?;
    let name = installation.metadata.name.as_deref().unwrap_or_default();
    if name != weft_api::INSTALLATION_NAME {
        return Err(format!(
            "{source}: metadata.name: {name:?} is not allowed; the only accepted name is \"default\""
        ));
    }
    Ok(installation)
}

fn render_text(args: &Args) -> Result<String, String> {
    let source = args.file.display().to_string();
    let text = read(&args.file)?;
    let installation = parse(&text, &source)?;
    let facts = weft_api::ClusterFacts {
        kubeadm_pod_subnet: args.pod_cidr,
        ..offline_facts()
    };
    let computed = prepare(&installation, &facts, &Default::default())
        .map_err(|message| format!("{source}: {message}"))?;
    let rendered = render(&computed, &facts, None);
    to_yaml(&rendered).map_err(|error| error.to_string())
}

pub fn run(args: Args) -> ExitCode {
    match render_text(&args) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(error) = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("weftctl render: writing the output: {error}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("weftctl render: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_str(text: &str) -> Result<String, String> {
        let installation = parse(text, "input.yaml")?;
        let facts = offline_facts();
        let computed = prepare(&installation, &facts, &Default::default())
            .map_err(|message| format!("input.yaml: {message}"))?;
        to_yaml(&render(&computed, &facts, None)).map_err(|error| error.to_string())
    }

    const HEADER: &str =
        "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata:\n  name: default\n";

    #[test]
    fn renders_in_apply_order() {
        let text = render_str(&format!("{HEADER}spec: {{}}\n")).unwrap();
        assert!(
            text.starts_with("---\napiVersion: v1\nkind: Namespace\n"),
            "{text}"
        );
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("kind: "))
            .collect();
        assert_eq!(kinds.first(), Some(&"Namespace"));
        assert_eq!(kinds.last(), Some(&"IPPool"));
    }

    #[test]
    fn a_wrongly_typed_field_is_named_by_its_path() {
        let error = render_str(&format!("{HEADER}spec:\n  network:\n    mtu: abc\n")).unwrap_err();
        assert!(error.contains("spec.network.mtu"), "{error}");
    }

    #[test]
    fn another_kind_or_name_is_refused() {
        let error =
            render_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: default}\n").unwrap_err();
        assert!(error.contains("apiVersion/kind"), "{error}");
        let error = render_str(
            "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata: {name: other}\nspec: {}\n",
        )
        .unwrap_err();
        assert!(error.contains("metadata.name"), "{error}");
    }

    /// `maxSurge` alone passes the schema but the API server refuses the DaemonSet it would give
    /// (maxUnavailable defaults to 1); it is refused here with the Installation's field path,
    /// and nothing is printed.
    #[test]
    fn surge_in_the_node_update_strategy_is_refused_offline() {
        let error = render_str(&format!(
            "{HEADER}spec:\n  nodeUpdateStrategy:\n    rollingUpdate:\n      maxSurge: 1\n"
        ))
        .unwrap_err();
        assert!(
            error.contains("spec.nodeUpdateStrategy.rollingUpdate.maxSurge: must be 0"),
            "{error}"
        );
        let error = render_str(&format!(
            "{HEADER}spec:\n  nodeDaemonSet:\n    spec:\n      template:\n        spec:\n          nodeSelector: {{kubernetes.io/os: windows}}\n"
        ))
        .unwrap_err();
        assert!(
            error.contains("spec.nodeDaemonSet.spec.template.spec.nodeSelector"),
            "{error}"
        );
    }

    /// What the API server refuses is refused offline, with the server's field path.
    #[test]
    fn admission_errors_carry_the_servers_field_paths() {
        let error = render_str(&format!("{HEADER}spec:\n  network:\n    mtu: 100\n")).unwrap_err();
        assert_eq!(
            error,
            "input.yaml: spec.network.mtu: should be greater than or equal to 576"
        );
        let error =
            render_str(&format!("{HEADER}spec:\n  calicoNetwork: {{mtu: 1450}}\n")).unwrap_err();
        assert!(
            error.contains("spec.calicoNetwork: field not declared"),
            "{error}"
        );
    }

    #[test]
    fn validation_errors_carry_field_paths() {
        let pools = "spec:\n  network:\n    ipPools:\n    - {name: a, cidr: 10.0.0.0/16, nodeSelector: \"zone == \"}\n";
        let error = render_str(&format!("{HEADER}{pools}")).unwrap_err();
        assert!(error.contains("nodeSelector"), "{error}");
    }

    #[test]
    fn pod_cidr_sets_the_default_pool() {
        let file = std::env::temp_dir().join(format!("weftctl-render-{}.yaml", std::process::id()));
        std::fs::write(&file, format!("{HEADER}spec: {{}}\n")).unwrap();
        let args = Args {
            file: file.clone(),
            pod_cidr: Some("10.244.0.0/16".parse().unwrap()),
        };
        let text = render_text(&args);
        std::fs::remove_file(&file).unwrap();
        assert!(text.unwrap().contains("cidr: 10.244.0.0/16"));
    }
}
