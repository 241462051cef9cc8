//! The `weft-ipam` config (the `ipam` object of the network config): where addresses come from —
//! explicit host-local `ranges`, the node's podCIDR (`"subnet": "usePodCidr"`), or the pool blocks
//! this node holds (`"mode": "pool"`) — and where allocations are stored.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::range::{Range, RangeSet};
use crate::config::{
    CommonConf, absolute_path, json_kind, optional_object, optional_str, parse_object, required_str,
};
use crate::error::{CniError, code};
use crate::node_state::{DEFAULT_NODE_STATE_FILE, NodeState};
use crate::result::RouteConfig;

/// Where allocations are stored unless `ipam.dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/weft/ipam";

/// Where the addresses of one call come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// Explicit ranges, one address per range set.
    Ranges(Vec<RangeSet>),
    /// The node's podCIDRs from the node state file, one address per podCIDR.
    PodCidr { node_state_file: PathBuf },
    /// The pool blocks this node holds (node state file), one address per address family.
    Pool { node_state_file: PathBuf },
}

/// The validated IPAM config.
#[derive(Debug, Clone)]
pub struct IpamConf {
    pub common: CommonConf,
    pub data_dir: PathBuf,
    pub source: AddressSource,
    pub routes: Vec<RouteConfig>,
}

impl IpamConf {
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let map = parse_object(bytes)?;
        let common = CommonConf::parse(&map)?;
        let ipam = optional_object(&map, "ipam", "ipam")?.ok_or_else(|| {
            CniError::invalid_config("ipam: required, an object with \"type\": \"weft-ipam\"")
        })?;
        let data_dir = absolute_path(ipam, "dataDir", "ipam.dataDir", DEFAULT_DATA_DIR)?;
        let node_state_file = absolute_path(
            ipam,
            "nodeStateFile",
            "ipam.nodeStateFile",
            DEFAULT_NODE_STATE_FILE,
        )?;
        let source = match optional_str(ipam, "mode", "ipam.mode")?.unwrap_or("host-local") {
            "host-local" => host_local_source(ipam, node_state_file)?,
            "pool" => {
                if ipam.contains_key("ranges") || ipam.contains_key("subnet") {
                    return Err(CniError::invalid_config(
                        "ipam.mode: \"pool\" takes addresses from the node's blocks; remove ipam.ranges and ipam.subnet",
                    ));
                }
                AddressSource::Pool { node_state_file }
            }
            other => {
                return Err(CniError::invalid_config(format!(
                    "ipam.mode: {other:?} is not allowed; allowed: \"host-local\" (default), \"pool\""
                )));
            }
        };
        let routes = parse_routes(ipam)?;
        Ok(Self {
            common,
            data_dir,
            source,
            routes,
        })
    }

    /// The range sets to allocate from now (reads the node state file in podCIDR and pool mode).
    pub fn range_sets(&self) -> Result<Vec<RangeSet>, CniError> {
        match &self.source {
            AddressSource::Ranges(sets) => Ok(sets.clone()),
            AddressSource::PodCidr { node_state_file } => {
                let state = read_node_state(node_state_file)?;
                if state.pod_cidrs.is_empty() {
                    return Err(CniError::new(
                        code::NODE_STATE,
                        format!(
                            "node state file {}: podCIDRs is empty; the node has no podCIDR yet",
                            node_state_file.display()
                        ),
                    ));
                }
                state
                    .pod_cidrs
                    .iter()
                    .map(|cidr| {
                        Range::host_local(cidr.trunc())
                            .map(|range| vec![range])
                            .ok_or_else(|| {
                                CniError::new(
                                    code::NODE_STATE,
                                    format!("podCIDR {cidr} has no assignable address"),
                                )
                            })
                    })
                    .collect()
            }
            AddressSource::Pool { node_state_file } => {
                let state = read_node_state(node_state_file)?;
                if state.blocks.is_empty() {
                    return Err(CniError::new(
                        code::NO_FREE_ADDRESS,
                        format!(
                            "no free address in the node's pool blocks: node state file {} lists no block",
                            node_state_file.display()
                        ),
                    ));
                }
                let (v6, v4): (Vec<_>, Vec<_>) = state
                    .blocks
                    .iter()
                    .map(|block| Range::whole_block(block.trunc()))
                    .partition(Range::is_ipv6);
                Ok([v4, v6].into_iter().filter(|set| !set.is_empty()).collect())
            }
        }
    }
}

fn read_node_state(path: &std::path::Path) -> Result<NodeState, CniError> {
    NodeState::read(path).map_err(|error| CniError::new(code::NODE_STATE, error.to_string()))
}

fn host_local_source(
    ipam: &Map<String, Value>,
    node_state_file: PathBuf,
) -> Result<AddressSource, CniError> {
    match (
        ipam.get("ranges"),
        optional_str(ipam, "subnet", "ipam.subnet")?,
    ) {
        (Some(_), Some(_)) => Err(CniError::invalid_config(
            "ipam: set either ipam.ranges or ipam.subnet, not both",
        )),
        (None, None) => Err(CniError::invalid_config(
            "ipam: one of ipam.ranges (a list of range sets) or ipam.subnet (a CIDR or \"usePodCidr\") is required",
        )),
        (None, Some("usePodCidr")) => Ok(AddressSource::PodCidr { node_state_file }),
        (None, Some(subnet)) => {
            let range = parse_range(
                &Map::from_iter([("subnet".to_owned(), Value::from(subnet))]),
                "ipam.subnet",
                true,
            )?;
            Ok(AddressSource::Ranges(vec![vec![range]]))
        }
        (Some(ranges), None) if is_pod_cidr_placeholder(ranges) => {
            Ok(AddressSource::PodCidr { node_state_file })
        }
        (Some(ranges), None) => parse_range_sets(ranges).map(AddressSource::Ranges),
    }
}

