//! Namespaces, `ip` commands and traffic probes for the node-cluster tests: probes run on a
//! thread moved into the namespace, so the sockets they open live there.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fails loudly unless the test runs as root with `ip` and `nft`.
pub fn require_root_tools() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the agent tests need root (network namespaces, routes, nftables)"
    );
    for tool in ["ip", "nft"] {
        let found = Command::new(tool).arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "the agent tests need `{tool}` (Debian packages iproute2, nftables; `make packages`)"
        );
    }
}

/// Runs a command; panics with its stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Like [`sh`], for commands that may fail.
pub fn try_sh(args: &[&str]) -> Option<String> {
    let output = Command::new(args[0]).args(&args[1..]).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Moves the calling thread into a named namespace.
pub fn enter(namespace: &str) {
    let file = File::open(format!("/run/netns/{namespace}"))
        .unwrap_or_else(|e| panic!("cannot open namespace {namespace}: {e}"));
    // SAFETY: a valid namespace descriptor for the duration of the call.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(result, 0, "setns into {namespace} failed");
}

/// Runs `work` on a thread inside `namespace`.
pub fn inside<T: Send + 'static>(namespace: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let namespace = namespace.to_owned();
    std::thread::spawn(move || {
        enter(&namespace);
        work()
    })
    .join()
    .expect("namespace thread panicked")
}

/// A TCP echo server in a namespace: answers each line with the address it came from.
pub fn serve_tcp(namespace: &str, port: u16) {
    let namespace = namespace.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&namespace);
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind probe server");
        ready_tx.send(()).ok();
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let mut writer = stream.try_clone().expect("clone stream");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if writeln!(writer, "{peer} {line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    ready_rx.recv().expect("probe server started");
}

/// Connects from `namespace` to `to:port`, sends one line and returns the source address the
/// server saw; `None` when it could not connect or got no answer in time.
pub fn tcp_probe(namespace: &str, to: Ipv4Addr, port: u16) -> Option<String> {
    inside(namespace, move || {
        let address = SocketAddr::from((to, port));
        let stream = TcpStream::connect_timeout(&address, Duration::from_millis(700)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(700)))
            .ok()?;
        let mut writer = stream.try_clone().ok()?;
        writeln!(writer, "probe").ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        line.split_whitespace().next().map(str::to_owned)
    })
}

/// Like [`tcp_probe`], retried until it answers or `tries` run out (for state that converges).
pub fn tcp_probe_eventually(
    namespace: &str,
    to: Ipv4Addr,
    port: u16,
    tries: usize,
) -> Option<String> {
    for _ in 0..tries {
        if let Some(seen) = tcp_probe(namespace, to, port) {
            return Some(seen);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// A UDP sink in a namespace that records the source address of every datagram.
pub fn udp_sink(namespace: &str, port: u16) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let namespace = namespace.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&namespace);
        let socket = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp sink");
        ready_tx.send(()).ok();
        let mut buffer = [0u8; 64];
        while let Ok((_, from)) = socket.recv_from(&mut buffer) {
            record.lock().unwrap().push(from.ip().to_string());
        }
    });
    ready_rx.recv().expect("udp sink started");
    seen
}

/// Sends one UDP datagram from `namespace`.
pub fn udp_send(namespace: &str, to: Ipv4Addr, port: u16) {
    inside(namespace, move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        socket.send_to(b"probe", (to, port)).expect("udp send");
    });
}
