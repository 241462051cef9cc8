//! The operator's own HTTP ports: `/healthz` (the process serves), `/readyz` (it holds or waits
//! for the leader lease and its controller runs) and `/metrics` (Prometheus text format). The
//! operator runs on the host network, so the health port listens on the host's loopback (where
//! the kubelet probes) and `/metrics`, when it has an address of its own, is the only endpoint
//! other hosts and pods can reach.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Whether the controller is up; `/readyz` answers 503 until it is set.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Which endpoints one listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub health: bool,
    pub metrics: bool,
}

impl Endpoints {
    pub const ALL: Endpoints = Endpoints {
        health: true,
        metrics: true,
    };
    pub const HEALTH: Endpoints = Endpoints {
        health: true,
        metrics: false,
    };
    pub const METRICS: Endpoints = Endpoints {
        health: false,
        metrics: true,
    };
}

fn route(
    path: &str,
    endpoints: Endpoints,
    readiness: &Readiness,
    registry: &Registry,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" if endpoints.health => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if endpoints.health && readiness.get() => {
            respond(StatusCode::OK, TEXT, "ok\n".into())
        }
        "/readyz" if endpoints.health => {
            respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into())
        }
        "/metrics" if endpoints.metrics => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::metrics::encode(registry),
        ),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Binds `address` and returns the bound address (port 0 picks a free port) with the future that
/// serves `endpoints` until `shutdown` turns true.
pub async fn serve(
    address: SocketAddr,
    endpoints: Endpoints,
    readiness: Readiness,
    registry: Arc<Registry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let server = async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let readiness = readiness.clone();
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = route(request.uri().path(), endpoints, &readiness, &registry);
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "health connection ended with an error");
                }
            });
        }
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_readiness() {
        let registry = Registry::default();
        let readiness = Readiness::default();
        let all = Endpoints::ALL;
        assert_eq!(route("/readyz", all, &readiness, &registry).status(), 503);
        readiness.set(true);
        assert_eq!(route("/readyz", all, &readiness, &registry).status(), 200);
        assert_eq!(route("/healthz", all, &readiness, &registry).status(), 200);
        assert_eq!(route("/nope", all, &readiness, &registry).status(), 404);
    }

    #[test]
    fn each_listener_serves_only_its_endpoints() {
        let registry = Registry::default();
        let readiness = Readiness::default();
        readiness.set(true);
        let get = |path, endpoints| route(path, endpoints, &readiness, &registry).status();
        assert_eq!(get("/metrics", Endpoints::HEALTH), 404);
        assert_eq!(get("/healthz", Endpoints::HEALTH), 200);
        assert_eq!(get("/healthz", Endpoints::METRICS), 404);
        assert_eq!(get("/readyz", Endpoints::METRICS), 404);
        assert_eq!(get("/metrics", Endpoints::METRICS), 200);
    }
}
