//! A standby's `GET /status` answered with the leader's status.
//!
//! The Deployment runs two replicas behind one Service, and both are Ready (a
//! standby is ready by design, so rollouts work). Only the leader syncs, so
//! only its status says what the cluster runs; a standby's says "standby" and
//! little else. Callers cannot choose the replica: the Service picks one at
//! random, and the webhook refuses `pods/proxy`, `exec` and `port-forward`
//! into gitwarden's namespace on purpose. So a standby asks the leader and
//! answers with the leader's status and status code.
//!
//! How, and what keeps it from widening who may read:
//!
//! - the standby first authorizes the caller itself, exactly as for its own
//!   status (the caller of this module does that);
//! - the leader is the Lease's holder: `holderIdentity` is `<pod>_<random>`
//!   ([`crate::leader::LeaseConfig::default_identity`]); the pod is looked up
//!   in this replica's own namespace, and must run under this replica's own
//!   service account, so the caller's credentials go to nothing but another
//!   agent replica (a pod that runs as the agent holds the agent's rights
//!   anyway);
//! - the request carries the caller's credentials exactly as received
//!   (`Authorization`, or [`gitwarden_runtime::access::FORWARDED_AUTHORIZATION`]
//!   when the call came through the API server's service proxy): the leader
//!   reviews them itself, as for any caller, so it answers only callers it
//!   would answer directly;
//! - it also carries [`names::STATUS_SCOPE_HEADER`]` = `[`names::STATUS_SCOPE_REPLICA`]:
//!   the leader answers for itself and never forwards again (no loops while
//!   leadership changes hands);
//! - no redirects are followed and no HTTP proxy is used, so the credentials
//!   reach the pod's address and nothing else.
//!
//! When the leader cannot be reached (no holder, not in a pod, pod gone,
//! timeout, refused, the holder answers as a standby), the standby answers
//! with its own status and says why in [`names::STATUS_LEADER_UNREACHABLE_HEADER`]
//! (see [`LeaderUnreachable`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use gitwarden_shared::names;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tracing::Instrument as _;

use crate::standby::Standing;
use crate::status::Role;

/// How long a standby waits for the leader's answer, pod lookup included.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a looked-up leader pod's address is reused.
const POD_CACHE: Duration = Duration::from_secs(10);

/// The largest status document taken from the leader (it lists every
/// object of the last sync).
const MAX_BODY_BYTES: usize = 32 << 20;

/// The longest reason put in [`names::STATUS_LEADER_UNREACHABLE_HEADER`].
const MAX_REASON_CHARS: usize = 300;

/// Why a standby answers with its own status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaderUnreachable {
    /// The standby does not know who holds the Lease (not read yet, no holder).
    #[error(
        "this standby does not know the Lease's holder (no holder, or the Lease cannot be read)"
    )]
    NoHolder,
    /// `holderIdentity` is not `<pod>_<random>`.
    #[error("the Lease holder {identity:?} does not name a pod (expected <pod>_<random>)")]
    NotAPod {
        /// The holder identity.
        identity: String,
    },
    /// This process does not run in a pod: it cannot look the leader up.
    #[error(
        "this replica does not run in a pod (POD_NAME and POD_NAMESPACE unset): it cannot look up the leader's pod"
    )]
    NotInPod,
    /// The holder names this very pod: its previous process (a restarted
    /// container) holds the Lease until it expires.
    #[error(
        "the Lease holder {identity:?} is this pod's previous process (restarted); its lease has not expired yet"
    )]
    HolderIsThisPod {
        /// The holder identity.
        identity: String,
    },
    /// The leader's pod does not exist (deleted, or a holder outside the cluster).
    #[error("the leader's pod {namespace}/{pod} does not exist")]
    PodGone {
        /// The namespace looked in.
        namespace: String,
        /// The pod.
        pod: String,
    },
    /// The pod could not be read.
    #[error("reading the pod {namespace}/{pod}: {error}")]
    Lookup {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
        /// The API error.
        error: String,
    },
    /// The pod has no IP (not started, or finished).
    #[error("the leader's pod {pod} has no IP address")]
    NoPodIp {
        /// The pod.
        pod: String,
    },
    /// The holder's pod is not an agent replica like this one: the caller's
    /// credentials are not sent to it.
    #[error(
        "the Lease holder's pod {pod} runs as service account {service_account:?}, not as this agent's {own:?}: the caller's credentials are not sent to it"
    )]
    ForeignServiceAccount {
        /// The pod.
        pod: String,
        /// Its service account.
        service_account: String,
        /// This replica's.
        own: String,
    },
    /// No answer in time.
    #[error("the leader {pod} did not answer within {}s", LEADER_TIMEOUT.as_secs())]
    Timeout {
        /// The pod.
        pod: String,
    },
    /// The request failed (refused, reset…).
    #[error("asking the leader {pod} at {address}: {error}")]
    Request {
        /// The pod.
        pod: String,
        /// Its address.
        address: String,
        /// What failed.
        error: String,
    },
    /// The holder answered 2xx with no status document, or a too large one.
    #[error("the leader {pod} answered with no status document: {error}")]
    NoStatus {
        /// The pod.
        pod: String,
        /// Why it is not one.
        error: String,
    },
    /// The holder answered, but not as the leader (it lost or never
    /// took the Lease: leadership is changing hands).
    #[error("the Lease holder's pod {pod} answers as {role}, not as the leader")]
    NotLeader {
        /// The pod.
        pod: String,
        /// What it says it is.
        role: Role,
    },
}

