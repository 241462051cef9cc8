//! The `weft` plugin end to end in real network namespaces: ADD, CHECK, DEL (twice, after the
//! namespace is gone, without prevResult), re-ADD into a namespace that outlived DEL, GC, STATUS,
//! VERSION, and a plugin killed in the middle of ADD.

mod common;

use common::*;
use serde_json::json;

#[test]
fn add_check_del_gc_lifecycle() {
    let bed = Bed::new("life", "10.88.1.0/24");
    let pod = bed.pod(0);
    let container = bed.container_id(0);

    let result = bed
        .call("ADD", &container, Some(pod.path()), json!({}))
        .expect_ok()
        .json();
    assert_eq!(result["cniVersion"], "1.1.0");
    let host_name = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(
        host_name.starts_with("weft") && host_name.len() == 15,
        "{host_name}"
    );
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().to_str().unwrap()
    );
    assert_eq!(result["ips"][0]["interface"], 1);
    assert!(
        result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .ends_with("/32")
    );
    assert_eq!(
        result["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1"})
    );
    let ip = pod_ip(&result);
    assert_eq!(bed.allocations(), [(ip, container.clone())]);

    // The pod end: up, MTU, the /32 address, the default route via the link-local gateway.
    let pod_mac = result["interfaces"][1]["mac"].as_str().unwrap().to_owned();
    in_pod(&pod, |netlink| {
        let link = netlink
            .link_by_name("eth0")
            .unwrap()
            .expect("eth0 in the pod");
        assert!(link.up);
        assert_eq!(link.mtu, 1450);
        assert_eq!(weft_cni::naming::format_mac(&link.mac), pod_mac);
        let addresses = netlink.addresses(link.index).unwrap();
        let v4: Vec<_> = addresses
            .iter()
            .filter(|address| address.addr().is_ipv4())
            .collect();
        assert_eq!(v4, [&format!("{ip}/32").parse::<ipnet::IpNet>().unwrap()]);
        let routes = netlink.routes(false, link.index).unwrap();
        assert!(routes.iter().any(|r| r.destination.prefix_len() == 0
            && r.gateway == Some("169.254.1.1".parse().unwrap())));
    });
    // The host end: up, MTU, a /32 route to the pod, proxy ARP on.
    let host_link = bed.on_host(|netlink| {
        let link = netlink.link_by_name(&host_name).unwrap().expect("host end");
        assert!(link.up);
        assert_eq!(link.mtu, 1450);
        let routes = netlink.routes(false, link.index).unwrap();
        assert!(
            routes
                .iter()
                .any(|r| r.destination == format!("{ip}/32").parse().unwrap()),
            "{routes:?}"
        );
        let proxy_arp =
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{host_name}/proxy_arp"))
                .unwrap();
        assert_eq!(proxy_arp.trim(), "1");
        let forwarding =
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{host_name}/forwarding"))
                .unwrap();
        assert_eq!(forwarding.trim(), "1");
        link
    });
    assert_reachable_from_host(&bed, &pod, ip);

    // CHECK passes against the result, and fails (code 120) once the pod interface is down.
    bed.call(
        "CHECK",
        &container,
        Some(pod.path()),
        json!({"prevResult": result}),
    )
    .expect_ok();
    in_pod(&pod, |netlink| {
        let link = netlink.link_by_name("eth0").unwrap().unwrap();
        netlink.set_link_up(link.index, false).unwrap();
    });
    let broken = bed.call(
        "CHECK",
        &container,
        Some(pod.path()),
        json!({"prevResult": result}),
    );
    assert_eq!(broken.code(), 120, "{}", broken.msg());
    assert!(broken.msg().contains("eth0 is down"), "{}", broken.msg());
    in_pod(&pod, |netlink| {
        let link = netlink.link_by_name("eth0").unwrap().unwrap();
        netlink.set_link_up(link.index, true).unwrap();
    });

    // DEL: the address is released, the host end is down and its route gone; twice is fine.
    bed.call(
        "DEL",
        &container,
        Some(pod.path()),
        json!({"prevResult": result}),
    )
    .expect_ok();
    assert!(bed.allocations().is_empty());
    bed.on_host(|netlink| {
        let link = netlink
            .link_by_name(&host_name)
            .unwrap()
            .expect("host end stays until the namespace goes");
        assert!(!link.up);
        assert!(netlink.routes(false, link.index).unwrap().is_empty());
    });
    bed.call(
        "DEL",
        &container,
        Some(pod.path()),
        json!({"prevResult": result}),
    )
    .expect_ok();
    bed.call("DEL", &container, None, json!({})).expect_ok();

    // The namespace outlived DEL: a new ADD of the same attachment replaces the dead pair.
    let again = bed
        .call("ADD", &container, Some(pod.path()), json!({}))
        .expect_ok()
        .json();
    let new_ip = pod_ip(&again);
    assert_ne!(new_ip, ip, "round-robin hands out the next address");
    let new_link = bed.on_host(|netlink| netlink.link_by_name(&host_name).unwrap().unwrap());
    assert!(new_link.up);
    assert_ne!(new_link.index, host_link.index);
    assert_reachable_from_host(&bed, &pod, new_ip);

    // STATUS is ready; GC with this attachment valid keeps it, GC without releases it.
    bed.call("STATUS", &container, None, json!({})).expect_ok();
    let valid =
        json!({"cni.dev/valid-attachments": [{"containerID": container, "ifname": "eth0"}]});
    bed.call("GC", &container, None, valid).expect_ok();
    assert_eq!(bed.allocations(), [(new_ip, container.clone())]);
    bed.call(
        "GC",
        &container,
        None,
        json!({"cni.dev/valid-attachments": []}),
    )
    .expect_ok();
    assert!(bed.allocations().is_empty());

    let version = bed
        .run(
            WEFT,
            &[("CNI_COMMAND", "VERSION")],
            b"{\"cniVersion\":\"1.0.0\"}",
        )
        .expect_ok()
        .json();
    assert_eq!(version["cniVersion"], "1.0.0");
    assert!(
        version["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0"))
    );
    pod.delete().unwrap();
}

