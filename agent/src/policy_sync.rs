//! Programs the node's policy table: the whole cluster's policy model compiled for this node's
//! endpoints, applied as the difference from what was last applied (the whole table, in one
//! transaction, after a start).
//!
//! Fail closed: the table carries the workload guard (`weft_policy::nft::Guard`), which drops
//! the traffic of every workload interface the agent has not bound to its pod's addresses. A
//! pod is bound in the same transaction that programs its policy, from the endpoint record ADD
//! wrote ([`endpoints`], [`bindings`]); a pod started while the agent is down stays dropped by
//! the table already in the kernel until the agent is back. Once the guard is in the kernel,
//! the marker that lets ADD wire pods is written (see `weft_cni::endpoint`).
//!
//! Pods wired before ADD wrote records (an upgrade) are adopted from their host routes
//! ([`adopt`]).
//!
//! After a change, connections the new policy denies are cut ([`cut`], [`conntrack`]), and an
//! address bound to a new interface (or unbound) loses its tracked connections.

pub mod adopt;
pub mod bindings;
pub mod conntrack;
pub mod cut;
pub mod endpoints;
mod readback;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use weft_policy::model::{Cluster, NAMESPACE_NAME_LABEL, Namespace, Policy, PolicyId};
use weft_policy::nft::{Guard, Ruleset, compile_for_node, compile_guarded, diff as policy_diff};

use crate::addresses;
use crate::kernel::{Kernel, KernelError};
use crate::policy_isolation;
use crate::view::ClusterView;
use bindings::Bindings;
use endpoints::EndpointWatch;

/// The table the agent's policy lives in.
pub const POLICY_TABLE: &str = "weft_policy";

/// What the policy table last received.
#[derive(Default)]
pub struct PolicySync {
    applied: Option<Ruleset>,
    /// The records ADD writes; without them (a bare dataplane in tests) the table is unguarded.
    endpoints: Option<EndpointWatch>,
    bound: Bindings,
    adoptions: adopt::Attempts,
    marked: bool,
    conntrack_missing: bool,
    /// Policies nft refused, as they were when refused, with nft's error.
    known_refused: BTreeMap<PolicyId, (Policy, String)>,
    refused: policy_isolation::Refused,
}

/// The policy model of the whole cluster and the keys of this node's endpoints.
pub fn policy_cluster(view: &ClusterView, node: &str) -> (Cluster, BTreeSet<String>) {
    let mut namespaces: BTreeMap<String, Namespace> = view
        .namespaces
        .iter()
        .map(|(name, labels)| {
            let mut labels = labels.clone();
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
            (
                name.clone(),
                Namespace {
                    name: name.clone(),
                    labels,
                },
            )
        })
        .collect();
    let holders = addresses::holders(&view.pods);
    let mut local = BTreeSet::new();
    let mut endpoints = Vec::with_capacity(view.pods.len());
    for (key, pod) in &view.pods {
        if pod.node == node {
            local.insert(key.clone());
        }
        namespaces
            .entry(pod.endpoint.namespace.clone())
            .or_insert_with(|| Namespace {
                name: pod.endpoint.namespace.clone(),
                labels: BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_owned(),
                    pod.endpoint.namespace.clone(),
                )]),
            });
        let mut endpoint = pod.endpoint.clone();
        endpoint
            .ips
            .retain(|ip| holders.get(ip).is_some_and(|holder| holder == key));
        endpoints.push(endpoint);
    }
    let policies = view
        .kubernetes_policies
        .values()
        .chain(view.weft_policies.values())
        .chain(view.global_policies.values())
        .cloned()
        .collect();
    (
        Cluster {
            namespaces,
            endpoints,
            policies,
        },
        local,
    )
}

impl PolicySync {
    /// Follows the endpoint records in `dir`; `changed` runs after each change of them (it
    /// wakes the loop for a policy pass). From then on the table is guarded.
    pub fn watch_endpoints(&mut self, dir: PathBuf, changed: impl Fn() + Send + 'static) {
        self.endpoints = Some(EndpointWatch::spawn(dir, changed));
        self.applied = None;
    }

