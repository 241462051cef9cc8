//! Side-by-side benchmark: `weft` + `weft-ipam` against two builds of the reference `ptp` +
//! `host-local`: Debian's 1.1.1 (/usr/lib/cni, CNI 1.0.0 configs) and containernetworking/plugins
//! v1.10.0 built by `e2e/scripts/build-cni-plugins.sh` (CNI 1.1.0 configs). Same host namespace
//! set-up, one pod namespace per pod, 100 pods sequential and 100 in parallel, ADD latency per pod
//! and DEL latency per pod including the namespace deletion, the plugins' CPU time (user + sys)
//! per 100 pods and their peak RSS. Rounds alternate between the plugins so background load hits
//! all alike. weft is measured as it ships (the static musl build the agent image installs on
//! nodes, like the references' static Go builds) and runs twice: with weft-ipam in-process (its
//! default) and with `"execIpam": true` (weft-ipam exec'd from CNI_PATH). Then weft's ADD is
//! profiled under strace, and process start is timed for each build, weft's dynamically linked
//! host build included.
//!
//! Run as root: `cargo bench -p weft-cni --bench cni_vs_reference` (WEFT_BENCH_PODS, WEFT_BENCH_ROUNDS
//! override 100 pods and 3 rounds; WEFT_CNI_PLUGINS_DIR names a prebuilt plugins directory,
//! WEFT_CNI_STATIC_DIR prebuilt static weft plugins).

mod plugin;
mod profile;
mod shipped;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plugin::{Call, Plugin};
use weft_cni::netns::NamedNetns;

const REFERENCE_DIR: &str = "/usr/lib/cni";
const DEBIAN: &str = "ptp + host-local (Debian 1.1.1)";
const CURRENT: &str = "ptp + host-local (v1.10.0)";
const WEFT: &str = "weft + weft-ipam";
const WEFT_EXEC: &str = "weft + exec'd weft-ipam";
const WEFT_DYNAMIC: &str = "weft, dynamically linked host build";