#[test]
fn del_after_the_namespace_is_gone() {
    let bed = Bed::new("gone", "10.88.2.0/24");
    let pod = bed.pod(0);
    let container = bed.container_id(0);
    let result = bed
        .call("ADD", &container, Some(pod.path()), json!({}))
        .expect_ok()
        .json();
    let path = pod.path().to_owned();
    pod.delete().unwrap();
    assert!(!path.exists());
    // With the vanished path, with prevResult, and with neither.
    bed.call(
        "DEL",
        &container,
        Some(&path),
        json!({"prevResult": result}),
    )
    .expect_ok();
    assert!(bed.allocations().is_empty());
    bed.call("DEL", &container, Some(&path), json!({}))
        .expect_ok();
    bed.call("DEL", &container, None, json!({})).expect_ok();
}

#[test]
fn older_cni_versions_get_results_in_their_format() {
    let bed = Bed::new("oldver", "10.88.3.0/24");
    let pod = bed.pod(0);
    let container = bed.container_id(0);
    let result = bed
        .call(
            "ADD",
            &container,
            Some(pod.path()),
            json!({"cniVersion": "0.4.0"}),
        )
        .expect_ok()
        .json();
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_eq!(result["ips"][0]["version"], "4");
    let status = bed.call("STATUS", &container, None, json!({"cniVersion": "1.0.0"}));
    assert_eq!(status.code(), 1);
    bed.call(
        "DEL",
        &container,
        Some(pod.path()),
        json!({"cniVersion": "0.4.0"}),
    )
    .expect_ok();
}

#[test]
fn plugin_killed_mid_add_leaks_nothing_after_gc() {
    let bed = Bed::new("kill", "10.88.4.0/24");
    let pod = bed.pod(0);
    let container = bed.container_id(0);
    let network = format!("wc-{}", bed.tag);
    // Hold the store's lock so the ADD stops inside weft-ipam, then kill weft there.
    let lock = weft_cni::ipam::store::LockedStore::open(bed.data_dir.path(), &network).unwrap();
    // weft-ipam exec'd, so the allocation outlives the killed plugin in an orphaned process.
    let mut config = bed.config.clone();
    config["execIpam"] = json!(true);
    let netns = pod.path().to_str().unwrap().to_owned();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", container.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns.as_str()),
    ];
    let mut weft = bed.spawn(WEFT, &env, config.to_string().as_bytes());
    let ipam_pid = wait_for_child(weft.id());
    wait_for_open_file(ipam_pid, &bed.data_dir.path().join(&network).join("lock"));
    weft.kill().unwrap();
    weft.wait().unwrap();
    drop(lock);
    // The orphaned weft-ipam finishes its allocation: the address is now held by a dead ADD.
    wait_for_exit(ipam_pid);
    assert_eq!(
        bed.allocations().len(),
        1,
        "the killed ADD's allocation is on record"
    );
    // The runtime never got a result, so the attachment is not valid: GC releases it.
    bed.call(
        "GC",
        &container,
        None,
        json!({"cni.dev/valid-attachments": []}),
    )
    .expect_ok();
    assert!(bed.allocations().is_empty());
    // And the attachment can be added cleanly afterwards.
    bed.call("ADD", &container, Some(pod.path()), json!({}))
        .expect_ok();
    bed.call("DEL", &container, Some(pod.path()), json!({}))
        .expect_ok();
}

