//! ADDs that race, die or get nonsense back leave exactly one working interface and one address,
//! or nothing: two ADDs of one attachment at once, an ADD killed after it created the veth pair
//! and before it finished (checked, not assumed) and then retried, and an exec'd IPAM plugin
//! whose ADD result cannot be used.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;

use common::*;
use serde_json::json;
use weft_cni::env::Attachment;
use weft_cni::naming::host_interface_name;

/// The `weft*` host interfaces in the bed's host namespace (listed by iproute2).
fn host_ends(bed: &Bed) -> Vec<String> {
    let output = std::process::Command::new("ip")
        .args(["-netns", bed.host.name(), "-o", "link", "show"])
        .output()
        .expect("run ip (apt-get install iproute2)");
    assert!(output.status.success(), "ip link: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .filter(|name| name.starts_with("weft"))
        .collect()
}

fn host_name(container: &str) -> String {
    host_interface_name(&Attachment {
        container_id: container.into(),
        ifname: "eth0".into(),
    })
}

fn add_env<'a>(container: &'a str, netns: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", container),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
    ]
}

/// One attachment is healthy: its host end exists and is up, its one address is on record and
/// answers from the host.
fn assert_one_working_attachment(bed: &Bed, pod: &weft_cni::netns::NamedNetns, container: &str) {
    let allocations: Vec<_> = bed
        .allocations()
        .into_iter()
        .filter(|(_, owner)| owner == container)
        .collect();
    assert_eq!(
        allocations.len(),
        1,
        "one address for {container}: {allocations:?}"
    );
    let host = host_name(container);
    let up = bed.on_host(|netlink| netlink.link_by_name(&host).unwrap().map(|link| link.up));
    assert_eq!(up, Some(true), "host end {host} of {container}");
    assert_reachable_from_host(bed, pod, allocations[0].0);
}

