//! Start-up and teardown of local clusters: every process started is stopped by pid and the
//! directory removed — when the cluster is dropped, when the code holding it panics, and by
//! `local-cluster down` for the detached cluster people use.

use std::path::PathBuf;
use std::process::Command;

use weft_e2e::process::pid_alive;
use weft_e2e::{ClusterOptions, LocalCluster};

fn assert_all_gone(pids: &[(String, u32)], dir: &std::path::Path) {
    for (name, pid) in pids {
        assert!(!pid_alive(*pid as i32), "{name} (pid {pid}) still runs");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn a_panic_while_holding_a_cluster_stops_every_process() {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cluster = runtime
            .block_on(LocalCluster::start(ClusterOptions::default()))
            .expect("cluster starts");
        started_tx
            .send((cluster.pids(), cluster.dir().to_path_buf()))
            .unwrap();
        panic!("a test failing while it holds the cluster");
    });
    assert!(holder.join().is_err(), "the holder thread panicked");
    let (pids, dir) = started_rx.recv().expect("the cluster had started");
    let names: Vec<&str> = pids.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok"
        ]
    );
    assert_all_gone(&pids, &dir);
}

fn local_cluster(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_local-cluster"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run local-cluster")
}

#[test]
fn local_cluster_up_status_down() {
    let dir = PathBuf::from(format!(
        "/tmp/weft-local-cluster-test-{}",
        std::process::id()
    ));
    let up = local_cluster(&dir, &["up", "--nodes", "3"]);
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let kubeconfig = dir.join("admin.kubeconfig");
    assert_eq!(
        stdout.trim(),
        format!("export KUBECONFIG={}", kubeconfig.display())
    );

    let pids = weft_e2e::state::read_pids(&dir).expect("pid list");
    assert_eq!(pids.len(), 5);
    let again = local_cluster(&dir, &["up"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let status = local_cluster(&dir, &["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    println!("{table}");
    assert!(
        status.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let node_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("kwok-node-"))
        .collect();
    assert_eq!(node_rows.len(), 3, "{table}");
    let cluster_cidr: ipnet::Ipv4Net = weft_e2e::CLUSTER_CIDR.parse().unwrap();
    for row in node_rows {
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns[1], "True", "{row}");
        let pod_cidr: ipnet::Ipv4Net = columns[2].parse().expect(row);
        assert!(
            cluster_cidr.contains(&pod_cidr) && pod_cidr.prefix_len() == weft_e2e::NODE_CIDR_MASK,
            "{row}"
        );
    }

    let down = local_cluster(&dir, &["down"]);
    assert!(
        down.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    let pids: Vec<(String, u32)> = pids.into_iter().map(|(n, p)| (n, p as u32)).collect();
    assert_all_gone(&pids, &dir);
}
