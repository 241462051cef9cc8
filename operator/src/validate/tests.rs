//! Unit tests of the operator-side Installation validation: one case per rule, each asserting
//! the field path it reports, plus a spec with several problems reported at once.

use super::*;
use weft_api::{ClusterFacts, Installation, defaults};

fn installation(spec: serde_json::Value) -> Installation {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "operator.weft.dev/v1", "kind": "Installation",
        "metadata": {"name": "default"}, "spec": spec,
    }))
    .expect("test spec fits the Installation type")
}

fn cluster() -> ClusterNetworks {
    ClusterNetworks {
        service_cidrs: vec!["10.96.0.0/16".parse().unwrap()],
        node_addresses: vec!["172.18.0.2".parse().unwrap(), "172.18.0.3".parse().unwrap()],
    }
}

/// Validates `spec` (after defaulting) against `cluster()`; returns the errors.
fn errors_for(spec: serde_json::Value) -> Vec<FieldError> {
    let installation = installation(spec);
    let computed = defaults(&installation.spec, &ClusterFacts::default());
    match validate(&installation.spec, &computed, &cluster()) {
        Ok(()) => Vec::new(),
        Err(ValidationErrors(errors)) => errors,
    }
}

/// Asserts exactly one error, on `field`, whose message contains `text`.
fn assert_one(spec: serde_json::Value, field: &str, text: &str) {
    let errors = errors_for(spec);
    assert_eq!(
        errors.len(),
        1,
        "expected one error on {field}, got {errors:?}"
    );
    assert_eq!(errors[0].field, field, "{errors:?}");
    assert!(
        errors[0].message.contains(text),
        "{:?} lacks {text:?}",
        errors[0].message
    );
}

#[test]
fn a_complete_valid_spec_passes() {
    let spec = serde_json::json!({
        "network": {"ipPools": [
            {"name": "a", "cidr": "10.244.0.0/16", "nodeSelector": "zone == 'a' && !has(edge)"},
            {"name": "b", "cidr": "10.245.0.0/20", "blockSize": 28}]},
        "controlPlaneTolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        "componentResources": [{"componentName": "Node"}, {"componentName": "Controllers"}]
    });
    assert_eq!(errors_for(spec), Vec::new());
}

#[test]
fn a_bad_pool_selector_is_named_with_its_field() {
    let spec = serde_json::json!({"network": {"ipPools": [{"name": "a", "cidr": "10.244.0.0/16", "nodeSelector": "zone == "}]}});
    assert_one(
        spec,
        "spec.network.ipPools[0].nodeSelector",
        "is not a valid selector",
    );
}

#[test]
fn a_pool_overlapping_the_service_cidr_is_refused() {
    let spec = serde_json::json!({"network": {"ipPools": [{"name": "a", "cidr": "10.96.0.0/12"}]}});
    assert_one(
        spec,
        "spec.network.ipPools[0].cidr",
        "overlaps the cluster's Service CIDR 10.96.0.0/16",
    );
}

#[test]
fn a_pool_holding_node_addresses_is_refused() {
    let spec =
        serde_json::json!({"network": {"ipPools": [{"name": "a", "cidr": "172.16.0.0/12"}]}});
    assert_one(
        spec,
        "spec.network.ipPools[0].cidr",
        "contains node address(es) 172.18.0.2, 172.18.0.3",
    );
}

#[test]
fn the_default_pool_is_checked_against_the_cluster_too() {
    let installation = installation(serde_json::json!({}));
    let computed = defaults(&installation.spec, &ClusterFacts::default());
    let home_lab = ClusterNetworks {
        node_addresses: vec!["192.168.1.10".parse().unwrap()],
        ..cluster()
    };
    let errors = validate(&installation.spec, &computed, &home_lab).unwrap_err();
    let [error] = errors.0.as_slice() else {
        panic!("one error expected: {errors}")
    };
    assert_eq!(error.field, "spec.network.ipPools");
    assert!(
        error
            .message
            .contains("the default pool 192.168.0.0/16 contains node address(es) 192.168.1.10"),
        "{error}"
    );
    assert!(
        error.message.contains("set spec.network.ipPools"),
        "{error}"
    );
}

#[test]
fn weft_ipam_needs_weft_cni() {
    let spec = serde_json::json!({"cni": {"type": "External", "ipam": {"type": "Weft"}}});
    assert_one(spec, "spec.cni.ipam.type", "use HostLocal");
}

#[test]
fn pools_need_weft_cni_and_ipam() {
    let spec = serde_json::json!({"cni": {"ipam": {"type": "HostLocal"}}, "network": {"ipPools": [{"name": "a", "cidr": "10.244.0.0/16"}]}});
    assert_one(
        spec,
        "spec.network.ipPools",
        "only with cni.type Weft and cni.ipam.type Weft",
    );
}

