//! Validation of an Installation beyond what the API server's schema and CEL rules can express:
//! pool node selectors (weft selector syntax), the workloads' placement and update strategy
//! (`validate/placement.rs`), pools against the cluster's Service CIDRs and node
//! addresses, and provider/CNI/IPAM combinations. The schema rules on pools (CIDR form, block
//! size, uniqueness, overlap) are checked again here so offline rendering, which has no API
//! server, refuses the same input. [`validate`] (an Installation) and [`validate_ip_pool`] (a
//! standalone IPPool) are pure and report every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Toleration;
use weft_api::installation::NODE_HEALTH_PORT;
use weft_api::ippool::{BLOCK_SIZE_RANGE_V4, DEFAULT_BLOCK_SIZE_V4};
use weft_api::{
    CniType, ComputedInstallation, ComputedIpPool, InstallationSpec, IpPoolSpec, IpamType,
    KubernetesProvider,
};
use weft_selector::Selector;

/// What the cluster's own networks are, as far as the operator could learn them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterNetworks {
    /// Service CIDRs (from the cluster's ServiceCIDR objects, or its configuration).
    pub service_cidrs: Vec<IpNet>,
    /// Node addresses (InternalIP and ExternalIP of every node).
    pub node_addresses: Vec<IpAddr>,
}

/// One invalid field: its path in the Installation and what is wrong / allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in an Installation, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(FieldError::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl ValidationErrors {
    /// The problems reported for `field` (exact path).
    pub fn for_field(&self, field: &str) -> impl Iterator<Item = &FieldError> {
        self.0.iter().filter(move |e| e.field == field)
    }
}

/// Checks `spec` and what defaulting made of it (`computed`, so a default pool is checked too)
/// against `cluster`. Ok when nothing is wrong, else every problem found.
pub fn validate(
    spec: &InstallationSpec,
    computed: &ComputedInstallation,
    cluster: &ClusterNetworks,
) -> Result<(), ValidationErrors> {
    let mut errors = Errors::default();
    check_provider_and_cni(spec, computed, &mut errors);
    check_tolerations(
        "spec.controlPlaneTolerations",
        spec.control_plane_tolerations.as_deref(),
        &mut errors,
    );
    placement::check_node_update_strategy(computed, &mut errors);
    placement::check_placement(spec, &mut errors);
    check_component_resources(spec, &mut errors);
    check_node_metrics_port(spec, &mut errors);
    let pools = spec_pools(spec, computed);
    check_pools(&pools, &mut errors);
    check_pools_against_cluster(&pools, cluster, &mut errors);
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors.0))
    }
}

/// Checks a standalone IPPool object `name` (one not listed in the Installation): its node
/// selector, CIDR and block size, no overlap with `other_pools` (name, CIDR), and not over the
/// cluster's Service CIDRs or node addresses. Fields are reported as `spec.<field>`.
pub fn validate_ip_pool(
    name: &str,
    spec: &IpPoolSpec,
    other_pools: &[(String, IpNet)],
    cluster: &ClusterNetworks,
) -> Result<(), ValidationErrors> {
    let pool = ComputedIpPool {
        name: name.to_owned(),
        cidr: spec.cidr.clone(),
        block_size: spec.block_size_or_default(),
        node_selector: spec.node_selector_or_default().to_owned(),
        ..Default::default()
    };
    let pools = [PoolToCheck {
        path: "spec".into(),
        written: true,
        pool: &pool,
    }];
    let mut errors = Errors::default();
    check_pools(&pools, &mut errors);
    if let Ok(cidr) = spec.cidr.parse::<IpNet>() {
        for (other_name, other) in other_pools.iter().filter(|(n, _)| n != name) {
            if cidr.contains(other) || other.contains(&cidr) {
                errors.add(
                    "spec.cidr",
                    format!(
                        "{cidr} overlaps IPPool {other_name} ({other}); pools must not overlap"
                    ),
                );
            }
        }
    }
    check_pools_against_cluster(&pools, cluster, &mut errors);
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors.0))
    }
}

