//! Per-interface sysctls, written through /proc/sys (which shows the namespace of the writing
//! thread).

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `value` to /proc/sys/<key with dots as slashes>; `key` parts are joined literally so
/// interface names with dots stay intact.
pub fn write(parts: &[&str], value: &str) -> Result<(), SysctlError> {
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    std::fs::write(&path, value).map_err(|source| SysctlError { path, source })
}

/// Writes `value` unless the sysctl already holds it.
pub fn ensure(parts: &[&str], value: &str) -> Result<(), SysctlError> {
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    match std::fs::read_to_string(&path) {
        Ok(current) if current.trim() == value => Ok(()),
        _ => std::fs::write(&path, value).map_err(|source| SysctlError { path, source }),
    }
}

/// Makes the host end of a pod's veth answer for the pod's gateway and forward its traffic:
/// proxy ARP with no delay, and forwarding on the interface. Forwarding is only written when the
/// new interface did not inherit it: the kernel takes the global rtnl lock for that write (and
/// retries the syscall while another plugin holds it), which costs under parallel ADDs.
pub fn configure_host_end(interface: &str) -> Result<(), SysctlError> {
    write(&["net", "ipv4", "conf", interface, "proxy_arp"], "1")?;
    write(&["net", "ipv4", "neigh", interface, "proxy_delay"], "0")?;
    ensure(&["net", "ipv4", "conf", interface, "forwarding"], "1")
}
