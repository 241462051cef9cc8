//! Side-by-side benchmark: `weft` + `weft-ipam` against the reference `ptp` + `host-local`
//! (/usr/lib/cni), same host namespace set-up, one pod namespace per pod, 100 pods sequential and
//! 100 in parallel, ADD latency per pod and DEL latency per pod including the namespace deletion.
//! Rounds alternate between the plugins so background load hits all alike. weft runs twice: with
//! weft-ipam in-process (its default) and with `"execIpam": true` (weft-ipam exec'd from CNI_PATH).
//!
//! Run as root: `cargo bench -p weft-cni --bench cni_vs_reference` (WEFT_BENCH_PODS, WEFT_BENCH_ROUNDS
//! override 100 pods and 3 rounds).

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_cni::netns::NamedNetns;

const REFERENCE_DIR: &str = "/usr/lib/cni";

struct Plugin {
    label: &'static str,
    binary: PathBuf,
    cni_path: PathBuf,
    config: String,
    _data_dir: tempfile::TempDir,
}

impl Plugin {
    fn new(label: &'static str, binary: &Path, ipam: &str, subnet: &str, exec_ipam: bool) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = json!({
            "cniVersion": "1.0.0",
            "name": format!("wc-bench-{}", label.split_whitespace().count() + usize::from(exec_ipam)),
            "type": binary.file_name().unwrap().to_str().unwrap(),
            "mtu": 1450,
            "ipam": {"type": ipam, "ranges": [[{"subnet": subnet}]], "dataDir": data_dir.path()},
        });
        if exec_ipam {
            config["execIpam"] = json!(true);
        }
        let config = config.to_string();
        let cni_path = binary.parent().unwrap().to_owned();
        Self {
            label,
            binary: binary.to_owned(),
            cni_path,
            config,
            _data_dir: data_dir,
        }
    }

    /// Runs one call inside `host` and returns its wall time.
    fn call(&self, host: &NamedNetns, command: &str, container: &str, netns: &Path) -> Duration {
        let host_fd = host.fd().as_raw_fd();
        let mut process = Command::new(&self.binary);
        process
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", netns)
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: setns is async-signal-safe; the fd outlives the call.
        unsafe {
            process.pre_exec(move || {
                nix::sched::setns(
                    BorrowedFd::borrow_raw(host_fd),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )
                .map_err(std::io::Error::from)
            });
        }
        let started = Instant::now();
        let mut child = process.spawn().expect("spawn plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "{} {command} failed: {}",
            self.label,
            String::from_utf8_lossy(&output.stdout)
        );
        elapsed
    }
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

/// One plugin's samples in one mode, with the wall time of each parallel round (ADD, DEL).
struct Outcome {
    mode: &'static str,
    label: &'static str,
    samples: Samples,
    walls: Vec<(Duration, Duration)>,
}

fn pods(prefix: &str, count: usize) -> Vec<NamedNetns> {
    (0..count)
        .map(|index| NamedNetns::create(&format!("wc-b{prefix}-{index}")).unwrap())
        .collect()
}

/// ADD one pod after the other, then DEL (and delete the namespace) one after the other.
fn sequential(
    plugin: &Plugin,
    prefix: &str,
    host: &NamedNetns,
    count: usize,
    samples: &mut Samples,
) {
    let namespaces = pods(prefix, count);
    for (index, pod) in namespaces.iter().enumerate() {
        samples
            .add
            .push(plugin.call(host, "ADD", &format!("{prefix}-{index}"), pod.path()));
    }
    for (index, pod) in namespaces.into_iter().enumerate() {
        let started = Instant::now();
        plugin.call(host, "DEL", &format!("{prefix}-{index}"), pod.path());
        pod.delete().unwrap();
        samples.del.push(started.elapsed());
    }
}

