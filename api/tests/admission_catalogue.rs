//! The catalogue of bad objects: each is server-side applied to a real API server with the weft
//! CRDs installed, must be refused with a message naming the offending field, and must leave
//! nothing behind. Run with `--nocapture` to see every case with the message it produced.

mod support;

use kube::api::{Api, DynamicObject};

/// One bad object and the texts its refusal must contain (the field path comes first).
struct Case {
    name: &'static str,
    yaml: &'static str,
    expect: &'static [&'static str],
}

const INSTALLATION: &str =
    "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata: {name: default}\n";
const POOL: &str =
    "apiVersion: network.weft.dev/v1\nkind: IPPool\nmetadata: {name: catalogue-pool}\n";
const POLICY: &str = "apiVersion: network.weft.dev/v1\nkind: NetworkPolicy\nmetadata: {name: catalogue-policy, namespace: catalogue}\n";
const GLOBAL_POLICY: &str = "apiVersion: network.weft.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: catalogue-global}\n";

fn catalogue() -> Vec<(Case, String)> {
    let cases = [
        // Installation
        (
            Case {
                name: "installation not named default",
                yaml: "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata: {name: main}\nspec: {}",
                expect: &["metadata.name must be 'default'"],
            },
            "",
        ),
        (
            Case {
                name: "unknown kubernetesProvider",
                yaml: "spec: {kubernetesProvider: Minikube}",
                expect: &["spec.kubernetesProvider", "Unsupported value", "\"EKS\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown cni.type",
                yaml: "spec: {cni: {type: Calico}}",
                expect: &["spec.cni.type", "\"Weft\"", "\"External\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown cni.ipam.type",
                yaml: "spec: {cni: {ipam: {type: AzureVNET}}}",
                expect: &["spec.cni.ipam.type", "\"HostLocal\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "relative cni.binDir",
                yaml: "spec: {cni: {binDir: opt/cni/bin}}",
                expect: &["spec.cni.binDir", "should match '^/'"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "mtu too small",
                yaml: "spec: {network: {mtu: 100}}",
                expect: &["spec.network.mtu", "greater than or equal to 576"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "mtu too large",
                yaml: "spec: {network: {mtu: 65000}}",
                expect: &["spec.network.mtu", "less than or equal to 9216"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown linuxDataplane",
                yaml: "spec: {network: {linuxDataplane: Iptables}}",
                expect: &["spec.network.linuxDataplane", "\"Nftables\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "pool cidr not a CIDR",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0}]}}",
                expect: &["spec.network.ipPools[0].cidr", "must be a CIDR"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "pool cidr with host bits",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.1/16}]}}",
                expect: &["spec.network.ipPools[0].cidr", "no host bits set"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "IPv6 pool",
                yaml: "spec: {network: {ipPools: [{name: p6, cidr: 'fd00:10:244::/56', blockSize: 122}]}}",
                expect: &[
                    "spec.network.ipPools[0].cidr",
                    "IPv6 pools are not supported yet",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "blockSize below the schema minimum",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/16, blockSize: 8}]}}",
                expect: &[
                    "spec.network.ipPools[0].blockSize",
                    "greater than or equal to 20",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "blockSize out of the IPv4 range",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/16, blockSize: 64}]}}",
                expect: &[
                    "spec.network.ipPools[0].blockSize",
                    "between 20 and 32 for an IPv4 pool",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "block larger than its pool",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/25, blockSize: 24}]}}",
                expect: &[
                    "spec.network.ipPools[0].blockSize",
                    "a block cannot be larger than its pool",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "default block size larger than a /28 pool",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/28}]}}",
                expect: &["spec.network.ipPools[0].blockSize", "default 26"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "duplicate pool names",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/16}, {name: p, cidr: 10.245.0.0/16}]}}",
                expect: &[
                    "spec.network.ipPools",
                    "duplicate entries for key [name=\"p\"]",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "duplicate pool CIDRs",
                yaml: "spec: {network: {ipPools: [{name: a, cidr: 10.244.0.0/16}, {name: b, cidr: 10.244.0.0/16}]}}",
                expect: &["spec.network.ipPools", "unique cidr"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "overlapping pools",
                yaml: "spec: {network: {ipPools: [{name: a, cidr: 10.244.0.0/16}, {name: b, cidr: 10.244.128.0/20}]}}",
                expect: &["spec.network.ipPools", "must not overlap"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown encapsulation",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/16, encapsulation: IPIP}]}}",
                expect: &[
                    "spec.network.ipPools[0].encapsulation",
                    "\"VXLANCrossSubnet\"",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown natOutgoing",
                yaml: "spec: {network: {ipPools: [{name: p, cidr: 10.244.0.0/16, natOutgoing: 'Yes'}]}}",
                expect: &["spec.network.ipPools[0].natOutgoing", "\"Enabled\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "pool name not a DNS label",
                yaml: "spec: {network: {ipPools: [{name: Pool_1, cidr: 10.244.0.0/16}]}}",
                expect: &["spec.network.ipPools[0].name", "should match"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "pool without cidr",
                yaml: "spec: {network: {ipPools: [{name: p}]}}",
                expect: &["spec.network.ipPools[0].cidr", "Required value"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "two address autodetection methods",
                yaml: "spec: {network: {nodeAddressAutodetectionV4: {interface: eth0, canReach: 8.8.8.8}}}",
                expect: &[
                    "spec.network.nodeAddressAutodetectionV4",
                    "at most one of firstFound, interface, cidrs, canReach",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "canReach not an IP",
                yaml: "spec: {network: {nodeAddressAutodetectionV4: {canReach: example.com}}}",
                expect: &[
                    "spec.network.nodeAddressAutodetectionV4.canReach",
                    "must be an IP address",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "autodetection cidrs not CIDRs",
                yaml: "spec: {network: {nodeAddressAutodetectionV4: {cidrs: [10.0.0.0/33]}}}",
                expect: &[
                    "spec.network.nodeAddressAutodetectionV4.cidrs",
                    "must be CIDRs",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "controlPlaneReplicas zero",
                yaml: "spec: {controlPlaneReplicas: 0}",
                expect: &["spec.controlPlaneReplicas", "greater than or equal to 1"],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown componentName",
                yaml: "spec: {componentResources: [{componentName: Typha}]}",
                expect: &[
                    "spec.componentResources[0].componentName",
                    "\"Controllers\"",
                ],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown imagePullPolicy",
                yaml: "spec: {imagePullPolicy: Sometimes}",
                expect: &["spec.imagePullPolicy", "\"IfNotPresent\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "unknown logging.level",
                yaml: "spec: {logging: {level: Verbose}}",
                expect: &["spec.logging.level", "\"Debug\""],
            },
            INSTALLATION,
        ),
        (
            Case {
                name: "Tigera's calicoNetwork field",
                yaml: "spec: {calicoNetwork: {mtu: 1450}}",
                expect: &["spec.calicoNetwork", "field not declared in schema"],
            },
            INSTALLATION,
        ),
        // IPPool
        (
            Case {
                name: "IPPool cidr with a bad octet",
                yaml: "spec: {cidr: 10.300.0.0/16}",
                expect: &["spec.cidr", "must be a CIDR"],
            },
            POOL,
        ),
        (
            Case {
                name: "IPv6 IPPool",
                yaml: "spec: {cidr: 'fd00::/48'}",
                expect: &["spec.cidr", "IPv6 pools are not supported yet"],
            },
            POOL,
        ),
        (
            Case {
                name: "IPPool blockSize 33",
                yaml: "spec: {cidr: 10.250.0.0/16, blockSize: 33}",
                expect: &["spec.blockSize", "between 20 and 32 for an IPv4 pool"],
            },
            POOL,
        ),
        (
            Case {
                name: "IPPool without cidr",
                yaml: "spec: {blockSize: 26}",
                expect: &["spec.cidr", "Required value"],
            },
            POOL,
        ),
        // IPAMBlock
        (
            Case {
                name: "IPAMBlock name not derived from its cidr",
                yaml: "apiVersion: network.weft.dev/v1\nkind: IPAMBlock\nmetadata: {name: 10-244-1-0-26}\nspec: {cidr: 10.244.1.64/26, pool: default-ipv4-ippool, node: node-1}",
                expect: &["metadata.name must be spec.cidr with '.' and '/' replaced by '-'"],
            },
            "",
        ),
        // NetworkPolicy
        (
            Case {
                name: "unknown rule action",
                yaml: "spec: {ingress: [{action: Reject}]}",
                expect: &["spec.ingress[0].action", "\"Allow\"", "\"Pass\""],
            },
            POLICY,
        ),
        (
            Case {
                name: "unknown protocol name",
                yaml: "spec: {ingress: [{action: Allow, protocol: HTTP}]}",
                expect: &[
                    "spec.ingress[0].protocol",
                    "must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite",
                ],
            },
            POLICY,
        ),
        (
            Case {
                name: "protocol number out of range",
                yaml: "spec: {egress: [{action: Allow, protocol: 300}]}",
                expect: &["spec.egress[0].protocol", "between 1 and 255"],
            },
            POLICY,
        ),
        (
            Case {
                name: "ports without a protocol",
                yaml: "spec: {ingress: [{action: Allow, destination: {ports: [80]}}]}",
                expect: &[
                    "spec.ingress[0].protocol",
                    "ports and notPorts require protocol TCP, UDP, SCTP or UDPLite",
                ],
            },
            POLICY,
        ),
        (
            Case {
                name: "ports with ICMP",
                yaml: "spec: {ingress: [{action: Allow, protocol: ICMP, source: {notPorts: [22]}}]}",
                expect: &[
                    "spec.ingress[0].protocol",
                    "ports and notPorts require protocol",
                ],
            },
            POLICY,
        ),
        (
            Case {
                name: "port 70000",
                yaml: "spec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: [70000]}}]}",
                expect: &["spec.ingress[0].destination.ports", "number 1..65535"],
            },
            POLICY,
        ),
        (
            Case {
                name: "reversed port range",
                yaml: "spec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: ['2000:1000']}}]}",
                expect: &["spec.ingress[0].destination.ports", "first <= last"],
            },
            POLICY,
        ),
        (
            Case {
                name: "bad port name",
                yaml: "spec: {egress: [{action: Allow, protocol: UDP, destination: {ports: [Web_Port]}}]}",
                expect: &["spec.egress[0].destination.ports", "port name"],
            },
            POLICY,
        ),
        (
            Case {
                name: "nets entry not a CIDR",
                yaml: "spec: {ingress: [{action: Deny, source: {nets: [10.0.0.0/33]}}]}",
                expect: &[
                    "spec.ingress[0].source.nets",
                    "must be a CIDR such as 10.0.0.0/8 or an IP address",
                ],
            },
            POLICY,
        ),
        (
            Case {
                name: "icmp match with TCP",
                yaml: "spec: {egress: [{action: Allow, protocol: TCP, icmp: {type: 8}}]}",
                expect: &["spec.egress[0].icmp", "require protocol ICMP or ICMPv6"],
            },
            POLICY,
        ),
        (
            Case {
                name: "icmp code without type",
                yaml: "spec: {egress: [{action: Allow, protocol: ICMP, icmp: {code: 0}}]}",
                expect: &[
                    "spec.egress[0].icmp.code",
                    "icmp code requires an icmp type",
                ],
            },
            POLICY,
        ),
        (
            Case {
                name: "unknown policy type",
                yaml: "spec: {types: [Forward]}",
                expect: &["spec.types[0]", "\"Ingress\"", "\"Egress\""],
            },
            POLICY,
        ),
        (
            Case {
                name: "order as text",
                yaml: "spec: {order: first}",
                expect: &["spec.order", "expected numeric"],
            },
            POLICY,
        ),
        // GlobalNetworkPolicy
        (
            Case {
                name: "global notPorts range above 65535",
                yaml: "spec: {egress: [{action: Deny, protocol: TCP, destination: {notPorts: ['60000:70000']}}]}",
                expect: &["spec.egress[0].destination.notPorts", "1..65535"],
            },
            GLOBAL_POLICY,
        ),
        (
            Case {
                name: "global notNets entry not a CIDR",
                yaml: "spec: {ingress: [{action: Deny, source: {notNets: [192.168.0.0/40]}}]}",
                expect: &["spec.ingress[0].source.notNets", "must be a CIDR"],
            },
            GLOBAL_POLICY,
        ),
    ];
    cases
        .into_iter()
        .map(|(case, header)| {
            let yaml = format!("{header}{}", case.yaml);
            (case, yaml)
        })
        .collect()
}

async fn exists(api: &Api<DynamicObject>, name: &str) -> anyhow::Result<bool> {
    Ok(api.get_opt(name).await?.is_some())
}

#[tokio::test]
async fn every_bad_object_is_refused_with_its_field_named_and_nothing_is_stored()
-> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;
    support::ensure_namespace(&client, "catalogue").await?;

    let cases = catalogue();
    assert!(
        cases.len() >= 25,
        "the catalogue must hold at least 25 cases"
    );
    let mut failures = Vec::new();
    for (case, yaml) in &cases {
        let object = support::yaml(yaml);
        let (api, name) = support::api_for(&client, &object)?;
        match support::apply(&client, &object).await {
            Ok(_) => failures.push(format!("{}: was accepted", case.name)),
            Err(kube::Error::Api(status)) => {
                let message = status.message.clone();
                println!("| {} | {} |", case.name, message.replace('|', "\\|"));
                let missing: Vec<&str> = case
                    .expect
                    .iter()
                    .copied()
                    .filter(|text| !message.contains(text))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: message lacks {missing:?}: {message}",
                        case.name
                    ));
                }
                // Values whose type or list keys do not fit the schema fail while the API server
                // builds the apply patch, which it reports as 500; nothing is written either way.
                let patch_build_error = status.code == 500
                    && message.starts_with("failed to create typed patch object");
                if status.code != 422 && !patch_build_error {
                    failures.push(format!(
                        "{}: status code {}: {message}",
                        case.name, status.code
                    ));
                }
            }
            Err(other) => failures.push(format!("{}: unexpected error {other}", case.name)),
        }
        if exists(&api, &name).await? {
            failures.push(format!("{}: an object named {name} was stored", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn ippool_cidr_and_block_size_are_immutable() -> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;

    let header =
        "apiVersion: network.weft.dev/v1\nkind: IPPool\nmetadata: {name: immutable-pool}\n";
    let original = support::yaml(&format!(
        "{header}spec: {{cidr: 10.251.0.0/16, blockSize: 26}}"
    ));
    support::apply(&client, &original).await?;
    let (api, name) = support::api_for(&client, &original)?;

    let changes = [
        (
            "spec: {cidr: 10.252.0.0/16, blockSize: 26}",
            ["spec.cidr", "cidr is immutable"],
        ),
        (
            "spec: {cidr: 10.251.0.0/16, blockSize: 28}",
            ["spec.blockSize", "blockSize is immutable"],
        ),
        (
            "spec: {cidr: 10.251.0.0/16}",
            ["spec.blockSize", "blockSize is immutable"],
        ),
    ];
    for (spec, expect) in changes {
        let changed = support::yaml(&format!("{header}{spec}"));
        let err = support::apply(&client, &changed).await.expect_err(spec);
        let message = err.to_string();
        println!("| IPPool change `{spec}` | {message} |");
        for text in expect {
            assert!(
                message.contains(text),
                "{spec}: message lacks {text:?}: {message}"
            );
        }
        let stored = api.get(&name).await?;
        assert_eq!(
            stored.data["spec"], original["spec"],
            "{spec}: the stored pool changed"
        );
    }

    // Fields that are not immutable still change.
    let relabelled = support::yaml(&format!(
        "{header}spec: {{cidr: 10.251.0.0/16, blockSize: 26, disabled: true}}"
    ));
    support::apply(&client, &relabelled).await?;
    assert_eq!(api.get(&name).await?.data["spec"]["disabled"], true);
    Ok(())
}

#[tokio::test]
async fn a_second_claim_of_the_same_block_is_refused_by_name() -> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;

    let blocks: Api<weft_api::IpamBlock> = Api::all(client.clone());
    let cidr = "10.244.9.128/26".parse()?;
    let first = weft_api::IpamBlock::for_cidr(cidr, "default-ipv4-ippool", "node-a");
    let second = weft_api::IpamBlock::for_cidr(cidr, "default-ipv4-ippool", "node-b");
    blocks.create(&Default::default(), &first).await?;
    let err = blocks
        .create(&Default::default(), &second)
        .await
        .expect_err("double claim");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected AlreadyExists, got {other}"),
    }
    let stored = blocks.get("10-244-9-128-26").await?;
    assert_eq!(stored.spec.node, "node-a");
    Ok(())
}
