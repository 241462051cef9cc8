//! Scale benchmark: 1,000 pods × 1,000 policies (Kubernetes, weft namespaced and global).
//!
//! Measures the full compile, the incremental change when one pod's labels change (compile plus
//! diff, and the size of the change), and the time nft takes to apply both in a fresh network
//! namespace (root with `ip` and `nft` required: it fails loudly without them). Run with
//! `cargo bench -p weft-policy --bench scale` (as root). `cargo test --all-targets` runs it
//! without `--bench`: a smoke run at 100 × 100 whose numbers are not measurements.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_policy::eval::{Evaluator, Traffic};
use weft_policy::load::load;
use weft_policy::model::{Cluster, Protocol};
use weft_policy::nft::{compile, diff};

const NAMESPACES: usize = 20;
const APPS: usize = 100;
const ROUNDS: usize = 5;

/// The input size: 1,000 pods × 1,000 policies under `cargo bench`, 100 × 100 otherwise.
#[derive(Clone, Copy)]
struct Size {
    pods: usize,
    policies: usize,
}

impl Size {
    /// The pod relabelled in the incremental runs: in namespace ns-3 (pod-503 at full size).
    fn relabelled_pod(self) -> String {
        let middle = self.pods / 2;
        format!("ns-3/pod-{}", middle - middle % NAMESPACES + 3)
    }
}

fn namespaces_and_pods(size: Size) -> String {
    let mut out = String::new();
    for n in 0..NAMESPACES {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{n}, labels: {{team: team-{}}}}}\n---\n",
            n % 5
        );
    }
    for p in 0..size.pods {
        let tier = ["frontend", "backend", "db"][p % 3];
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pod-{p}, namespace: ns-{}, labels: {{app: app-{}, tier: {tier}}}}}\n\
             spec: {{containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
             status: {{podIP: 10.250.{}.{}}}\n---\n",
            p % NAMESPACES,
            p % APPS,
            p / 250,
            p % 250 + 1
        );
    }
    out
}

fn policies(size: Size) -> String {
    let mut out = String::new();
    for i in 0..size.policies {
        let namespace = format!("ns-{}", i % NAMESPACES);
        let app = format!("app-{}", i % APPS);
        let peer_app = format!("app-{}", (i * 7 + 3) % APPS);
        let _ = match i % 10 {
            0..=5 => write!(
                out,
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: k-{i}, namespace: {namespace}}}\n\
                 spec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: [Ingress, Egress]\n\
                 \x20 ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: {peer_app}}}}}}}, {{namespaceSelector: {{matchLabels: {{team: team-{}}}}}, podSelector: {{matchLabels: {{tier: frontend}}}}}}]\n\
                 \x20   ports: [{{port: 80}}, {{port: http}}]\n\
                 \x20 egress:\n  - to: [{{ipBlock: {{cidr: 10.250.0.0/16, except: [10.250.{}.0/24]}}}}]\n---\n",
                i % 5,
                i % 4
            ),
            6..=8 => write!(
                out,
                "apiVersion: network.weft.dev/v1\nkind: NetworkPolicy\nmetadata: {{name: w-{i}, namespace: {namespace}}}\n\
                 spec:\n  order: {}\n  selector: app == '{app}' && tier != 'db'\n  ingress:\n\
                 \x20 - {{action: Deny, source: {{selector: \"tier == 'db'\"}}}}\n\
                 \x20 - {{action: Allow, protocol: TCP, source: {{selector: \"app in {{'{peer_app}', 'app-1'}}\"}}, destination: {{ports: ['8000:8100', 443]}}}}\n---\n",
                i % 50
            ),
            _ => write!(
                out,
                "apiVersion: network.weft.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: g-{i}}}\n\
                 spec:\n  order: {}\n  selector: app == '{app}'\n  namespaceSelector: team == 'team-{}'\n  ingress:\n\
                 \x20 - {{action: Log, protocol: UDP}}\n\
                 \x20 - {{action: Pass, source: {{namespaceSelector: \"team == 'team-0'\"}}}}\n---\n",
                i % 20,
                i % 5
            ),
        };
    }
    out
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let start = Instant::now();
        last = Some(f());
        samples.push(start.elapsed());
    }
    (median(samples), last.expect("at least one round"))
}

/// The cluster with one pod of namespace ns-3 (pod-503, app-3 at full size) relabelled to
/// another app.
fn relabelled(cluster: &Cluster, size: Size, app: &str) -> Cluster {
    let mut changed = cluster.clone();
    let key = size.relabelled_pod();
    let pod = changed
        .endpoints
        .iter_mut()
        .find(|e| e.key() == key)
        .expect("the relabelled pod exists");
    pod.labels.insert("app".into(), app.into());
    changed
}

