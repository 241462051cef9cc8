//! IPPools rendered from `network.ipPools`. They carry the managed-by label but no owner reference:
//! pools outlive the Installation on purpose, since running pods hold addresses from them.

use kube::api::ObjectMeta;
use weft_api::{ComputedInstallation, ComputedIpPool, IpPool, IpPoolSpec};

use crate::labels::standard_labels;

/// The IPPool spec the operator wants for one computed pool.
pub fn pool_spec(pool: &ComputedIpPool) -> IpPoolSpec {
    IpPoolSpec {
        cidr: pool.cidr.clone(),
        block_size: Some(pool.block_size),
        encapsulation: Some(pool.encapsulation),
        nat_outgoing: Some(pool.nat_outgoing),
        node_selector: Some(pool.node_selector.clone()),
        disabled: Some(pool.disable_new_allocations),
    }
}

pub fn ip_pools(computed: &ComputedInstallation) -> Vec<IpPool> {
    computed
        .network
        .ip_pools
        .iter()
        .map(|pool| IpPool {
            metadata: ObjectMeta {
                name: Some(pool.name.clone()),
                labels: Some(standard_labels(&pool.name, "ip-pool")),
                ..Default::default()
            },
            spec: pool_spec(pool),
            status: None,
        })
        .collect()
}
