//! The reconcile of `Installation/default`: read → validate → defaults → render → apply → delete
//! orphans → pools → status, behind a finalizer whose cleanup tears everything down in a safe
//! order and lets go after a bounded time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};
use weft_api::{ComponentStatus, Installation, InstallationStatus};

use crate::apply::{Change, Write};
use crate::children::{apply_all, teardown};
use crate::conditions::{Desired, merge};
use crate::context::Context;
use crate::error::{Error, FinalizerError, Policy};
use crate::ippools::PoolManager;
use crate::labels::{FIELD_MANAGER, INSTALLATION_NAME, controller_owner_ref};
use crate::prepare::prepare;
use crate::progress::Verdict;
use crate::render::{CONTROLLERS_NAME, NODE_AGENT_NAME, render};
use crate::status::{
    Problem, State, controllers_status, installation_conditions, node_status, pools_status,
    running_version, status_changed, with_problem, with_versions,
};
use crate::validate::ValidationErrors;

pub const FINALIZER: &str = "operator.weft.dev/teardown";

/// How soon an Installation that is not available is looked at again when nothing it watches
/// changes.
const NOT_AVAILABLE_RECHECK: Duration = Duration::from_secs(15);

/// Entry point for the controller: one span per reconcile, metrics around it.
pub async fn reconcile(
    installation: Arc<Installation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        installation = %installation.name_any(),
        generation = installation.metadata.generation.unwrap_or_default()
    );
    let started = Instant::now();
    let result = run(installation.clone(), &ctx).instrument(span).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    if result.is_ok() {
        ctx.retries.reset(&installation.name_any());
    }
    if let Err(error) = &result
        && error.policy() != Policy::Poll
    {
        ctx.metrics.observe_failure(error.kind());
    }
    result
}

/// What the controller does after a failed reconcile: transient failures are retried with
/// capped exponential backoff and jitter ([`crate::backoff`]).
pub fn error_policy(installation: Arc<Installation>, error: &Error, ctx: Arc<Context>) -> Action {
    match error.policy() {
        Policy::WaitForChange => Action::await_change(),
        Policy::Poll => Action::requeue(Duration::from_secs(2)),
        Policy::Retry => {
            let failures = ctx.retries.fail(&installation.name_any());
            let delay = ctx.settings.retry.delay(failures, crate::backoff::jitter());
            warn!(%error, failures, ?delay, "reconcile failed; retrying");
            Action::requeue(delay)
        }
    }
}

async fn run(installation: Arc<Installation>, ctx: &Context) -> Result<Action, Error> {
    if installation.name_any() != INSTALLATION_NAME {
        // The schema only admits `default`; anything else predates it and is left alone.
        warn!("ignoring an Installation not named {INSTALLATION_NAME}");
        return Ok(Action::await_change());
    }
    let api: Api<Installation> = Api::all(ctx.client.clone());
    let installation = with_finalizer(&api, installation)
        .await
        .map_err(|error| Error::Finalizer(FinalizerError::Add(error)))?;
    finalizer(&api, FINALIZER, installation, |event| async {
        match event {
            FinalizerEvent::Apply(installation) => apply(&installation, ctx).await,
            FinalizerEvent::Cleanup(installation) => cleanup(&installation, ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
        finalizer::Error::AddFinalizer(error) => Error::Finalizer(FinalizerError::Add(error)),
        finalizer::Error::RemoveFinalizer(error) => Error::Finalizer(FinalizerError::Remove(error)),
        // Neither depends on the Installation's content (the API server always names objects
        // and the finalizer is a constant): retried, not reported as invalid input.
        other @ (finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer) => {
            Error::Finalizer(FinalizerError::Refused(other.to_string()))
        }
    })
}

/// Adds the teardown finalizer to a live Installation that lacks it and goes on with the object
/// the API server returned. (The finalizer helper would add it and stop, leaving the first apply
/// to the reconcile its own write triggers, one debounce later.) The patch carries the
/// resourceVersion it was computed from, so a concurrent change of the finalizer list is a
/// conflict, retried, and never overwritten.
async fn with_finalizer(
    api: &Api<Installation>,
    installation: Arc<Installation>,
) -> Result<Arc<Installation>, kube::Error> {
    let has = installation
        .finalizers()
        .iter()
        .any(|name| name == FINALIZER);
    if has || installation.metadata.deletion_timestamp.is_some() {
        return Ok(installation);
    }
    let mut finalizers = installation.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": installation.resource_version(),
        }
    });
    let patched = api
        .patch(
            &installation.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Arc::new(patched))
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

async fn write_status(
    installation: &Installation,
    ctx: &Context,
    status: InstallationStatus,
) -> Result<bool, Error> {
    if !status_changed(installation.status.as_ref(), &status) {
        return Ok(false);
    }
    let api: Api<Installation> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({ "status": status });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    api.patch_status(&installation.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::Status)?;
    Ok(true)
}

fn previous_status(installation: &Installation) -> InstallationStatus {
    installation.status.clone().unwrap_or_default()
}