#[test]
fn two_adds_of_one_attachment_at_once_leave_one_interface_and_one_address() {
    const PODS: usize = 12;
    let bed = Bed::new("race", "10.88.18.0/24");
    let pods: Vec<_> = (0..PODS).map(|index| bed.pod(index)).collect();
    let config = bed.config.to_string();
    let paths: Vec<String> = pods
        .iter()
        .map(|pod| pod.path().to_str().unwrap().to_owned())
        .collect();
    let containers: Vec<String> = (0..PODS).map(|index| bed.container_id(index)).collect();
    let children: Vec<_> = (0..PODS)
        .flat_map(|index| {
            let env = add_env(&containers[index], &paths[index]);
            [
                bed.spawn(WEFT, &env, config.as_bytes()),
                bed.spawn(WEFT, &env, config.as_bytes()),
            ]
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "both ADDs of an attachment succeed, one after the other: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    assert_eq!(bed.allocations().len(), PODS);
    assert_eq!(host_ends(&bed).len(), PODS);
    for (pod, container) in pods.iter().zip(&containers) {
        assert_one_working_attachment(&bed, pod, container);
    }
}

/// Whether the pod end of an attachment has its default route: the last step of ADD's wiring.
fn pod_is_wired(pod: &weft_cni::netns::NamedNetns) -> bool {
    in_pod(pod, |netlink| {
        let Some(link) = netlink.link_by_name("eth0").unwrap() else {
            return false;
        };
        netlink
            .routes(false, link.index)
            .unwrap()
            .iter()
            .any(|route| route.destination.prefix_len() == 0)
    })
}

/// How many fresh attachments to try before giving up on landing a kill inside an ADD.
const KILL_ATTEMPTS: usize = 20;

#[test]
fn add_killed_after_creating_the_pair_then_retried_leaks_nothing() {
    let bed = Bed::new("rekill", "10.88.19.0/24");
    let config = bed.config.to_string();
    // The kill must land after the pair exists and before the wiring ends. Watching for the host
    // end races the ADD, so each attempt checks where its kill landed: an ADD that got to the end
    // first (it exited by itself, or its pod already has its default route) proves nothing about
    // a half-done ADD; it is removed and a fresh attachment is tried.
    let mut landed = None;
    for attempt in 0..KILL_ATTEMPTS {
        let pod = bed.pod(attempt);
        let container = bed.container_id(attempt);
        let netns = pod.path().to_str().unwrap().to_owned();
        let host = host_name(&container);
        let mut first = bed.spawn(WEFT, &add_env(&container, &netns), config.as_bytes());
        let pid = first.id() as i32;
        // One netlink socket polled in a tight loop; the kill is sent from the loop the moment
        // the host end shows up.
        let watched = host.clone();
        let seen = bed.on_host(move |netlink| {
            for _ in 0..1_000_000 {
                if netlink.link_by_name(&watched).unwrap().is_some() {
                    // SAFETY: kill on our own child, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
            }
            false
        });
        let _ = first.kill();
        let status = first.wait().unwrap();
        assert!(seen, "the ADD never created {host}");
        if status.signal() == Some(libc::SIGKILL) && !pod_is_wired(&pod) {
            println!("attempt {attempt}: killed inside the ADD");
            landed = Some((pod, container, host));
            break;
        }
        bed.call("DEL", &container, Some(pod.path()), json!({}))
            .expect_ok();
        bed.on_host(|netlink| {
            if let Some(link) = netlink.link_by_name(&host).unwrap() {
                netlink.delete_link(link.index).unwrap();
            }
        });
        pod.delete().unwrap();
    }
    let (pod, container, host) = landed.unwrap_or_else(|| {
        panic!("in {KILL_ATTEMPTS} attempts, no kill landed between the pair's creation and the end of the ADD")
    });
    let netns = pod.path().to_str().unwrap().to_owned();
    assert_eq!(
        host_ends(&bed),
        std::slice::from_ref(&host),
        "the killed ADD left its pair"
    );

    bed.run(WEFT, &add_env(&container, &netns), config.as_bytes())
        .expect_ok();
    assert_eq!(host_ends(&bed), [host]);
    assert_one_working_attachment(&bed, &pod, &container);
    bed.call("DEL", &container, Some(pod.path()), json!({}))
        .expect_ok();
    assert!(bed.allocations().is_empty());
}

/// An exec'd IPAM plugin that allocates (it runs the real weft-ipam) and then prints something
/// that is no usable result: the ADD fails with code 102 and the allocation is released.
#[test]
fn unusable_ipam_result_is_released() {
    let bed = Bed::new("garbage", "10.88.20.0/24");
    let pod = bed.pod(0);
    let netns = pod.path().to_str().unwrap().to_owned();
    let stub_dir = tempfile::tempdir().unwrap();
    let stub = stub_dir.path().join("weft-ipam");
    let mut config = bed.config.clone();
    config["execIpam"] = json!(true);
    let cni_path = stub_dir.path().to_str().unwrap().to_owned();
    let mut env = add_env("garbage", &netns).to_vec();
    env.push(("CNI_PATH", &cni_path));
    for (answer, fragment) in [
        ("this is not JSON", "ADD result is not a CNI result"),
        (
            "{\"cniVersion\": \"1.1.0\", \"ips\": []}",
            "ADD returned no address",
        ),
    ] {
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\nout=$({WEFT_IPAM})\nstatus=$?\n\
                 if [ \"$CNI_COMMAND\" = ADD ] && [ $status -eq 0 ]; then echo '{answer}'; exit 0; fi\n\
                 printf '%s' \"$out\"\nexit $status\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let outcome = bed.run(WEFT, &env, config.to_string().as_bytes());
        assert_eq!(outcome.code(), 102, "{}", outcome.stdout);
        assert!(outcome.msg().contains(fragment), "{}", outcome.msg());
        assert!(
            bed.allocations().is_empty(),
            "the stub's allocation was released: {:?}",
            bed.allocations()
        );
    }
    assert!(host_ends(&bed).is_empty());
}
