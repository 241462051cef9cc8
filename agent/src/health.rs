//! The agent's HTTP endpoints. On the health address (localhost by default: the kubelet probes
//! a host-network pod on the host's localhost, and no pod can reach it): `/healthz`, `/readyz`
//! and `/metrics`. On the metrics address, only when one is configured: `/metrics`.
//!
//! - `/readyz` is true only while this node's own dataplane is programmed: false until the
//!   first complete sync, and false again while a part of it (policy, NAT, routes, the VXLAN
//!   device, address detection) cannot be programmed. Refused peers or objects do not count:
//!   they cost only their own routes.
//! - `/healthz` fails when a loop of the agent has not completed a pass for the liveness
//!   timeout: a stuck API call or a lock held forever must not leave a dead agent "healthy".

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

#[derive(Debug)]
struct State {
    /// `None` when ready, else why not.
    not_ready: Option<String>,
    /// When each loop last completed a pass.
    beats: BTreeMap<&'static str, Instant>,
}

/// What the probes answer, shared by the loops that report into it.
#[derive(Clone, Debug)]
pub struct Health {
    state: Arc<Mutex<State>>,
    liveness: Duration,
}

impl Health {
    /// Not ready yet; live while every loop passes at least once per `liveness`.
    pub fn new(liveness: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                not_ready: Some("not synced yet".into()),
                beats: BTreeMap::new(),
            })),
            liveness,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// `loop_name` completed a pass (or started: the liveness clock starts here).
    pub fn beat(&self, loop_name: &'static str) {
        self.state().beats.insert(loop_name, Instant::now());
    }

    pub fn set_ready(&self) {
        self.state().not_ready = None;
    }

    pub fn set_not_ready(&self, why: String) {
        self.state().not_ready = Some(why);
    }

    pub fn is_ready(&self) -> bool {
        self.state().not_ready.is_none()
    }

    /// `Err` with the loops that are stuck, when any is.
    pub fn liveness(&self, now: Instant) -> Result<(), String> {
        let stuck: Vec<String> = self
            .state()
            .beats
            .iter()
            .filter(|(_, beat)| now.saturating_duration_since(**beat) > self.liveness)
            .map(|(name, beat)| {
                format!(
                    "the {name} loop has not completed a pass for {}s",
                    now.saturating_duration_since(*beat).as_secs()
                )
            })
            .collect();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(stuck.join("; "))
        }
    }
}

fn answer(path: &str, health: &Health, metrics: &Metrics, probes: bool) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" if probes => match health.liveness(Instant::now()) {
            Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/readyz" if probes => match health.state().not_ready.clone() {
            None => (StatusCode::OK, "ok\n".to_owned()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/metrics" => (StatusCode::OK, metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Binds `address` and serves the probes and metrics until the task is dropped; returns the
/// bound address.
pub async fn serve(
    address: SocketAddr,
    health: Health,
    metrics: Metrics,
) -> std::io::Result<SocketAddr> {
    serve_paths(address, health, metrics, true).await
}

/// Binds `address` and serves `/metrics` only.
pub async fn serve_metrics(address: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
    serve_paths(address, Health::new(Duration::MAX), metrics, false).await
}

async fn serve_paths(
    address: SocketAddr,
    health: Health,
    metrics: Metrics,
    probes: bool,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (health, metrics) = (health.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = answer(request.uri().path(), &health, &metrics, probes);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_fails_for_a_loop_that_stopped_passing() {
        let health = Health::new(Duration::from_secs(30));
        health.beat("dataplane");
        health.beat("ipam");
        let now = Instant::now();
        assert!(health.liveness(now).is_ok());
        health
            .state()
            .beats
            .insert("ipam", now - Duration::from_secs(31));
        let why = health.liveness(now).unwrap_err();
        assert!(
            why.contains("the ipam loop has not completed a pass"),
            "{why}"
        );
        assert!(!why.contains("dataplane"));
    }

    #[test]
    fn readiness_follows_the_node_and_says_why() {
        let health = Health::new(Duration::from_secs(30));
        assert!(!health.is_ready());
        health.set_ready();
        assert!(health.is_ready());
        health.set_not_ready("policy: nft refused the table".into());
        let response = answer("/readyz", &health, &Metrics::new(), true);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer("/readyz", &health, &Metrics::new(), false).status(),
            StatusCode::NOT_FOUND
        );
    }
}
