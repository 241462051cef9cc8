//! The pure render against checked-in YAML fixtures: each `fixtures/NAME.installation.yaml`
//! renders to `fixtures/NAME.rendered.yaml` byte for byte. Set `UPDATE_FIXTURES=1` to rewrite
//! the expected files after an intended change: a run that rewrites a file fails with "fixtures
//! updated, rerun", so a green run always compared; then review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use weft_api::Installation;
use weft_operator::prepare::{offline_facts, prepare};
use weft_operator::render::{Rendered, render, to_yaml};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn render_fixture(name: &str) -> (Rendered, String) {
    let input = fixtures().join(format!("{name}.installation.yaml"));
    let text = std::fs::read_to_string(&input).expect("fixture is readable");
    let installation: Installation = serde_saphyr::from_str(&text).expect("fixture parses");
    let facts = offline_facts();
    let computed = prepare(&installation, &facts, &Default::default()).expect("fixture is valid");
    let rendered = render(&computed, &facts, None);
    let yaml = to_yaml(&rendered).expect("render encodes");
    (rendered, yaml)
}

/// Compares `yaml` with the file at `expected_path`. With `update`, a differing (or missing)
/// file is rewritten and the comparison still fails: only an unchanged file passes.
fn compare_with_fixture(expected_path: &Path, yaml: &str, update: bool) -> Result<(), String> {
    let expected = std::fs::read_to_string(expected_path);
    if expected.as_deref().ok() == Some(yaml) {
        return Ok(());
    }
    if update {
        std::fs::write(expected_path, yaml)
            .map_err(|error| format!("{}: {error}", expected_path.display()))?;
        return Err(format!(
            "fixtures updated, rerun: {} was rewritten; review the diff",
            expected_path.display()
        ));
    }
    Err(match expected {
        Ok(_) => format!(
            "render differs from {}; rerun with UPDATE_FIXTURES=1 and review the diff",
            expected_path.display()
        ),
        Err(error) => format!("{}: {error}", expected_path.display()),
    })
}

fn check(name: &str) -> Rendered {
    let (rendered, yaml) = render_fixture(name);
    let expected_path = fixtures().join(format!("{name}.rendered.yaml"));
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    if let Err(message) = compare_with_fixture(&expected_path, &yaml, update) {
        panic!("{name}: {message}");
    }
    rendered
}

