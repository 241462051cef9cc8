//! Fuzzes everything a plugin reads from stdin: the `weft` and `weft-ipam` configs (with the
//! range arithmetic behind a parsed config), the version probe, prevResult and node state files.
//! Any input must give a value or a CNI error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::config::PluginConf;
use weft_cni::ipam::config::{AddressSource, IpamConf};
use weft_cni::ipam::range::walk;
use weft_cni::node_state::NodeState;
use weft_cni::result::CniResult;

fuzz_target!(|data: &[u8]| {
    let version = weft_cni::cli::requested_version(data);
    if let Ok(conf) = PluginConf::parse(data) {
        assert!(conf.mtu.is_none_or(|mtu| (68..=65535).contains(&mtu)));
        if let Some(previous) = conf.common.prev_result {
            let _ = previous.to_json(&version);
        }
    }
    if let Ok(conf) = IpamConf::parse(data)
        && let AddressSource::Ranges(sets) = &conf.source
    {
        for set in sets {
            for ip in walk(set, None).take(64) {
                assert!(set.iter().any(|range| range.contains(ip)));
            }
            let _ = walk(set, set.first().map(|range| range.end)).take(64).count();
        }
    }
    if let Ok(result) = serde_json::from_slice::<CniResult>(data) {
        let _ = result.to_json("0.4.0");
    }
    let _ = serde_json::from_slice::<NodeState>(data);
    if let Err(error) = weft_cni::config::parse_object(data) {
        assert_eq!(error.code, weft_cni::error::code::DECODE);
    }
});