    /// Applies the policy table; returns the number of nft lines sent.
    pub fn sync(
        &mut self,
        kernel: &Kernel,
        view: &ClusterView,
        node: &str,
    ) -> Result<usize, KernelError> {
        let (mut cluster, local) = policy_cluster(view, node);
        // A policy nft refused before stays replaced by its deny-all form until it changes.
        self.refused =
            policy_isolation::apply_known(&mut cluster.policies, &mut self.known_refused);
        let (compiled, bindings, guard) = match &self.endpoints {
            Some(watch) => {
                let mut records = watch.records();
                let adopted = adopt::adopt(
                    &mut self.adoptions,
                    kernel,
                    watch.dir(),
                    &cluster,
                    &local,
                    &records,
                );
                records.extend(adopted);
                let guard = Guard {
                    interface_prefix: weft_cni::naming::HOST_PREFIX.to_owned(),
                    exempt: vec![crate::routes::VXLAN_DEVICE.to_owned()],
                    bindings: bindings::bind(&mut cluster, &local, &records),
                };
                let compiled = compile_guarded(&cluster, POLICY_TABLE, &local, &guard);
                (compiled, guard.bindings.clone(), Some(guard))
            }
            None => (
                compile_for_node(&cluster, POLICY_TABLE, &local),
                Bindings::new(),
                None,
            ),
        };
        let compile = |cluster: &Cluster| match &guard {
            Some(guard) => compile_guarded(cluster, POLICY_TABLE, &local, guard),
            None => compile_for_node(cluster, POLICY_TABLE, &local),
        };
        let script = match &self.applied {
            Some(applied) if *applied == compiled => return Ok(0),
            Some(applied) => policy_diff(applied, &compiled).script,
            // First apply after a start: the table is replaced whole in one transaction, so
            // packets see the old rules or the new, never none.
            None => compiled.full_script(),
        };
        if self.applied.is_none() && self.endpoints.is_some() {
            // After a start, what is bound is what the table in the kernel binds: connections
            // of pods that keep their binding across the restart must survive it.
            self.bound = bindings::in_kernel(kernel.netns_path());
        }
        self.applied = None;
        let compiled = match kernel.nft(&script) {
            Ok(()) => compiled,
            Err(error) => self.isolate(kernel, &mut cluster, &compile, error)?,
        };
        self.applied = Some(compiled);
        // An address bound to a new interface, or unbound, must not carry the previous pod's
        // connections: forgotten here with the flows the change denies, in one conntrack
        // listing after the apply (the guard dropped the address's traffic until this apply).
        let changed: BTreeSet<IpAddr> = bindings
            .symmetric_difference(&self.bound)
            .map(|(_, ip)| *ip)
            .collect();
        self.bound = bindings;
        self.mark_guarded();
        self.cut_denied(kernel, &cluster, &local, &changed);
        Ok(script.lines().count())
    }

    /// nft refused the table: finds the policies it refuses (bisecting with `nft --check`),
    /// replaces each by its deny-all form and writes the table whole; returns what was applied.
    /// Fails with `error` when no policy is to blame (the fault is the node's, not a policy's).
    fn isolate(
        &mut self,
        kernel: &Kernel,
        cluster: &mut Cluster,
        compile: &impl Fn(&Cluster) -> Ruleset,
        error: KernelError,
    ) -> Result<Ruleset, KernelError> {
        // A diff may fail on a table changed behind the agent's back: the whole table first.
        let whole = compile(cluster);
        if kernel.nft(&whole.full_script()).is_ok() {
            return Ok(whole);
        }
        let found = policy_isolation::find_refused(&cluster.policies, &mut |subset| {
            let mut trial = cluster.clone();
            trial.policies = subset.to_vec();
            kernel
                .nft_check(&compile(&trial).full_script())
                .err()
                .map(|error| error.to_string())
        });
        if found.is_empty() {
            return Err(error);
        }
        for policy in &cluster.policies {
            if let Some(why) = found.get(&policy.id) {
                self.known_refused
                    .insert(policy.id.clone(), (policy.clone(), why.clone()));
            }
        }
        self.refused =
            policy_isolation::apply_known(&mut cluster.policies, &mut self.known_refused);
        let closed = compile(cluster);
        kernel.nft(&closed.full_script())?;
        Ok(closed)
    }

