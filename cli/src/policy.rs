//! `weftctl policy`: offline network policy analysis of YAML files (Namespaces, Pods, Kubernetes
//! NetworkPolicies, weft NetworkPolicies and GlobalNetworkPolicies).
//!
//! `matrix` prints whether every pod reaches every pod; `explain` names the policy and rule that
//! decide one connection. Invalid input exits with status 1 and names the document, kind, name
//! and field; bad flags exit with status 2.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use weft_policy::eval::{Traffic, verdict};
use weft_policy::load::load;
use weft_policy::matrix::Matrix;
use weft_policy::model::{Cluster, Protocol};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the reachability of every pod to every pod.
    Matrix(MatrixArgs),
    /// Print the policy and rule that decide one connection.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
pub struct Input {
    /// YAML files with Namespaces, Pods and policies ("-" reads standard input).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Destination port of the traffic.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Protocol of the traffic: TCP, UDP, SCTP or UDPLite.
    #[arg(long, default_value = "TCP", value_parser = parse_protocol)]
    protocol: Protocol,
}

#[derive(clap::Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    input: Input,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    input: Input,
    /// Source pod, as namespace/name.
    #[arg(long)]
    from: String,
    /// Destination pod, as namespace/name.
    #[arg(long)]
    to: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        "UDPLITE" => Ok(Protocol::UdpLite),
        _ => Err(format!(
            "{text:?} is not a protocol with ports: use TCP, UDP, SCTP or UDPLite"
        )),
    }
}

pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Matrix(args) => matrix(&args),
        Command::Explain(args) => explain(&args),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A failure to report: the message and the exit status (1 bad input, 2 bad flags).
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

fn matrix(args: &MatrixArgs) -> Result<String, Failure> {
    let (cluster, traffic) = read_input(&args.input)?;
    let matrix = Matrix::compute(&cluster, traffic);
    Ok(match args.output {
        Format::Table => matrix.to_table(),
        Format::Json => matrix.to_json(),
    })
}