#[test]
fn updating_fixtures_fails_the_run_that_rewrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.rendered.yaml");
    std::fs::write(&path, "old\n").unwrap();
    let error = compare_with_fixture(&path, "new\n", true).unwrap_err();
    assert!(error.starts_with("fixtures updated, rerun"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    // The rerun compares against the rewritten file and passes.
    compare_with_fixture(&path, "new\n", true).unwrap();
    compare_with_fixture(&path, "new\n", false).unwrap();
    let error = compare_with_fixture(&path, "other\n", false).unwrap_err();
    assert!(error.contains("UPDATE_FIXTURES=1"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
}

#[test]
fn minimal_installation_renders_the_whole_stack() {
    let rendered = check("minimal");
    assert_eq!(rendered.config_maps.len(), 1);
    assert_eq!(rendered.ip_pools.len(), 1, "one default pool");
    let node = &rendered.daemon_sets[0];
    let pod = node.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.init_containers.as_ref().unwrap()[0].name, "install-cni");
}

#[test]
fn custom_installation_sets_mtu_pools_replicas_and_resources() {
    let rendered = check("custom");
    let conflist = &rendered.config_maps[0].data.as_ref().unwrap()["10-weft.conflist"];
    assert!(conflist.contains("\"mtu\": 1400"), "{conflist}");
    let names: Vec<_> = rendered
        .ip_pools
        .iter()
        .map(|pool| pool.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["pods-a", "pods-b"]);
    let deployment = rendered.deployments[0].spec.as_ref().unwrap();
    assert_eq!(deployment.replicas, Some(3));
}

#[test]
fn external_cni_renders_no_cni_config_and_no_install_step() {
    let rendered = check("external");
    assert!(rendered.config_maps.is_empty());
    assert!(rendered.ip_pools.is_empty());
    let pod = rendered.daemon_sets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert!(pod.init_containers.is_none());
}

#[test]
fn a_changed_mtu_changes_the_pod_template_hash() {
    let (minimal, _) = render_fixture("minimal");
    let (custom, _) = render_fixture("custom");
    let hash = |rendered: &Rendered| {
        rendered.daemon_sets[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["operator.weft.dev/cni-config-hash"]
            .clone()
    };
    assert_ne!(hash(&minimal), hash(&custom));
}

fn node_pod(rendered: &Rendered) -> &PodSpec {
    rendered.daemon_sets[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|variable| variable.name == name)
        .and_then(|variable| variable.value.as_deref())
}

/// Added capabilities of `container`, after it drops every capability.
fn capabilities(container: &Container) -> Vec<String> {
    let context = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(context.privileged, Some(false), "{}", container.name);
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.read_only_root_filesystem, Some(true));
    assert_eq!(
        context.run_as_user,
        Some(0),
        "root owns the host's CNI directories"
    );
    let capabilities = context.capabilities.as_ref().expect("capabilities");
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    capabilities.add.clone().unwrap_or_default()
}

fn assert_local_probe(probe: Option<&Probe>, path: &str) {
    let get = probe
        .and_then(|probe| probe.http_get.as_ref())
        .expect("an httpGet probe");
    assert_eq!(get.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(get.path.as_deref(), Some(path));
    assert_eq!(
        get.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9099)
    );
}

#[test]
fn no_container_is_privileged_and_each_keeps_only_what_it_uses() {
    let rendered = check("minimal");
    let pod = node_pod(&rendered);
    let install = &pod.init_containers.as_ref().unwrap()[0];
    assert!(
        capabilities(install).is_empty(),
        "install-cni only writes files"
    );
    let agent = &pod.containers[0];
    assert_eq!(capabilities(agent), ["NET_ADMIN", "NET_RAW"]);
    let seccomp = pod
        .security_context
        .as_ref()
        .unwrap()
        .seccomp_profile
        .as_ref();
    assert_eq!(seccomp.unwrap().type_, "RuntimeDefault");
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|volume| volume.name.as_str())
        .collect();
    assert_eq!(
        volumes,
        [
            "cni-bin-dir",
            "cni-net-dir",
            "weft-state",
            "host-proc-sys-net"
        ]
    );
    for container in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        for mount in container.volume_mounts.iter().flatten() {
            assert!(volumes.contains(&mount.name.as_str()), "{}", mount.name);
        }
    }
}

#[test]
fn the_agent_serves_health_on_localhost_and_metrics_only_when_asked() {
    let minimal = check("minimal");
    let agent = &node_pod(&minimal).containers[0];
    assert_eq!(env(agent, "WEFT_HEALTH_ADDRESS"), Some("127.0.0.1"));
    assert_eq!(env(agent, "WEFT_HEALTH_PORT"), Some("9099"));
    assert_eq!(
        env(agent, "WEFT_METRICS_PORT"),
        None,
        "metrics are off by default"
    );
    assert_local_probe(agent.liveness_probe.as_ref(), "/healthz");
    assert_local_probe(agent.readiness_probe.as_ref(), "/readyz");

    let custom = check("custom");
    let agent = &node_pod(&custom).containers[0];
    assert_eq!(env(agent, "WEFT_METRICS_PORT"), Some("9091"));
    assert_eq!(capabilities(agent), ["NET_ADMIN", "NET_RAW"]);
}

#[test]
fn a_privileged_metrics_port_adds_only_the_right_to_bind_it() {
    let mut installation: Installation = serde_saphyr::from_str(
        &std::fs::read_to_string(fixtures().join("minimal.installation.yaml")).unwrap(),
    )
    .unwrap();
    installation.spec.node_metrics_port = Some(909);
    let facts = offline_facts();
    let computed = prepare(&installation, &facts, &Default::default()).unwrap();
    let rendered = render(&computed, &facts, None);
    let agent = &node_pod(&rendered).containers[0];
    assert_eq!(
        capabilities(agent),
        ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"]
    );
}

#[test]
fn the_node_scope_policy_is_rendered_for_the_agent_account_alone() {
    let rendered = check("minimal");
    let [policy] = rendered.validating_admission_policies.as_slice() else {
        panic!("one policy expected")
    };
    let spec = policy.spec.as_ref().unwrap();
    let conditions = spec.match_conditions.as_ref().unwrap();
    assert_eq!(
        conditions[0].expression,
        "request.userInfo.username == 'system:serviceaccount:weft-system:weft-node'"
    );
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    for validation in spec.validations.iter().flatten() {
        let message = validation.message.as_deref().unwrap();
        assert!(
            message
                .split(": ")
                .next()
                .is_some_and(|rule| !rule.contains(' ')),
            "every message starts with its rule's name: {message}"
        );
    }
    let [binding] = rendered.validating_admission_policy_bindings.as_slice() else {
        panic!("one binding expected")
    };
    assert_eq!(
        binding.spec.policy_name,
        policy.metadata.name.clone().unwrap()
    );
    assert_eq!(binding.spec.validation_actions, ["Deny"]);
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render_fixture("custom").1, render_fixture("custom").1);
}