/// All ADDs at once, then all DELs (each with its namespace deletion) at once.
fn parallel(
    plugin: &Plugin,
    prefix: &str,
    host: &NamedNetns,
    count: usize,
    samples: &mut Samples,
) -> (Duration, Duration) {
    let namespaces = pods(prefix, count);
    let started = Instant::now();
    let adds: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(index, pod)| {
                scope.spawn(move || {
                    plugin.call(host, "ADD", &format!("{prefix}-{index}"), pod.path())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let add_wall = started.elapsed();
    let started = Instant::now();
    let dels: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .into_iter()
            .enumerate()
            .map(|(index, pod)| {
                scope.spawn(move || {
                    let started = Instant::now();
                    plugin.call(host, "DEL", &format!("{prefix}-{index}"), pod.path());
                    pod.delete().unwrap();
                    started.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let del_wall = started.elapsed();
    samples.add.extend(adds);
    samples.del.extend(dels);
    (add_wall, del_wall)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p90(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() * 9 / 10]
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "the benchmark creates network namespaces and veth pairs: run it as root"
    );
    let reference = Path::new(REFERENCE_DIR).join("ptp");
    assert!(
        reference.is_file(),
        "{} is missing: apt-get install containernetworking-plugins",
        reference.display()
    );
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a
    // quick smoke test of the benchmark itself.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let count = env_number("WEFT_BENCH_PODS", if benchmarking { 100 } else { 5 });
    let rounds = env_number("WEFT_BENCH_ROUNDS", if benchmarking { 3 } else { 1 });
    let weft = Path::new(env!("CARGO_BIN_EXE_weft"));
    let plugins = [
        Plugin::new(
            "ptp + host-local",
            &reference,
            "host-local",
            "10.88.44.0/22",
            false,
        ),
        Plugin::new(
            "weft + weft-ipam",
            weft,
            "weft-ipam",
            "10.88.40.0/22",
            false,
        ),
        Plugin::new(
            "weft + exec'd weft-ipam",
            weft,
            "weft-ipam",
            "10.88.48.0/22",
            true,
        ),
    ];
    let host = NamedNetns::create("wc-bench-host").unwrap();
    // A node forwards; ptp would switch it on at its first ADD anyway.
    weft_cni::netns::run_in(host.fd(), || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
    })
    .unwrap()
    .unwrap();

    let mut results: Vec<Outcome> = Vec::new();
    for mode in ["sequential", "parallel"] {
        let mut outcomes: Vec<Outcome> = plugins
            .iter()
            .map(|plugin| Outcome {
                mode,
                label: plugin.label,
                samples: Samples::default(),
                walls: Vec::new(),
            })
            .collect();
        for round in 0..rounds {
            for (slot, (plugin, outcome)) in plugins.iter().zip(&mut outcomes).enumerate() {
                let prefix = format!("{slot}{}{round}", &mode[..1]);
                if mode == "sequential" {
                    sequential(plugin, &prefix, &host, count, &mut outcome.samples);
                } else {
                    let walls = parallel(plugin, &prefix, &host, count, &mut outcome.samples);
                    outcome.walls.push(walls);
                }
            }
        }
        results.extend(outcomes);
    }

    if !benchmarking {
        println!("smoke run of the benchmark (cargo test): the numbers below are not measurements");
    }
    println!(
        "pods per round: {count}, rounds: {rounds}, per-pod latency in ms (spawn to exit; DEL includes the namespace deletion)"
    );
    println!();
    println!(
        "| mode | plugins | ADD median | ADD p90 | DEL median | DEL p90 | ADD wall (parallel) | DEL wall (parallel) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for Outcome {
        mode,
        label,
        mut samples,
        walls,
    } in results
    {
        let (add_median, del_median) = (median(&mut samples.add), median(&mut samples.del));
        let wall = |pick: fn(&(Duration, Duration)) -> Duration| {
            let mut values: Vec<Duration> = walls.iter().map(pick).collect();
            if values.is_empty() {
                "-".to_owned()
            } else {
                ms(median(&mut values))
            }
        };
        println!(
            "| {mode} | {label} | {} | {} | {} | {} | {} | {} |",
            ms(add_median),
            ms(p90(&mut samples.add)),
            ms(del_median),
            ms(p90(&mut samples.del)),
            wall(|w| w.0),
            wall(|w| w.1),
        );
        medians.push((mode, label, add_median, del_median));
    }
    println!();
    for group in medians.chunks(plugins.len()) {
        let (mode, _, reference_add, reference_del) = group[0];
        for (_, label, add, del) in &group[1..] {
            println!(
                "{mode}, {label} vs ptp + host-local: ADD ratio {:.2}, DEL ratio {:.2}",
                add.as_secs_f64() / reference_add.as_secs_f64(),
                del.as_secs_f64() / reference_del.as_secs_f64()
            );
        }
    }
}
