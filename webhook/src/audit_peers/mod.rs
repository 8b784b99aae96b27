//! `GET /audit` answered with every replica's records, whichever replica the
//! Service picked.
//!
//! The webhook runs as a StatefulSet of several replicas, each with an audit
//! log of its own (a directory allows one writer), and the API server sends
//! each admission request to any of them: the denials are split between the
//! logs. Callers cannot choose the replica that answers them (the Service
//! picks one, and the webhook refuses `pods/proxy`, `exec` and
//! `port-forward` into gitwarden's namespace on purpose), so the replica
//! that answers asks the others for the same query and merges their records
//! ([`crate::audit::merge_newest_first`]).
//!
//! How, and what keeps it from widening who may read:
//!
//! - the replica first authorizes the caller itself, exactly as without
//!   peers (the caller of this module does that);
//! - the peers are the ready endpoints of the webhook's own Service
//!   (EndpointSlices labelled `kubernetes.io/service-name=NAME` in this
//!   pod's namespace), other than this pod;
//! - a peer is reached over HTTPS at its pod address, and must present a
//!   certificate for the Service's DNS name (`NAME.NAMESPACE.svc`) signed by
//!   the CA bundle beside this replica's own serving certificate: only a
//!   holder of the webhook's serving key gets the caller's credentials;
//! - the request carries the caller's credentials exactly as received
//!   (`Authorization`, or [`gitwarden_runtime::access::FORWARDED_AUTHORIZATION`]
//!   when the call came through the API server's service proxy): the peer
//!   reviews them itself (TokenReview and SubjectAccessReview, or its
//!   static audit token), so it answers only callers it would answer
//!   directly;
//! - it also carries [`names::AUDIT_SCOPE_HEADER`]` = `[`names::AUDIT_SCOPE_REPLICA`]:
//!   the peer answers from its own log and never asks further;
//! - no redirects are followed and no HTTP proxy is used.
//!
//! A peer that cannot answer (not ready, unreachable, refused, too slow:
//! [`PEER_TIMEOUT`]) does not fail the answer, and is not silent either: the
//! answer carries [`names::AUDIT_MISSING_HEADER`] (see [`Missing`]) and the
//! replica logs a warning.

mod endpoints;
mod missing;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderMap;
use gitwarden_shared::audit::AuditRecord;
use gitwarden_shared::names;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use tracing::Instrument as _;

pub use endpoints::{Here, Peer, Peers, peers_from_slices};
use endpoints::{is_service_name, service_dns_name};
pub use missing::{Missing, missing_header, replica_scope};

/// How long a peer has to answer, connection and TLS handshake included.
/// Peers are asked at the same time, and the EndpointSlices are listed
/// within [`LIST_TIMEOUT`] before: both together stay under the webhook's
/// default request timeout (10 s).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long listing the Service's EndpointSlices may take.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer taken from a peer ([`crate::audit::MAX_LIMIT`]
/// records of a few KiB each).
const MAX_BODY_BYTES: usize = 64 << 20;

/// Why one peer's records are missing.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// This replica's CA bundle cannot be read or holds no certificate: no
    /// peer can be verified.
    #[error("this replica's CA bundle {path} cannot verify peers: {error}")]
    Ca {
        /// The bundle.
        path: PathBuf,
        /// What is wrong with it.
        error: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTPS client: {0}")]
    Client(String),
    /// No answer in time.
    #[error("did not answer within {}s at {address}", PEER_TIMEOUT.as_secs())]
    Timeout {
        /// The peer's address.
        address: SocketAddr,
    },
    /// The request failed: refused, reset, or a certificate this replica
    /// does not trust.
    #[error("unreachable at {address}: {error}")]
    Request {
        /// The peer's address.
        address: SocketAddr,
        /// What failed.
        error: String,
    },
    /// The peer answered with an error (it refused the caller, or could
    /// not read its log).
    #[error("answered {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The peer answered 2xx with no list of records this version reads, or
    /// a too large one.
    #[error("answered with no audit records: {0}")]
    NoRecords(String),
}

/// Why the peers could not be found at all.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The API refused or failed.
    #[error("listing the EndpointSlices of Service {service}: {error}")]
    Api {
        /// `NAMESPACE/NAME`.
        service: String,
        /// The API error.
        error: String,
    },
    /// The API did not answer in time.
    #[error("listing the EndpointSlices of Service {service} took over {}s", LIST_TIMEOUT.as_secs())]
    Timeout {
        /// `NAMESPACE/NAME`.
        service: String,
    },
}