#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// A pool to check, with the path its fields are reported under.
struct PoolToCheck<'a> {
    path: String,
    /// Whether the admin wrote it (else it is the default pool).
    written: bool,
    pool: &'a ComputedIpPool,
}

fn spec_pools<'a>(
    spec: &InstallationSpec,
    computed: &'a ComputedInstallation,
) -> Vec<PoolToCheck<'a>> {
    let written = spec
        .network
        .as_ref()
        .and_then(|n| n.ip_pools.as_ref())
        .is_some();
    computed
        .network
        .ip_pools
        .iter()
        .enumerate()
        .map(|(index, pool)| PoolToCheck {
            path: if written {
                format!("spec.network.ipPools[{index}]")
            } else {
                "spec.network.ipPools".into()
            },
            written,
            pool,
        })
        .collect()
}

fn check_provider_and_cni(
    spec: &InstallationSpec,
    computed: &ComputedInstallation,
    errors: &mut Errors,
) {
    let cni = &computed.cni;
    if cni.cni_type == CniType::External && cni.ipam_type == IpamType::Weft {
        errors.add(
            "spec.cni.ipam.type",
            "Weft IPAM assigns addresses only when weft does pod networking (cni.type Weft); with cni.type External use HostLocal or leave it unset",
        );
    }
    let pools_written = spec
        .network
        .as_ref()
        .and_then(|n| n.ip_pools.as_ref())
        .is_some_and(|p| !p.is_empty());
    if pools_written && (cni.cni_type != CniType::Weft || cni.ipam_type != IpamType::Weft) {
        errors.add(
            "spec.network.ipPools",
            "IP pools are used only with cni.type Weft and cni.ipam.type Weft; remove them or switch both to Weft",
        );
    }
    if computed.kubernetes_provider == KubernetesProvider::Gke && cni.cni_type == CniType::Weft {
        errors.add(
            "spec.cni.type",
            "on GKE the platform's CNI does pod networking; set cni.type External (weft then enforces network policy only)",
        );
    }
}

/// The rules the API server applies to the tolerations of a pod, for a list at `field`.
fn check_tolerations(field: &str, tolerations: Option<&[Toleration]>, errors: &mut Errors) {
    for (index, toleration) in tolerations.into_iter().flatten().enumerate() {
        let path = format!("{field}[{index}]");
        let operator = toleration.operator.as_deref().unwrap_or("Equal");
        match operator {
            "Exists" if toleration.value.as_deref().is_some_and(|v| !v.is_empty()) => errors.add(
                format!("{path}.value"),
                "must be empty when operator is Exists",
            ),
            "Exists" | "Equal" => {}
            other => errors.add(
                format!("{path}.operator"),
                format!("{other:?} is not allowed: use Exists or Equal"),
            ),
        }
        if let Some(effect) = toleration.effect.as_deref()
            && !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errors.add(
                format!("{path}.effect"),
                format!("{effect:?} is not allowed: use NoSchedule, PreferNoSchedule or NoExecute"),
            );
        }
        if toleration.key.as_deref().unwrap_or_default().is_empty() && operator != "Exists" {
            errors.add(
                format!("{path}.operator"),
                "must be Exists when key is empty",
            );
        }
    }
}

fn check_component_resources(spec: &InstallationSpec, errors: &mut Errors) {
    let resources = spec.component_resources.as_deref().unwrap_or_default();
    for (index, resource) in resources.iter().enumerate() {
        let first = resources
            .iter()
            .position(|r| r.component_name == resource.component_name);
        if let Some(first) = first.filter(|first| *first < index) {
            errors.add(
                format!("spec.componentResources[{index}].componentName"),
                format!(
                    "{:?} is already listed at componentResources[{first}]",
                    resource.component_name
                ),
            );
        }
    }
}

/// The same rules as the schema's, so offline rendering refuses the same ports.
fn check_node_metrics_port(spec: &InstallationSpec, errors: &mut Errors) {
    let Some(port) = spec.node_metrics_port else {
        return;
    };
    if !(1..=65535).contains(&port) {
        errors.add(
            "spec.nodeMetricsPort",
            format!("{port} is not a port: allowed are 1 to 65535"),
        );
    } else if port == NODE_HEALTH_PORT {
        errors.add(
            "spec.nodeMetricsPort",
            format!("{port} is the node agent's health port: choose another port"),
        );
    }
}

