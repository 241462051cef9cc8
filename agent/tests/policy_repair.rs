//! The policy table repaired from the kernel, not from memory: deleted, flushed or edited by
//! someone else, it is replaced whole (`PolicySync::verify` on a real kernel, and end to end
//! within the agent's resync period while a denied flow stays denied), and a converged node's
//! resync writes nothing to it (counted with `nft monitor`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::policy::*;
use common::*;
use weft_agent::kernel::Kernel;
use weft_agent::policy_sync::{POLICY_TABLE, PolicySync};
use weft_agent::view::ClusterView;

/// Runs `nft <command>` inside namespace `netns`.
fn nft_in(netns: &str, command: &str) {
    let mut args = vec!["ip", "netns", "exec", netns, "nft"];
    args.extend(command.split_whitespace());
    sh(&args);
}

/// A listing's lines in order: nft lists chains in the order they were created, which a table
/// written whole differs in from one grown by diffs.
fn same_lines(listing: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = listing.lines().map(str::trim).collect();
    lines.sort_unstable();
    lines
}

/// The ruleset changes `nft monitor` reports in namespace `netns` while `work` runs. Two writes
/// to a canary table fence the window, so a change is neither missed at the start (the monitor
/// is listening once it reports the first canary) nor at the end (events arrive in order).
/// Returns the lines between the fences, without the canaries' own.
fn nft_writes_during<T>(netns: &str, work: impl FnOnce() -> T) -> (T, Vec<String>) {
    let mut monitor = Monitor(
        Command::new("ip")
            .args(["netns", "exec", netns, "nft", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nft monitor"),
    );
    let stdout = monitor.0.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let nft = |command: &str| nft_in(netns, command);
    let mut attempt = 0;
    'listening: loop {
        let canary = format!("weft_canary_{attempt}");
        nft(&format!("add table inet {canary}"));
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            if line.contains(&canary) {
                break 'listening;
            }
        }
        attempt += 1;
    }
    let result = work();
    nft("add table inet weft_canary_end");
    let mut seen = Vec::new();
    for line in lines.iter() {
        if line.contains("weft_canary_end") {
            break;
        }
        if !line.starts_with("# new generation") {
            seen.push(line);
        }
    }
    drop(monitor);
    for index in 0..=attempt {
        nft(&format!("delete table inet weft_canary_{index}"));
    }
    nft("delete table inet weft_canary_end");
    (result, seen)
}

/// `nft monitor`, stopped on drop (also when the work it watches panics).
struct Monitor(std::process::Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace of its own, deleted on drop.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = try_sh(&["ip", "netns", "del", &self.0]);
    }
}

/// `PolicySync::verify` against a real kernel: it sees the table deleted, the ruleset flushed,
/// a chain flushed, a rule inserted and a map element added by someone else, after which the
/// next sync writes the whole table again; on a table that matches, neither verify nor sync
/// writes anything.
#[test]
fn verify_sees_what_others_did_to_the_policy_table() {
    require_root_tools();
    let scratch = Scratch(format!("wtv-{}", std::process::id()));
    sh(&["ip", "netns", "add", &scratch.0]);
    let netns = scratch.0.as_str();
    let kernel = Kernel::open(Some(&netns_path(netns))).expect("open the namespace");
    let view = ClusterView::default();
    let mut policy = PolicySync::default();
    assert!(policy.sync(&kernel, &view, "node").unwrap() > 0);
    let whole = policy_table(netns).expect("the table was written");

    let ((), writes) = nft_writes_during(netns, || {
        assert!(
            policy.verify(&kernel).unwrap(),
            "a table as applied matches"
        );
        assert_eq!(policy.sync(&kernel, &view, "node").unwrap(), 0);
    });
    assert!(
        writes.is_empty(),
        "a converged table was written: {writes:?}"
    );

    for (what, command) in [
        ("table deleted", format!("delete table inet {POLICY_TABLE}")),
        ("ruleset flushed", "flush ruleset".to_owned()),
        (
            "chain flushed",
            format!("flush chain inet {POLICY_TABLE} ingress"),
        ),
        (
            "rule inserted",
            format!("insert rule inet {POLICY_TABLE} ingress accept"),
        ),
        (
            "map element added",
            format!("add element inet {POLICY_TABLE} ingress_v4 {{ 10.99.0.1 : accept }}"),
        ),
    ] {
        nft_in(netns, &command);
        assert!(!policy.verify(&kernel).unwrap(), "verify sees the {what}");
        assert!(
            policy.sync(&kernel, &view, "node").unwrap() > 0,
            "the next sync writes the table after the {what}"
        );
        assert_eq!(
            policy_table(netns).as_ref(),
            Some(&whole),
            "the table is whole again after the {what}"
        );
        assert!(policy.verify(&kernel).unwrap(), "repaired after the {what}");
    }
}

/// Repair from the kernel, end to end: `nft delete table inet weft_policy` and, separately,
/// `nft flush ruleset` in a node's namespace → the whole table is back within the resync
/// period and the denied flow is denied again; then a converged node's resyncs write nothing
/// to the table. Needs the dataplane's full resync to call `PolicySync::verify`.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_or_flushed_policy_table_is_back_within_the_resync_period() {
    const RESYNC: Duration = Duration::from_secs(2);
    let mut nodes = nodes_in_two_subnets_resyncing_every(Some(RESYNC)).await;
    let server = nodes.add_pod(0, "server", &[("app", "server")]).await;
    nodes.add_pod(1, "client", &[("app", "client")]).await;
    nodes.add_pod(1, "other", &[("app", "other")]).await;
    serve_tcp(&server.netns, 8080);
    for from in [1, 2] {
        assert!(
            tcp_probe_eventually(&nodes.pods[from].netns, server.ip, 8080, 25).is_some(),
            "{} reaches the server before any policy",
            nodes.pods[from].name
        );
    }
    deny_all_ingress(&nodes).await;
    allow_client_to_server(&nodes).await;
    nodes
        .until(
            "other denied, client allowed",
            Duration::from_secs(10),
            || !open(&nodes, 2, 0, 8080) && open(&nodes, 1, 0, 8080),
        )
        .await;

    let node = nodes.nodes[0].netns.clone();
    let whole = policy_table(&node).expect("node 0 has its policy table");
    for command in [
        format!("delete table inet {POLICY_TABLE}"),
        "flush ruleset".to_owned(),
    ] {
        nft_in(&node, &command);
        assert!(
            policy_table(&node).is_none(),
            "`nft {command}` removed the table"
        );
        let took = nodes
            .until(
                &format!("the whole policy table back after `nft {command}`"),
                RESYNC + Duration::from_secs(1),
                || {
                    policy_table(&node)
                        .is_some_and(|table| same_lines(&table) == same_lines(&whole))
                },
            )
            .await;
        println!("`nft {command}`: the table was back after {took:?}");
        assert!(
            !open(&nodes, 2, 0, 8080),
            "other is denied again after `nft {command}`"
        );
        assert!(
            open(&nodes, 1, 0, 8080),
            "the client is allowed after `nft {command}`"
        );
    }

    let ((), writes) = nft_writes_during(&node, || {
        std::thread::sleep(RESYNC * 2 + Duration::from_millis(500));
    });
    let policy_writes: Vec<&String> = writes
        .iter()
        .filter(|line| line.contains(POLICY_TABLE))
        .collect();
    assert!(
        policy_writes.is_empty(),
        "two resyncs of a converged node wrote to the policy table: {policy_writes:?}"
    );
}