/// The service name given is no Service name.
#[derive(Debug, thiserror::Error)]
#[error(
    "--audit-peers-service {0:?} is not a Service name (lowercase letters, digits and '-', at most 63)"
)]
pub struct BadServiceName(String);

/// What the peers answered: their records, and the replicas whose records
/// are missing.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Each answering peer's records, newest first.
    pub answers: Vec<Vec<AuditRecord>>,
    /// The replicas that did not answer, and why.
    pub missing: Vec<Missing>,
}

/// Asks this replica's peers for their audit records on behalf of a caller
/// (see the module).
#[derive(Clone)]
pub struct AuditPeers {
    client: kube::Client,
    service: String,
    here: Here,
    ca_bundle: PathBuf,
}

impl std::fmt::Debug for AuditPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditPeers")
            .field("service", &self.service)
            .field("here", &self.here)
            .field("ca_bundle", &self.ca_bundle)
            .finish_non_exhaustive()
    }
}

impl AuditPeers {
    /// Peers behind `service` (this webhook's own Service, in
    /// `here.namespace`), found through `client` (which needs `list` on
    /// EndpointSlices there) and verified with the PEM CA bundle
    /// `ca_bundle` (the one beside this replica's serving certificate).
    pub fn new(
        client: kube::Client,
        service: &str,
        here: Here,
        ca_bundle: PathBuf,
    ) -> Result<Self, BadServiceName> {
        if !is_service_name(service) {
            return Err(BadServiceName(service.to_owned()));
        }
        Ok(AuditPeers {
            client,
            service: service.to_owned(),
            here,
            ca_bundle,
        })
    }

    /// The DNS name peers' certificates carry: `NAME.NAMESPACE.svc`, the
    /// name the API server calls the Service by (gitwarden-certs and the
    /// cert-manager overlay both put it in).
    pub fn server_name(&self) -> String {
        service_dns_name(&self.service, &self.here.namespace)
    }

    /// Every peer's answer to `GET /audit?{query}` for the caller whose
    /// request carried `headers` (already authorized by this replica), and
    /// the replicas that did not answer. Never fails: what cannot be asked
    /// is [`Gathered::missing`], each logged as a warning.
    pub async fn gather(&self, headers: &HeaderMap, query: Option<&str>) -> Gathered {
        let span = tracing::info_span!(
            "audit_peers",
            service = %self.service,
            namespace = %self.here.namespace
        );
        async {
            let mut gathered = Gathered::default();
            match self.peers().await {
                Ok(peers) => {
                    gathered.missing.extend(peers.skipped);
                    if !peers.ready.is_empty() {
                        let asked = self.ask_peers(&peers.ready, headers, query).await;
                        gathered.answers = asked.answers;
                        gathered.missing.extend(asked.missing);
                    }
                }
                Err(e) => gathered.missing.push(Missing {
                    replica: format!("the other replicas of {}", self.service),
                    why: e.to_string(),
                }),
            }
            for missing in &gathered.missing {
                tracing::warn!(replica = %missing.replica, reason = %missing.why,
                    "GET /audit answers without a replica's records");
            }
            tracing::debug!(
                answered = gathered.answers.len(),
                missing = gathered.missing.len(),
                "asked the other replicas"
            );
            gathered
        }
        .instrument(span)
        .await
    }

