//! Shared set-up for the plugin tests: a private "host" namespace per test (the plugins run inside
//! it, as they would in a node's root namespace), pod namespaces, the real plugin binaries, and
//! helpers to run them and to look at interfaces and the allocation store.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weft_cni::netlink::Netlink;
use weft_cni::netns::{NamedNetns, run_in};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
pub const WEFT_IPAM: &str = env!("CARGO_BIN_EXE_weft-ipam");

/// Fails loudly unless the test runs as root (namespaces, veths and routes need it).
pub fn require_root() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "this test creates network namespaces and veth pairs: run it as root"
    );
}

/// The directory holding both plugin binaries, used as CNI_PATH.
pub fn cni_path() -> PathBuf {
    Path::new(WEFT_IPAM)
        .parent()
        .expect("binary has a directory")
        .to_owned()
}

/// One test's world: a host namespace, a data dir and a network config.
pub struct Bed {
    pub tag: String,
    pub host: NamedNetns,
    pub data_dir: tempfile::TempDir,
    pub config: Value,
    /// The host namespace's own address (on lo), the source of connections to pods.
    pub host_address: Ipv4Addr,
}

/// What a plugin call returned.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout {:?} is not JSON: {error}", self.stdout))
    }

    /// The CNI error code; panics when the call succeeded.
    pub fn code(&self) -> u64 {
        assert!(
            !self.success,
            "expected a failure, got success with {:?}",
            self.stdout
        );
        self.json()["code"].as_u64().expect("error has a code")
    }

    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_owned()
    }

    pub fn expect_ok(self) -> Self {
        assert!(self.success, "plugin call failed: {}", self.stdout);
        self
    }
}

impl Bed {
    /// `tag` must be unique among all tests (it names namespaces and the network); `subnet` is
    /// the host-local range, inside 10.88.0.0/16 and unique per test.
    pub fn new(tag: &str, subnet: &str) -> Self {
        require_root();
        let host = NamedNetns::create(&format!("wc-{tag}-host")).expect("create host namespace");
        let host_address = Ipv4Addr::new(10, 88, 255, 254);
        run_in(host.fd(), || {
            let mut netlink = Netlink::open().unwrap();
            let lo = netlink.link_by_name("lo").unwrap().unwrap();
            netlink.set_link_up(lo.index, true).unwrap();
            netlink
                .add_address(lo.index, format!("{host_address}/32").parse().unwrap())
                .unwrap();
        })
        .unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let config = json!({
            "cniVersion": "1.1.0",
            "name": format!("wc-{tag}"),
            "type": "weft",
            "mtu": 1450,
            "ipam": {
                "type": "weft-ipam",
                "ranges": [[{"subnet": subnet}]],
                "dataDir": data_dir.path().to_str().unwrap(),
            }
        });
        Self {
            tag: tag.to_owned(),
            host,
            data_dir,
            config,
            host_address,
        }
    }

    pub fn pod(&self, index: usize) -> NamedNetns {
        let name = format!("wc-{}-{index}", self.tag);
        NamedNetns::create(&name).unwrap_or_else(|error| panic!("create {name}: {error}"))
    }

    pub fn container_id(&self, index: usize) -> String {
        format!("{}-container-{index}", self.tag)
    }

    /// Runs `binary` inside the host namespace with the CNI environment and `stdin`.
    pub fn spawn(&self, binary: &str, env: &[(&str, &str)], stdin: &[u8]) -> Child {
        let host_fd = self.host.fd().as_raw_fd();
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("CNI_PATH", cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        // SAFETY: setns is async-signal-safe and the fd stays open in the parent for the call.
        unsafe {
            command.pre_exec(move || {
                nix::sched::setns(
                    BorrowedFd::borrow_raw(host_fd),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )
                .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("spawn plugin");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child
    }

    pub fn run(&self, binary: &str, env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let output = self.spawn(binary, env, stdin).wait_with_output().unwrap();
        Outcome {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    /// Runs `weft` for one attachment with the bed's config (plus `extra` top-level fields).
    pub fn call(
        &self,
        command: &str,
        container: &str,
        netns: Option<&Path>,
        extra: Value,
    ) -> Outcome {
        let mut config = self.config.clone();
        if let Value::Object(fields) = extra {
            for (key, value) in fields {
                config[key] = value;
            }
        }
        let netns = netns
            .map(|path| path.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container),
            ("CNI_IFNAME", "eth0"),
        ];
        if !netns.is_empty() {
            env.push(("CNI_NETNS", &netns));
        }
        self.run(WEFT, &env, config.to_string().as_bytes())
    }

    /// The records of the allocation store, as (ip, container id) pairs.
    pub fn allocations(&self) -> Vec<(IpAddr, String)> {
        let dir = self.data_dir.path().join(format!("wc-{}", self.tag));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut records: Vec<(IpAddr, String)> = entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let mut parts = name.splitn(3, '~');
                Some((parts.next()?.parse().ok()?, parts.next()?.to_owned()))
            })
            .collect();
        records.sort();
        records
    }

    /// Runs `work` with a netlink socket in the host namespace.
    pub fn on_host<T: Send>(&self, work: impl FnOnce(&mut Netlink) -> T + Send) -> T {
        run_in(self.host.fd(), || work(&mut Netlink::open().unwrap())).unwrap()
    }
}

/// Runs `work` with a netlink socket inside `netns`.
pub fn in_pod<T: Send>(netns: &NamedNetns, work: impl FnOnce(&mut Netlink) -> T + Send) -> T {
    run_in(netns.fd(), || work(&mut Netlink::open().unwrap())).unwrap()
}

/// The pod address of an ADD result.
pub fn pod_ip(result: &Value) -> IpAddr {
    let address = result["ips"][0]["address"]
        .as_str()
        .expect("result has an address");
    address.split('/').next().unwrap().parse().unwrap()
}

/// Proves the pod answers at `ip`: a listener inside the pod, a TCP connection from the host
/// namespace, and the pod seeing the host's address as the peer.
pub fn assert_reachable_from_host(bed: &Bed, pod: &NamedNetns, ip: IpAddr) {
    let listener = run_in(pod.fd(), || TcpListener::bind(("0.0.0.0", 8080)))
        .unwrap()
        .unwrap();
    let target = SocketAddr::new(ip, 8080);
    let stream = run_in(bed.host.fd(), || {
        TcpStream::connect_timeout(&target, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap_or_else(|error| panic!("host cannot reach pod {ip}: {error}"));
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(bed.host_address));
    drop(stream);
}
