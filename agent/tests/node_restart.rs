//! Restart without disruption: `kill -9` of one node's agent and its restart, while traffic
//! runs across both:
//! - a TCP stream between pods on two nodes (across subnets, through VXLAN) keeps exchanging
//!   messages without a reset;
//! - a ping started before the kill and stopped after the restart loses at most one packet;
//! - a default-deny ingress policy with an allow for the client stays in force without a
//!   window: UDP probes of an allowed and of a denied flow, every 10 ms from before the kill
//!   to after the restart, get no wrong verdict, although the restarted agent replaced the
//!   policy table (its handle changed).
//!
//! The restarted agent adopts its kernel state: its routes are the same objects before and
//! after.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::policy::*;
use common::*;

const PROBE_PORT: u16 = 9000;

/// A UDP sink in `namespace` recording (source address, sequence number) of every probe.
fn probe_sink(namespace: &str) -> Arc<Mutex<Vec<(Ipv4Addr, u64)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let namespace = namespace.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&namespace);
        let socket = UdpSocket::bind(("0.0.0.0", PROBE_PORT)).expect("bind the probe sink");
        ready_tx.send(()).ok();
        let mut buffer = [0u8; 32];
        while let Ok((length, from)) = socket.recv_from(&mut buffer) {
            let sequence = std::str::from_utf8(&buffer[..length])
                .ok()
                .and_then(|text| text.parse().ok());
            if let (std::net::IpAddr::V4(source), Some(sequence)) = (from.ip(), sequence) {
                record.lock().unwrap().push((source, sequence));
            }
        }
    });
    ready_rx.recv().expect("probe sink started");
    seen
}