    /// Asks each of `peers` at once for `GET /audit?{query}` on behalf of
    /// the caller whose request carried `headers`: the records of those that
    /// answered, in the order of `peers`, and why the others did not.
    pub async fn ask_peers(
        &self,
        peers: &[Peer],
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Gathered {
        let mut gathered = Gathered::default();
        let certs = match self.ca_certificates().await {
            Ok(certs) => certs,
            Err(e) => {
                let why = e.to_string();
                gathered.missing.extend(peers.iter().map(|peer| Missing {
                    replica: peer.name.clone(),
                    why: why.clone(),
                }));
                return gathered;
            }
        };
        let asked = peers.iter().map(|peer| {
            let span =
                tracing::info_span!("audit_peer", peer = %peer.name, address = %peer.address);
            let certs = certs.clone();
            async move {
                let answer =
                    tokio::time::timeout(PEER_TIMEOUT, self.ask_one(peer, certs, headers, query))
                        .await
                        .unwrap_or(Err(PeerError::Timeout {
                            address: peer.address,
                        }));
                (peer, answer)
            }
            .instrument(span)
        });
        for (peer, answer) in futures::future::join_all(asked).await {
            match answer {
                Ok(records) => gathered.answers.push(records),
                Err(e) => gathered.missing.push(Missing {
                    replica: peer.name.clone(),
                    why: e.to_string(),
                }),
            }
        }
        gathered
    }

    /// The Service's EndpointSlices, as peers.
    async fn peers(&self) -> Result<Peers, ListError> {
        let service = format!("{}/{}", self.here.namespace, self.service);
        let listed = crate::service_endpoints::slices(
            self.client.clone(),
            &self.here.namespace,
            &self.service,
        );
        let slices = tokio::time::timeout(LIST_TIMEOUT, listed)
            .await
            .map_err(|_| ListError::Timeout {
                service: service.clone(),
            })?
            .map_err(|e| ListError::Api {
                service,
                error: gitwarden_runtime::errors::chain(&e),
            })?;
        let mut peers = peers_from_slices(&slices, &self.here);
        if let Some((set, replicas)) = self.statefulset_replicas().await {
            let absent = endpoints::absent_replicas(&set, replicas, &peers, &self.here);
            peers.skipped.extend(absent);
        }
        Ok(peers)
    }

    /// This pod's StatefulSet and how many replicas it should have; `None`
    /// when this pod is not a StatefulSet's or the StatefulSet cannot be
    /// read (then only the replicas the Service lists are known).
    async fn statefulset_replicas(&self) -> Option<(String, i32)> {
        let set = endpoints::statefulset_of(self.here.pod.as_deref()?)?;
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.here.namespace);
        match tokio::time::timeout(LIST_TIMEOUT, sets.get_opt(set)).await {
            Ok(Ok(Some(found))) => Some((set.to_owned(), found.spec.replicas.unwrap_or(1))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::debug!(statefulset = set, error = %e,
                    "cannot read the StatefulSet: only the replicas the Service lists are known");
                None
            }
            Err(_) => None,
        }
    }

    /// The CA bundle, read at every fan-out: it is rotated on disk with the
    /// serving certificate.
    async fn ca_certificates(&self) -> Result<Vec<reqwest::Certificate>, PeerError> {
        let ca = |error: String| PeerError::Ca {
            path: self.ca_bundle.clone(),
            error,
        };
        let pem = tokio::fs::read(&self.ca_bundle)
            .await
            .map_err(|e| ca(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca("no certificate in it".to_owned()));
        }
        Ok(certs)
    }

    async fn ask_one(
        &self,
        peer: &Peer,
        certs: Vec<reqwest::Certificate>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Vec<AuditRecord>, PeerError> {
        let server_name = self.server_name();
        // The peer's certificate is for the Service's name, not its address:
        // connect to the address, verify the name.
        let http = reqwest::Client::builder()
            .tls_certs_only(certs)
            .resolve(&server_name, peer.address)
            .https_only(true)
            .timeout(PEER_TIMEOUT)
            .connect_timeout(PEER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| PeerError::Client(gitwarden_runtime::errors::chain(&e)))?;
        let mut url = reqwest::Url::parse(&format!(
            "https://{server_name}:{}{}",
            peer.address.port(),
            crate::access::AUDIT_PATH
        ))
        .map_err(|e| PeerError::Client(e.to_string()))?;
        url.set_query(query.filter(|q| !q.is_empty()));
        let request = http
            .get(url)
            .header(names::AUDIT_SCOPE_HEADER, names::AUDIT_SCOPE_REPLICA)
            .headers(gitwarden_runtime::access::credential_headers(headers));
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                PeerError::Timeout {
                    address: peer.address,
                }
            } else {
                // The URL names the Service, not the peer: the address says
                // where.
                PeerError::Request {
                    address: peer.address,
                    error: gitwarden_runtime::errors::chain(&e.without_url()),
                }
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(PeerError::NoRecords(format!(
                    "the answer is larger than {} MiB",
                    MAX_BODY_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(PeerError::Refused {
                status: status.as_u16(),
                body: text.lines().next().unwrap_or_default().trim().to_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| PeerError::NoRecords(e.to_string()))
    }
}