fn check_pools(pools: &[PoolToCheck<'_>], errors: &mut Errors) {
    let mut parsed: Vec<(usize, IpNet)> = Vec::new();
    let mut names = BTreeMap::new();
    for (index, check) in pools.iter().enumerate() {
        let PoolToCheck { path, pool, .. } = check;
        if let Some(first) = names.insert(pool.name.as_str(), index) {
            errors.add(
                format!("{path}.name"),
                format!("{:?} is already used by ipPools[{first}]", pool.name),
            );
        }
        if let Err(error) = Selector::parse(&pool.node_selector) {
            errors.add(
                format!("{path}.nodeSelector"),
                format!(
                    "{:?} is not a valid selector ({error}); allowed: weft selector syntax such as all() or zone == 'a'",
                    pool.node_selector
                ),
            );
        }
        match pool.cidr.parse::<IpNet>() {
            Err(_) => errors.add(
                format!("{path}.cidr"),
                format!("{:?} must be a CIDR such as 10.244.0.0/16", pool.cidr),
            ),
            Ok(IpNet::V6(_)) => {
                errors.add(format!("{path}.cidr"), "IPv6 pools are not supported yet")
            }
            Ok(cidr) if cidr.trunc() != cidr => errors.add(
                format!("{path}.cidr"),
                format!(
                    "{cidr} has host bits set; use the network address {}",
                    cidr.trunc()
                ),
            ),
            Ok(cidr) => {
                check_block_size(path, pool.block_size, cidr, errors);
                parsed.push((index, cidr));
            }
        }
    }
    for (i, (a_index, a)) in parsed.iter().enumerate() {
        for (b_index, b) in &parsed[i + 1..] {
            if a.contains(b) || b.contains(a) {
                errors.add(
                    format!("{}.cidr", pools[*b_index].path),
                    format!("{b} overlaps ipPools[{a_index}] ({a}); pools must not overlap"),
                );
            }
        }
    }
}

fn check_block_size(path: &str, block_size: i32, cidr: IpNet, errors: &mut Errors) {
    if !BLOCK_SIZE_RANGE_V4.contains(&block_size) {
        errors.add(
            format!("{path}.blockSize"),
            format!("{block_size} is out of range: an IPv4 pool's blockSize must be between 20 and 32 (default {DEFAULT_BLOCK_SIZE_V4})"),
        );
    } else if block_size < i32::from(cidr.prefix_len()) {
        errors.add(
            format!("{path}.blockSize"),
            format!("{block_size} is smaller than the pool's prefix length /{}: a block cannot be larger than its pool", cidr.prefix_len()),
        );
    }
}

fn check_pools_against_cluster(
    pools: &[PoolToCheck<'_>],
    cluster: &ClusterNetworks,
    errors: &mut Errors,
) {
    for PoolToCheck {
        path,
        written,
        pool,
    } in pools
    {
        let Ok(cidr) = pool.cidr.parse::<IpNet>() else {
            continue;
        };
        let (field, subject) = if *written {
            (format!("{path}.cidr"), format!("{cidr}"))
        } else {
            (path.clone(), format!("the default pool {cidr}"))
        };
        let fix = if *written {
            "choose a free range"
        } else {
            "set spec.network.ipPools with a free range"
        };
        for service in &cluster.service_cidrs {
            if cidr.contains(service) || service.contains(&cidr) {
                errors.add(
                    field.clone(),
                    format!("{subject} overlaps the cluster's Service CIDR {service}; {fix}"),
                );
            }
        }
        let inside: Vec<String> = cluster
            .node_addresses
            .iter()
            .filter(|a| cidr.contains(*a))
            .map(IpAddr::to_string)
            .collect();
        if !inside.is_empty() {
            errors.add(
                field,
                format!(
                    "{subject} contains node address(es) {}; {fix}",
                    inside.join(", ")
                ),
            );
        }
    }
}

mod placement;
#[cfg(test)]
mod tests;