impl LeaderUnreachable {
    /// The reason as a header value: printable ASCII only, at most a few
    /// hundred characters (error texts may hold anything).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&header_text(&self.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("the leader could not be reached"))
    }
}

/// `text` with everything but printable ASCII replaced, shortened.
fn header_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON_CHARS)
        .collect();
    if text.chars().count() > MAX_REASON_CHARS {
        out.push_str("...");
    }
    out
}

/// The pod named by a Lease holder identity `<pod>_<random>` (pod names
/// never hold `_`, so the pod is everything before the last one), `None`
/// when the identity does not have that shape or the part before is no
/// valid pod name (the Lease is outside input: anyone allowed to write it
/// chooses the text).
pub fn holder_pod(identity: &str) -> Option<&str> {
    let (pod, suffix) = identity.rsplit_once('_')?;
    (!suffix.is_empty() && is_pod_name(pod)).then_some(pod)
}

/// Whether `name` is a valid pod name (an RFC 1123 subdomain).
fn is_pod_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The Lease holder a standby waits for, from its own leader-election standing.
pub fn holder_identity(standing: &Standing) -> Option<&str> {
    match standing {
        Standing::Waiting {
            holder: Some(holder),
            ..
        }
        | Standing::Stuck {
            holder: Some(holder),
            ..
        } => Some(holder.identity.as_str()),
        _ => None,
    }
}

/// Whether the caller asked this replica about itself only
/// ([`names::STATUS_SCOPE_HEADER`]: [`names::STATUS_SCOPE_REPLICA`]).
pub fn replica_scope(headers: &HeaderMap) -> bool {
    gitwarden_runtime::access::asks_replica_only(
        headers,
        names::STATUS_SCOPE_HEADER,
        names::STATUS_SCOPE_REPLICA,
    )
}

/// Where this replica runs, as the downward API tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// This pod's name (`POD_NAME`).
    pub pod: Option<String>,
    /// This pod's namespace (`POD_NAMESPACE`, else the service account's
    /// namespace file).
    pub namespace: Option<String>,
}

impl Whereabouts {
    /// From the environment: `POD_NAME`, `POD_NAMESPACE` (deploy/base sets
    /// both from the downward API), else the mounted service account's
    /// namespace. Outside a pod both are usually absent.
    pub fn from_env() -> Self {
        let non_empty = |v: String| {
            let v = v.trim().to_owned();
            (!v.is_empty()).then_some(v)
        };
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .and_then(non_empty)
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .and_then(non_empty)
            });
        Whereabouts {
            pod: std::env::var("POD_NAME").ok().and_then(non_empty),
            namespace,
        }
    }
}

