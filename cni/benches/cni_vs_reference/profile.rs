//! Where weft's ADD time goes: sequential ADDs run under `strace -f -T -ttt`, every system call
//! assigned to a part (process start until the config is read from stdin; netlink requests;
//! the IPAM lock and files; sysctl writes; namespace switches; other calls), summed per call.
//! strace stops the process at every system call, so absolute times are inflated several-fold:
//! read the shares and the counts, and the untraced medians in the table above.

use std::collections::BTreeMap;
use std::path::Path;

use weft_cni::netns::NamedNetns;

use super::plugin::Plugin;

const PODS: usize = 20;
const PARTS: [&str; 7] = [
    "process start (exec to config read)",
    "netlink requests",
    "IPAM lock and files",
    "sysctl writes",
    "namespace switches",
    "other system calls",
    "user space between system calls",
];

/// One traced system call: its name, first argument text, return value and duration.
struct Syscall<'a> {
    at: f64,
    name: &'a str,
    args: &'a str,
    ret: &'a str,
    took: f64,
}

fn parse(line: &str) -> Option<Syscall<'_>> {
    // "PID 1700000000.123456 name(args) = ret <0.000012>" (the pid padded to 5 columns)
    let rest = line.trim_start();
    let (_, rest) = rest.split_once(char::is_whitespace)?;
    let (at, call) = rest.trim_start().split_once(' ')?;
    let (name, rest) = call.split_once('(')?;
    let (args, tail) = rest.rsplit_once(" = ")?;
    let args = args.trim_end().strip_suffix(')')?;
    let (ret, took) = tail.rsplit_once(" <")?;
    Some(Syscall {
        at: at.parse().ok()?,
        name,
        args,
        ret: ret.split(' ').next()?,
        took: took.trim_end_matches('>').parse().ok()?,
    })
}

fn quoted(args: &str) -> &str {
    args.split('"').nth(1).unwrap_or("")
}

/// Seconds per part and system-call counts per part for one traced call.
fn attribute(trace: &str, data_dir_hint: &str) -> ([f64; 7], [u32; 7]) {
    let calls: Vec<Syscall> = trace.lines().filter_map(parse).collect();
    let (mut seconds, mut counts) = ([0.0; 7], [0u32; 7]);
    let Some(first) = calls.first() else {
        return (seconds, counts);
    };
    let end = calls.last().map_or(first.at, |last| last.at + last.took);
    let started = calls
        .iter()
        .find(|call| call.name == "read" && call.args.starts_with("0,"))
        .map_or(first.at, |call| call.at + call.took);
    seconds[0] = started - first.at;
    counts[0] = calls.iter().filter(|call| call.at < started).count() as u32;
    let mut fds: BTreeMap<String, usize> = BTreeMap::new();
    let mut traced = 0.0;
    for call in calls.iter().filter(|call| call.at >= started) {
        let fd = call.args.split(',').next().unwrap_or("").to_owned();
        let part = match call.name {
            "socket" | "bind" | "sendto" | "sendmsg" | "recvfrom" | "recvmsg" | "setsockopt"
            | "getsockname" => 1,
            "flock" | "fcntl" | "rename" | "renameat" | "renameat2" | "fsync" | "fdatasync"
            | "unlink" | "unlinkat" | "mkdir" | "mkdirat" | "getdents64" => 2,
            "setns" | "unshare" => 4,
            "openat" | "open" => {
                let path = quoted(call.args);
                let part = if path.starts_with("/proc/sys/") {
                    3
                } else if path.contains(data_dir_hint) || path.contains("/var/lib/cni") {
                    2
                } else if path.contains("/ns/") || path.starts_with("/run/netns") {
                    4
                } else {
                    5
                };
                fds.insert(call.ret.to_owned(), part);
                part
            }
            "read" | "write" | "pread64" | "pwrite64" | "lseek" | "close" | "fstat"
            | "newfstatat" | "statx" => {
                let part = fds.get(&fd).copied().unwrap_or(5);
                if call.name == "close" {
                    fds.remove(&fd);
                }
                part
            }
            _ => 5,
        };
        seconds[part] += call.took;
        counts[part] += 1;
        traced += call.took;
    }
    seconds[6] = ((end - started) - traced).max(0.0);
    (seconds, counts)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Traces `PODS` sequential ADDs of `plugin` (then DELs them untraced) and prints the parts.
pub fn print(plugin: &Plugin, host: &NamedNetns, count: usize) {
    let pods = PODS.min(count);
    let dir = tempfile::tempdir().unwrap();
    let mut per_part: Vec<Vec<f64>> = vec![Vec::new(); PARTS.len()];
    let mut per_count: Vec<Vec<f64>> = vec![Vec::new(); PARTS.len()];
    let mut walls = Vec::new();
    let data_dir = plugin_data_dir(plugin.config());
    for index in 0..pods {
        let pod = NamedNetns::create(&format!("wc-bp-{index}")).unwrap();
        let trace = dir.path().join(format!("add-{index}.trace"));
        let mut wrapper: Vec<String> = ["strace", "-f", "-T", "-ttt", "-qq", "-o"]
            .map(String::from)
            .to_vec();
        wrapper.push(trace.display().to_string());
        let call = plugin.call_via(&wrapper, host, "ADD", &format!("p-{index}"), pod.path());
        walls.push(call.wall.as_secs_f64());
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let (seconds, counts) = attribute(&text, &data_dir);
        for part in 0..PARTS.len() {
            per_part[part].push(seconds[part]);
            per_count[part].push(f64::from(counts[part]));
        }
        plugin.call(host, "DEL", &format!("p-{index}"), pod.path());
        pod.delete().unwrap();
    }
    let total: f64 = per_part.iter_mut().map(|values| median(values)).sum();
    println!(
        "Profile of {} ADD under strace ({pods} sequential pods, medians; traced wall {:.2} ms per ADD):",
        plugin.label,
        median(&mut walls) * 1000.0
    );
    println!();
    println!("| part | time per ADD (traced) | share | system calls |");
    println!("|---|---:|---:|---:|");
    for (part, name) in PARTS.iter().enumerate() {
        let seconds = median(&mut per_part[part]);
        let calls = if part == 6 {
            "-".to_owned()
        } else {
            format!("{:.0}", median(&mut per_count[part]))
        };
        println!(
            "| {name} | {:.3} ms | {:.0} % | {calls} |",
            seconds * 1000.0,
            100.0 * seconds / total.max(f64::MIN_POSITIVE)
        );
    }
}

fn plugin_data_dir(config: &str) -> String {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|value| value["ipam"]["dataDir"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "/var/lib/cni".into())
}

/// Untraced process start: the median wall time of a VERSION call (exec, config read, answer,
/// exit) of each plugin set's main plugin.
pub fn print_version_calls(plugins: &[&Plugin], host: &NamedNetns) {
    println!();
    println!(
        "Process start, untraced: median of {PODS} VERSION calls (exec, config read, answer, exit):"
    );
    println!();
    for plugin in plugins {
        let mut walls: Vec<f64> = (0..PODS)
            .map(|_| {
                let call = plugin.call(host, "VERSION", "version", Path::new("/nonexistent"));
                call.wall.as_secs_f64()
            })
            .collect();
        println!("- {}: {:.2} ms", plugin.label, median(&mut walls) * 1000.0);
    }
}