/// The containernetworking/plugins build of `e2e/versions.env` (built once per version into
/// target/cni-plugins/), or the directory in `WEFT_CNI_PLUGINS_DIR`.
fn current_reference() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_CNI_PLUGINS_DIR") {
        return PathBuf::from(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/scripts/build-cni-plugins.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(["ptp", "host-local"])
        .output()
        .expect("run build-cni-plugins.sh");
    assert!(
        output.status.success(),
        "{} failed (Go 1.26 and the Go module proxy are needed; or set WEFT_CNI_PLUGINS_DIR): {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
    /// CPU time of every ADD and DEL call.
    cpu: Duration,
    max_rss_kib: Vec<u64>,
}

impl Samples {
    fn record_add(&mut self, call: Call) {
        self.add.push(call.wall);
        self.cpu += call.cpu;
        self.max_rss_kib.push(call.max_rss_kib);
    }

    /// A DEL call and the wall time of DEL + namespace deletion.
    fn record_del(&mut self, call: Call, wall: Duration) {
        self.del.push(wall);
        self.cpu += call.cpu;
        self.max_rss_kib.push(call.max_rss_kib);
    }
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
        samples.record_add(plugin.call(host, "ADD", &format!("{prefix}-{index}"), pod.path()));
    }
    for (index, pod) in namespaces.into_iter().enumerate() {
        let started = Instant::now();
        let call = plugin.call(host, "DEL", &format!("{prefix}-{index}"), pod.path());
        pod.delete().unwrap();
        samples.record_del(call, started.elapsed());
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
    let adds: Vec<Call> = std::thread::scope(|scope| {
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
    let dels: Vec<(Call, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .into_iter()
            .enumerate()
            .map(|(index, pod)| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let call = plugin.call(host, "DEL", &format!("{prefix}-{index}"), pod.path());
                    pod.delete().unwrap();
                    (call, started.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let del_wall = started.elapsed();
    adds.into_iter().for_each(|call| samples.record_add(call));
    dels.into_iter()
        .for_each(|(call, wall)| samples.record_del(call, wall));
    (add_wall, del_wall)
}

/// The goals for weft / reference, medians of ADD and of DEL.
const ADD_GOAL: f64 = 0.3;
const DEL_GOAL: f64 = 0.2;

fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "FAIL" }
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
    let debian = Path::new(REFERENCE_DIR).join("ptp");
    assert!(
        debian.is_file(),
        "{} is missing: apt-get install containernetworking-plugins",
        debian.display()
    );
    let current = current_reference().join("ptp");
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a
    // quick smoke test of the benchmark itself.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let count = env_number("WEFT_BENCH_PODS", if benchmarking { 100 } else { 5 });
    let rounds = env_number("WEFT_BENCH_ROUNDS", if benchmarking { 3 } else { 1 });
    // The binaries the agent image installs on nodes; the smoke run takes the host build.
    let host_build = Path::new(env!("CARGO_BIN_EXE_weft"));
    let shipped = benchmarking.then(|| shipped::static_plugins().join("weft"));
    let weft = shipped.as_deref().unwrap_or(host_build);
    // The references first: ratios are taken against each of them.
    let references = 2;
    let plugins = [
        Plugin::new(
            DEBIAN,
            &debian,
            "host-local",
            "10.88.44.0/22",
            "1.0.0",
            false,
        ),
        Plugin::new(
            CURRENT,
            &current,
            "host-local",
            "10.88.52.0/22",
            "1.1.0",
            false,
        ),
        Plugin::new(WEFT, weft, "weft-ipam", "10.88.40.0/22", "1.1.0", false),
        Plugin::new(WEFT_EXEC, weft, "weft-ipam", "10.88.48.0/22", "1.1.0", true),
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
    println!("weft: {}", weft.display());
    println!(
        "pods per round: {count}, rounds: {rounds}, per-pod latency in ms (spawn to exit; DEL includes the namespace deletion); CPU = user + sys of the plugin processes for ADD + DEL of 100 pods"
    );
    println!();
    println!(
        "| mode | plugins | ADD median | ADD p90 | DEL median | DEL p90 | ADD wall (parallel) | DEL wall (parallel) | CPU per 100 pods | peak RSS per call (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
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
        let pods = (count * rounds) as f64;
        samples.max_rss_kib.sort_unstable();
        println!(
            "| {mode} | {label} | {} | {} | {} | {} | {} | {} | {:.0} ms | {:.1} MiB |",
            ms(add_median),
            ms(p90(&mut samples.add)),
            ms(del_median),
            ms(p90(&mut samples.del)),
            wall(|w| w.0),
            wall(|w| w.1),
            samples.cpu.as_secs_f64() * 1000.0 * 100.0 / pods,
            samples.max_rss_kib[samples.max_rss_kib.len() / 2] as f64 / 1024.0,
        );
        medians.push((mode, label, add_median, del_median));
    }
    println!();
    for group in medians.chunks(plugins.len()) {
        let (reference, variants) = group.split_at(references);
        for (mode, label, add, del) in variants {
            for (_, reference, reference_add, reference_del) in reference {
                let add_ratio = add.as_secs_f64() / reference_add.as_secs_f64();
                let del_ratio = del.as_secs_f64() / reference_del.as_secs_f64();
                // The goals are judged only on measurements, not on a smoke run's figures.
                let goals = if benchmarking {
                    format!(
                        " (goals: ADD ≤ {ADD_GOAL} {}, DEL ≤ {DEL_GOAL} {})",
                        verdict(add_ratio <= ADD_GOAL),
                        verdict(del_ratio <= DEL_GOAL)
                    )
                } else {
                    String::new()
                };
                println!(
                    "{mode}, {label} vs {reference}: ADD ratio {add_ratio:.2}, DEL ratio {del_ratio:.2}{goals}"
                );
            }
        }
    }
    if benchmarking {
        println!();
        profile::print(&plugins[2], &host, count);
        let dynamic = Plugin::new(
            WEFT_DYNAMIC,
            host_build,
            "weft-ipam",
            "10.88.56.0/22",
            "1.1.0",
            false,
        );
        let mut version_calls: Vec<&Plugin> = plugins[..3].iter().collect();
        version_calls.push(&dynamic);
        profile::print_version_calls(&version_calls, &host);
    }
}
