//! The node's kernel as the agent touches it: one handle on the network namespace it programs
//! (the agent's own on a real node; a node namespace in tests), with a netlink socket opened
//! inside it, `nft` run inside it, sysctls and the ethtool call.
//!
//! Why a handle and not "whatever namespace the process is in": the agent talks to the API
//! server from its own namespace and programs the node from the same process; keeping the two
//! apart lets one machine run several agents, each programming its own node namespace.

pub mod ethtool;
pub mod netlink;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use weft_cni::netlink::{Netlink, NetlinkError};
use weft_cni::netns;

/// Where the agent's pod mounts the host's /proc/sys/net, writable (see [`Kernel::sysctl`]).
pub const HOST_PROC_SYS: &str = "/host/proc/sys";

/// A failed kernel operation.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("nft -f -: {0}")]
    Nft(String),
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        source: std::io::Error,
    },
    #[error("ethtool {device}: {source}")]
    Ethtool {
        device: String,
        source: std::io::Error,
    },
}

/// The network namespace the agent programs.
pub struct Kernel {
    netns: Option<OwnedFd>,
    netns_path: Option<PathBuf>,
    netlink: Mutex<Netlink>,
}

impl Kernel {
    /// Opens the namespace at `netns_path` (the agent's own when `None`).
    pub fn open(netns_path: Option<&Path>) -> Result<Self, KernelError> {
        let netns = netns_path.map(netns::open).transpose()?;
        let netlink = match &netns {
            Some(fd) => netns::run_in(fd.as_fd(), Netlink::open)??,
            None => Netlink::open()?,
        };
        Ok(Self {
            netns,
            netns_path: netns_path.map(Path::to_owned),
            netlink: Mutex::new(netlink),
        })
    }

    /// The namespace path, when not the agent's own.
    pub fn netns_path(&self) -> Option<&Path> {
        self.netns_path.as_deref()
    }

    /// Runs `work` with the namespace's netlink socket.
    pub fn netlink<T>(
        &self,
        work: impl FnOnce(&mut Netlink) -> Result<T, NetlinkError>,
    ) -> Result<T, KernelError> {
        let mut netlink = self
            .netlink
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Ok(work(&mut netlink)?)
    }

    /// Runs `work` on a thread inside the namespace (for /proc/sys and ioctls, which act on the
    /// namespace of the calling thread).
    pub fn inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, KernelError> {
        match &self.netns {
            Some(fd) => Ok(netns::run_in(fd.as_fd(), work)?),
            None => Ok(work()),
        }
    }

    /// Writes a sysctl under /proc/sys (e.g. `net/ipv4/ip_forward`) when it differs.
    ///
    /// An unprivileged container's /proc/sys is read-only; the agent's pod mounts the host's
    /// /proc/sys/net writable at [`HOST_PROC_SYS`]`/net` instead, which is written when /proc/sys
    /// refuses with EROFS. Net sysctls act on the writing thread's namespace whichever mount
    /// they are reached through.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), KernelError> {
        let path = format!("/proc/sys/{key}");
        let host_path = format!("{HOST_PROC_SYS}/{key}");
        self.inside(|| {
            let current = std::fs::read_to_string(&path).map_err(|e| (path.clone(), e))?;
            if current.trim() == value {
                return Ok(());
            }
            match std::fs::write(&path, value) {
                Err(error)
                    if error.raw_os_error() == Some(libc::EROFS)
                        && Path::new(&host_path).exists() =>
                {
                    std::fs::write(&host_path, value).map_err(|e| (host_path.clone(), e))
                }
                result => result.map_err(|e| (path.clone(), e)),
            }
        })?
        .map_err(|(path, source)| KernelError::Sysctl { path, source })
    }

    /// Runs `nft -f -` inside the namespace with `script` on stdin, as one transaction.
    pub fn nft(&self, script: &str) -> Result<(), KernelError> {
        self.run_nft(&["-f", "-"], Some(script)).map(drop)
    }

    /// Checks `script` as `nft -c -f -` would run it, changing nothing.
    pub fn nft_check(&self, script: &str) -> Result<(), KernelError> {
        self.run_nft(&["-c", "-f", "-"], Some(script)).map(drop)
    }

    /// The table `inet <table>` as `nft -j list table` prints it, `None` when the table does
    /// not exist.
    pub fn nft_table_json(&self, table: &str) -> Result<Option<serde_json::Value>, KernelError> {
        match self.run_nft(&["-j", "list", "table", "inet", table], None) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|error| {
                KernelError::Nft(format!("nft -j list table inet {table}: {error}"))
            }),
            Err(KernelError::Nft(message)) if message.contains("No such file or directory") => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Runs `nft` with `args` inside the namespace, `stdin` on its standard input; returns what
    /// it printed.
    fn run_nft(&self, args: &[&str], stdin: Option<&str>) -> Result<String, KernelError> {
        let mut command = Command::new("nft");
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(fd) = &self.netns {
            let raw = fd.as_raw_fd();
            // SAFETY: between fork and exec only the async-signal-safe setns(2) runs.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::setns(raw, libc::CLONE_NEWNET) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .spawn()
            .map_err(|error| KernelError::Nft(format!("starting nft: {error}")))?;
        if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(script.as_bytes())
                .map_err(|error| KernelError::Nft(format!("writing the script: {error}")))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|error| KernelError::Nft(error.to_string()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(KernelError::Nft(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ))
        }
    }
}