#[test]
fn gke_needs_an_external_cni() {
    assert_one(
        serde_json::json!({"kubernetesProvider": "GKE"}),
        "spec.cni.type",
        "set cni.type External",
    );
    assert_eq!(
        errors_for(serde_json::json!({"kubernetesProvider": "GKE", "cni": {"type": "External"}})),
        Vec::new()
    );
}

#[test]
fn tolerations_follow_the_pod_rules() {
    let exists_with_value = serde_json::json!({"controlPlaneTolerations": [{"key": "k", "operator": "Exists", "value": "v"}]});
    assert_one(
        exists_with_value,
        "spec.controlPlaneTolerations[0].value",
        "must be empty when operator is Exists",
    );
    let bad_operator =
        serde_json::json!({"controlPlaneTolerations": [{"key": "k", "operator": "Matches"}]});
    assert_one(
        bad_operator,
        "spec.controlPlaneTolerations[0].operator",
        "use Exists or Equal",
    );
    let bad_effect =
        serde_json::json!({"controlPlaneTolerations": [{"key": "k", "effect": "NoRun"}]});
    assert_one(
        bad_effect,
        "spec.controlPlaneTolerations[0].effect",
        "use NoSchedule, PreferNoSchedule or NoExecute",
    );
}

#[test]
fn a_component_listed_twice_is_refused() {
    let spec = serde_json::json!({"componentResources": [{"componentName": "Node"}, {"componentName": "Node"}]});
    assert_one(
        spec,
        "spec.componentResources[1].componentName",
        "already listed at componentResources[0]",
    );
}

#[test]
fn schema_rules_are_repeated_for_offline_rendering() {
    let v6 = serde_json::json!({"network": {"ipPools": [{"name": "a", "cidr": "fd00::/48"}]}});
    assert_one(
        v6,
        "spec.network.ipPools[0].cidr",
        "IPv6 pools are not supported yet",
    );
    let host_bits =
        serde_json::json!({"network": {"ipPools": [{"name": "a", "cidr": "10.244.0.1/16"}]}});
    assert_one(
        host_bits,
        "spec.network.ipPools[0].cidr",
        "use the network address 10.244.0.0/16",
    );
    let big_block =
        serde_json::json!({"network": {"ipPools": [{"name": "a", "cidr": "10.244.0.0/28"}]}});
    assert_one(
        big_block,
        "spec.network.ipPools[0].blockSize",
        "a block cannot be larger than its pool",
    );
    let overlap = serde_json::json!({"network": {"ipPools": [
        {"name": "a", "cidr": "10.244.0.0/16"}, {"name": "b", "cidr": "10.244.64.0/18"}]}});
    assert_one(
        overlap,
        "spec.network.ipPools[1].cidr",
        "overlaps ipPools[0] (10.244.0.0/16)",
    );
    let same_name = serde_json::json!({"network": {"ipPools": [
        {"name": "a", "cidr": "10.244.0.0/16"}, {"name": "a", "cidr": "10.245.0.0/16"}]}});
    assert_one(
        same_name,
        "spec.network.ipPools[1].name",
        "already used by ipPools[0]",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let spec = serde_json::json!({
        "kubernetesProvider": "GKE",
        "network": {"ipPools": [
            {"name": "a", "cidr": "10.96.0.0/12", "nodeSelector": "has("},
            {"name": "b", "cidr": "fd00::/48"}]},
        "componentResources": [{"componentName": "Node"}, {"componentName": "Node"}]
    });
    let errors = errors_for(spec);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.cni.type",
            "spec.componentResources[1].componentName",
            "spec.network.ipPools[0].nodeSelector",
            "spec.network.ipPools[1].cidr",
            "spec.network.ipPools[0].cidr",
        ],
        "{errors:?}"
    );
    let all = ValidationErrors(errors).to_string();
    assert!(all.contains("; "), "one line per problem, joined: {all}");
}

#[test]
fn the_node_update_strategy_follows_the_daemonset_rules() {
    let bad_type = serde_json::json!({"nodeUpdateStrategy": {"type": "Recreate"}});
    assert_one(
        bad_type,
        "spec.nodeUpdateStrategy.type",
        "use RollingUpdate or OnDelete",
    );
    let on_delete_with_rolling = serde_json::json!({"nodeUpdateStrategy": {"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 1}}});
    assert_one(
        on_delete_with_rolling,
        "spec.nodeUpdateStrategy.rollingUpdate",
        "only allowed with type RollingUpdate",
    );
    let bad_percent =
        serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxUnavailable": "150%"}}});
    assert_one(
        bad_percent,
        "spec.nodeUpdateStrategy.rollingUpdate.maxUnavailable",
        "between 0% and 100%",
    );
    let stuck = serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}});
    assert_one(
        stuck,
        "spec.nodeUpdateStrategy.rollingUpdate.maxUnavailable",
        "cannot be 0 when maxSurge is 0",
    );
    let fine =
        serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxUnavailable": "10%"}}});
    assert_eq!(errors_for(fine), Vec::new());
}