/// The pid of the first child of `pid`, once it has one.
fn wait_for_child(pid: u32) -> u32 {
    for _ in 0..10_000 {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next() {
            return child.parse().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("weft never started its IPAM plugin");
}

/// Waits until `pid` has `path` open: weft-ipam has read its config and is at the lock.
fn wait_for_open_file(pid: u32, path: &std::path::Path) {
    for _ in 0..10_000 {
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|entries| {
                entries.flatten().any(|entry| {
                    std::fs::read_link(entry.path()).is_ok_and(|target| target == path)
                })
            })
            .unwrap_or(false);
        if open {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("weft-ipam {pid} never opened {}", path.display());
}

fn wait_for_exit(pid: u32) {
    for _ in 0..10_000 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for a parent that is init.
        if status.is_empty() || status.split_whitespace().nth(2) == Some("Z") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("orphaned weft-ipam {pid} never finished");
}

/// IPAM plugins other than the in-process weft-ipam are exec'd from CNI_PATH: weft-ipam itself
/// with `"execIpam": true`, and the reference host-local plugin.
#[test]
fn ipam_plugins_from_cni_path_are_execd() {
    let reference = std::path::Path::new("/usr/lib/cni/host-local");
    assert!(
        reference.is_file(),
        "{} is missing: apt-get install containernetworking-plugins",
        reference.display()
    );
    let bed = Bed::new("exec", "10.88.15.0/24");
    let pod = bed.pod(0);
    let result = bed
        .call("ADD", "execd", Some(pod.path()), json!({"execIpam": true}))
        .expect_ok()
        .json();
    assert_eq!(bed.allocations(), [(pod_ip(&result), "execd".to_owned())]);
    assert_reachable_from_host(&bed, &pod, pod_ip(&result));
    bed.call(
        "CHECK",
        "execd",
        Some(pod.path()),
        json!({"execIpam": true, "prevResult": result}),
    )
    .expect_ok();
    bed.call("DEL", "execd", Some(pod.path()), json!({"execIpam": true}))
        .expect_ok();
    assert!(bed.allocations().is_empty());
    // A missing weft-ipam binary matters only when it is to be exec'd.
    let env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/nonexistent")];
    let mut config = bed.config.clone();
    bed.run(WEFT, &env, config.to_string().as_bytes())
        .expect_ok();
    config["execIpam"] = json!(true);
    assert_eq!(bed.run(WEFT, &env, config.to_string().as_bytes()).code(), 4);

    let cni_path = format!("{}:/usr/lib/cni", cni_path().display());
    let host_local_dir = bed.data_dir.path().join("host-local");
    let mut config = bed.config.clone();
    config["cniVersion"] = json!("1.0.0");
    config["ipam"] = json!({"type": "host-local", "ranges": [[{"subnet": "10.88.16.0/24"}]], "dataDir": host_local_dir});
    let stdin = config.to_string();
    // The first pod keeps its dead eth0 after DEL (left to the namespace teardown): use another.
    let pod = bed.pod(1);
    let netns = pod.path().to_str().unwrap();
    let env = |command| {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "hl"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", netns),
            ("CNI_PATH", cni_path.as_str()),
        ]
    };
    let result = bed
        .run(WEFT, &env("ADD"), stdin.as_bytes())
        .expect_ok()
        .json();
    let ip = pod_ip(&result);
    assert!(ip.to_string().starts_with("10.88.16."), "{ip}");
    assert!(
        host_local_dir
            .join(format!("wc-{}", bed.tag))
            .join(ip.to_string())
            .is_file()
    );
    assert_reachable_from_host(&bed, &pod, ip);
    bed.run(WEFT, &env("DEL"), stdin.as_bytes()).expect_ok();
    assert!(
        !host_local_dir
            .join(format!("wc-{}", bed.tag))
            .join(ip.to_string())
            .exists()
    );
}
