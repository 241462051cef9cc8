//! The policy checks: each applies its policies, checks what must pass and what must be denied,
//! deletes them and waits until the open path answers again, so no check sees another's policy.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};

use super::cluster;
use super::objects;
use super::report::{Outcome, Report};
use super::run::{Ctx, Want, want};
use super::{CheckError, Settings};

enum Policy {
    Kubernetes(Box<NetworkPolicy>),
    Weft(serde_json::Value),
}

async fn apply(ctx: &Ctx<'_>, policies: Vec<Policy>) -> Result<(), String> {
    for policy in policies {
        let result = match policy {
            Policy::Kubernetes(policy) => {
                cluster::add_policy(ctx.client, ctx.namespace, &policy).await
            }
            Policy::Weft(value) => match serde_json::from_value::<weft_api::NetworkPolicy>(value) {
                Ok(policy) => {
                    Api::<weft_api::NetworkPolicy>::namespaced(ctx.client.clone(), ctx.namespace)
                        .create(&PostParams::default(), &policy)
                        .await
                        .map(|_| ())
                }
                Err(error) => return Err(error.to_string()),
            },
        };
        result.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Applies `policies`, checks each expectation, removes them and waits for the open path again.
async fn case(
    ctx: &Ctx<'_>,
    settings: &Settings,
    ips: &BTreeMap<String, String>,
    policies: Vec<Policy>,
    expectations: &[(&str, u16, Want)],
) -> Outcome {
    if let Err(error) = apply(ctx, policies).await {
        return Outcome::Fail(format!("cannot create the policy: {error}"));
    }
    let mut details = Vec::new();
    let mut failed = None;
    for (from, port, want) in expectations {
        match ctx
            .until(
                from,
                &ips["echo-same"],
                *port,
                want,
                settings.policy_timeout,
            )
            .await
        {
            Outcome::Pass(detail) => details.push(detail),
            other => {
                failed = Some(other);
                break;
            }
        }
    }
    if let Err(error) = cluster::clear_policies(ctx.client, ctx.namespace).await {
        return Outcome::Fail(format!("cannot delete the policies: {error}"));
    }
    let restored = ctx
        .until(
            "client",
            &ips["echo-same"],
            80,
            &want(&["echo-same"]),
            settings.policy_timeout,
        )
        .await;
    match (failed, restored) {
        (Some(failed), _) => failed,
        (None, Outcome::Pass(_)) => Outcome::Pass(details.join("; ")),
        (None, Outcome::Fail(detail)) => {
            Outcome::Fail(format!("after deleting the policy: {detail}"))
        }
        (None, skip) => skip,
    }
}

pub(super) async fn run(
    ctx: &Ctx<'_>,
    settings: &Settings,
    run: &str,
    ips: &BTreeMap<String, String>,
    report: &mut Report,
) -> Result<(), CheckError> {
    use Policy::{Kubernetes, Weft};
    let echo = || want(&["echo-same"]);
    let outcome = case(
        ctx,
        settings,
        ips,
        vec![
            Kubernetes(Box::new(objects::deny_ingress(run))),
            Kubernetes(Box::new(objects::allow_probe(run))),
        ],
        &[("client", 80, Want::Refused)],
    )
    .await;
    report.add("policy: default-deny ingress", outcome);
    let outcome = case(
        ctx,
        settings,
        ips,
        vec![Kubernetes(Box::new(objects::deny_egress(run)))],
        &[("client", 80, Want::Refused)],
    )
    .await;
    report.add("policy: default-deny egress", outcome);
    let outcome = case(
        ctx,
        settings,
        ips,
        vec![
            Kubernetes(Box::new(objects::deny_ingress(run))),
            Kubernetes(Box::new(objects::allow_probe(run))),
            Kubernetes(Box::new(objects::allow_client(run))),
        ],
        &[("client", 80, echo()), ("stranger", 80, Want::Refused)],
    )
    .await;
    report.add("policy: allow by label", outcome);
    let outcome = case(
        ctx,
        settings,
        ips,
        vec![Weft(objects::blue_policy(run, ctx.namespace))],
        &[
            ("client", 80, echo()),
            ("client", 81, Want::Refused),
            ("stranger", 80, Want::Refused),
        ],
    )
    .await;
    report.add("policy: blue (TCP 80 from red only)", outcome);
    Ok(())
}