fn main() {
    assert!(
        nft_available(),
        "the benchmark applies nftables rules in a network namespace: run it as root with `ip` \
         and `nft` (Debian iproute2, nftables)"
    );
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a
    // quick smoke test of the benchmark itself.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let size = if benchmarking {
        Size {
            pods: 1000,
            policies: 1000,
        }
    } else {
        println!("smoke run of the benchmark (cargo test): the numbers below are not measurements");
        Size {
            pods: 100,
            policies: 100,
        }
    };
    let sources = vec![
        ("pods.yaml".to_string(), namespaces_and_pods(size)),
        ("policies.yaml".to_string(), policies(size)),
    ];
    let (load_time, cluster) = time(1, || load(&sources).expect("generated input loads"));
    println!(
        "input: {} pods, {} policies, {} namespaces (loaded in {load_time:.2?})",
        cluster.endpoints.len(),
        cluster.policies.len(),
        cluster.namespaces.len()
    );

    let (compile_time, ruleset) = time(ROUNDS, || compile(&cluster, "weft_policy"));
    let (script_time, full) = time(ROUNDS, || ruleset.full_script());
    let rules: usize = ruleset.chains.values().map(|c| c.rules.len()).sum();
    let elements: usize = ruleset.sets.values().map(|s| s.elements.len()).sum();
    println!(
        "full compile: {compile_time:.2?} (median of {ROUNDS}); script {script_time:.2?}; \
         {} chains, {rules} rules, {} sets/maps, {elements} elements; {} lines, {} bytes",
        ruleset.chains.len(),
        ruleset.sets.len(),
        full.lines().count(),
        full.len()
    );

    // app-24 is a peer of a policy in ns-3: the pod joins that selector's set. app-23 is
    // selected by policies of ns-3: the pod's own chains change.
    let mut changes = Vec::new();
    for (app, what) in [
        ("app-24", "joins a peer selector"),
        ("app-23", "becomes selected by other policies"),
    ] {
        let changed = relabelled(&cluster, size, app);
        let (incremental_time, change) =
            time(ROUNDS, || diff(&ruleset, &compile(&changed, "weft_policy")));
        let next = compile(&changed, "weft_policy");
        let (diff_only_time, _) = time(ROUNDS, || diff(&ruleset, &next));
        println!(
            "one pod relabelled ({what}): compile + diff {incremental_time:.2?} (diff alone \
             {diff_only_time:.2?}); {} lines, {} bytes: +{} / -{} elements, {} chains rewritten, \
             {} added, {} deleted",
            change.script.lines().count(),
            change.script.len(),
            change.elements_added,
            change.elements_deleted,
            change.chains_rewritten,
            change.chains_added,
            change.chains_deleted
        );
        changes.push((what, change));
    }

    let (evaluator_time, evaluator) = time(1, || Evaluator::new(&cluster));
    let pairs: Vec<(usize, usize)> = (0..10_000)
        .map(|i| (i % size.pods, (i * 37 + 11) % size.pods))
        .collect();
    let (verdict_time, allowed) = time(1, || {
        pairs
            .iter()
            .filter(|(s, d)| {
                let traffic = Traffic {
                    protocol: Protocol::Tcp,
                    port: 80,
                };
                let (src, dst) = (&cluster.endpoints[*s], &cluster.endpoints[*d]);
                evaluator.verdict(src, dst, traffic).allowed
            })
            .count()
    });
    println!(
        "evaluator: set up in {evaluator_time:.2?}, then {} verdicts in {verdict_time:.2?} \
         ({:.1} µs each, {allowed} allowed)",
        pairs.len(),
        verdict_time.as_secs_f64() * 1e6 / pairs.len() as f64
    );

    let namespace = format!("wp-bench-{}", std::process::id());
    run(&["ip", "netns", "add", &namespace]);
    let full_apply = apply(&namespace, &full);
    let full_again = apply(&namespace, &full);
    println!(
        "nft apply in a netns: full {full_apply:.2?} (again, replacing the existing table {full_again:.2?})"
    );
    for (what, change) in &changes {
        let incremental_apply = apply(&namespace, &change.script);
        apply(&namespace, &full);
        println!("nft apply in a netns: incremental, pod {what}: {incremental_apply:.2?}");
    }
    run(&["ip", "netns", "del", &namespace]);
}

fn nft_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("run");
    assert!(status.success(), "{args:?} failed");
}

fn apply(namespace: &str, script: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("nft finished");
    assert!(
        output.status.success(),
        "nft refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    start.elapsed()
}