fn explain(args: &ExplainArgs) -> Result<String, Failure> {
    let (cluster, traffic) = read_input(&args.input)?;
    let find = |flag: &str, key: &str| {
        cluster.endpoint(key).ok_or_else(|| {
            let known: Vec<String> = cluster.endpoints.iter().map(|e| e.key()).collect();
            Failure {
                message: format!(
                    "{flag}: no pod {key:?} in the input; pods are named namespace/name: {}",
                    if known.is_empty() {
                        "the input has none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
                code: 2,
            }
        })
    };
    let src = find("--from", &args.from)?;
    let dst = find("--to", &args.to)?;
    let result = verdict(&cluster, src, dst, traffic);
    let mut out = format!(
        "{} -> {} {} {}: {}\n",
        src.key(),
        dst.key(),
        protocol_name(traffic.protocol),
        traffic.port,
        if result.allowed { "allowed" } else { "denied" }
    );
    if result.egress.is_none() {
        out.push_str("a pod may always reach itself\n");
    }
    for direction in [&result.egress, &result.ingress].into_iter().flatten() {
        out.push_str(&format!("{direction}\n"));
    }
    if let (Some(_), None) = (&result.egress, &result.ingress) {
        out.push_str(&format!(
            "ingress at {}: not evaluated, egress already denied\n",
            dst.key()
        ));
    }
    Ok(out)
}

fn protocol_name(protocol: Protocol) -> String {
    match protocol {
        Protocol::Tcp => "TCP".into(),
        Protocol::Udp => "UDP".into(),
        Protocol::Sctp => "SCTP".into(),
        Protocol::UdpLite => "UDPLite".into(),
        other => other.number().to_string(),
    }
}

fn read_input(input: &Input) -> Result<(Cluster, Traffic), Failure> {
    let mut sources = Vec::new();
    for path in &input.files {
        let stdin = path.as_os_str() == "-";
        let text = if stdin {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(path)
        };
        let text = text.map_err(|error| Failure {
            message: format!("-f {}: cannot read: {error}", path.display()),
            code: 1,
        })?;
        let name = if stdin {
            "standard input".to_string()
        } else {
            path.display().to_string()
        };
        sources.push((name, text));
    }
    let cluster = load(&sources).map_err(|error| Failure {
        message: error.to_string(),
        code: 1,
    })?;
    Ok((
        cluster,
        Traffic {
            protocol: input.protocol,
            port: input.port,
        },
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Command, explain, matrix};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    const INPUT: &str = "
apiVersion: v1
kind: Pod
metadata: {name: red, namespace: production, labels: {color: red}}
status: {podIP: 10.250.9.1}
---
apiVersion: v1
kind: Pod
metadata: {name: blue, namespace: production, labels: {color: blue}}
status: {podIP: 10.250.9.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: blue-policy, namespace: production}
spec:
  podSelector: {matchLabels: {color: blue}}
  ingress: [{from: [{podSelector: {matchLabels: {color: red}}}], ports: [{port: 80}]}]
";

    fn file(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("weftctl-{}-{name}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from([&["weftctl"], args].concat())
            .unwrap_or_else(|e| panic!("{e}"))
            .command
    }

    fn output(args: &[&str]) -> Result<String, (String, u8)> {
        let result = match command(args) {
            Command::Matrix(args) => matrix(&args),
            Command::Explain(args) => explain(&args),
        };
        result.map_err(|f| (f.message, f.code))
    }

    #[test]
    fn matrix_prints_table_and_json() {
        let path = file("matrix", INPUT);
        let table = output(&["matrix", "-f", &path]).unwrap();
        let expected = [
            format!("{}production/blue production/red", " ".repeat(16)),
            format!("production/blue .{}.", " ".repeat(15)),
            format!("production/red  .{}.", " ".repeat(15)),
        ];
        assert_eq!(table, expected.join("\n") + "\n");
        let denied = output(&["matrix", "-f", &path, "--port", "81"]).unwrap();
        assert!(denied.contains("production/red  X"), "{denied}");
        let json = output(&["matrix", "-f", &path, "--port", "81", "-o", "json"]).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["production/red"]["production/blue"], false);
        assert_eq!(value["production/blue"]["production/red"], true);
    }

    #[test]
    fn explain_names_policy_and_rule() {
        let path = file("explain", INPUT);
        let text = output(&[
            "explain",
            "-f",
            &path,
            "--from",
            "production/red",
            "--to",
            "production/blue",
        ])
        .unwrap();
        assert!(text.starts_with("production/red -> production/blue TCP 80: allowed\n"));
        assert!(
            text.contains("kubernetes NetworkPolicy production/blue-policy ingress rule 0 (Allow)")
        );
        let udp = output(&[
            "explain",
            "-f",
            &path,
            "--from",
            "production/red",
            "--to",
            "production/blue",
            "--protocol",
            "udp",
        ])
        .unwrap();
        assert!(udp.contains("UDP 80: denied") && udp.contains("default deny because policies"));
    }

    #[test]
    fn bad_input_names_document_field_and_flag() {
        let bad = file(
            "bad",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        );
        let (message, code) = output(&["matrix", "-f", &bad]).unwrap_err();
        assert_eq!(code, 1);
        assert!(
            message.contains("document 1 (Service s): kind: unknown kind"),
            "{message}"
        );
        let good = file("good", INPUT);
        let (message, code) = output(&[
            "explain",
            "-f",
            &good,
            "--from",
            "production/x",
            "--to",
            "production/red",
        ])
        .unwrap_err();
        assert_eq!(code, 2);
        assert!(
            message.starts_with("--from: no pod \"production/x\""),
            "{message}"
        );
        let missing = output(&["matrix", "-f", "/nonexistent/weft.yaml"]).unwrap_err();
        assert!(
            missing
                .0
                .starts_with("-f /nonexistent/weft.yaml: cannot read")
        );
        assert!(
            Cli::try_parse_from(["weftctl", "matrix", "-f", &good, "--protocol", "ICMP"]).is_err()
        );
        assert!(Cli::try_parse_from(["weftctl", "matrix", "-f", &good, "--port", "0"]).is_err());
    }
}
