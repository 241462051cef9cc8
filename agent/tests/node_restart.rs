//! Restart without disruption: a TCP stream between pods on two nodes (across subnets, through
//! VXLAN) survives `kill -9` of one node's agent and its restart without a reset, and pings
//! between the pods lose at most one packet. The restarted agent adopts its kernel state: its
//! routes are the same objects before and after.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_survives_kill_9_and_restart_of_an_agent() {
    let cluster = shared_cluster().await;
    let mut nodes = NodeCluster::new(cluster, &[1, 2], "VXLANCrossSubnet", "Enabled").await;
    nodes.start_agents().await;
    let server = nodes.add_pod(0, "server", &[]).await;
    let client_pod = nodes.add_pod(1, "client", &[]).await;
    serve_tcp(&server.netns, 8080);
    assert!(tcp_probe_eventually(&client_pod.netns, server.ip, 8080, 25).is_some());
    let routes_before = nodes.nodes[0].weft_routes();

    let stop = Arc::new(AtomicBool::new(false));
    let (netns, ip, flag) = (client_pod.netns.clone(), server.ip, stop.clone());
    let stream = std::thread::spawn(move || {
        enter(&netns);
        let stream = TcpStream::connect((ip, 8080)).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut exchanged = 0;
        while !flag.load(Ordering::Relaxed) {
            writeln!(writer, "m{exchanged}").map_err(|e| format!("write {exchanged}: {e}"))?;
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read {exchanged}: {e}"))?;
            if !line.trim_end().ends_with(&format!("m{exchanged}")) {
                return Err(format!("answer {exchanged} was {line:?}"));
            }
            exchanged += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok::<_, String>(exchanged)
    });
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client_pod.netns,
            "ping",
            "-i",
            "0.05",
            "-c",
            "120",
            "-W",
            "1",
        ])
        .arg(server.ip.to_string())
        .output();

    let ping_task = std::thread::spawn(move || ping);
    std::thread::sleep(Duration::from_millis(800));
    nodes.stop_agent(0, libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(500));
    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let exchanged = stream
        .join()
        .unwrap()
        .expect("the stream survived without a reset");
    assert!(exchanged > 50, "only {exchanged} messages crossed");
    let ping = ping_task.join().unwrap().expect("ping ran");
    let text = String::from_utf8_lossy(&ping.stdout).into_owned();
    let received: u32 = text
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or_else(|| panic!("ping output: {text}"));
    assert!(received >= 119, "pings lost: {text}");
    assert_eq!(
        nodes.nodes[0].weft_routes(),
        routes_before,
        "the restarted agent adopted its routes"
    );
    println!("{exchanged} messages and {received}/120 pings across the restart");
}
