//! Real network namespaces shaped like a weft node, for dataplane tests: a "host" namespace in
//! the role of the node's root namespace, and one namespace per pod attached by the real `weft`
//! CNI plugin (a routed veth pair per pod: /32 or /128 on the pod end, default route via
//! 169.254.1.1 or fe80::ecee:eeff:feee:eeee, host end `weft…` with one host route per address),
//! with each pod's address pinned through a one-address host-local range. Probe servers run in
//! every pod and on the node's own address; probes go pod to pod, pod to node and node to pod.
//!
//! The plugin binaries are the workspace's own (`target/<profile>/weft` and `weft-ipam`, next to
//! this test's directory); `make test` builds them.

#![allow(dead_code)]

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use weft_policy::eval::Traffic;
use weft_policy::matrix::Matrix;
use weft_policy::model::{Cluster, Protocol};

/// Ports every pod (and the node) serves on both TCP and UDP: every port a scenario probes.
pub const SERVED_PORTS: [u16; 4] = [80, 81, 90, 91];
/// The node's own addresses, on the host namespace's loopback: what a pod reaches its node at.
pub const NODE_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 249, 255, 254));
pub const NODE_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x249, 0, 0, 0, 0, 0, 0xfffe));
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

/// The directory of the workspace's binaries (`target/<profile>`), where the plugins must be.
pub fn plugins_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // The test runs from target/<profile>/deps/.
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable under target/<profile>/deps")
        .to_owned();
    for plugin in ["weft", "weft-ipam"] {
        assert!(
            dir.join(plugin).exists(),
            "{} is missing: build the plugins too (`cargo build -p weft-cni`; `make test` does)",
            dir.join(plugin).display()
        );
    }
    dir
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
    container: String,
    ip: IpAddr,
}