/// What the leader answered.
#[derive(Debug, Clone)]
pub struct LeaderAnswer {
    /// The leader's pod.
    pub pod: String,
    /// Its status code (a refusal of the caller included).
    pub status: StatusCode,
    /// Its `Content-Type` and `WWW-Authenticate`, when set.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

/// The leader pod's address, as last looked up.
#[derive(Debug, Clone)]
struct CachedPod {
    pod: String,
    ip: IpAddr,
    until: Instant,
}

/// Asks the leader for its status on behalf of a caller (see the module).
pub struct LeaderStatus {
    client: kube::Client,
    here: Whereabouts,
    port: u16,
    http: reqwest::Client,
    /// This replica's service account, once read from its own pod.
    own_service_account: tokio::sync::OnceCell<String>,
    cached: Mutex<Option<CachedPod>>,
}

impl std::fmt::Debug for LeaderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderStatus")
            .field("here", &self.here)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Building the HTTP client failed.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client that asks the leader: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl LeaderStatus {
    /// Asks leaders through `client` (which needs `get` on pods in this
    /// replica's namespace) at `port`, the port every replica listens on.
    pub fn new(client: kube::Client, here: Whereabouts, port: u16) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(LEADER_TIMEOUT)
            .connect_timeout(LEADER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(LeaderStatus {
            client,
            here,
            port,
            http,
            own_service_account: tokio::sync::OnceCell::new(),
            cached: Mutex::new(None),
        })
    }

    /// GET the leader's `/status` for the caller whose request carried
    /// `headers` (already authorized by this replica), the holder being
    /// taken from this standby's `standing`.
    pub async fn ask(
        &self,
        standing: &Standing,
        headers: &HeaderMap,
    ) -> Result<LeaderAnswer, LeaderUnreachable> {
        let identity = holder_identity(standing).ok_or(LeaderUnreachable::NoHolder)?;
        let pod = holder_pod(identity).ok_or_else(|| LeaderUnreachable::NotAPod {
            identity: identity.to_owned(),
        })?;
        let span = tracing::info_span!("leader_status", holder = %identity, leader = %pod);
        async {
            match tokio::time::timeout(LEADER_TIMEOUT, self.ask_pod(identity, pod, headers)).await {
                Ok(answer) => answer,
                Err(_) => Err(LeaderUnreachable::Timeout {
                    pod: pod.to_owned(),
                }),
            }
        }
        .instrument(span)
        .await
    }

    async fn ask_pod(
        &self,
        identity: &str,
        pod: &str,
        headers: &HeaderMap,
    ) -> Result<LeaderAnswer, LeaderUnreachable> {
        let (Some(own_pod), Some(namespace)) = (&self.here.pod, &self.here.namespace) else {
            return Err(LeaderUnreachable::NotInPod);
        };
        if pod == own_pod {
            return Err(LeaderUnreachable::HolderIsThisPod {
                identity: identity.to_owned(),
            });
        }
        let ip = self.leader_ip(namespace, own_pod, pod).await?;
        let address = SocketAddr::new(ip, self.port);
        let request = self
            .http
            .get(format!("http://{address}/status"))
            .header(names::STATUS_SCOPE_HEADER, names::STATUS_SCOPE_REPLICA)
            .headers(gitwarden_runtime::access::credential_headers(headers));
        let failed = |e: reqwest::Error| {
            // The cached address may be stale: look it up again next time.
            self.forget();
            if e.is_timeout() {
                LeaderUnreachable::Timeout {
                    pod: pod.to_owned(),
                }
            } else {
                LeaderUnreachable::Request {
                    pod: pod.to_owned(),
                    address: address.to_string(),
                    error: gitwarden_runtime::errors::chain(&e),
                }
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let mut kept = HeaderMap::new();
        for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE] {
            if let Some(value) = response.headers().get(&name) {
                kept.insert(name, value.clone());
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(LeaderUnreachable::NoStatus {
                    pod: pod.to_owned(),
                    error: format!("larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            // A 2xx must be a leader's status: a holder that answers as a
            // standby has just lost the Lease (or restarted).
            #[derive(serde::Deserialize)]
            struct RoleOnly {
                role: Role,
            }
            let role = serde_json::from_slice::<RoleOnly>(&body)
                .map_err(|e| LeaderUnreachable::NoStatus {
                    pod: pod.to_owned(),
                    error: e.to_string(),
                })?
                .role;
            if role != Role::Leader {
                return Err(LeaderUnreachable::NotLeader {
                    pod: pod.to_owned(),
                    role,
                });
            }
        }
        tracing::debug!(status = status.as_u16(), "the leader answered");
        Ok(LeaderAnswer {
            pod: pod.to_owned(),
            status,
            headers: kept,
            body,
        })
    }

    /// The leader pod's IP, from the cache or the API; checks that it runs
    /// as this replica's service account.
    async fn leader_ip(
        &self,
        namespace: &str,
        own_pod: &str,
        pod: &str,
    ) -> Result<IpAddr, LeaderUnreachable> {
        if let Some(cached) = self.lock_cache().as_ref()
            && cached.pod == pod
            && cached.until > Instant::now()
        {
            return Ok(cached.ip);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lookup = |name: &str, error: kube::Error| LeaderUnreachable::Lookup {
            namespace: namespace.to_owned(),
            pod: name.to_owned(),
            error: gitwarden_runtime::errors::chain(&error),
        };
        let own_service_account = self
            .own_service_account
            .get_or_try_init(|| async {
                match pods.get_opt(own_pod).await {
                    Ok(Some(p)) => Ok(service_account(&p)),
                    Ok(None) => Err(LeaderUnreachable::PodGone {
                        namespace: namespace.to_owned(),
                        pod: own_pod.to_owned(),
                    }),
                    Err(e) => Err(lookup(own_pod, e)),
                }
            })
            .await?;
        let leader = pods
            .get_opt(pod)
            .await
            .map_err(|e| lookup(pod, e))?
            .ok_or_else(|| LeaderUnreachable::PodGone {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
            })?;
        let theirs = service_account(&leader);
        if &theirs != own_service_account {
            return Err(LeaderUnreachable::ForeignServiceAccount {
                pod: pod.to_owned(),
                service_account: theirs,
                own: own_service_account.clone(),
            });
        }
        let ip = leader
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| LeaderUnreachable::NoPodIp {
                pod: pod.to_owned(),
            })?;
        *self.lock_cache() = Some(CachedPod {
            pod: pod.to_owned(),
            ip,
            until: Instant::now() + POD_CACHE,
        });
        Ok(ip)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<CachedPod>> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self) {
        *self.lock_cache() = None;
    }
}

/// A pod's service account (`default` when the spec names none).
fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::standby::Holder;

    #[test]
    fn the_pod_is_the_identity_up_to_the_last_underscore() {
        assert_eq!(
            holder_pod("gitwarden-agent-7d4f9c8b6-x2kq9_1a2b3c4d"),
            Some("gitwarden-agent-7d4f9c8b6-x2kq9")
        );
        // The identity this crate builds has that shape: a base (the pod
        // name in a pod), `_`, 8 hex digits.
        let identity = crate::leader::LeaseConfig::default_identity();
        let (base, suffix) = identity.rsplit_once('_').unwrap();
        assert_eq!(suffix.len(), 8, "{identity}");
        if is_pod_name(base) {
            assert_eq!(holder_pod(&identity), Some(base));
        }
    }

    #[test]
    fn identities_that_name_no_pod_are_refused() {
        for identity in [
            "",
            "no-suffix",
            "pod_",
            "_1a2b",
            "Upper_1a2b",
            "under_score_",
            "-dash_1a2b",
            "a/b_1a2b",
            "../x_1a2b",
            "pod name_1a2b",
            "mallory\r\nx-evil: 1_1a2b",
        ] {
            assert_eq!(holder_pod(identity), None, "{identity:?}");
        }
        assert_eq!(
            holder_pod("a.b_c_1a2b"),
            None,
            "an underscore in the pod part"
        );
        assert_eq!(holder_pod(&format!("{}_1", "a".repeat(64))), None);
        assert_eq!(holder_pod("pod.with.dots_1"), Some("pod.with.dots"));
    }

    #[test]
    fn only_a_waiting_or_stuck_standby_knows_a_holder() {
        let holder = Holder {
            identity: "gitwarden-agent-0_ab".into(),
            renewed_at: None,
            lease_seconds: 15,
            renewing: true,
        };
        let since: jiff::Timestamp = "2026-11-23T06:00:00Z".parse().unwrap();
        let waiting = Standing::Waiting {
            holder: Some(holder.clone()),
            waiting_since: since,
        };
        assert_eq!(holder_identity(&waiting), Some("gitwarden-agent-0_ab"));
        let stuck = Standing::Stuck {
            holder: Some(holder),
            waiting_since: since,
            stuck_since: since,
            reason: crate::standby::StuckReason::HolderNotRenewing,
            message: "m".into(),
        };
        assert_eq!(holder_identity(&stuck), Some("gitwarden-agent-0_ab"));
        let unread = Standing::Waiting {
            holder: None,
            waiting_since: since,
        };
        for standing in [Standing::Starting, Standing::Leading, unread] {
            assert_eq!(holder_identity(&standing), None, "{standing:?}");
        }
    }

    #[test]
    fn the_replica_scope_header_is_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!replica_scope(&headers));
        headers.insert(
            names::STATUS_SCOPE_HEADER,
            HeaderValue::from_static("Replica"),
        );
        assert!(replica_scope(&headers));
        headers.insert(
            names::STATUS_SCOPE_HEADER,
            HeaderValue::from_static("leader"),
        );
        assert!(!replica_scope(&headers));
    }

    #[test]
    fn reasons_become_safe_header_values() {
        let reason = LeaderUnreachable::Request {
            pod: "gitwarden-agent-1".into(),
            address: "10.0.0.7:8080".into(),
            error: "connection refused\r\nx-injected: yes ü".into(),
        };
        let value = reason.header_value();
        let text = value.to_str().unwrap();
        assert!(
            text.contains("connection refused??x-injected: yes ?"),
            "{text}"
        );
        let long = LeaderUnreachable::NoStatus {
            pod: "p".into(),
            error: "x".repeat(1000),
        };
        let text = long.header_value().to_str().unwrap().to_owned();
        assert!(text.len() <= MAX_REASON_CHARS + 3 && text.ends_with("..."));
    }
}
