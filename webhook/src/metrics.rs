//! Prometheus metrics of the webhook: what it decided, how fast, and whether its
//! configuration (policy, certificates) is healthy.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one admission decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The decision's reason code (e.g. `not_from_git`).
    pub reason: &'static str,
}

/// Labels naming an HTTP endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
}

/// Labels of a reload attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: the allow path should sit in the first buckets.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the webhook exports, registered once at start-up.
#[derive(Debug)]
pub struct WebhookMetrics {
    /// Admission requests answered, by endpoint, decision and reason.
    pub requests: Family<DecisionLabels, Counter>,
    /// Time from receiving a request to answering it, audit write included.
    pub latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    /// Bodies that were not a valid AdmissionReview (answered 400).
    pub bad_requests: Family<EndpointLabels, Counter>,
    /// Policy reloads by result.
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// 1 while the last policy loaded was valid, 0 while an invalid one is ignored.
    pub policy_valid: Gauge,
    /// Serving-certificate reloads by result.
    pub tls_reloads: Family<ReloadLabels, Counter>,
    /// The serving certificate's notAfter, Unix seconds: alert well before it.
    pub cert_not_after_seconds: Gauge,
}

impl WebhookMetrics {
    /// Creates the metrics and registers them under the `gitwarden_webhook` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            bad_requests: Family::default(),
            policy_reloads: Family::default(),
            policy_valid: Gauge::default(),
            tls_reloads: Family::default(),
            cert_not_after_seconds: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("gitwarden_webhook");
        r.register(
            "requests",
            "Admission requests answered, by decision and reason",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to answer an admission request, audit write included",
            m.latency.clone(),
        );
        r.register(
            "bad_requests",
            "Request bodies that were not a valid AdmissionReview",
            m.bad_requests.clone(),
        );
        r.register(
            "policy_reloads",
            "Policy reloads by result",
            m.policy_reloads.clone(),
        );
        r.register(
            "policy_valid",
            "1 while the newest policy is valid, 0 while an invalid one is ignored",
            m.policy_valid.clone(),
        );
        r.register(
            "tls_reloads",
            "Serving certificate reloads by result",
            m.tls_reloads.clone(),
        );
        r.register(
            "certificate_not_after_seconds",
            "The serving certificate's notAfter (Unix seconds)",
            m.cert_not_after_seconds.clone(),
        );
        m
    }
}