/// A node namespace and one pod namespace per endpoint, attached by the `weft` plugin; the pods
/// are deleted through the plugin and everything removed on drop.
pub struct Topology {
    host: String,
    plugins: PathBuf,
    /// The IPAM store, private to this topology.
    data_dir: PathBuf,
    network: String,
    pods: Vec<Pod>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Topology {
    /// Builds the node namespace `<prefix>-h` and pod namespaces `<prefix>-<i>` for the
    /// cluster's endpoints (each gets exactly its address from the cluster), and starts the
    /// probe servers.
    pub fn build(prefix: &str, cluster: &Cluster) -> Self {
        let host = format!("{prefix}-h");
        let data_dir = std::env::temp_dir().join(format!("{prefix}-ipam"));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut topology = Topology {
            host: host.clone(),
            plugins: plugins_dir(),
            data_dir,
            network: format!("{prefix}-net"),
            pods: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        run(&["ip", "netns", "add", &host]);
        run(&["ip", "-n", &host, "link", "set", "lo", "up"]);
        for node in [NODE_V4, NODE_V6] {
            let address = format!("{node}/{}", if node.is_ipv4() { 32 } else { 128 });
            run(&["ip", "-n", &host, "addr", "add", &address, "dev", "lo"]);
        }
        // A node routes between its pods; a new namespace starts with forwarding off.
        for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            run(&["ip", "netns", "exec", &host, "sysctl", "-qw", sysctl]);
        }
        for (index, endpoint) in cluster.endpoints.iter().enumerate() {
            let ip = endpoint
                .primary_ip()
                .expect("every fixture pod has an address");
            let pod = Pod {
                key: endpoint.key(),
                namespace: format!("{prefix}-{index}"),
                container: format!("{prefix}-container-{index}"),
                ip,
            };
            run(&["ip", "netns", "add", &pod.namespace]);
            // Owned by the topology from here on, so a failure below still cleans it up.
            topology.pods.push(pod);
            let pod = topology.pods.last().expect("just pushed");
            let result = topology
                .plugin("ADD", pod)
                .unwrap_or_else(|e| panic!("ADD of {} failed: {e}", pod.key));
            let result: serde_json::Value =
                serde_json::from_str(&result).expect("ADD result is JSON");
            let assigned = result["ips"][0]["address"].as_str().unwrap_or_default();
            assert!(
                assigned.split('/').next() == Some(ip.to_string().as_str()),
                "{} got {assigned}, not its address {ip}",
                pod.key
            );
            run(&["ip", "-n", &pod.namespace, "link", "set", "lo", "up"]);
        }
        topology.wait_for_host_link_locals();
        topology.start_servers();
        topology
    }

    /// Waits until no IPv6 address of the node namespace is tentative: until the host ends'
    /// link-local addresses have passed duplicate address detection, the node cannot resolve its
    /// IPv6 pods' addresses and drops what it routes to them.
    fn wait_for_host_link_locals(&self) {
        for _ in 0..100 {
            let output = Command::new("ip")
                .args(["-n", &self.host, "-6", "addr", "show", "tentative"])
                .output()
                .expect("ip addr");
            assert!(output.status.success(), "ip -6 addr show tentative failed");
            if output.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the host ends' IPv6 link-local addresses stay tentative after 10 s");
    }

    /// Runs the `weft` plugin in the node namespace for one pod; its address is pinned by a
    /// one-address range.
    fn plugin(&self, command: &str, pod: &Pod) -> Result<String, String> {
        let prefix = if pod.ip.is_ipv4() { 16 } else { 64 };
        let subnet = ipnet::IpNet::new(pod.ip, prefix)
            .expect("prefix fits the family")
            .trunc();
        let config = serde_json::json!({
            "cniVersion": "1.1.0",
            "name": self.network,
            "type": "weft",
            "ipam": {
                "type": "weft-ipam",
                "ranges": [[{"subnet": subnet.to_string(), "rangeStart": pod.ip.to_string(),
                             "rangeEnd": pod.ip.to_string()}]],
                "dataDir": self.data_dir,
            }
        });
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.host])
            .arg(self.plugins.join("weft"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &pod.container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", format!("/run/netns/{}", pod.namespace))
            .env("CNI_PATH", &self.plugins)
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
            .write_all(config.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn start_servers(&mut self) {
        let namespaces: Vec<String> = self
            .pods
            .iter()
            .map(|pod| pod.namespace.clone())
            .chain([self.host.clone()])
            .collect();
        for namespace in namespaces {
            let (sender, receiver) = std::sync::mpsc::channel();
            let stop = self.stop.clone();
            self.servers.push(std::thread::spawn(move || {
                enter(&namespace);
                let listeners: Vec<TcpListener> = SERVED_PORTS
                    .iter()
                    .map(|port| {
                        let listener = TcpListener::bind(("::", *port)).expect("tcp listener");
                        listener.set_nonblocking(true).expect("nonblocking tcp");
                        listener
                    })
                    .collect();
                let sockets: Vec<UdpSocket> = SERVED_PORTS
                    .iter()
                    .map(|port| {
                        let socket = UdpSocket::bind(("::", *port)).expect("udp socket");
                        socket.set_nonblocking(true).expect("nonblocking udp");
                        socket
                    })
                    .collect();
                sender.send(()).expect("report the servers bound");
                let mut buffer = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    let mut idle = true;
                    // Accepted and closed at once, so the accept queue never fills up however
                    // many probes a run makes.
                    for listener in &listeners {
                        match listener.accept() {
                            Ok(_) => idle = false,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(e) => panic!("tcp server: {e}"),
                        }
                    }
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
            receiver.recv().expect("probe server started");
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

impl Topology {
    /// The node address a pod reaches its node at (the one of the pod's family).
    fn node_address(ip: IpAddr) -> IpAddr {
        if ip.is_ipv4() { NODE_V4 } else { NODE_V6 }
    }

    /// Probes from every pod to its node, in parallel: (pod key, got through), sorted by key.
    pub fn probe_pods_to_node(&self, traffic: Traffic) -> Vec<(String, bool)> {
        self.probe_each(traffic, |pod| {
            (
                pod.namespace.clone(),
                SocketAddr::new(Self::node_address(pod.ip), traffic.port),
            )
        })
    }

    /// Probes from the node to every pod, in parallel: (pod key, got through), sorted by key.
    pub fn probe_node_to_pods(&self, traffic: Traffic) -> Vec<(String, bool)> {
        self.probe_each(traffic, |pod| {
            (self.host.clone(), SocketAddr::new(pod.ip, traffic.port))
        })
    }

    fn probe_each(
        &self,
        traffic: Traffic,
        route: impl Fn(&Pod) -> (String, SocketAddr),
    ) -> Vec<(String, bool)> {
        let handles: Vec<(String, JoinHandle<bool>)> = self
            .pods
            .iter()
            .map(|pod| {
                let (namespace, target) = route(pod);
                let handle = std::thread::spawn(move || {
                    enter(&namespace);
                    (0..PROBE_TRIES).any(|_| probe(target, traffic.protocol))
                });
                (pod.key.clone(), handle)
            })
            .collect();
        let mut results: Vec<(String, bool)> = handles
            .into_iter()
            .map(|(key, handle)| (key, handle.join().expect("probe thread")))
            .collect();
        results.sort();
        results
    }

    /// (host interface, address) of every pod, from the node's host routes (the plugin routes
    /// each pod address to the pod's host interface): what the agent binds in the guard.
    pub fn bindings(&self) -> std::collections::BTreeSet<(String, IpAddr)> {
        let mut bindings = std::collections::BTreeSet::new();
        for family in ["-4", "-6"] {
            let output = std::process::Command::new("ip")
                .args(["-n", &self.host, family, "route", "show"])
                .output()
                .expect("ip route show");
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (Some(destination), Some(at)) =
                    (words.first(), words.iter().position(|w| *w == "dev"))
                else {
                    continue;
                };
                let Ok(ip) = destination.parse::<IpAddr>() else {
                    continue;
                };
                if let Some(device) = words.get(at + 1)
                    && self.pods.iter().any(|pod| pod.ip == ip)
                {
                    bindings.insert(((*device).to_owned(), ip));
                }
            }
        }
        bindings
    }

    /// The key and address of every pod.
    pub fn pods(&self) -> Vec<(String, IpAddr)> {
        self.pods
            .iter()
            .map(|pod| (pod.key.clone(), pod.ip))
            .collect()
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
        for pod in &self.pods {
            // DEL releases the address and the plugin's lock file for the attachment.
            if let Err(error) = self.plugin("DEL", pod) {
                eprintln!("DEL of {} failed: {error}", pod.key);
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &pod.namespace])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .output();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
