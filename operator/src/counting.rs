//! A `kube::Client` that counts the requests it sends by HTTP verb (LIST and WATCH are GETs), so the
//! cost of a reconcile is measurable from the operator's own metrics.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use kube::Client;
use kube::client::Body;

use crate::metrics::{Metrics, RequestLabels};

/// Forwards every request to the wrapped client after counting it.
#[derive(Clone)]
struct CountingService {
    inner: Client,
    metrics: Metrics,
}

impl tower_service::Service<hyper::Request<Body>> for CountingService {
    type Response = hyper::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: hyper::Request<Body>) -> Self::Future {
        let verb = request.method().as_str().to_owned();
        self.metrics
            .api_requests
            .get_or_create(&RequestLabels { verb })
            .inc();
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(request).await })
    }
}

/// Wraps `client` so that each request it sends is counted in `metrics`.
pub fn counting_client(client: Client, metrics: &Metrics) -> Client {
    let namespace = client.default_namespace().to_owned();
    let service = CountingService {
        inner: client,
        metrics: metrics.clone(),
    };
    Client::new(service, namespace)
}
