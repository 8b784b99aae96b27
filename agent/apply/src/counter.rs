//! Counting the HTTP requests a kube client sends.
//!
//! gitwarden promises that a resync where neither git nor the cluster changed
//! writes nothing; the only trustworthy proof is to count what actually goes
//! over the wire, below every layer of gitwarden's own code. The same counts
//! feed the agent's request metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use kube::client::ClientBuilder;
use tower::{Layer, Service};

/// Shared counters of the requests a [`kube::Client`] sent.
///
/// Cheap to clone (the counts are shared), so a test or the agent keeps one
/// handle while the client built with [`RequestCounter::client`] updates it.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: AtomicU64,
    writes: AtomicU64,
    dry_runs: AtomicU64,
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a client from `config` whose every request is counted here.
    ///
    /// Uses kube's default service stack (auth, TLS, timeouts) with the
    /// counting layer on top, so counted requests are exactly the ones kube
    /// sends.
    pub fn client(&self, config: kube::Config) -> Result<kube::Client, kube::Error> {
        Ok(ClientBuilder::try_from(config)?
            .with_layer(&self.layer())
            .build())
    }

    /// The tower layer that updates this counter, for callers composing
    /// their own client stack.
    pub fn layer(&self) -> CountingLayer {
        CountingLayer {
            counter: self.clone(),
        }
    }

    /// Every request sent, reads included.
    pub fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// Requests that can change the cluster: any method other than GET and
    /// HEAD, excluding server-side dry-runs (`dryRun=All`), which persist
    /// nothing.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Server-side dry-run requests (non-GET requests with `dryRun=All`).
    pub fn dry_runs(&self) -> u64 {
        self.inner.dry_runs.load(Ordering::Relaxed)
    }

    /// Every non-GET/HEAD request: [`Self::writes`] plus [`Self::dry_runs`].
    pub fn non_reads(&self) -> u64 {
        self.writes() + self.dry_runs()
    }

    fn record<B>(&self, request: &http::Request<B>) {
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        let method = request.method();
        if method == http::Method::GET || method == http::Method::HEAD {
            return;
        }
        let dry_run = request
            .uri()
            .query()
            .is_some_and(|query| query.split('&').any(|pair| pair == "dryRun=All"));
        if dry_run {
            self.inner.dry_runs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A [`tower::Layer`] wrapping a service in a [`CountingService`].
#[derive(Debug, Clone)]
pub struct CountingLayer {
    counter: RequestCounter,
}

impl<S> Layer<S> for CountingLayer {
    type Service = CountingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountingService {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// The service that counts each request, then passes it on unchanged.
#[derive(Debug, Clone)]
pub struct CountingService<S> {
    inner: S,
    counter: RequestCounter,
}

impl<S, B> Service<http::Request<B>> for CountingService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.counter.record(&request);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("valid request")
    }

    #[test]
    fn counts_writes_and_dry_runs_apart_from_reads() {
        let counter = RequestCounter::new();
        counter.record(&request("GET", "/api/v1/namespaces"));
        counter.record(&request("HEAD", "/api/v1/namespaces"));
        counter.record(&request(
            "PATCH",
            "/api/v1/namespaces/a?fieldManager=x&dryRun=All",
        ));
        counter.record(&request("PATCH", "/api/v1/namespaces/a?fieldManager=x"));
        counter.record(&request("DELETE", "/api/v1/namespaces/a"));
        assert_eq!(counter.total(), 5);
        assert_eq!(counter.writes(), 2);
        assert_eq!(counter.dry_runs(), 1);
        assert_eq!(counter.non_reads(), 3);
    }
}
