//! What policy does to traffic beyond a connection's first packet: a pod cannot send with
//! another pod's address, whether the node's reverse-path filter is loose or off, and connections
//! a policy change denies stop at once, whether established before it or not.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::policy::*;
use common::*;
use k8s_openapi::api::networking::v1::NetworkPolicy as KubeNetworkPolicy;
use kube::Api;
use serde_json::json;

/// Sends one UDP datagram from `namespace` with a forged source address (a raw socket writes
/// the IP header itself; the kernel fills in the length and checksum).
fn send_spoofed_udp(namespace: &str, src: Ipv4Addr, dst: Ipv4Addr, port: u16) {
    inside(namespace, move || {
        let payload = b"spoof";
        let mut packet = vec![0u8; 28];
        packet[0] = 0x45;
        packet[8] = 64;
        packet[9] = 17;
        packet[12..16].copy_from_slice(&src.octets());
        packet[16..20].copy_from_slice(&dst.octets());
        packet[20..22].copy_from_slice(&40_000u16.to_be_bytes());
        packet[22..24].copy_from_slice(&port.to_be_bytes());
        packet[24..26].copy_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        packet.extend_from_slice(payload);
        // SAFETY: a raw socket we own, a buffer and address that live across the calls.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let address = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst.octets()),
                },
                sin_zero: [0; 8],
            };
            let sent = libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&address as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert!(sent > 0, "sendto: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    });
}

fn from(seen: &Arc<Mutex<Vec<String>>>, address: Ipv4Addr) -> usize {
    let address = address.to_string();
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| **s == address)
        .count()
}