    /// The policies nft refused, programmed as deny-all, with nft's error.
    pub fn refused(&self) -> &policy_isolation::Refused {
        &self.refused
    }

    fn mark_guarded(&mut self) {
        if self.marked {
            return;
        }
        if let Some(watch) = &self.endpoints {
            match weft_cni::endpoint::mark_guarded(watch.dir()) {
                Ok(()) => self.marked = true,
                Err(error) => tracing::warn!(%error, "writing the guard marker; ADD waits"),
            }
        }
    }

    /// Cuts the tracked connections the policy just applied denies.
    /// Deletes the tracked connections of the addresses in `changed` (their binding changed).
    fn cut_denied(
        &mut self,
        kernel: &Kernel,
        cluster: &Cluster,
        local: &BTreeSet<String>,
        changed: &BTreeSet<IpAddr>,
    ) {
        if self.endpoints.is_none() || self.conntrack_missing {
            return;
        }
        let ipv6 = changed.iter().any(IpAddr::is_ipv6)
            || cluster
                .endpoints
                .iter()
                .filter(|endpoint| local.contains(&endpoint.key()))
                .any(|endpoint| endpoint.ips.iter().any(IpAddr::is_ipv6));
        let (forgotten, flows): (Vec<_>, Vec<_>) = match conntrack::list(kernel.netns_path(), ipv6)
        {
            Ok(flows) => flows
                .into_iter()
                .partition(|flow| changed.iter().any(|ip| flow.involves(ip))),
            Err(error) => return self.conntrack_failed(&error),
        };
        for flow in &forgotten {
            if let Err(error) = conntrack::delete(kernel.netns_path(), flow) {
                tracing::warn!(%error, "forgetting a connection of a rebound address");
            }
        }
        let own: BTreeSet<IpAddr> = match kernel.netlink(crate::kernel::netlink::ipv4_addresses) {
            Ok(addresses) => addresses
                .into_iter()
                .map(|(_, address)| IpAddr::V4(address.addr()))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "listing the node's addresses; not cutting flows");
                return;
            }
        };
        let cuts = cut::plan(cluster, local, &own, &flows);
        let netns = kernel.netns_path();
        for flow in cuts.delete.iter().chain(&cuts.release) {
            tracing::debug!(?flow, "deleting a connection's entry");
            if let Err(error) = conntrack::delete(netns, flow) {
                tracing::warn!(%error, "deleting a connection's entry");
            }
        }
        for flow in &cuts.mark {
            tracing::debug!(?flow, "cutting a flow the policy denies");
            if let Err(error) = conntrack::mark(netns, flow, weft_policy::nft::CUT_MARK) {
                tracing::warn!(%error, "cutting a denied flow");
            }
        }
    }

    fn conntrack_failed(&mut self, error: &conntrack::ConntrackError) {
        if let conntrack::ConntrackError::Tool { message, .. } = error
            && message.contains("No such file")
        {
            tracing::error!(%error, "the conntrack tool is missing: denied connections are not cut");
            self.conntrack_missing = true;
        } else {
            tracing::warn!(%error, "conntrack");
        }
    }

    /// Deletes the policy table (after the Installation is deleted), and the guard marker
    /// with it: ADD must not wire pods on a node without the guard.
    pub fn remove(&mut self, kernel: &Kernel) -> Result<(), KernelError> {
        if let Some(watch) = &self.endpoints {
            let _ = std::fs::remove_file(watch.dir().join(weft_cni::endpoint::GUARD_MARKER));
            self.marked = false;
        }
        kernel.nft(&format!(
            "add table inet {POLICY_TABLE}\ndelete table inet {POLICY_TABLE}\n"
        ))?;
        self.applied = None;
        self.bound.clear();
        Ok(())
    }
}
