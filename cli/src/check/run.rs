//! The sequence of one check run: place and start the pods, run the connectivity checks, then the
//! policy checks (`policies.rs`), and delete the namespace.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams};
use weft_api::{IpPool, NatOutgoing};

use super::cluster::{self, NodeInfo};
use super::objects::{self, CLIENT_PORT, ECHO_SERVICE, Role};
use super::probe::{Dialed, Target, dial};
use super::report::{Outcome, Report};
use super::{CheckError, Settings};

/// How long a connectivity check retries before it fails (routes may still be converging).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a dial should end in.
pub(super) enum Want {
    /// One of these pods answers.
    Answer(Vec<String>),
    Refused,
}

pub(super) struct Ctx<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    pub host_port: u16,
}

impl Ctx<'_> {
    fn port_of(&self, pod: &str) -> u16 {
        if pod == "host" {
            self.host_port
        } else {
            CLIENT_PORT
        }
    }

    /// Dials from `from` until the result is `want` or `timeout` passes. A denial counts only
    /// as [`DENIAL_TRIES`] dropped dials in a row (weft drops denied traffic): a refused
    /// connection or a single lost dial is no proof of policy. The outcome says how many tries
    /// it took.
    pub async fn until(
        &self,
        from: &str,
        host: &str,
        port: u16,
        want: &Want,
        timeout: Duration,
    ) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let target = Target {
            host,
            port,
            request: "hostname",
        };
        let mut tries = 0u32;
        let mut dropped_in_a_row = 0u32;
        loop {
            tries += 1;
            let dialed = dial(
                self.client,
                self.namespace,
                from,
                self.port_of(from),
                &target,
            )
            .await;
            match (want, &dialed) {
                (Want::Answer(names), Dialed::Answered(name)) if names.contains(name) => {
                    return Outcome::Pass(format!(
                        "{from} -> {host}:{port}: {name} answered ({})",
                        tries_text(tries)
                    ));
                }
                (Want::Refused, Dialed::Refused(error)) if dropped(error) => {
                    dropped_in_a_row += 1;
                    if dropped_in_a_row == DENIAL_TRIES {
                        return Outcome::Pass(format!(
                            "{from} -> {host}:{port}: denied (dropped {DENIAL_TRIES} times in a \
                             row; {})",
                            tries_text(tries)
                        ));
                    }
                    // A dropped dial has waited out its own timeout: dial again at once.
                    continue;
                }
                _ => dropped_in_a_row = 0,
            }
            if tokio::time::Instant::now() >= deadline {
                let seen = match dialed {
                    Dialed::Answered(name) => format!("{name} answered"),
                    Dialed::Refused(error) => format!("no connection ({error})"),
                    Dialed::Broken(error) => error,
                };
                let wanted = match want {
                    Want::Answer(names) => {
                        format!("expected an answer from {}", names.join(" or "))
                    }
                    Want::Refused => format!("expected {DENIAL_TRIES} dropped dials in a row"),
                };
                return Outcome::Fail(format!(
                    "{from} -> {host}:{port}: {wanted}, got {seen} ({})",
                    tries_text(tries)
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// How many dropped dials in a row make a denial.
const DENIAL_TRIES: u32 = 3;

/// Whether a failed dial's error says the connection attempt timed out (its packets dropped),
/// as opposed to refused (a closed port answers with a reset) or any other failure.
fn dropped(error: &str) -> bool {
    error.contains("timeout") || error.contains("deadline exceeded")
}

fn tries_text(tries: u32) -> String {
    match tries {
        1 => "first try".to_owned(),
        n => format!("{n} tries"),
    }
}

fn random_suffix() -> String {
    let n = RandomState::new().hash_one(std::process::id());
    format!("{:06x}", n & 0xff_ffff)
}

/// Runs every check against the cluster in KUBECONFIG.
pub async fn check(settings: &Settings) -> Result<Report, CheckError> {
    let client = Client::try_default().await?;
    let nodes = cluster::nodes(&client).await?;
    let run = random_suffix();
    let namespace = format!("weft-check-{run}");
    let host_port = 9000 + u16::from_str_radix(&run[..3], 16).unwrap_or(0) % 1000;
    let home = nodes[0].clone();
    let pods = [
        objects::pod("client", &run, Role::Client, &home.name, &settings.image),
        objects::pod(
            "stranger",
            &run,
            Role::Stranger,
            &home.name,
            &settings.image,
        ),
        objects::pod("echo-same", &run, Role::Echo, &home.name, &settings.image),
        objects::pod(
            "host",
            &run,
            Role::Host(host_port),
            &home.name,
            &settings.image,
        ),
    ];
    eprintln!(
        "weftctl check: namespace {namespace}, client node {}",
        home.name
    );
    cluster::create(
        &client,
        &objects::namespace(&namespace, &run),
        &objects::echo_service(&run),
        &pods,
    )
    .await?;
    let ctx = Ctx {
        client: &client,
        namespace: &namespace,
        host_port,
    };
    let mut report = Report::default();
    // Interrupted (Ctrl-C), the namespace is still deleted; the checks done so far are printed.
    let finished = tokio::select! {
        result = checks(&ctx, settings, &run, &home, &nodes[1..], &mut report) => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    let result = finished.unwrap_or_else(|| {
        report.add(
            "interrupted",
            Outcome::Fail("stopped by Ctrl-C before the end".to_owned()),
        );
        Ok(())
    });
    if settings.keep {
        eprintln!("weftctl check: kept namespace {namespace}");
    } else if let Err(error) = cluster::delete_namespace(&client, &namespace).await {
        eprintln!("weftctl check: could not delete namespace {namespace}: {error}");
    }
    result.map(|()| report)
}

/// Nodes other than the client's, in the client's subnet and in another one.
async fn place(
    ctx: &Ctx<'_>,
    settings: &Settings,
    others: &[NodeInfo],
) -> Result<(Option<String>, Option<String>), String> {
    cluster::wait_ready(
        ctx.client,
        ctx.namespace,
        &["host".to_owned()],
        settings.timeout,
    )
    .await?;
    let (mut same, mut cross) = (None, None);
    for node in others {
        let Some(address) = &node.address else {
            continue;
        };
        let slot =
            if cluster::other_subnet(ctx.client, ctx.namespace, "host", ctx.host_port, address)
                .await?
            {
                &mut cross
            } else {
                &mut same
            };
        slot.get_or_insert_with(|| node.name.clone());
    }
    Ok((same, cross))
}

async fn checks(
    ctx: &Ctx<'_>,
    settings: &Settings,
    run: &str,
    home: &NodeInfo,
    others: &[NodeInfo],
    report: &mut Report,
) -> Result<(), CheckError> {
    let (same, cross) = match place(ctx, settings, others).await {
        Ok(placed) => placed,
        Err(error) => {
            report.add(
                "setup",
                Outcome::Fail(format!("cannot place pods: {error}")),
            );
            return Ok(());
        }
    };
    let mut extra = Vec::new();
    for (name, node) in [("echo-other", &same), ("echo-cross", &cross)] {
        if let Some(node) = node {
            extra.push(objects::pod(name, run, Role::Echo, node, &settings.image));
        }
    }
    cluster::create_pods(ctx.client, ctx.namespace, &extra).await?;
    let mut names: Vec<String> = ["client", "stranger", "echo-same"]
        .map(String::from)
        .to_vec();
    names.extend(extra.iter().filter_map(|p| p.metadata.name.clone()));
    let ips = match cluster::wait_ready(ctx.client, ctx.namespace, &names, settings.timeout).await {
        Ok(ips) => ips,
        Err(error) => {
            report.add("pods ready", Outcome::Fail(error));
            return Ok(());
        }
    };
    report.add(
        "pods ready",
        Outcome::Pass(format!(
            "{} pods on {} nodes",
            names.len() + 1,
            1 + extra.len()
        )),
    );
    connectivity(ctx, settings, home, &ips, report).await?;
    super::policies::run(ctx, settings, run, &ips, report).await?;
    Ok(())
}

pub(super) fn want(names: &[&str]) -> Want {
    Want::Answer(names.iter().map(|n| (*n).to_owned()).collect())
}

async fn connectivity(
    ctx: &Ctx<'_>,
    settings: &Settings,
    home: &NodeInfo,
    ips: &BTreeMap<String, String>,
    report: &mut Report,
) -> Result<(), CheckError> {
    let same = &ips["echo-same"];
    report.add(
        "pod to pod, same node",
        ctx.until("client", same, 80, &want(&["echo-same"]), CONNECT_TIMEOUT)
            .await,
    );
    for (check, pod, missing) in [
        (
            "pod to pod, other node, same subnet",
            "echo-other",
            "no other node in the client's subnet",
        ),
        (
            "pod to pod, other node, cross subnet",
            "echo-cross",
            "no node in another subnet",
        ),
    ] {
        let outcome = match ips.get(pod) {
            Some(ip) => {
                ctx.until("client", ip, 80, &want(&[pod]), CONNECT_TIMEOUT)
                    .await
            }
            None => Outcome::Skip(missing.to_owned()),
        };
        report.add(check, outcome);
    }
    let echoes: Vec<&str> = ["echo-same", "echo-other", "echo-cross"]
        .into_iter()
        .filter(|p| ips.contains_key(*p))
        .collect();
    let service = Api::<Service>::namespaced(ctx.client.clone(), ctx.namespace)
        .get(ECHO_SERVICE)
        .await?;
    let cluster_ip = service.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    report.add(
        "pod to Service ClusterIP",
        ctx.until("client", &cluster_ip, 80, &want(&echoes), CONNECT_TIMEOUT)
            .await,
    );
    let dns = format!("{ECHO_SERVICE}.{}.svc.cluster.local", ctx.namespace);
    report.add(
        "pod to Service by DNS name",
        ctx.until("client", &dns, 80, &want(&echoes), CONNECT_TIMEOUT)
            .await,
    );
    report.add(
        "node to pod, same node",
        ctx.until("host", same, 80, &want(&["echo-same"]), CONNECT_TIMEOUT)
            .await,
    );
    // Across subnets the node's own traffic goes through the tunnel: the case the receiving
    // node's reverse-path filter judges.
    for (name, pod, absent) in [
        (
            "node to pod, other node, same subnet",
            "echo-other",
            "no other node in the client's subnet",
        ),
        (
            "node to pod, other node, cross subnet",
            "echo-cross",
            "no node in another subnet",
        ),
    ] {
        let outcome = match ips.get(pod) {
            Some(ip) => {
                ctx.until("host", ip, 80, &want(&[pod]), CONNECT_TIMEOUT)
                    .await
            }
            None => Outcome::Skip(absent.to_owned()),
        };
        report.add(name, outcome);
    }
    report.add(
        "pod to outside",
        outside(ctx, settings, home, &ips["client"]).await,
    );
    Ok(())
}

/// The source address the outside sees must be the node's with natOutgoing Enabled, the pod's with
/// Disabled (from the IPPool holding the client's address).
async fn outside(ctx: &Ctx<'_>, settings: &Settings, home: &NodeInfo, client_ip: &str) -> Outcome {
    let Some(outside) = settings.outside else {
        return Outcome::Skip("no --outside address given".to_owned());
    };
    let pools = match Api::<IpPool>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(pools) => pools.items,
        Err(error) => return Outcome::Fail(format!("cannot list IPPools: {error}")),
    };
    let Ok(ip) = client_ip.parse::<std::net::IpAddr>() else {
        return Outcome::Fail(format!("client pod address {client_ip:?} is not an IP"));
    };
    let pool = pools.iter().find(|p| {
        p.spec
            .cidr
            .parse::<ipnet::IpNet>()
            .is_ok_and(|net| net.contains(&ip))
    });
    let Some(pool) = pool else {
        return Outcome::Fail(format!("client address {client_ip} is in no IPPool"));
    };
    let nat = pool.spec.nat_outgoing.unwrap_or_default();
    let expected = match nat {
        NatOutgoing::Enabled => home.address.clone().unwrap_or_default(),
        NatOutgoing::Disabled => client_ip.to_owned(),
    };
    let host = outside.ip().to_string();
    let target = Target {
        host: &host,
        port: outside.port(),
        request: "clientip",
    };
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let dialed = dial(ctx.client, ctx.namespace, "client", CLIENT_PORT, &target).await;
        let seen = match &dialed {
            Dialed::Answered(addr) => addr
                .rsplit_once(':')
                .map_or(addr.as_str(), |(ip, _)| ip)
                .trim_matches(['[', ']'])
                .to_owned(),
            Dialed::Refused(error) | Dialed::Broken(error) => error.clone(),
        };
        if seen == expected {
            return Outcome::Pass(format!(
                "{outside} saw {seen} (natOutgoing {nat:?} in pool {})",
                pool.metadata.name.clone().unwrap_or_default()
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Outcome::Fail(format!(
                "{outside}: expected source {expected} (natOutgoing {nat:?}), got {seen}"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_timed_out_dial_counts_as_dropped() {
        assert!(dropped("dial tcp 10.0.0.1:80: i/o timeout"));
        assert!(dropped(
            "Get \"http://10.0.0.1:80/hostname\": context deadline exceeded (Client.Timeout \
             exceeded while awaiting headers)"
        ));
        assert!(!dropped(
            "dial tcp 10.0.0.1:80: connect: connection refused"
        ));
        assert!(!dropped("dial tcp: lookup echo: no such host"));
    }
}
