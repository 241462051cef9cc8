//! Free loopback ports for the processes the tests and the demo start.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Error;

/// One port per listening process.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
    pub kwok: u16,
}

impl Ports {
    /// Six distinct ports from [`free_listen_port`].
    pub fn allocate() -> Result<Self, Error> {
        Ok(Self {
            etcd_client: free_listen_port()?,
            etcd_peer: free_listen_port()?,
            apiserver: free_listen_port()?,
            controller_manager: free_listen_port()?,
            scheduler: free_listen_port()?,
            kwok: free_listen_port()?,
        })
    }
}

/// The ports handed out lie in `FIRST..FIRST + COUNT`, below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768–60999 by default).
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A port on 127.0.0.1 that is free now and lies below the kernel's ephemeral range. A port
/// from `bind(:0)` comes from that range, which every outgoing connection draws its local port
/// from too, so one of the many connections to the API server could take it before the process
/// it was meant for binds it ("Address already in use"). Ports differ within this process;
/// another process could still take one, which then fails loudly at that process's start.
pub fn free_listen_port() -> Result<u16, Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes start at different places in the range.
    let start = std::process::id().wrapping_mul(7_919) % COUNT;
    for _ in 0..COUNT {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(FIRST + offset).expect("ports below 32,000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Start(
        "port allocation".into(),
        format!("no free port on 127.0.0.1 in {FIRST}..{}", FIRST + COUNT),
    ))
}