/// Sends one numbered UDP probe from `namespace` to `to` every 10 ms, each from a new socket
/// (a new flow, which the policy judges afresh), until `stop`; returns when each was sent.
fn probe_every_10ms(
    namespace: &str,
    to: Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Instant>> {
    let namespace = namespace.to_owned();
    std::thread::spawn(move || {
        enter(&namespace);
        let mut sent = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("probe socket");
            socket
                .send_to(sent.len().to_string().as_bytes(), (to, PROBE_PORT))
                .expect("send a probe");
            sent.push(Instant::now());
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    })
}

/// The `# handle N` of the policy table in a node's namespace: a new handle means the table
/// was replaced.
fn policy_table_handle(netns: &str) -> String {
    let listing = sh(&[
        "ip",
        "netns",
        "exec",
        netns,
        "nft",
        "-a",
        "list",
        "table",
        "inet",
        "weft_policy",
    ]);
    listing
        .lines()
        .next()
        .and_then(|line| line.split("# handle ").nth(1))
        .unwrap_or_else(|| panic!("no table handle in {listing}"))
        .trim()
        .to_owned()
}

/// Whether the ping child is still running (it must span the kill and the restart).
fn running(ping: &mut Child) -> bool {
    ping.try_wait().expect("ping status").is_none()
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_and_policy_hold_across_kill_9_and_restart_of_an_agent() {
    let cluster = shared_cluster().await;
    let mut nodes = NodeCluster::new(cluster, &[1, 2], "VXLANCrossSubnet", "Enabled").await;
    nodes.start_agents().await;
    let server = nodes.add_pod(0, "server", &[("app", "server")]).await;
    let client_pod = nodes.add_pod(1, "client", &[("app", "client")]).await;
    let other = nodes.add_pod(1, "other", &[("app", "other")]).await;
    serve_tcp(&server.netns, 8080);
    let probes = probe_sink(&server.netns);
    // Both flows work before the policy: the denied one is denied by it, not by a broken path.
    for pod in [&client_pod, &other] {
        assert!(
            tcp_probe_eventually(&pod.netns, server.ip, 8080, 25).is_some(),
            "{} reaches the server before the policy",
            pod.name
        );
        let to = server.ip;
        inside(&pod.netns, move || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("probe socket");
            socket
                .send_to(b"0", (to, PROBE_PORT))
                .expect("send a probe");
        });
    }
    nodes
        .until(
            "UDP probes arrive before the policy",
            Duration::from_secs(5),
            || {
                let seen = probes.lock().unwrap();
                [client_pod.ip, other.ip]
                    .iter()
                    .all(|ip| seen.iter().any(|(source, _)| source == ip))
            },
        )
        .await;
    deny_all_ingress(&nodes).await;
    allow_client_to_server(&nodes).await;
    nodes
        .until(
            "other denied, client allowed",
            Duration::from_secs(10),
            || {
                tcp_probe(&other.netns, server.ip, 8080).is_none()
                    && tcp_probe(&client_pod.netns, server.ip, 8080).is_some()
            },
        )
        .await;
    let routes_before = nodes.nodes[0].weft_routes();
    let table_before = policy_table_handle(&nodes.nodes[0].netns);
    probes.lock().unwrap().clear();

    let stop = Arc::new(AtomicBool::new(false));
    let (netns, ip, flag) = (client_pod.netns.clone(), server.ip, stop.clone());
    let stream = std::thread::spawn(move || {
        enter(&netns);
        let stream = TcpStream::connect((ip, 8080)).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut exchanged = 0;
        let mut times = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            writer
                .write_all(format!("m{exchanged}\n").as_bytes())
                .map_err(|e| format!("write {exchanged}: {e}"))?;
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read {exchanged}: {e}"))?;
            if !line.trim_end().ends_with(&format!("m{exchanged}")) {
                return Err(format!("answer {exchanged} was {line:?}"));
            }
            exchanged += 1;
            times.push(Instant::now());
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok::<_, String>(times)
    });
    // `ip netns exec` execs ping, so the child is ping itself: SIGINT makes it print its
    // summary and exit.
    let mut ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client_pod.netns,
            "ping",
            "-i",
            "0.05",
            "-W",
            "1",
        ])
        .arg(server.ip.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ping");
    let allowed = probe_every_10ms(&client_pod.netns, server.ip, stop.clone());
    let denied = probe_every_10ms(&other.netns, server.ip, stop.clone());

    std::thread::sleep(Duration::from_millis(800));
    assert!(running(&mut ping), "ping runs when the agent is killed");
    let killed = Instant::now();
    nodes.stop_agent(0, libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(500));
    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    let ready = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    assert!(running(&mut ping), "ping still runs after the restart");
    stop.store(true, Ordering::Relaxed);
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(ping.id() as i32, libc::SIGINT) };
    let ping = ping.wait_with_output().expect("ping summary");
    let allowed = allowed.join().unwrap();
    let denied = denied.join().unwrap();
    let exchanges = stream
        .join()
        .unwrap()
        .expect("the stream survived without a reset");
    let exchanged = exchanges.len();
    // The longest pause of the stream, and where it began relative to the kill.
    let (pause, pause_at) = exchanges
        .windows(2)
        .map(|pair| (pair[1] - pair[0], pair[0]))
        .max()
        .map(|(pause, at)| {
            let at = if at >= killed {
                format!("{:?} after the kill", at - killed)
            } else {
                format!("{:?} before the kill", killed - at)
            };
            (pause, at)
        })
        .unwrap_or_default();
    // The last probes are on their way.
    std::thread::sleep(Duration::from_millis(500));

    let text = String::from_utf8_lossy(&ping.stdout).into_owned();
    println!(
        "agent down for {:?} (kill to ready); {exchanged} messages, longest pause {pause:?} \
         from {pause_at}; ping: {}",
        ready - killed,
        text.lines().rev().take(2).collect::<Vec<_>>().join(" / ")
    );
    let before = exchanges.iter().filter(|at| **at < killed).count();
    let after = exchanges.iter().filter(|at| **at > ready).count();
    assert!(
        before > 0 && after > 0,
        "the stream ran across the restart: {before} messages before the kill, {after} after \
         the agent was back"
    );
    assert!(
        pause < Duration::from_secs(1),
        "the stream stalled for {pause:?} from {pause_at}"
    );
    let summary = text
        .lines()
        .find(|line| line.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no summary in the ping output: {text}"));
    let count = |suffix: &str| -> u32 {
        summary
            .split(',')
            .find_map(|part| {
                part.trim()
                    .split_once(' ')
                    .filter(|(_, rest)| rest.starts_with(suffix))
                    .and_then(|(n, _)| n.parse().ok())
            })
            .unwrap_or_else(|| panic!("no `{suffix}` in the ping output: {text}"))
    };
    let (transmitted, received) = (count("packets transmitted"), count("received"));
    let spanned = (ready - killed).as_millis() as u32 / 50;
    assert!(
        transmitted > spanned,
        "ping sent {transmitted} packets, fewer than the restart lasted ({spanned} intervals)"
    );
    assert!(transmitted - received <= 1, "pings lost: {text}");

    let during = |sent: &[Instant]| {
        sent.iter()
            .filter(|at| **at >= killed && **at <= ready)
            .count()
    };
    assert!(
        during(&allowed) > 0 && during(&denied) > 0,
        "probes ran while the agent was down and restarting"
    );
    let seen = probes.lock().unwrap().clone();
    let from = |source: Ipv4Addr| -> Vec<u64> {
        let mut sequences: Vec<u64> = seen
            .iter()
            .filter(|(ip, _)| *ip == source)
            .map(|(_, sequence)| *sequence)
            .collect();
        sequences.sort_unstable();
        sequences.dedup();
        sequences
    };
    let let_through = from(other.ip);
    assert!(
        let_through.is_empty(),
        "{} of {} denied probes got through (numbers {let_through:?}); agent down from probe \
         ~{} to ~{}",
        let_through.len(),
        denied.len(),
        denied.iter().filter(|at| **at < killed).count(),
        denied.iter().filter(|at| **at <= ready).count(),
    );
    let arrived = from(client_pod.ip);
    let lost: Vec<u64> = (0..allowed.len() as u64)
        .filter(|sequence| arrived.binary_search(sequence).is_err())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} allowed probes were dropped (numbers {lost:?})",
        lost.len(),
        allowed.len()
    );
    assert_ne!(
        policy_table_handle(&nodes.nodes[0].netns),
        table_before,
        "the restarted agent replaced the policy table"
    );
    assert_eq!(
        nodes.nodes[0].weft_routes(),
        routes_before,
        "the restarted agent adopted its routes"
    );
    println!(
        "{exchanged} messages, {received}/{transmitted} pings, {} allowed and {} denied probes \
         ({} and {} while the agent was down or restarting), no wrong verdict",
        allowed.len(),
        denied.len(),
        during(&allowed),
        during(&denied)
    );
}
