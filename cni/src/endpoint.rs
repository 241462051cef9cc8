//! Endpoint records: what ADD tells the node agent about a pod it has just wired, so the agent
//! can program the pod's policy without waiting for the kubelet to post the pod's IP.
//!
//! One JSON file per attachment in the endpoint directory (`endpointDir` of the plugin config,
//! set by install-cni), named after the host interface: the pod's namespace and name (from
//! `CNI_ARGS`, when the runtime passes them), the attachment, the host interface and the
//! addresses. Written to a temporary name and renamed, so the agent reads a whole record or
//! none; DEL removes it.
//!
//! The same directory holds the guard marker: the agent writes it once the node's policy table
//! with its workload guard is in the kernel, with the boot it was installed in. ADD refuses to
//! wire a pod while the marker is missing or from an earlier boot (the runtime retries), so no
//! pod ever runs on a node whose table does not yet drop unprogrammed workloads.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The guard marker's file name.
pub const GUARD_MARKER: &str = ".guard";
const TEMPORARY_PREFIX: &str = ".tmp-";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One wired attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRecord {
    pub host_interface: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub ips: Vec<IpAddr>,
}

/// A failed read or write of the endpoint directory.
#[derive(Debug, thiserror::Error)]
#[error("endpoint directory {path}: {step}: {source}")]
pub struct EndpointError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

fn fail<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> EndpointError + 'a {
    move |source| EndpointError {
        path: path.to_owned(),
        step,
        source,
    }
}

/// The pod's namespace and name from `CNI_ARGS` (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`).
pub fn pod_from_args(args: &str) -> (Option<String>, Option<String>) {
    let mut namespace = None;
    let mut name = None;
    for pair in args.split(';') {
        match pair.split_once('=') {
            Some(("K8S_POD_NAMESPACE", value)) if !value.is_empty() => {
                namespace = Some(value.to_owned());
            }
            Some(("K8S_POD_NAME", value)) if !value.is_empty() => name = Some(value.to_owned()),
            _ => {}
        }
    }
    (namespace, name)
}

/// Writes (or replaces) the record of `record.host_interface`.
pub fn write(dir: &Path, record: &EndpointRecord) -> Result<(), EndpointError> {
    std::fs::create_dir_all(dir).map_err(fail(dir, "create directory"))?;
    let path = dir.join(&record.host_interface);
    let temporary = dir.join(format!(
        "{TEMPORARY_PREFIX}{}-{}",
        record.host_interface,
        std::process::id()
    ));
    let text = serde_json::to_vec(record).map_err(|error| EndpointError {
        path: path.clone(),
        step: "encode record",
        source: io::Error::other(error),
    })?;
    std::fs::write(&temporary, text).map_err(fail(&temporary, "write record"))?;
    std::fs::rename(&temporary, &path).map_err(fail(&path, "commit record"))
}

/// Removes the record of `host_interface`; one already gone is fine.
pub fn remove(dir: &Path, host_interface: &str) -> Result<(), EndpointError> {
    let path = dir.join(host_interface);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(fail(&path, "remove record")(error))
        }
        _ => Ok(()),
    }
}

/// Reads one record by file name: `Ok(None)` for what is not a record (the marker, temporary
/// files, a file gone meanwhile), an error for a record that does not parse.
pub fn read(dir: &Path, file_name: &str) -> Result<Option<EndpointRecord>, EndpointError> {
    if file_name.starts_with('.') {
        return Ok(None);
    }
    let path = dir.join(file_name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(fail(&path, "read record")(error)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| EndpointError {
            path,
            step: "parse record",
            source: io::Error::new(io::ErrorKind::InvalidData, error),
        })
}

fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

/// Records that the guard is in the kernel for this boot.
pub fn mark_guarded(dir: &Path) -> Result<(), EndpointError> {
    std::fs::create_dir_all(dir).map_err(fail(dir, "create directory"))?;
    let path = dir.join(GUARD_MARKER);
    if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == boot_id()) {
        return Ok(());
    }
    let temporary = dir.join(format!("{TEMPORARY_PREFIX}guard-{}", std::process::id()));
    std::fs::write(&temporary, boot_id()).map_err(fail(&temporary, "write guard marker"))?;
    std::fs::rename(&temporary, &path).map_err(fail(&path, "commit guard marker"))
}

/// Whether the agent has installed the guard since this boot.
pub fn is_guarded(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(GUARD_MARKER)).is_ok_and(|text| text.trim() == boot_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_come_from_cni_args() {
        assert_eq!(
            pod_from_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;X=y"),
            (Some("ns".into()), Some("web-0".into()))
        );
        assert_eq!(pod_from_args(""), (None, None));
        assert_eq!(pod_from_args("K8S_POD_NAME="), (None, None));
    }

    #[test]
    fn records_round_trip_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let record = EndpointRecord {
            host_interface: "weft0123456789a".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            namespace: Some("ns".into()),
            name: Some("p".into()),
            ips: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        };
        write(dir.path(), &record).unwrap();
        assert_eq!(
            read(dir.path(), "weft0123456789a").unwrap(),
            Some(record.clone())
        );
        assert_eq!(read(dir.path(), GUARD_MARKER).unwrap(), None);
        std::fs::write(dir.path().join("broken"), "{").unwrap();
        assert!(read(dir.path(), "broken").is_err());
        remove(dir.path(), "weft0123456789a").unwrap();
        remove(dir.path(), "weft0123456789a").unwrap();
        assert_eq!(read(dir.path(), "weft0123456789a").unwrap(), None);
    }

    #[test]
    fn the_guard_marker_holds_for_this_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_guarded(dir.path()));
        mark_guarded(dir.path()).unwrap();
        assert!(is_guarded(dir.path()));
        std::fs::write(dir.path().join(GUARD_MARKER), "an-earlier-boot").unwrap();
        assert!(!is_guarded(dir.path()));
    }
}