/// `[[{"subnet": "usePodCidr"}]]`, the ranges form of `"subnet": "usePodCidr"`.
fn is_pod_cidr_placeholder(ranges: &Value) -> bool {
    ranges.pointer("/0/0/subnet").and_then(Value::as_str) == Some("usePodCidr")
        && ranges.as_array().is_some_and(|sets| sets.len() == 1)
        && ranges[0].as_array().is_some_and(|set| set.len() == 1)
}

fn parse_range_sets(value: &Value) -> Result<Vec<RangeSet>, CniError> {
    let Value::Array(sets) = value else {
        return Err(CniError::invalid_config(format!(
            "ipam.ranges: must be an array of range sets, got {}",
            json_kind(value)
        )));
    };
    if sets.is_empty() {
        return Err(CniError::invalid_config(
            "ipam.ranges: must hold at least one range set",
        ));
    }
    let mut parsed = Vec::with_capacity(sets.len());
    for (set_index, set) in sets.iter().enumerate() {
        let path = format!("ipam.ranges[{set_index}]");
        let Value::Array(ranges) = set else {
            return Err(CniError::invalid_config(format!(
                "{path}: must be an array of ranges, got {}",
                json_kind(set)
            )));
        };
        if ranges.is_empty() {
            return Err(CniError::invalid_config(format!(
                "{path}: must hold at least one range"
            )));
        }
        let mut set_ranges: RangeSet = Vec::with_capacity(ranges.len());
        for (index, range) in ranges.iter().enumerate() {
            let path = format!("{path}[{index}]");
            let Value::Object(object) = range else {
                return Err(CniError::invalid_config(format!(
                    "{path}: must be an object, got {}",
                    json_kind(range)
                )));
            };
            let range = parse_range(object, &path, false)?;
            if let Some(first) = set_ranges.first()
                && first.is_ipv6() != range.is_ipv6()
            {
                return Err(CniError::invalid_config(format!(
                    "{path}: mixes IPv4 and IPv6 in one range set; put each family in its own set"
                )));
            }
            if let Some(other) = set_ranges
                .iter()
                .find(|other| other.contains(range.start) || range.contains(other.start))
            {
                return Err(CniError::invalid_config(format!(
                    "{path}: overlaps {}",
                    other.describe()
                )));
            }
            set_ranges.push(range);
        }
        parsed.push(set_ranges);
    }
    Ok(parsed)
}

fn parse_range(
    object: &Map<String, Value>,
    path: &str,
    subnet_is_path: bool,
) -> Result<Range, CniError> {
    let subnet_path = if subnet_is_path {
        path.to_owned()
    } else {
        format!("{path}.subnet")
    };
    let subnet_text = required_str(object, "subnet", &subnet_path)?;
    let subnet: IpNet = subnet_text.parse().map_err(|_| {
        CniError::invalid_config(format!(
            "{subnet_path}: {subnet_text:?} is not a CIDR like 10.88.0.0/24"
        ))
    })?;
    if subnet.trunc() != subnet {
        return Err(CniError::invalid_config(format!(
            "{subnet_path}: {subnet} has host bits set; use {}",
            subnet.trunc()
        )));
    }
    let mut range = Range::host_local(subnet).ok_or_else(|| {
        CniError::invalid_config(format!("{subnet_path}: {subnet} is too small; it needs at least one address besides the first and last"))
    })?;
    let address = |key: &str| -> Result<Option<IpAddr>, CniError> {
        let field = format!("{path}.{key}");
        let Some(text) = optional_str(object, key, &field)? else {
            return Ok(None);
        };
        let ip: IpAddr = text.parse().map_err(|_| {
            CniError::invalid_config(format!("{field}: {text:?} is not an IP address"))
        })?;
        if !subnet.contains(&ip) {
            return Err(CniError::invalid_config(format!(
                "{field}: {ip} is outside the subnet {subnet}"
            )));
        }
        Ok(Some(ip))
    };
    if let Some(start) = address("rangeStart")? {
        range.start = start;
    }
    if let Some(end) = address("rangeEnd")? {
        range.end = end;
    }
    range.gateway = address("gateway")?;
    if super::range::to_number(range.start) > super::range::to_number(range.end) {
        return Err(CniError::invalid_config(format!(
            "{path}.rangeStart: {} is after rangeEnd {}",
            range.start, range.end
        )));
    }
    Ok(range)
}

fn parse_routes(ipam: &Map<String, Value>) -> Result<Vec<RouteConfig>, CniError> {
    let Some(value) = ipam.get("routes") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(CniError::invalid_config(format!(
            "ipam.routes: must be an array, got {}",
            json_kind(value)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value::<RouteConfig>(item.clone()).map_err(|error| {
                CniError::invalid_config(format!(
                    "ipam.routes[{index}]: must be {{\"dst\": CIDR, \"gw\": optional IP}}: {error}"
                ))
            })
        })
        .collect()
}