fn controllers_pod(rendered: &Rendered) -> &PodSpec {
    rendered.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn quantity(container: &Container, kind: &str, resource: &str) -> Option<String> {
    let resources = container.resources.as_ref()?;
    let map = match kind {
        "requests" => resources.requests.as_ref()?,
        _ => resources.limits.as_ref()?,
    };
    map.get(resource).map(|quantity| quantity.0.clone())
}

/// Both workloads run on Linux nodes only; without overrides the agent tolerates every taint and
/// keeps off virtual-kubelet and Fargate nodes.
#[test]
fn workloads_run_on_linux_nodes_only() {
    let (rendered, _) = render_fixture("minimal");
    let linux = BTreeMap::from([("kubernetes.io/os".to_owned(), "linux".to_owned())]);
    let node = node_pod(&rendered);
    assert_eq!(node.node_selector.as_ref(), Some(&linux));
    let tolerations = node.tolerations.as_ref().unwrap();
    assert_eq!(tolerations.len(), 1);
    assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
    let terms = &node
        .affinity
        .as_ref()
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|affinity| {
            affinity
                .required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .unwrap()
        .node_selector_terms;
    let excluded: Vec<(&str, &str)> = terms[0]
        .match_expressions
        .iter()
        .flatten()
        .map(|e| (e.key.as_str(), e.values.as_ref().unwrap()[0].as_str()))
        .collect();
    assert_eq!(
        excluded,
        [
            ("type", "virtual-kubelet"),
            ("eks.amazonaws.com/compute-type", "fargate")
        ]
    );
    assert_eq!(
        controllers_pod(&rendered).node_selector.as_ref(),
        Some(&linux)
    );
}

/// `nodeDaemonSet` and `controllersDeployment` place and size the workloads as the Tigera
/// operator's `calicoNodeDaemonSet` does: selectors add to `kubernetes.io/os: linux`, affinity
/// and tolerations replace the defaults, container resources win over `componentResources`.
#[test]
fn overrides_place_and_size_the_workloads() {
    let rendered = check("overrides");
    let node = node_pod(&rendered);
    assert_eq!(
        node.node_selector.as_ref().unwrap(),
        &BTreeMap::from([
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("weft.dev/pool".to_owned(), "edge".to_owned()),
        ])
    );
    let tolerations = node.tolerations.as_ref().unwrap();
    assert_eq!(tolerations.len(), 1);
    assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
    let expression = &node
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .unwrap()
        .node_selector_terms[0]
        .match_expressions
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        expression.values.as_deref(),
        Some(&["virtual-kubelet".to_owned(), "edge-proxy".to_owned()][..])
    );
    let agent = &node.containers[0];
    assert_eq!(quantity(agent, "requests", "cpu").as_deref(), Some("300m"));
    assert_eq!(
        quantity(agent, "limits", "memory").as_deref(),
        Some("400Mi")
    );
    let install = &node.init_containers.as_ref().unwrap()[0];
    assert_eq!(install.name, "install-cni");
    assert_eq!(
        quantity(install, "requests", "memory").as_deref(),
        Some("16Mi")
    );
    assert_eq!(
        quantity(install, "limits", "memory").as_deref(),
        Some("64Mi")
    );

    let controllers = controllers_pod(&rendered);
    assert_eq!(
        controllers.node_selector.as_ref().unwrap(),
        &BTreeMap::from([
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            (
                "node-role.kubernetes.io/control-plane".to_owned(),
                String::new()
            ),
            ("zone".to_owned(), "a".to_owned()),
        ])
    );
    assert_eq!(
        controllers.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("node-role.kubernetes.io/control-plane")
    );
    // The default spread is kept when no affinity is set.
    assert!(
        controllers
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some()
    );
    assert_eq!(
        quantity(&controllers.containers[0], "requests", "cpu").as_deref(),
        Some("50m")
    );
}
