//! `make demo` end to end, as root on the real control plane: the dataplane demo's output (an
//! all-open matrix, then exactly the blue policy's denials, and `weftctl policy explain` for a
//! denied and an allowed flow), and that it leaves nothing behind — no network namespace, no
//! process — whether it finishes or is interrupted with Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_weft-demo");

/// Fails loudly unless the demo can run its dataplane here.
fn require_dataplane() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the demo test needs root (network namespaces, veths, nftables)"
    );
    let dir = Path::new(DEMO).parent().expect("binary directory");
    for binary in ["weft-agent", "weft", "weft-ipam", "weftctl"] {
        assert!(
            dir.join(binary).exists(),
            "{} is missing: `cargo build -p weft-agent -p weft-cni -p weftctl` (`make test` builds it)",
            dir.join(binary).display()
        );
    }
}

/// The namespaces whose names start with the demo's prefix for `pid`.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("wd{pid}-");
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Every live descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent is the second field after the parenthesised command name.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        if let Some(parent) = parent {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let current = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == current)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    found.remove(0);
    found
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
}

/// The table printed after `title` up to the next blank line.
fn table_after<'a>(output: &'a str, title: &str) -> Vec<&'a str> {
    let start = output
        .find(title)
        .unwrap_or_else(|| panic!("no {title:?} in:\n{output}"));
    output[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect()
}

/// The cells of a matrix table that say DENIED, as "row → column".
fn denied(table: &[&str]) -> Vec<String> {
    let columns: Vec<&str> = table[0].split_whitespace().skip(2).collect();
    let mut cells = Vec::new();
    for line in &table[1..] {
        let mut fields = line.split_whitespace();
        let row = fields.next().unwrap();
        for (column, cell) in columns.iter().zip(fields) {
            if cell == "DENIED" {
                cells.push(format!("{row} → {column}"));
            }
        }
    }
    cells
}

#[test]
fn the_demo_networks_pods_enforces_the_blue_policy_and_cleans_up() {
    require_dataplane();
    let child = Command::new(DEMO)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft-demo");
    let pid = child.id();
    let output = child.wait_with_output().expect("weft-demo output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "weft-demo failed:\n{stdout}\n{stderr}"
    );

    let installation = table_after(&stdout, "$ kubectl get installation");
    assert!(installation[0].contains("MTU"), "{installation:?}");
    let mtu_column = installation[0]
        .split_whitespace()
        .position(|c| c == "MTU")
        .unwrap();
    let row: Vec<&str> = installation[1].split_whitespace().collect();
    assert!(row[1] == "True", "Installation Available: {installation:?}");
    assert!(
        row[mtu_column].parse::<u32>().is_ok_and(|mtu| mtu > 1000),
        "MTU filled in: {installation:?}"
    );
    let pools = table_after(&stdout, "IP pools");
    let pool: Vec<&str> = pools[1].split_whitespace().collect();
    assert_eq!(pool[4], "3", "one block per node allocated: {pools:?}");
    assert!(
        pool[5].parse::<u64>().is_ok_and(|total| total > 3),
        "{pools:?}"
    );
    let pods = table_after(&stdout, "get pods -o wide");
    assert_eq!(pods.len(), 6, "five pods: {pods:?}");
    assert!(
        pods[1..]
            .iter()
            .all(|line| line.contains("1/1") && line.contains("Running")),
        "{pods:?}"
    );

    let before = table_after(
        &stdout,
        "Connectivity, pod → pod and pod → node, no policy:",
    );
    assert_eq!(before.len(), 6, "{before:?}");
    assert_eq!(
        before[0].split_whitespace().count(),
        10,
        "5 pods and 3 nodes: {before:?}"
    );
    assert!(
        denied(&before).is_empty(),
        "all open before the policy: {before:?}"
    );
    let after = table_after(&stdout, "Connectivity with the blue policy");
    assert_eq!(
        denied(&after),
        ["green-0 → blue-0", "green-2 → blue-0"],
        "the blue policy denies exactly green → blue (same node, other subnet):\n{}",
        after.join("\n")
    );
    assert!(
        stdout.contains("production/green-0 -> production/blue-0 TCP 80: denied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("production/red-2 -> production/blue-0 TCP 80: allowed"),
        "{stdout}"
    );
    assert!(stdout.contains("Where it ran:"), "{stdout}");

    assert_eq!(
        namespaces_of(pid),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let pids = stdout
        .lines()
        .find(|line| line.starts_with("processes"))
        .and_then(|line| {
            line.split_once('[')?
                .1
                .split_once(']')
                .map(|(list, _)| list.to_owned())
        })
        .expect("the demo lists its processes");
    let pids: Vec<u32> = pids
        .split(", ")
        .filter_map(|pid| pid.parse().ok())
        .collect();
    assert_eq!(pids.len(), 5, "3 agents and 2 controllers: {pids:?}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} left running");
    }
    let state = stdout
        .split("state in ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(PathBuf::from)
        .expect("the demo names its state directory");
    assert!(!state.exists(), "{} left behind", state.display());
}

#[test]
fn ctrl_c_in_the_middle_of_the_demo_removes_everything_it_made() {
    require_dataplane();
    let mut child = Command::new(DEMO)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft-demo");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains("agents started") {
        match lines.next() {
            Some(Ok(line)) => seen.push_str(&format!("{line}\n")),
            _ => panic!("weft-demo ended before its agents started:\n{seen}"),
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{seen}");
    }
    let made = namespaces_of(pid);
    assert_eq!(made.len(), 4, "router and 3 nodes: {made:?}");
    let processes = descendants(pid);
    assert!(
        processes.len() >= 7,
        "control plane and 3 agents at least: {processes:?}"
    );
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait().expect("wait for weft-demo");
    assert_eq!(status.code(), Some(130), "exit status after Ctrl-C");
    assert_eq!(
        namespaces_of(pid),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    // Processes stopped by their parent may take a moment to be reaped by init.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left: Vec<u32> = processes.iter().copied().filter(|p| alive(*p)).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left.retain(|p| alive(*p));
    }
    assert!(left.is_empty(), "processes left running: {left:?}");
}
