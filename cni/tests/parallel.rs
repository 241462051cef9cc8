//! 100 pods added at once: every ADD succeeds, the 100 addresses are distinct, and every pod is
//! reachable from the host namespace; 100 DELs at once release everything.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::Value;

const PODS: usize = 100;

#[test]
fn hundred_parallel_adds_get_distinct_reachable_addresses() {
    let bed = Bed::new("par", "10.88.5.0/24");
    let pods: Vec<_> = (0..PODS).map(|index| bed.pod(index)).collect();
    let config = bed.config.to_string();
    let spawn_all = |command: &str| {
        let children: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(index, pod)| {
                let container = bed.container_id(index);
                let netns = pod.path().to_str().unwrap().to_owned();
                let env = [
                    ("CNI_COMMAND", command),
                    ("CNI_CONTAINERID", container.as_str()),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", netns.as_str()),
                ];
                bed.spawn(WEFT, &env, config.as_bytes())
            })
            .collect();
        children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                assert!(output.status.success(), "{command} failed: {stdout}");
                stdout
            })
            .collect::<Vec<_>>()
    };

    let results: Vec<Value> = spawn_all("ADD")
        .iter()
        .map(|stdout| serde_json::from_str(stdout).unwrap())
        .collect();
    let ips: Vec<_> = results.iter().map(pod_ip).collect();
    let distinct: HashSet<_> = ips.iter().collect();
    assert_eq!(distinct.len(), PODS, "addresses must be distinct: {ips:?}");
    assert_eq!(bed.allocations().len(), PODS);
    for (pod, ip) in pods.iter().zip(&ips) {
        assert_reachable_from_host(&bed, pod, *ip);
    }

    spawn_all("DEL");
    assert!(bed.allocations().is_empty());
    for pod in pods {
        pod.delete().unwrap();
    }
}
