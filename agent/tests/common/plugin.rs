//! The CNI side of the node-cluster tests: where the plugins are, the conflist the operator
//! renders, `weft-agent install-cni` for a node, and the installed `weft` plugin run inside a
//! node's namespace.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::TestNode;

/// The directory holding `weft-agent`, `weft` and `weft-ipam` (cargo builds them together).
pub fn binaries_dir() -> PathBuf {
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_weft-agent"));
    let dir = agent.parent().expect("binary directory").to_owned();
    for plugin in ["weft", "weft-ipam"] {
        assert!(
            dir.join(plugin).exists(),
            "{} is missing: build the plugins too (`cargo build -p weft-cni`; `make test` does)",
            dir.join(plugin).display()
        );
    }
    dir
}

/// Runs `command` with its network namespace switched to `netns` (a name under /run/netns)
/// between fork and exec.
pub fn in_netns(command: &mut Command, netns: &str) -> std::fs::File {
    let file = std::fs::File::open(format!("/run/netns/{netns}"))
        .unwrap_or_else(|e| panic!("namespace {netns}: {e}"));
    let raw = file.as_raw_fd();
    // SAFETY: setns between fork and exec; the descriptor stays open in the parent (the caller
    // keeps the returned file until the child has started).
    unsafe {
        command.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    file
}

/// The conflist the operator renders for the default Installation, without hostPorts: the
/// chained `portmap` comes from the agent image, which these nodes do not use (the kind suite
/// covers hostPorts on real nodes).
pub fn rendered_conflist() -> String {
    let facts = weft_operator::prepare::offline_facts();
    let spec = weft_api::InstallationSpec {
        network: Some(weft_api::NetworkSpec {
            host_ports: Some(weft_api::HostPorts::Disabled),
            ..Default::default()
        }),
        ..Default::default()
    };
    let computed = weft_api::defaults(&spec, &facts);
    weft_operator::render::conflist(&computed)
}

/// Runs `weft-agent install-cni` for a node with the operator's rendered conflist.
pub fn install_cni(node: &TestNode) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft-agent"))
        .arg("install-cni")
        .env("CNI_BIN_DIR", node.bin_dir())
        .env("CNI_CONF_DIR", node.conf_dir())
        .env("WEFT_STATE_DIR", node.state_dir())
        .env("WEFT_PLUGIN_DIR", binaries_dir())
        .env("CNI_NETWORK_CONFIG", rendered_conflist())
        .output()
        .expect("run install-cni");
    assert!(
        output.status.success(),
        "install-cni failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `weft` plugin's config as the runtime derives it from the installed conflist.
pub fn plugin_config(node: &TestNode) -> Value {
    let text = std::fs::read_to_string(node.conf_dir().join("10-weft.conflist")).expect("conflist");
    let conflist: Value = serde_json::from_str(&text).unwrap();
    let mut plugin = conflist["plugins"][0].clone();
    plugin["cniVersion"] = conflist["cniVersion"].clone();
    plugin["name"] = conflist["name"].clone();
    plugin
}

/// Runs the node's installed `weft` plugin inside the node's namespace.
pub fn cni(
    node: &TestNode,
    command: &str,
    container_id: &str,
    pod_netns: &str,
) -> Result<Value, String> {
    cni_with_args(node, command, container_id, pod_netns, "")
}

/// [`cni`] with `CNI_ARGS`, as the kubelet's runtime passes them (`K8S_POD_NAMESPACE=..;
/// K8S_POD_NAME=..`).
pub fn cni_with_args(
    node: &TestNode,
    command: &str,
    container_id: &str,
    pod_netns: &str,
    args: &str,
) -> Result<Value, String> {
    let mut process = Command::new(node.bin_dir().join("weft"));
    process
        .env_clear()
        .env("CNI_ARGS", args)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", format!("/run/netns/{pod_netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", node.bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let node_netns = in_netns(&mut process, &node.netns);
    let mut child = process.spawn().map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plugin_config(node).to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    drop(node_netns);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(serde_json::from_str(&stdout).unwrap_or(Value::Null))
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
