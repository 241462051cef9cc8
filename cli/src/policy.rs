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
    match command {
        Command::Matrix(args) => matrix(args),
        Command::Explain(args) => explain(args),
    }
}

fn matrix(args: MatrixArgs) -> ExitCode {
    let (cluster, traffic) = match read_input(&args.input) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let matrix = Matrix::compute(&cluster, traffic);
    match args.output {
        Format::Table => print!("{}", matrix.to_table()),
        Format::Json => print!("{}", matrix.to_json()),
    }
    ExitCode::SUCCESS
}

fn explain(args: ExplainArgs) -> ExitCode {
    let (cluster, traffic) = match read_input(&args.input) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let find = |flag: &str, key: &str| {
        cluster.endpoint(key).ok_or_else(|| {
            let known: Vec<String> = cluster.endpoints.iter().map(|e| e.key()).collect();
            eprintln!(
                "error: {flag}: no pod {key:?} in the input; pods are named namespace/name: {}",
                if known.is_empty() {
                    "the input has none".to_string()
                } else {
                    known.join(", ")
                }
            );
            ExitCode::from(2)
        })
    };
    let (src, dst) = match (find("--from", &args.from), find("--to", &args.to)) {
        (Ok(src), Ok(dst)) => (src, dst),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let result = verdict(&cluster, src, dst, traffic);
    println!(
        "{} -> {} {} {}: {}",
        src.key(),
        dst.key(),
        protocol_name(traffic.protocol),
        traffic.port,
        if result.allowed { "allowed" } else { "denied" }
    );
    if result.egress.is_none() {
        println!("a pod may always reach itself");
    }
    for direction in [&result.egress, &result.ingress].into_iter().flatten() {
        println!("{direction}");
    }
    if let (Some(_), None) = (&result.egress, &result.ingress) {
        println!(
            "ingress at {}: not evaluated, egress already denied",
            dst.key()
        );
    }
    ExitCode::SUCCESS
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

fn read_input(input: &Input) -> Result<(Cluster, Traffic), ExitCode> {
    let mut sources = Vec::new();
    for path in &input.files {
        let text = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map(|_| text)
                .map_err(|e| e.to_string())
        } else {
            std::fs::read_to_string(path).map_err(|e| e.to_string())
        };
        match text {
            Ok(text) if path.as_os_str() == "-" => sources.push(("standard input".into(), text)),
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(error) => {
                eprintln!("error: -f {}: cannot read: {error}", path.display());
                return Err(ExitCode::from(1));
            }
        }
    }
    let cluster = load(&sources).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(1)
    })?;
    Ok((
        cluster,
        Traffic {
            protocol: input.protocol,
            port: input.port,
        },
    ))
}
