//! Files a cluster leaves on disk: the admin kubeconfig, the pid list of a detached cluster, and
//! the manifest of a kwok Node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::Error;
use crate::cluster::KWOK_NODE_ANNOTATION;
use crate::pki::PkiFiles;
use crate::process::{pid_alive, stop_pid};

const PIDS_FILE: &str = "pids";

/// Writes a kubeconfig for the admin user that points at `https://127.0.0.1:<port>`.
pub fn write_kubeconfig(path: &Path, port: u16, pki: &PkiFiles) -> Result<(), Error> {
    write_user_kubeconfig(path, port, &pki.ca_cert, &pki.admin_cert, &pki.admin_key)
}

/// Writes a kubeconfig for the user of the client certificate `cert` (key `key`).
pub fn write_user_kubeconfig(
    path: &Path,
    port: u16,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(), Error> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: weft-local
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: weft-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: weft-local
  context:
    cluster: weft-local
    user: weft-admin
current-context: weft-local
",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    );
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// The manifest of a kwok-managed Node with room for plenty of pods.
pub fn kwok_node(name: &str, labels: &BTreeMap<String, String>) -> serde_json::Value {
    let mut all_labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("type".to_string(), "kwok".to_string()),
    ]);
    all_labels.extend(labels.clone());
    let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "250"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    })
}

/// Records the pids of a detached cluster, one `name pid` per line.
pub fn write_pids(dir: &Path, pids: &[(String, u32)]) -> Result<(), Error> {
    let text: String = pids
        .iter()
        .map(|(name, pid)| format!("{name} {pid}\n"))
        .collect();
    let path = dir.join(PIDS_FILE);
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// Reads the pids of a detached cluster.
pub fn read_pids(dir: &Path) -> Result<Vec<(String, i32)>, Error> {
    let path = dir.join(PIDS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, pid) = line.split_once(' ')?;
            Some((name.to_string(), pid.trim().parse().ok()?))
        })
        .collect())
}

/// `(name, pid, alive)` of each process of a detached cluster.
pub fn detached_status(dir: &Path) -> Result<Vec<(String, i32, bool)>, Error> {
    Ok(read_pids(dir)?
        .into_iter()
        .map(|(name, pid)| (name, pid, pid_alive(pid)))
        .collect())
}

/// Stops every process of a detached cluster (newest first) and removes its directory.
/// Returns the processes that were still running.
pub fn stop_detached(dir: &Path) -> Result<Vec<String>, Error> {
    let mut stopped = Vec::new();
    for (name, pid) in read_pids(dir)?.into_iter().rev() {
        if pid_alive(pid) {
            stop_pid(pid, Duration::from_secs(10));
            stopped.push(name);
        }
    }
    std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Ok(stopped)
}

/// The default directory of a detached cluster: `$WEFT_CLUSTER_DIR`, else
/// `/tmp/weft-local-cluster`.
pub fn default_detached_dir() -> PathBuf {
    std::env::var_os("WEFT_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/weft-local-cluster"))
}
