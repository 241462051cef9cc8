//! Real network namespaces for dataplane tests: a host namespace holding a bridge (with bridged
//! IPv4 sent through the inet forward hook), one namespace per pod wired to it by a veth pair,
//! probe servers in every pod, and TCP/UDP probes between every pair.

#![allow(dead_code)]

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use weft_policy::eval::Traffic;
use weft_policy::matrix::Matrix;
use weft_policy::model::{Cluster, Protocol};

/// Ports every pod serves on both TCP and UDP.
pub const SERVED_PORTS: [u16; 2] = [80, 81];
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_TRIES: usize = 2;

/// Fails loudly unless the test runs as root with `ip` and `nft` installed.
pub fn require_root_tools() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "this test needs root to create network namespaces");
    for tool in [["ip", "-V"], ["nft", "--version"]] {
        let status = Command::new(tool[0]).arg(tool[1]).output();
        assert!(
            status.as_ref().is_ok_and(|o| o.status.success()),
            "this test needs `{}` (Debian packages iproute2 and nftables): {status:?}",
            tool[0]
        );
    }
}

fn run(args: &[&str]) {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Moves the calling thread into a named network namespace.
fn enter(namespace: &str) {
    let file = File::open(format!("/run/netns/{namespace}"))
        .unwrap_or_else(|e| panic!("cannot open namespace {namespace}: {e}"));
    // SAFETY: the descriptor is a valid open network namespace file for the whole call.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(result, 0, "setns into {namespace} failed");
}

struct Pod {
    key: String,
    namespace: String,
    ip: IpAddr,
}

/// A bridge namespace and one namespace per pod; removed on drop.
pub struct Topology {
    host: String,
    pods: Vec<Pod>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
    /// Kept open so pending connections stay queued until the topology goes away.
    listeners: Vec<TcpListener>,
}

impl Topology {
    /// Builds namespaces `<prefix>-h` and `<prefix>-<i>` for the cluster's endpoints (IPv4 on
    /// one /16, IPv6 on one /64) and starts the probe servers.
    pub fn build(prefix: &str, cluster: &Cluster) -> Self {
        let host = format!("{prefix}-h");
        let mut topology = Topology {
            host: host.clone(),
            pods: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
            listeners: Vec::new(),
        };
        run(&["ip", "netns", "add", &host]);
        run(&["ip", "-n", &host, "link", "add", "br0", "type", "bridge"]);
        // Send bridged IPv4 and IPv6 through the inet forward hook, where the ruleset sits; both
        // settings are per namespace, so nothing outside the test changes.
        for (option, sysctl) in [
            ("nf_call_iptables", "net.bridge.bridge-nf-call-iptables=1"),
            ("nf_call_ip6tables", "net.bridge.bridge-nf-call-ip6tables=1"),
        ] {
            run(&[
                "ip", "-n", &host, "link", "set", "br0", "type", "bridge", option, "1",
            ]);
            run(&["ip", "netns", "exec", &host, "sysctl", "-qw", sysctl]);
        }
        run(&["ip", "-n", &host, "link", "set", "br0", "up"]);
        for (index, endpoint) in cluster.endpoints.iter().enumerate() {
            let namespace = format!("{prefix}-{index}");
            let ip = endpoint
                .primary_ip()
                .expect("every fixture pod has an address");
            topology.pods.push(Pod {
                key: endpoint.key(),
                namespace: namespace.clone(),
                ip,
            });
            let veth = format!("v{index}");
            run(&["ip", "netns", "add", &namespace]);
            run(&[
                "ip", "-n", &host, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &namespace,
            ]);
            run(&[
                "ip", "-n", &host, "link", "set", &veth, "master", "br0", "up",
            ]);
            // IPv6 without duplicate address detection, so the address is usable at once.
            let (address, dad) = match ip {
                IpAddr::V4(_) => (format!("{ip}/16"), None),
                IpAddr::V6(_) => (format!("{ip}/64"), Some("nodad")),
            };
            let mut add = vec![
                "ip", "-n", &namespace, "addr", "add", &address, "dev", "eth0",
            ];
            add.extend(dad);
            run(&add);
            run(&["ip", "-n", &namespace, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &namespace, "link", "set", "lo", "up"]);
        }
        topology.start_servers();
        topology
    }

    fn start_servers(&mut self) {
        for pod in &self.pods {
            let namespace = pod.namespace.clone();
            let (sender, receiver) = std::sync::mpsc::channel();
            let stop = self.stop.clone();
            self.servers.push(std::thread::spawn(move || {
                enter(&namespace);
                let listeners: Vec<TcpListener> = SERVED_PORTS
                    .iter()
                    .map(|port| TcpListener::bind(("::", *port)).expect("tcp listener"))
                    .collect();
                let sockets: Vec<UdpSocket> = SERVED_PORTS
                    .iter()
                    .map(|port| {
                        let socket = UdpSocket::bind(("::", *port)).expect("udp socket");
                        socket.set_nonblocking(true).expect("nonblocking udp");
                        socket
                    })
                    .collect();
                sender.send(listeners).expect("hand over listeners");
                let mut buffer = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    let mut idle = true;
                    for socket in &sockets {
                        match socket.recv_from(&mut buffer) {
                            Ok((length, peer)) => {
                                idle = false;
                                let _ = socket.send_to(&buffer[..length], peer);
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(e) => panic!("udp server: {e}"),
                        }
                    }
                    if idle {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }));
            let listeners = receiver.recv().expect("probe server started");
            self.listeners.extend(listeners);
        }
    }

    /// Applies an nft script in the host namespace, in one transaction.
    pub fn apply(&self, script: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.host, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The table as the kernel holds it, without handles and with set elements sorted, so two
    /// ways of reaching the same state compare equal.
    pub fn table_state(&self, table: &str) -> String {
        let output = Command::new("ip")
            .args([
                "netns", "exec", &self.host, "nft", "-j", "list", "table", "inet", table,
            ])
            .output()
            .expect("nft list");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listing: serde_json::Value = serde_json::from_slice(&output.stdout).expect("nft json");
        let mut rules: Vec<(String, String)> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        for object in listing["nftables"].as_array().expect("nftables array") {
            if object.get("metainfo").is_some() {
                continue;
            }
            let mut object = object.clone();
            if let Some(fields) = object
                .as_object_mut()
                .and_then(|o| o.values_mut().next())
                .and_then(|body| body.as_object_mut())
            {
                fields.remove("handle");
                if let Some(serde_json::Value::Array(elements)) = fields.get_mut("elem") {
                    elements.sort_by_key(|e| e.to_string());
                }
            }
            match object.get("rule") {
                Some(rule) => rules.push((rule["chain"].to_string(), object.to_string())),
                None => others.push(object.to_string()),
            }
        }
        // Rules keep their order within a chain; chains and sets are compared as sets.
        others.sort();
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        others.extend(rules.into_iter().map(|(_, rule)| rule));
        others.join("\n")
    }

    /// Probes every ordered pair in parallel and returns what got through.
    pub fn probe_matrix(&self, traffic: Traffic) -> Matrix {
        let mut order: Vec<usize> = (0..self.pods.len()).collect();
        order.sort_by(|a, b| self.pods[*a].key.cmp(&self.pods[*b].key));
        let handles: Vec<Vec<JoinHandle<bool>>> = order
            .iter()
            .map(|&source| {
                order
                    .iter()
                    .map(|&destination| {
                        let namespace = self.pods[source].namespace.clone();
                        let target = SocketAddr::new(self.pods[destination].ip, traffic.port);
                        std::thread::spawn(move || {
                            enter(&namespace);
                            (0..PROBE_TRIES).any(|_| probe(target, traffic.protocol))
                        })
                    })
                    .collect()
            })
            .collect();
        let allowed = handles
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|h| h.join().expect("probe thread"))
                    .collect()
            })
            .collect();
        Matrix {
            endpoints: order.iter().map(|&i| self.pods[i].key.clone()).collect(),
            allowed,
        }
    }
}

/// One connection attempt: a TCP handshake, or a UDP datagram echoed back.
fn probe(target: SocketAddr, protocol: Protocol) -> bool {
    match protocol {
        Protocol::Tcp => TcpStream::connect_timeout(&target, PROBE_TIMEOUT).is_ok(),
        Protocol::Udp => {
            let any = if target.is_ipv4() { "0.0.0.0" } else { "::" };
            let Ok(socket) = UdpSocket::bind((any, 0)) else {
                return false;
            };
            let _ = socket.set_read_timeout(Some(PROBE_TIMEOUT));
            let mut buffer = [0u8; 16];
            socket.send_to(b"probe", target).is_ok()
                && socket.recv_from(&mut buffer).is_ok_and(|(n, from)| {
                    from.ip().to_canonical() == target.ip() && &buffer[..n] == b"probe"
                })
        }
        other => panic!("no probe for {other:?}"),
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for server in self.servers.drain(..) {
            let _ = server.join();
        }
        self.listeners.clear();
        for pod in &self.pods {
            let _ = Command::new("ip")
                .args(["netns", "del", &pod.namespace])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .output();
    }
}
