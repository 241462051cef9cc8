//! What the agent tells the cluster about its node: the annotations peers route by (address,
//! VTEP MAC, MTU) and, once the dataplane is programmed, the NetworkUnavailable=False condition
//! the scheduler and users wait for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use weft_cni::naming::format_mac;

use crate::view::annotations;

/// The field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "weft-agent";

/// The annotations this node publishes.
pub fn desired_annotations(
    address: &ipnet::Ipv4Net,
    vxlan_mac: Option<&[u8; 6]>,
    mtu: u32,
) -> BTreeMap<String, String> {
    let mut wanted = BTreeMap::from([
        (annotations::ADDRESS.to_owned(), address.to_string()),
        (annotations::MTU.to_owned(), mtu.to_string()),
    ]);
    if let Some(mac) = vxlan_mac {
        wanted.insert(annotations::VXLAN_MAC.to_owned(), format_mac(mac));
    }
    wanted
}

/// Writes the annotations (merge patch; other annotations are untouched). A key weft no
/// longer publishes (the VXLAN MAC when no pool encapsulates) is removed.
pub async fn publish(
    client: &Client,
    node: &str,
    wanted: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let mut values = serde_json::Map::new();
    for key in [
        annotations::ADDRESS,
        annotations::VXLAN_MAC,
        annotations::MTU,
    ] {
        values.insert(
            key.to_owned(),
            wanted
                .get(key)
                .map_or(serde_json::Value::Null, |v| json!(v)),
        );
    }
    let patch = json!({"metadata": {"annotations": values}});
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// Sets NetworkUnavailable=False (reason WeftIsUp) on the node's status.
pub async fn set_network_available(client: &Client, node: &str) -> Result<(), kube::Error> {
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{
        "type": "NetworkUnavailable",
        "status": "False",
        "reason": "WeftIsUp",
        "message": "weft-agent programmed this node's pod network",
        "lastTransitionTime": now,
        "lastHeartbeatTime": now,
    }]}});
    Api::<Node>::all(client.clone())
        .patch_status(node, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(drop)
}
