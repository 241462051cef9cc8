//! ConfigMap `weft-cni-config`: the CNI network configuration list the node agent's `install-cni`
//! step writes into the host's CNI config directory. Plugin `weft` (pod interface, MTU) with
//! IPAM `weft-ipam`: `"mode": "pool"` takes addresses from the node's IP pool blocks,
//! `"mode": "host-local"` from the node's `spec.podCIDR`; with `hostPorts: Enabled` the standard
//! `portmap` plugin is chained after it (the agent image carries it and install-cni installs
//! it). Every field here is one the plugins read; install-cni adds only the paths of the node's
//! state (node state file, allocation store), which default to /var/lib/weft on a node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use weft_api::{ComputedInstallation, HostPorts, IpamType};

use super::Meta;

pub const CNI_CONFIG_NAME: &str = "weft-cni-config";
/// The ConfigMap key holding the conflist, also its file name on the host.
pub const CNI_CONFIG_KEY: &str = "10-weft.conflist";
fn ipam(ipam_type: IpamType) -> Value {
    match ipam_type {
        IpamType::Weft => json!({"type": "weft-ipam", "mode": "pool"}),
        IpamType::HostLocal => {
            json!({"type": "weft-ipam", "mode": "host-local", "subnet": "usePodCidr"})
        }
    }
}

/// The conflist as pretty JSON (keys sorted, so the text and its hash are stable). `mtu` is
/// present only when the Installation sets one; without it the plugin takes the MTU the node
/// agent detects (host MTU minus encapsulation overhead) from the node state file at each ADD,
/// so an interface or pool change reaches new pods without rewriting the conflist.
pub fn conflist(computed: &ComputedInstallation) -> String {
    let mut plugin = json!({
        "type": "weft",
        "ipam": ipam(computed.cni.ipam_type),
    });
    if let (Some(mtu), Some(fields)) = (computed.network.mtu, plugin.as_object_mut()) {
        fields.insert("mtu".into(), json!(mtu));
    }
    let mut plugins = vec![plugin];
    if computed.network.host_ports == HostPorts::Enabled {
        // SNAT makes a hostPort reachable from the node itself (localhost and its own address).
        plugins.push(json!({
            "type": "portmap",
            "snat": true,
            "capabilities": {"portMappings": true},
        }));
    }
    let config = json!({
        "cniVersion": "1.1.0",
        "name": "weft",
        "plugins": plugins,
    });
    // A json! value always serializes.
    serde_json::to_string_pretty(&config).unwrap_or_default() + "\n"
}

pub fn config_map(meta: &Meta, computed: &ComputedInstallation) -> ConfigMap {
    ConfigMap {
        metadata: meta.namespaced(CNI_CONFIG_NAME, "cni"),
        data: Some(BTreeMap::from([(
            CNI_CONFIG_KEY.to_owned(),
            conflist(computed),
        )])),
        ..Default::default()
    }
}
