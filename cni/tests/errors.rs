//! Every error path of `weft` and `weft-ipam` answers with the right CNI code, a message naming
//! the field or variable, and changes nothing.

mod common;

use common::*;
use serde_json::{Value, json};

fn expect_error(outcome: Outcome, code: u64, fragment: &str) {
    assert_eq!(outcome.code(), code, "wrong code for {:?}", outcome.stdout);
    assert!(
        outcome.msg().contains(fragment),
        "message {:?} should mention {fragment:?}",
        outcome.msg()
    );
    assert!(outcome.json()["cniVersion"].is_string());
}

fn attachment_env<'a>(command: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
    ]
}

#[test]
fn environment_errors_are_code_4() {
    let bed = Bed::new("errenv", "10.88.7.0/24");
    let pod = bed.pod(0);
    let netns = pod.path().to_str().unwrap();
    let config = bed.config.to_string();
    let stdin = config.as_bytes();
    expect_error(bed.run(WEFT, &[], stdin), 4, "CNI_COMMAND");
    expect_error(
        bed.run(WEFT, &[("CNI_COMMAND", "FROB")], stdin),
        4,
        "unknown command \"FROB\"",
    );
    expect_error(
        bed.run(WEFT_IPAM, &[("CNI_COMMAND", "FROB")], stdin),
        4,
        "CNI_COMMAND",
    );
    expect_error(
        bed.run(
            WEFT,
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", netns),
            ],
            stdin,
        ),
        4,
        "CNI_CONTAINERID",
    );
    let mut env = attachment_env("ADD", netns);
    env[1].1 = "-bad id";
    expect_error(bed.run(WEFT, &env, stdin), 4, "CNI_CONTAINERID");
    let mut env = attachment_env("ADD", netns);
    env[2].1 = "eth/0";
    expect_error(bed.run(WEFT, &env, stdin), 4, "CNI_IFNAME");
    let mut env = attachment_env("ADD", netns);
    env[2].1 = "a-name-longer-than-15";
    expect_error(bed.run(WEFT, &env, stdin), 4, "CNI_IFNAME");
    let env = &attachment_env("ADD", netns)[..3];
    expect_error(bed.run(WEFT, env, stdin), 4, "CNI_NETNS");
    // An IPAM plugin missing from CNI_PATH.
    let mut config = bed.config.clone();
    config["ipam"]["type"] = json!("no-such-ipam");
    expect_error(
        bed.run(
            WEFT,
            &attachment_env("ADD", netns),
            config.to_string().as_bytes(),
        ),
        4,
        "CNI_PATH",
    );
    assert!(bed.allocations().is_empty());
    in_pod(&pod, |netlink| {
        assert!(netlink.link_by_name("eth0").unwrap().is_none())
    });
}