#[test]
fn a_standalone_ip_pool_is_checked_against_other_pools_and_the_cluster() {
    let spec = |cidr: &str, selector: &str| weft_api::IpPoolSpec {
        cidr: cidr.into(),
        node_selector: Some(selector.into()),
        ..Default::default()
    };
    let others = vec![
        (
            "default-ipv4-ippool".to_owned(),
            "10.244.0.0/16".parse().unwrap(),
        ),
        ("rack-7".to_owned(), "10.250.0.0/22".parse().unwrap()),
    ];
    assert_eq!(
        validate_ip_pool(
            "rack-7",
            &spec("10.250.0.0/22", "rack == '7'"),
            &others,
            &cluster()
        ),
        Ok(())
    );

    let errors = validate_ip_pool(
        "rack-8",
        &spec("10.244.128.0/20", "rack in {"),
        &others,
        &cluster(),
    )
    .unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["spec.nodeSelector", "spec.cidr"], "{errors}");
    assert!(
        errors.0[1]
            .message
            .contains("overlaps IPPool default-ipv4-ippool (10.244.0.0/16)"),
        "{errors}"
    );

    let errors =
        validate_ip_pool("svc", &spec("10.96.0.0/20", "all()"), &others, &cluster()).unwrap_err();
    let [error] = errors.0.as_slice() else {
        panic!("one error expected: {errors}")
    };
    assert_eq!(error.field, "spec.cidr");
    assert!(
        error
            .message
            .contains("overlaps the cluster's Service CIDR 10.96.0.0/16"),
        "{error}"
    );
}

#[test]
fn the_node_metrics_port_is_a_port_other_than_the_health_port() {
    assert_one(
        serde_json::json!({"nodeMetricsPort": 0}),
        "spec.nodeMetricsPort",
        "allowed are 1 to 65535",
    );
    assert_one(
        serde_json::json!({"nodeMetricsPort": 70000}),
        "spec.nodeMetricsPort",
        "allowed are 1 to 65535",
    );
    assert_one(
        serde_json::json!({"nodeMetricsPort": 9099}),
        "spec.nodeMetricsPort",
        "health port",
    );
    assert_eq!(
        errors_for(serde_json::json!({"nodeMetricsPort": 9091})),
        Vec::new()
    );
}

/// The API server defaults maxUnavailable to 1 and refuses maxSurge beside a non-zero
/// maxUnavailable, so `maxSurge` alone fails when the DaemonSet is applied; it is refused here
/// first. Surge with maxUnavailable 0 passes the API server but the host-network agent binds a
/// fixed port, so the surge pod could never start: refused too.
#[test]
fn surge_is_refused_with_its_field_path() {
    let alone = serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxSurge": 1}}});
    assert_one(
        alone,
        "spec.nodeUpdateStrategy.rollingUpdate.maxSurge",
        "maxUnavailable defaults to 1",
    );
    let both = serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 1}}});
    assert_one(
        both,
        "spec.nodeUpdateStrategy.rollingUpdate.maxSurge",
        "maxUnavailable is not 0",
    );
    let surge_only = serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}});
    assert_one(
        surge_only,
        "spec.nodeUpdateStrategy.rollingUpdate.maxSurge",
        "binds port 9099 on every node",
    );
    let zero_surge = serde_json::json!({"nodeUpdateStrategy": {"rollingUpdate": {"maxSurge": 0}}});
    assert_eq!(errors_for(zero_surge), Vec::new());
}

#[test]
fn workloads_stay_on_linux_nodes() {
    let windows = serde_json::json!({"nodeDaemonSet": {"spec": {"template": {"spec": {
        "nodeSelector": {"kubernetes.io/os": "windows"}}}}}});
    assert_one(
        windows,
        "spec.nodeDaemonSet.spec.template.spec.nodeSelector",
        "run only on Linux nodes",
    );
    let control_plane =
        serde_json::json!({"controlPlaneNodeSelector": {"kubernetes.io/os": "windows"}});
    assert_one(
        control_plane,
        "spec.controlPlaneNodeSelector",
        "run only on Linux nodes",
    );
    let bad_toleration = serde_json::json!({"controllersDeployment": {"spec": {"template": {"spec": {
        "tolerations": [{"key": "k", "operator": "Matches"}]}}}}});
    assert_one(
        bad_toleration,
        "spec.controllersDeployment.spec.template.spec.tolerations[0].operator",
        "use Exists or Equal",
    );
    let fine = serde_json::json!({"nodeDaemonSet": {"spec": {"template": {"spec": {
        "nodeSelector": {"kubernetes.io/os": "linux", "pool": "a"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}}});
    assert_eq!(errors_for(fine), Vec::new());
}