async fn report_invalid(
    installation: &Installation,
    ctx: &Context,
    errors: ValidationErrors,
) -> Error {
    let message = errors.to_string();
    let problem = Problem {
        reason: "InvalidConfiguration".into(),
        message: message.clone(),
    };
    let previous = previous_status(installation);
    let desired = with_problem(&previous.conditions, &problem);
    let status = InstallationStatus {
        conditions: merge(
            &previous.conditions,
            &desired,
            installation.metadata.generation,
            &now(),
        ),
        observed_generation: installation.metadata.generation,
        ..previous
    };
    match write_status(installation, ctx, status).await {
        Ok(true) => {
            let reference = installation.object_ref(&());
            ctx.events
                .warning(
                    &reference,
                    "InvalidConfiguration",
                    "Validate",
                    message.clone(),
                )
                .await;
        }
        Ok(false) => {}
        Err(error) => warn!(%error, "could not report the invalid configuration"),
    }
    Error::Invalid(errors)
}

async fn apply(installation: &Installation, ctx: &Context) -> Result<Action, Error> {
    if ctx.steady.holds(installation, ctx.settings.resync) {
        debug!("nothing watched changed since the last full sync");
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let epoch = ctx.steady.epoch();
    let result = sync(installation, ctx).await;
    let steady = matches!(&result, Ok((_, true)));
    ctx.steady.record(steady.then_some((installation, epoch)));
    result.map(|(action, _)| action)
}

/// A full sync: gather, validate, render, apply, report. Also says whether it ended in steady
/// state (nothing written, everything Available), which lets the next no-op reconcile skip it.
async fn sync(installation: &Installation, ctx: &Context) -> Result<(Action, bool), Error> {
    let mut nodes = crate::facts::Nodes::new(&ctx.client);
    let facts = &crate::facts::gather(&ctx.client, installation, &mut nodes)
        .await
        .map_err(Error::Facts)?;
    let networks = crate::facts::networks(&ctx.client, installation, &mut nodes)
        .await
        .map_err(Error::Facts)?;
    let computed = match prepare(installation, facts, &networks) {
        Ok(computed) => computed,
        Err(errors) => return Err(report_invalid(installation, ctx, errors).await),
    };
    let rendered = render(&computed, facts, controller_owner_ref(installation));
    let mut writes = Vec::new();
    let applied = apply_all(&ctx.client, rendered, &mut writes).await;
    let (workloads, pools) = match applied {
        Ok(applied) => applied,
        Err(error) => {
            let problem = Problem {
                reason: "ApplyFailed".into(),
                message: error.to_string(),
            };
            report_problem(installation, ctx, &problem).await;
            return Err(error.into());
        }
    };
    let pool_report = PoolManager::new(ctx.client.clone())
        .sync(&pools)
        .await
        .map_err(Error::Pools)?;
    writes.extend(pool_report.writes.iter().cloned());
    let (mtu, mtu_problem) = crate::node_mtu::effective(computed.network.mtu, &ctx.node_mtus);
    let mut node = node_status(workloads.daemon_sets.first());
    if let Some(problem) = mtu_problem {
        node = crate::status::degrade(node, &problem);
    }
    let mut components = vec![
        node,
        controllers_status(workloads.deployments.first()),
        pools_status(&pool_report.conflicts, &pool_report.draining, pools.len()),
    ];
    let look_again = name_pod_problems(ctx, &mut components[..2]).await;
    for status in &components {
        ctx.metrics
            .set_component(&status.name, State::of(status).name());
    }
    let previous_version = installation
        .status
        .as_ref()
        .and_then(|status| status.version.as_deref());
    let version = running_version(previous_version, &computed.image_tag, &components);
    let desired = with_versions(
        installation_conditions(&components, None),
        version.as_deref(),
        &computed.image_tag,
    );
    let changed = update_status(
        installation,
        ctx,
        &computed,
        Reported {
            mtu,
            version,
            components: components.clone(),
        },
        &desired,
    )
    .await?;
    announce(installation, ctx, &writes, &components, changed).await;
    let waiting = components
        .iter()
        .any(|status| State::of(status) != State::Available);
    Ok(if waiting {
        let wait = look_again.map_or(NOT_AVAILABLE_RECHECK, |wait| {
            wait.min(NOT_AVAILABLE_RECHECK)
        });
        (Action::requeue(wait), false)
    } else {
        let steady = writes.is_empty() && !changed;
        (Action::requeue(ctx.settings.resync), steady)
    })
}

/// Appends to each workload component that is not available and whose rollout has stalled what
/// keeps its pods from starting (looked up only then; see [`crate::progress`] and
/// [`crate::diagnose`]), and marks it Degraded once its pods have been failing for the grace
/// period. `components` are the node's and the controllers', in that order. Returns when to
/// look again: when a component still moving would count as stalled, or when failing pods
/// would outlast the grace period.
async fn name_pod_problems(ctx: &Context, components: &mut [ComponentStatus]) -> Option<Duration> {
    let workloads = [NODE_AGENT_NAME, CONTROLLERS_NAME];
    let now = Instant::now();
    let mut look_again: Option<Duration> = None;
    for (status, workload) in components.iter_mut().zip(workloads) {
        if status.available {
            ctx.progress.forget(workload);
            continue;
        }
        let message = status.message.as_deref().unwrap_or_default();
        if let Verdict::WaitFor(wait) = ctx.progress.observe(workload, message, now) {
            look_again = Some(look_again.map_or(wait, |earlier| earlier.min(wait)));
            continue;
        }
        match crate::diagnose::workload_pod_problems(&ctx.client, workload).await {
            Ok(problems) => {
                let failing = problems.as_ref().is_some_and(|problems| problems.failing);
                let failed_for = ctx.progress.failing_for(workload, failing, now);
                let Some(problems) = problems else { continue };
                let message = status.message.get_or_insert_default();
                message.push_str(": ");
                message.push_str(&problems.text);
                let grace = ctx.settings.degraded_grace;
                match failed_for {
                    Some(failed) if failed >= grace => {
                        // Constant while it lasts: status (and the Degraded Event) change once.
                        let note = format!("failing for more than {}s", grace.as_secs());
                        *status = crate::status::degrade(status.clone(), &note);
                    }
                    Some(failed) => {
                        let wait = grace - failed;
                        look_again = Some(look_again.map_or(wait, |earlier| earlier.min(wait)));
                    }
                    None => {}
                }
            }
            Err(error) => warn!(%error, workload, "looking up the pods of a component"),
        }
    }
    look_again
}

/// What a full sync found, beside the conditions.
struct Reported {
    mtu: Option<i32>,
    version: Option<String>,
    components: Vec<ComponentStatus>,
}

async fn update_status(
    installation: &Installation,
    ctx: &Context,
    computed: &weft_api::ComputedInstallation,
    reported: Reported,
    desired: &[Desired],
) -> Result<bool, Error> {
    let previous = previous_status(installation);
    let generation = installation.metadata.generation;
    let status = InstallationStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, desired, generation, &now()),
        version: reported.version,
        mtu: reported.mtu,
        computed: Some(computed.clone()),
        components: reported.components,
    };
    write_status(installation, ctx, status).await
}

