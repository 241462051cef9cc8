//! The CNI side of the dataplane demo: the conflist the operator rendered (ConfigMap
//! `weft-system/weft-cni-config`), `weft-agent install-cni` into a node's directories, and the
//! installed `weft` plugin run inside the node's namespace as a container runtime runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use serde_json::Value;

use super::host::in_netns;
use super::kubelet::DemoNode;
use super::{Error, api};

/// The ConfigMap and key the operator renders the conflist into.
const CONFIG_MAP: &str = "weft-cni-config";
const CONFIG_KEY: &str = "10-weft.conflist";
/// Where the host's standard plugins (`portmap`, chained for hostPorts) are found.
const HOST_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// The operator's rendered conflist, once it exists.
pub async fn rendered_conflist(client: &Client) -> Result<Option<String>, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "weft-system");
    let map = maps
        .get_opt(CONFIG_MAP)
        .await
        .map_err(api(format!("get ConfigMap weft-system/{CONFIG_MAP}")))?;
    Ok(map
        .and_then(|map| map.data)
        .and_then(|mut data| data.remove(CONFIG_KEY)))
}

/// Runs `weft-agent install-cni` for `node` with `conflist`; chained standard plugins come from
/// the host (as on a node whose agent image carries none).
pub fn install(binaries: &Path, node: &DemoNode, conflist: &str) -> Result<(), Error> {
    let bin_dir = node.bin_dir();
    std::fs::create_dir_all(&bin_dir).map_err(|source| Error::Io {
        what: bin_dir.display().to_string(),
        source,
    })?;
    let parsed: Value = serde_json::from_str(conflist)
        .map_err(|error| Error::Setup(format!("the operator's conflist: {error}")))?;
    let chained = parsed["plugins"].as_array().into_iter().flatten().skip(1);
    for plugin in chained.filter_map(|plugin| plugin["type"].as_str()) {
        if let Some(found) = HOST_PLUGIN_DIRS
            .iter()
            .map(|dir| PathBuf::from(dir).join(plugin))
            .find(|path| path.exists())
        {
            std::fs::copy(&found, bin_dir.join(plugin)).map_err(|source| Error::Io {
                what: format!("copying {}", found.display()),
                source,
            })?;
        }
    }
    let output = Command::new(binaries.join("weft-agent"))
        .arg("install-cni")
        .env("CNI_BIN_DIR", &bin_dir)
        .env("CNI_CONF_DIR", node.conf_dir())
        .env("WEFT_STATE_DIR", node.state_dir())
        .env("WEFT_PLUGIN_DIR", binaries)
        .env("CNI_NETWORK_CONFIG", conflist)
        .output()
        .map_err(|source| Error::Io {
            what: "running weft-agent install-cni".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("weft-agent install-cni for {}", node.name),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The `weft` plugin's config as the runtime derives it from the installed conflist.
fn plugin_config(node: &DemoNode) -> Result<Value, Error> {
    let path = node.conf_dir().join(CONFIG_KEY);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        what: path.display().to_string(),
        source,
    })?;
    let conflist: Value = serde_json::from_str(&text)
        .map_err(|error| Error::Setup(format!("{}: {error}", path.display())))?;
    let mut plugin = conflist["plugins"][0].clone();
    plugin["cniVersion"] = conflist["cniVersion"].clone();
    plugin["name"] = conflist["name"].clone();
    Ok(plugin)
}

/// Runs the node's installed `weft` plugin (`command` ADD or DEL) for a pod inside the node's
/// namespace; ADD's result is returned.
pub fn plugin(
    node: &DemoNode,
    command: &str,
    container_id: &str,
    pod_netns: &str,
    args: &str,
) -> Result<Value, Error> {
    let what = format!("CNI {command} of {container_id} on {}", node.name);
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
    let node_netns = in_netns(&mut process, &node.underlay.netns)?;
    let io = |source| Error::Io {
        what: what.clone(),
        source,
    };
    let mut child = process.spawn().map_err(io)?;
    let config = plugin_config(node)?.to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(config.as_bytes()).map_err(io)?;
    }
    let output = child.wait_with_output().map_err(io)?;
    drop(node_netns);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(Error::Command {
            command: what,
            message: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(serde_json::from_str(&stdout).unwrap_or(Value::Null))
}
