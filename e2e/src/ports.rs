//! Free loopback ports for the control-plane processes.

use std::net::TcpListener;

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
    /// Asks the kernel for six distinct free ports on 127.0.0.1. All listeners are held until
    /// every port is known, so the six differ; another process could still take one before the
    /// control plane binds it, which then fails loudly at start-up.
    pub fn allocate() -> Result<Self, Error> {
        let listeners = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Start("port allocation".into(), e.to_string()))?;
        let port = |i: usize| {
            listeners[i]
                .local_addr()
                .map(|a| a.port())
                .unwrap_or_default()
        };
        Ok(Self {
            etcd_client: port(0),
            etcd_peer: port(1),
            apiserver: port(2),
            controller_manager: port(3),
            scheduler: port(4),
            kwok: port(5),
        })
    }
}