#[test]
fn malformed_stdin_is_code_6_and_bad_fields_code_7() {
    let bed = Bed::new("errcfg", "10.88.8.0/24");
    let pod = bed.pod(0);
    let netns = pod.path().to_str().unwrap();
    let env = attachment_env("ADD", netns);
    expect_error(bed.run(WEFT, &env, b"{not json"), 6, "not valid JSON");
    expect_error(bed.run(WEFT, &env, b"[1, 2]"), 6, "must be a JSON object");
    expect_error(bed.run(WEFT_IPAM, &env, b""), 6, "not valid JSON");

    let with = |pointer: &str, value: Value| {
        let mut config = bed.config.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = config
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{pointer}"));
        parent
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        config.to_string()
    };
    let without = |key: &str| {
        let mut config = bed.config.clone();
        config.as_object_mut().unwrap().remove(key);
        config.to_string()
    };
    let cases: Vec<(String, u64, &str)> = vec![
        (without("cniVersion"), 7, "cniVersion: required"),
        (
            with("/cniVersion", json!("9.9.9")),
            1,
            "cniVersion: \"9.9.9\" is not supported",
        ),
        (
            with("/cniVersion", json!(1)),
            7,
            "cniVersion: must be a string",
        ),
        (without("name"), 7, "name: required"),
        (
            with("/name", json!("../etc")),
            7,
            "name: \"../etc\" is not valid",
        ),
        (with("/type", json!("bridge")), 7, "type: \"bridge\""),
        (with("/mtu", json!(10)), 7, "mtu: 10 is not allowed"),
        (with("/mtu", json!("big")), 7, "mtu:"),
        (without("ipam"), 7, "ipam: required"),
        (with("/ipam/type", json!("../weft-ipam")), 7, "ipam.type"),
        (
            with("/ipam/ranges", json!("10.88.8.0/24")),
            7,
            "ipam.ranges: must be an array",
        ),
        (
            with("/ipam/ranges", json!([[{"subnet": "10.88.8.5/24"}]])),
            7,
            "ipam.ranges[0][0].subnet: 10.88.8.5/24 has host bits set",
        ),
        (
            with("/ipam/ranges", json!([[{"subnet": "banana"}]])),
            7,
            "ipam.ranges[0][0].subnet: \"banana\" is not a CIDR",
        ),
        (
            with(
                "/ipam/ranges",
                json!([[{"subnet": "10.88.8.0/24", "rangeStart": "10.88.9.1"}]]),
            ),
            7,
            "ipam.ranges[0][0].rangeStart: 10.88.9.1 is outside",
        ),
        (
            with(
                "/ipam/ranges",
                json!([[{"subnet": "10.88.8.0/24", "rangeStart": "10.88.8.9", "rangeEnd": "10.88.8.2"}]]),
            ),
            7,
            "rangeStart: 10.88.8.9 is after rangeEnd",
        ),
        (
            with(
                "/ipam/ranges",
                json!([[{"subnet": "10.88.8.0/24"}, {"subnet": "fd00::/64"}]]),
            ),
            7,
            "ipam.ranges[0][1]: mixes IPv4 and IPv6",
        ),
        (
            with("/ipam/dataDir", json!("relative/dir")),
            7,
            "ipam.dataDir",
        ),
        (
            with("/ipam/ranges", json!([])),
            7,
            "ipam.ranges: must hold at least one range set",
        ),
        (
            with("/ipam/mode", json!("magic")),
            7,
            "ipam.mode: \"magic\" is not allowed",
        ),
    ];
    for (config, code, fragment) in cases {
        expect_error(bed.run(WEFT, &env, config.as_bytes()), code, fragment);
    }
    // prevResult of the wrong shape, CHECK without prevResult, GC without valid attachments.
    expect_error(
        bed.run(WEFT, &env, with("/prevResult", json!(5)).as_bytes()),
        7,
        "prevResult: must be an object",
    );
    expect_error(
        bed.run(
            WEFT,
            &attachment_env("CHECK", netns),
            bed.config.to_string().as_bytes(),
        ),
        7,
        "prevResult: required for CHECK",
    );
    expect_error(
        bed.run(
            WEFT,
            &[("CNI_COMMAND", "GC")],
            bed.config.to_string().as_bytes(),
        ),
        7,
        "cni.dev/valid-attachments: required",
    );
    assert!(bed.allocations().is_empty());
    in_pod(&pod, |netlink| {
        assert!(netlink.link_by_name("eth0").unwrap().is_none())
    });
}

#[test]
fn missing_namespace_is_code_3() {
    let bed = Bed::new("errns", "10.88.9.0/24");
    let env = attachment_env("ADD", "/run/netns/wc-errns-never-created");
    expect_error(
        bed.run(WEFT, &env, bed.config.to_string().as_bytes()),
        3,
        "CNI_NETNS",
    );
    assert!(bed.allocations().is_empty());
}