/// Sets `net.ipv4.conf.*.rp_filter` on every interface of the node's namespace.
fn set_rp_filter(netns: &str, value: u8) {
    let text = sh(&[
        "ip",
        "netns",
        "exec",
        netns,
        "sysctl",
        "-a",
        "--pattern",
        "rp_filter",
    ]);
    for line in text.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            let setting = format!("{key}={value}");
            sh(&["ip", "netns", "exec", netns, "sysctl", "-qw", &setting]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_cannot_send_with_another_pods_address_whatever_the_reverse_path_filter() {
    let mut nodes = nodes_in_two_subnets().await;
    let trusted = nodes.add_pod(0, "trusted", &[("app", "trusted")]).await;
    let spoofer = nodes.add_pod(0, "spoofer", &[("app", "spoofer")]).await;
    let target = nodes.add_pod(1, "target", &[("app", "target")]).await;
    let seen = udp_sink(&target.netns, 9000);
    create_kube_policy(
        &nodes,
        "target-from-trusted",
        json!({"podSelector": {"matchLabels": {"app": "target"}}, "policyTypes": ["Ingress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "trusted"}}}],
                            "ports": [{"protocol": "UDP", "port": 9000}]}]}),
    )
    .await;
    create_kube_policy(
        &nodes,
        "spoofer-isolated",
        json!({"podSelector": {"matchLabels": {"app": "spoofer"}}, "policyTypes": ["Egress"]}),
    )
    .await;
    // The policies are in place: the spoofer's own datagrams no longer arrive, the trusted
    // pod's do.
    nodes
        .until(
            "the spoofer's egress is denied",
            Duration::from_secs(10),
            || {
                let before = from(&seen, spoofer.ip);
                udp_send(&spoofer.netns, target.ip, 9000);
                std::thread::sleep(Duration::from_millis(300));
                from(&seen, spoofer.ip) == before
            },
        )
        .await;
    nodes
        .until(
            "the trusted pod reaches the target",
            Duration::from_secs(10),
            || {
                udp_send(&trusted.netns, target.ip, 9000);
                std::thread::sleep(Duration::from_millis(100));
                from(&seen, trusted.ip) > 0
            },
        )
        .await;

    // Loose reverse-path filtering, then none at all (where the kernel would let any forged
    // source through): the policy table alone must drop the forged datagrams.
    for rp_filter in [2, 0] {
        for node in &nodes.nodes {
            set_rp_filter(&node.netns, rp_filter);
        }
        let before = from(&seen, trusted.ip);
        for _ in 0..20 {
            send_spoofed_udp(&spoofer.netns, trusted.ip, target.ip, 9000);
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            from(&seen, trusted.ip),
            before,
            "with rp_filter={rp_filter}, datagrams forged with the trusted pod's address reached the target"
        );
    }
    udp_send(&trusted.netns, target.ip, 9000);
    nodes
        .until(
            "the trusted pod still reaches the target",
            Duration::from_secs(5),
            || from(&seen, trusted.ip) > 1,
        )
        .await;
}

/// What a TCP stream saw: when its last echo came back, and when and how it ended (an error
/// other than a read timeout).
#[derive(Default)]
struct StreamLog {
    last_echo: Option<Instant>,
    ended: Option<(Instant, std::io::ErrorKind)>,
}

/// A TCP stream sending a line every 50 ms and reading the echo, until `stop` or an error.
fn tcp_stream(
    namespace: &str,
    to: Ipv4Addr,
    port: u16,
    stop: Arc<AtomicBool>,
) -> Arc<Mutex<StreamLog>> {
    let log = Arc::new(Mutex::new(StreamLog::default()));
    let record = log.clone();
    let namespace = namespace.to_owned();
    std::thread::spawn(move || {
        enter(&namespace);
        let address = SocketAddr::from((to, port));
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let end = |error: std::io::Error| {
            record.lock().unwrap().ended = Some((Instant::now(), error.kind()));
        };
        while !stop.load(Ordering::Relaxed) {
            if let Err(error) = writeln!(writer, "tick") {
                return end(error);
            }
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return end(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => record.lock().unwrap().last_echo = Some(Instant::now()),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => return end(error),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    log
}

/// A UDP flow (one socket, so one conntrack entry) sending every 50 ms; replies are read and
/// dropped.
fn udp_flow(namespace: &str, to: Ipv4Addr, port: u16, stop: Arc<AtomicBool>) {
    let namespace = namespace.to_owned();
    std::thread::spawn(move || {
        enter(&namespace);
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buffer = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            let _ = socket.send_to(b"tick", (to, port));
            let _ = socket.recv_from(&mut buffer);
        }
    });
}

/// A UDP echo server recording when each datagram arrived (the echo makes the flow's
/// conntrack entry established, as a real exchange does).
fn timed_sink(namespace: &str, port: u16) -> Arc<Mutex<Vec<Instant>>> {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let record = arrivals.clone();
    let namespace = namespace.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&namespace);
        let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        ready_tx.send(()).ok();
        let mut buffer = [0u8; 64];
        while let Ok((length, from)) = socket.recv_from(&mut buffer) {
            record.lock().unwrap().push(Instant::now());
            let _ = socket.send_to(&buffer[..length], from);
        }
    });
    ready_rx.recv().unwrap();
    arrivals
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_cuts_established_tcp_and_udp_flows_within_two_seconds() {
    let mut nodes = nodes_in_two_subnets().await;
    let server = nodes.add_pod(1, "server", &[("app", "server")]).await;
    let client = nodes.add_pod(0, "client", &[("app", "client")]).await;
    serve_tcp(&server.netns, 8080);
    let arrivals = timed_sink(&server.netns, 9000);
    assert!(tcp_probe_eventually(&client.netns, server.ip, 8080, 25).is_some());
    let stop = Arc::new(AtomicBool::new(false));
    let stream = tcp_stream(&client.netns, server.ip, 8080, stop.clone());
    udp_flow(&client.netns, server.ip, 9000, stop.clone());
    nodes
        .until("both flows carry traffic", Duration::from_secs(5), || {
            stream.lock().unwrap().last_echo.is_some() && arrivals.lock().unwrap().len() > 5
        })
        .await;

    let denied_at = Instant::now();
    create_kube_policy(
        &nodes,
        "server-isolated",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let tcp_stopped = stream
        .lock()
        .unwrap()
        .last_echo
        .expect("echoes")
        .duration_since(denied_at);
    let udp_stopped = arrivals
        .lock()
        .unwrap()
        .last()
        .expect("arrivals")
        .saturating_duration_since(denied_at);
    eprintln!("TCP stopped {tcp_stopped:?}, UDP {udp_stopped:?} after the deny");
    assert!(
        tcp_stopped < Duration::from_secs(2),
        "the TCP stream still echoed {tcp_stopped:?} after the deny"
    );
    assert!(
        udp_stopped < Duration::from_secs(2),
        "the UDP flow still arrived {udp_stopped:?} after the deny"
    );
    // The client of the cut connection is told (a reset answers its next segment once the cut
    // is in force), rather than retransmitting into silence until its own timeout, minutes
    // later. Its next segment is a retransmission on TCP's backoff, so allow it some seconds.
    nodes
        .until(
            "the cut stream's client is told by a reset",
            Duration::from_secs(20),
            || stream.lock().unwrap().ended.is_some(),
        )
        .await;
    let (at, kind) = stream.lock().unwrap().ended.expect("ended");
    assert!(
        matches!(
            kind,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "the cut stream ended {:?} after the deny with {kind:?}, not a reset",
        at.duration_since(denied_at)
    );
    eprintln!(
        "the cut stream's client got {kind:?} {:?} after the deny",
        at.duration_since(denied_at)
    );

    // A cut flow is not cut for good: once policy allows it again, it flows again.
    Api::<KubeNetworkPolicy>::namespaced(nodes.client.clone(), &nodes.namespace)
        .delete("server-isolated", &Default::default())
        .await
        .expect("delete the policy");
    let allowed_at = Instant::now();
    nodes
        .until(
            "the UDP flow resumes once allowed",
            Duration::from_secs(5),
            || {
                arrivals
                    .lock()
                    .unwrap()
                    .last()
                    .is_some_and(|last| *last > allowed_at)
            },
        )
        .await;
    stop.store(true, Ordering::Relaxed);
}
