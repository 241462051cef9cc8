//! Host plumbing for the dataplane demo: root and tool checks, `ip`/`nft` commands, running a
//! command or a thread inside a named network namespace, and the TCP probes of the
//! connectivity matrix (only ever between namespaces the demo created).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use super::Error;

/// Why the dataplane demo cannot run here, or `None` when it can (root, `ip` and `nft`).
pub fn missing_privileges() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "the dataplane demo needs root: it creates network namespaces, veths, routes and \
             nftables tables (run `sudo make demo`)"
                .into(),
        );
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool).arg("-V").output();
        if !found.is_ok_and(|output| output.status.success()) {
            return Some(format!(
                "the dataplane demo needs `{tool}` (Debian package {package}; `make packages`)"
            ));
        }
    }
    None
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> Result<String, Error> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|error| Error::Command {
            command: args.join(" "),
            message: error.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: args.join(" "),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip -n <netns> <args>`.
pub fn ip(netns: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["ip", "-n", netns];
    all.extend_from_slice(args);
    sh(&all)
}

/// Runs `ip netns exec <netns> <args>`.
pub fn exec(netns: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["ip", "netns", "exec", netns];
    all.extend_from_slice(args);
    sh(&all)
}

/// The names `ip netns list` shows.
pub fn netns_names() -> Vec<String> {
    sh(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Makes `command` switch to the network namespace `netns` between fork and exec; the
/// returned file must stay open until the child has started.
pub fn in_netns(command: &mut Command, netns: &str) -> Result<File, Error> {
    let path = format!("/run/netns/{netns}");
    let file = File::open(&path).map_err(|source| Error::Io { what: path, source })?;
    let raw = file.as_raw_fd();
    // SAFETY: setns between fork and exec on a descriptor the parent keeps open.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Ok(file)
}

fn enter(netns: &str) -> std::io::Result<()> {
    let file = File::open(format!("/run/netns/{netns}"))?;
    // SAFETY: a valid namespace descriptor for the duration of the call.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A TCP server on `port` in `netns` (on a thread of its own, for the life of the process)
/// that answers each line with the address the connection came from.
pub fn serve_tcp(netns: &str, port: u16) -> Result<(), Error> {
    let name = netns.to_owned();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener = enter(&name).and_then(|()| TcpListener::bind(("0.0.0.0", port)));
        let listener = match listener {
            Ok(listener) => {
                let _ = ready_tx.send(Ok(()));
                listener
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
                return;
            }
        };
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map(|address| address.ip().to_string())
                    .unwrap_or_default();
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if writeln!(writer, "{peer} {line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("server thread ended")))
        .map_err(|source| Error::Io {
            what: format!("listening on TCP {port} in {netns}"),
            source,
        })
}

/// Whether a TCP connection from `netns` to `to:port` gets an answer within 700 ms.
pub fn tcp_open(netns: &str, to: Ipv4Addr, port: u16) -> bool {
    let name = netns.to_owned();
    std::thread::spawn(move || {
        enter(&name).ok()?;
        let address = SocketAddr::from((to, port));
        let timeout = Duration::from_millis(700);
        let stream = TcpStream::connect_timeout(&address, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        let mut writer = stream.try_clone().ok()?;
        writeln!(writer, "probe").ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        (!line.is_empty()).then_some(())
    })
    .join()
    .ok()
    .flatten()
    .is_some()
}

/// GET http://127.0.0.1:port/path → status code.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Read;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A free TCP port on 127.0.0.1 that no outgoing connection can take before it is bound.
pub fn free_port() -> Result<u16, Error> {
    crate::free_listen_port().map_err(|error| Error::Setup(error.to_string()))
}