/// Reports a problem with applying the current generation. `observedGeneration` moves to it
/// with the conditions, so a reader (kstatus, Flux) sees this generation failed (`Stalled`)
/// rather than one still waiting to be observed.
async fn report_problem(installation: &Installation, ctx: &Context, problem: &Problem) {
    let previous = previous_status(installation);
    let desired = with_problem(&previous.conditions, problem);
    let status = InstallationStatus {
        conditions: merge(
            &previous.conditions,
            &desired,
            installation.metadata.generation,
            &now(),
        ),
        observed_generation: installation.metadata.generation,
        ..previous
    };
    match write_status(installation, ctx, status).await {
        Ok(true) => {
            let reference = installation.object_ref(&());
            ctx.events
                .warning(
                    &reference,
                    &problem.reason,
                    "Apply",
                    problem.message.clone(),
                )
                .await;
        }
        Ok(false) => {}
        Err(error) => warn!(%error, "could not report {}", problem.reason),
    }
}

/// Logs every write and publishes the Events an admin must see.
async fn announce(
    installation: &Installation,
    ctx: &Context,
    writes: &[Write],
    components: &[ComponentStatus],
    status_changed: bool,
) {
    let reference = installation.object_ref(&());
    for write in writes {
        info!(kind = %write.kind, name = %write.name, "{}", write.describe());
        if let Change::Reverted(_) = write.change {
            ctx.events
                .warning(&reference, "DriftReverted", "Apply", write.describe())
                .await;
        }
    }
    if status_changed {
        for status in components.iter().filter(|status| status.degraded) {
            let note = status.message.clone().unwrap_or_default();
            ctx.events
                .warning(&reference, "Degraded", "Reconcile", note)
                .await;
        }
    }
}

async fn cleanup(installation: &Installation, ctx: &Context) -> Result<Action, Error> {
    let left = teardown(&ctx.client).await?;
    if left.is_empty() {
        info!("teardown complete");
        return Ok(Action::await_change());
    }
    let started = installation
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|time| time.0)
        .unwrap_or_else(jiff::Timestamp::now);
    let elapsed = jiff::Timestamp::now().duration_since(started);
    let limit = jiff::SignedDuration::try_from(ctx.settings.teardown_timeout).unwrap_or_default();
    if elapsed >= limit {
        let note = format!(
            "teardown gave up after {}s; still present: {}",
            limit.as_secs(),
            left.join(", ")
        );
        warn!("{note}");
        let reference = installation.object_ref(&());
        ctx.events
            .warning(&reference, "TeardownIncomplete", "Delete", note)
            .await;
        return Ok(Action::await_change());
    }
    Err(Error::TeardownPending(left))
}
