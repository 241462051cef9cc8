//! `weft-ipam` on its own and behind `weft`: the node's podCIDRs (dual-stack) and the node's pool
//! blocks from the node state file, allocation order and exhaustion.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_cni::node_state::NodeState;

fn ipam_config(bed: &Bed, ipam: Value) -> String {
    let mut config = bed.config.clone();
    config["ipam"] = ipam;
    config.to_string()
}

fn ipam_add(bed: &Bed, config: &str, container: &str) -> Outcome {
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", container),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", "/proc/self/ns/net"),
    ];
    bed.run(WEFT_IPAM, &env, config.as_bytes())
}

fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pod_cidr_mode_reads_the_node_state_and_is_dual_stack() {
    let bed = Bed::new("podcidr", "10.88.13.0/24");
    let state_file = bed.data_dir.path().join("node-state.json");
    let state = NodeState {
        node_name: "node-a".into(),
        pod_cidrs: vec![
            "10.88.13.0/24".parse().unwrap(),
            "fd00:88:13::/120".parse().unwrap(),
        ],
        blocks: vec![],
        ..NodeState::default()
    };
    state.write(&state_file).unwrap();
    for (round, ranges) in [
        json!({"subnet": "usePodCidr"}),
        json!({"ranges": [[{"subnet": "usePodCidr"}]]}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut ipam = json!({"type": "weft-ipam", "nodeStateFile": state_file, "dataDir": bed.data_dir.path()});
        ipam.as_object_mut()
            .unwrap()
            .extend(ranges.as_object().unwrap().clone());
        let config = ipam_config(&bed, ipam);
        let result = ipam_add(&bed, &config, "standalone").expect_ok().json();
        let host = round + 1;
        assert_eq!(
            addresses(&result),
            [
                format!("10.88.13.{host}/24"),
                format!("fd00:88:13::{host}/120")
            ]
        );
        let env = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "standalone"),
            ("CNI_IFNAME", "eth0"),
        ];
        bed.run(WEFT_IPAM, &env, config.as_bytes()).expect_ok();
        assert!(bed.allocations().is_empty());
    }

    // Behind weft: the pod gets both addresses and a default route per family.
    let ipam = json!({"type": "weft-ipam", "subnet": "usePodCidr", "nodeStateFile": state_file, "dataDir": bed.data_dir.path()});
    let pod = bed.pod(0);
    let result = bed
        .call("ADD", "dual", Some(pod.path()), json!({"ipam": ipam}))
        .expect_ok()
        .json();
    let ips = addresses(&result);
    assert_eq!(ips.len(), 2);
    assert!(ips[1].ends_with("/128"), "{ips:?}");
    assert_eq!(
        result["routes"][1],
        json!({"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"})
    );
    let v6: ipnet::IpNet = ips[1].parse().unwrap();
    in_pod(&pod, |netlink| {
        let link = netlink.link_by_name("eth0").unwrap().unwrap();
        assert!(netlink.addresses(link.index).unwrap().contains(&v6));
        let routes = netlink.routes(true, link.index).unwrap();
        assert!(
            routes.iter().any(|r| r.destination.prefix_len() == 0
                && r.gateway == Some("fe80::ecee:eeff:feee:eeee".parse().unwrap())),
            "{routes:?}"
        );
    });
    assert_reachable_from_host(&bed, &pod, pod_ip(&result));
    bed.call(
        "CHECK",
        "dual",
        Some(pod.path()),
        json!({"ipam": ipam, "prevResult": result}),
    )
    .expect_ok();
    bed.call("DEL", "dual", Some(pod.path()), json!({"ipam": ipam}))
        .expect_ok();
    assert!(bed.allocations().is_empty());
}

#[test]
fn pool_mode_allocates_from_the_node_blocks_in_order_until_exhausted() {
    let bed = Bed::new("pool", "10.88.14.0/24");
    let state_file = bed.data_dir.path().join("node-state.json");
    let mut state = NodeState {
        node_name: "node-b".into(),
        pod_cidrs: vec![],
        blocks: vec![
            "10.88.14.0/30".parse().unwrap(),
            "10.88.14.8/30".parse().unwrap(),
        ],
        ..NodeState::default()
    };
    state.write(&state_file).unwrap();
    let config = ipam_config(
        &bed,
        json!({"type": "weft-ipam", "mode": "pool", "nodeStateFile": state_file, "dataDir": bed.data_dir.path()}),
    );
    let mut got = Vec::new();
    for index in 0..8 {
        got.extend(addresses(
            &ipam_add(&bed, &config, &format!("p{index}"))
                .expect_ok()
                .json(),
        ));
    }
    assert_eq!(
        got,
        [
            "10.88.14.0/30",
            "10.88.14.1/30",
            "10.88.14.2/30",
            "10.88.14.3/30",
            "10.88.14.8/30",
            "10.88.14.9/30",
            "10.88.14.10/30",
            "10.88.14.11/30"
        ]
    );
    // The agent says every pool is exhausted: ADD fails at once with its reason.
    state.exhausted = Some("IPPool \"pool-a\" (10.88.14.0/24) is exhausted".into());
    state.write(&state_file).unwrap();
    let full = ipam_add(&bed, &config, "p8");
    assert_eq!(full.code(), 110);
    assert!(
        full.msg().contains("no free address in 10.88.14.0/30")
            && full.msg().contains("IPPool \"pool-a\""),
        "{}",
        full.msg()
    );
    // Blocks full but pools not exhausted: ADD waits for the agent's next block and gets it.
    state.exhausted = None;
    state.write(&state_file).unwrap();
    let mut grown = state.clone();
    grown.blocks.push("10.88.14.64/30".parse().unwrap());
    let writer = {
        let state_file = state_file.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            grown.write(&state_file).unwrap();
        })
    };
    assert_eq!(
        addresses(&ipam_add(&bed, &config, "p8").expect_ok().json()),
        ["10.88.14.64/30"]
    );
    writer.join().unwrap();
    state.blocks.push("10.88.14.64/30".parse().unwrap());
    // A node with no block at all and exhausted pools fails at once too.
    state.blocks.clear();
    state.exhausted = Some("no enabled IPPool selects node \"node-b\"".into());
    state.write(&state_file).unwrap();
    let none = ipam_add(&bed, &config, "p9");
    assert_eq!(none.code(), 110);
    assert!(
        none.msg().contains("lists no block") && none.msg().contains("selects node"),
        "{}",
        none.msg()
    );
    assert_eq!(bed.allocations().len(), 9);
}
