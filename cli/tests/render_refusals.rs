//! `weftctl render` as a GitOps pipeline runs it: an Installation the API server would refuse
//! makes it exit non-zero with the field on stderr and nothing on stdout; a valid one renders.

use std::io::Write;
use std::process::{Command, Stdio};

const HEADER: &str =
    "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata:\n  name: default\n";

fn render(manifest: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["render", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weftctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn refused_installations_exit_non_zero_and_print_nothing() {
    for (spec, field) in [
        ("network: {mtu: 100}", "spec.network.mtu"),
        ("cni: {binDir: opt/cni/bin}", "spec.cni.binDir"),
        (
            "network: {ipPools: [{name: p, cidr: 10.244.0.0/28}]}",
            "spec.network.ipPools[0].blockSize",
        ),
    ] {
        let output = render(&format!("{HEADER}spec: {{{spec}}}\n"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{spec}: accepted");
        assert!(output.stdout.is_empty(), "{spec}: printed to stdout");
        assert!(stderr.contains(field), "{spec}: {stderr}");
    }
    let output = render(&format!("{HEADER}spec: {{network: {{mtu: 1450}}}}\n"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("kind: DaemonSet"));
}