#[test]
fn exhausted_range_is_code_110_and_status_50() {
    let bed = Bed::new("errfull", "10.88.10.0/30");
    let pods: Vec<_> = (0..3).map(|index| bed.pod(index)).collect();
    for (index, pod) in pods.iter().take(2).enumerate() {
        bed.call("ADD", &bed.container_id(index), Some(pod.path()), json!({}))
            .expect_ok();
    }
    let third = bed.container_id(2);
    expect_error(
        bed.call("ADD", &third, Some(pods[2].path()), json!({})),
        110,
        "no free address in 10.88.10.0/30",
    );
    assert_eq!(bed.allocations().len(), 2);
    in_pod(&pods[2], |netlink| {
        assert!(netlink.link_by_name("eth0").unwrap().is_none())
    });
    expect_error(
        bed.call("STATUS", &third, None, json!({})),
        50,
        "no free address in 10.88.10.0/30",
    );
    // Releasing one makes STATUS ready again.
    bed.call("DEL", &bed.container_id(0), Some(pods[0].path()), json!({}))
        .expect_ok();
    bed.call("STATUS", &third, None, json!({})).expect_ok();
}

#[test]
fn taken_interface_name_is_code_101_and_rolls_back() {
    let bed = Bed::new("errdup", "10.88.11.0/24");
    let pod = bed.pod(0);
    let first = bed
        .call("ADD", "owner", Some(pod.path()), json!({}))
        .expect_ok()
        .json();
    let second = bed.call("ADD", "intruder", Some(pod.path()), json!({}));
    expect_error(
        second,
        101,
        "CNI_IFNAME: an interface named \"eth0\" already exists",
    );
    // The intruder's address was released and its host end removed; the owner is untouched.
    assert_eq!(bed.allocations(), [(pod_ip(&first), "owner".to_owned())]);
    let intruder = weft_cni::naming::host_interface_name(&weft_cni::env::Attachment {
        container_id: "intruder".into(),
        ifname: "eth0".into(),
    });
    bed.on_host(|netlink| assert!(netlink.link_by_name(&intruder).unwrap().is_none()));
    bed.call(
        "CHECK",
        "owner",
        Some(pod.path()),
        json!({"prevResult": first}),
    )
    .expect_ok();
}

#[test]
fn missing_node_state_is_code_112_and_status_50() {
    let bed = Bed::new("errnode", "10.88.12.0/24");
    let pod = bed.pod(0);
    let missing = bed.data_dir.path().join("no-node-state.json");
    let ipam = json!({"type": "weft-ipam", "subnet": "usePodCidr", "nodeStateFile": missing, "dataDir": bed.data_dir.path()});
    expect_error(
        bed.call("ADD", "c1", Some(pod.path()), json!({"ipam": ipam})),
        112,
        "no-node-state.json",
    );
    expect_error(
        bed.call("STATUS", "c1", None, json!({"ipam": ipam})),
        50,
        "no-node-state.json",
    );
    in_pod(&pod, |netlink| {
        assert!(netlink.link_by_name("eth0").unwrap().is_none())
    });
}

#[test]
fn unusable_store_is_code_111_and_broken_ipam_plugin_code_102() {
    let bed = Bed::new("errstore", "10.88.17.0/24");
    let pod = bed.pod(0);
    let netns = pod.path().to_str().unwrap();
    let mut config = bed.config.clone();
    config["ipam"]["dataDir"] = json!("/proc/weft-cannot-create-this");
    expect_error(
        bed.run(
            WEFT,
            &attachment_env("ADD", netns),
            config.to_string().as_bytes(),
        ),
        111,
        "allocation store",
    );

    // An IPAM plugin that answers nonsense, with success and with failure.
    let fake_path = tempfile::tempdir().unwrap();
    let fake = fake_path.path().join("weft-ipam");
    let mut config = bed.config.clone();
    config["execIpam"] = json!(true);
    let cni_path = fake_path.path().to_str().unwrap().to_owned();
    let mut env = attachment_env("ADD", netns);
    env.push(("CNI_PATH", &cni_path));
    for (script, fragment) in [
        ("#!/bin/sh\necho hello\n", "ADD result is not a CNI result"),
        (
            "#!/bin/sh\necho '{\"ips\": []}'\n",
            "ADD returned no address",
        ),
        ("#!/bin/sh\necho oops\nexit 3\n", "with output \"oops\""),
    ] {
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        expect_error(
            bed.run(WEFT, &env, config.to_string().as_bytes()),
            102,
            fragment,
        );
    }
    in_pod(&pod, |netlink| {
        assert!(netlink.link_by_name("eth0").unwrap().is_none())
    });
}
