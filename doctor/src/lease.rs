//! Who holds the agent's leader Lease, and until when.
//!
//! Only the holder of the Lease syncs git, heals drift and guards the
//! admission chain. Whoever writes a holder of their own into it, with a long
//! duration, stops every agent replica without touching the agent itself; a
//! Lease that expired long ago means no agent has led since. Both are
//! critical. The holder counts as the agent when its identity names a pod
//! (`<pod>_<suffix>`, as the agent writes it) that runs in the Lease's
//! namespace as the agent's service account.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;

use crate::report::Finding;

/// The check id of every finding of this module.
const CHECK: &str = "leader/lease";

/// Which Lease to inspect, and whose it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTarget {
    /// The Lease's namespace (the agent's).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// The agent's service account, in that namespace.
    pub agent_service_account: String,
    /// How long a Lease may stay expired or released before nobody leading
    /// is critical (a rolling restart takes a lease duration or two).
    pub max_expired: Duration,
}

/// What the holder's identity turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderPod {
    /// A pod running as the agent's service account.
    Agent {
        /// The pod.
        pod: String,
    },
    /// A pod running as another service account.
    Other {
        /// The pod.
        pod: String,
        /// Its service account.
        service_account: String,
    },
    /// No pod of that name: not an agent replica in this cluster.
    NoPod,
    /// The pods could not be read.
    Unknown {
        /// The API error.
        error: String,
    },
}

/// The pod name an agent replica writes into `holderIdentity`: the part
/// before the random `_xxxxxxxx` suffix.
pub fn pod_of(holder: &str) -> Option<&str> {
    let (pod, suffix) = holder.rsplit_once('_')?;
    (suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_hexdigit()) && !pod.is_empty())
        .then_some(pod)
}

/// Judges the Lease (pure): `None` when it does not exist.
pub fn judge(
    lease: Option<&Lease>,
    holder_pod: &HolderPod,
    target: &LeaseTarget,
    now: jiff::Timestamp,
) -> Finding {
    let where_ = format!("{}/{}", target.namespace, target.name);
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Finding::warning(
            CHECK,
            format!(
                "the agent's leader Lease {where_} does not exist: no agent has run with leader election (or it runs with --leader-elect=false)"
            ),
        );
    };
    let seconds = spec
        .lease_duration_seconds
        .map_or(0, |s| u64::from(s.unsigned_abs()));
    let stamp = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let expiry = stamp.and_then(|t| t.checked_add(Duration::from_secs(seconds)).ok());
    let until = expiry.map_or_else(|| "an unknown time".to_owned(), |t| t.to_string());
    let expired_for = expiry
        .map(|t| now.duration_since(t))
        .filter(|d| d.is_positive())
        .map(|d| d.unsigned_abs());
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let stale = |expired: Duration| expired > target.max_expired;
    match (holder, expired_for) {
        (None, Some(expired)) if stale(expired) => Finding::critical(
            CHECK,
            format!(
                "the agent's leader Lease {where_} was released {}s ago and nobody took it: no agent leads, nothing syncs git or heals drift",
                expired.as_secs()
            ),
        ),
        (None, _) => Finding::ok(
            CHECK,
            format!(
                "the agent's leader Lease {where_} was released recently (a replica takes it on its next attempt)"
            ),
        ),
        (Some(holder), Some(expired)) if stale(expired) => Finding::critical(
            CHECK,
            format!(
                "the agent's leader Lease {where_} is held by {holder:?} but expired at {until}, {}s ago: no agent has renewed it (the agent is not running, or cannot lead)",
                expired.as_secs()
            ),
        ),
        (Some(holder), expired) => {
            let state = if expired.is_some() {
                format!("expired at {until} (a replica takes it on its next attempt)")
            } else {
                format!("until {until}")
            };
            match holder_pod {
                HolderPod::Agent { pod } => Finding::ok(
                    CHECK,
                    format!(
                        "the agent's leader Lease {where_} is held by {holder:?} (pod {pod}, service account {}) {state}",
                        target.agent_service_account
                    ),
                ),
                HolderPod::Other {
                    pod,
                    service_account,
                } => Finding::critical(
                    CHECK,
                    format!(
                        "the agent's leader Lease {where_} is held by {holder:?} {state}: pod {pod} runs as service account {service_account}, not the agent's ({}); no agent replica can lead while it holds the Lease",
                        target.agent_service_account
                    ),
                ),
                HolderPod::NoPod => Finding::critical(
                    CHECK,
                    format!(
                        "the agent's leader Lease {where_} is held by {holder:?} {state} (claims {seconds}s): that is no pod of the agent's service account {} in {}; no agent replica can lead while it holds the Lease",
                        target.agent_service_account, target.namespace
                    ),
                ),
                HolderPod::Unknown { error } => Finding::warning(
                    CHECK,
                    format!(
                        "the agent's leader Lease {where_} is held by {holder:?} {state}; whether that is an agent pod cannot be checked: {error}"
                    ),
                ),
            }
        }
    }
}

/// Reads the Lease and its holder's pod, and judges them.
pub async fn check(client: &Client, target: &LeaseTarget) -> Finding {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &target.namespace);
    let lease = match leases.get_opt(&target.name).await {
        Ok(lease) => lease,
        Err(e) => {
            return Finding::critical(
                CHECK,
                format!(
                    "cannot read the agent's leader Lease {}/{}: {e}",
                    target.namespace, target.name
                ),
            );
        }
    };
    let holder = lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    let holder_pod = match pod_of(&holder) {
        None => HolderPod::NoPod,
        Some(pod) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
            match pods.get_opt(pod).await {
                Ok(Some(found)) => {
                    let service_account = found
                        .spec
                        .and_then(|s| s.service_account_name)
                        .unwrap_or_else(|| "default".to_owned());
                    if service_account == target.agent_service_account {
                        HolderPod::Agent {
                            pod: pod.to_owned(),
                        }
                    } else {
                        HolderPod::Other {
                            pod: pod.to_owned(),
                            service_account,
                        }
                    }
                }
                Ok(None) => HolderPod::NoPod,
                Err(e) => HolderPod::Unknown {
                    error: e.to_string(),
                },
            }
        }
    };
    judge(lease.as_ref(), &holder_pod, target, jiff::Timestamp::now())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::Severity;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn now() -> jiff::Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn target() -> LeaseTarget {
        LeaseTarget {
            namespace: "gitwarden-system".into(),
            name: "gitwarden-agent".into(),
            agent_service_account: "gitwarden-agent".into(),
            max_expired: Duration::from_secs(300),
        }
    }

    fn lease(holder: Option<&str>, renewed: &str, seconds: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_agent_writes_its_pod_name_and_a_hex_suffix() {
        assert_eq!(
            pod_of("gitwarden-agent-7d9f-abcde_0badc0de"),
            Some("gitwarden-agent-7d9f-abcde")
        );
        assert_eq!(pod_of("mallory"), None);
        assert_eq!(pod_of("mallory_notahexx"), None);
        assert_eq!(pod_of("_0badc0de"), None);
    }

    #[test]
    fn an_agent_pod_holding_a_live_lease_is_fine_and_named() {
        let l = lease(Some("agent-0_0badc0de"), "2026-11-23T09:59:55Z", 15);
        let f = judge(
            Some(&l),
            &HolderPod::Agent {
                pod: "agent-0".into(),
            },
            &target(),
            now(),
        );
        assert_eq!(f.severity, Severity::Info, "{f:?}");
        assert!(f.message.contains("agent-0_0badc0de"), "{}", f.message);
        assert!(f.message.contains("2026-11-23T10:00:10Z"), "{}", f.message);
    }

    #[test]
    fn a_foreign_holder_is_critical_and_named_with_its_expiry() {
        let l = lease(Some("mallory"), "2026-11-23T09:59:00Z", 86_400);
        let f = judge(Some(&l), &HolderPod::NoPod, &target(), now());
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("\"mallory\""), "{}", f.message);
        assert!(f.message.contains("2026-11-24T09:59:00Z"), "{}", f.message);
        let other = HolderPod::Other {
            pod: "debug".into(),
            service_account: "default".into(),
        };
        let f = judge(Some(&l), &other, &target(), now());
        assert_eq!(f.severity, Severity::Critical);
        assert!(
            f.message.contains("service account default"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_lease_expired_long_ago_is_critical_even_for_an_agent_pod() {
        let l = lease(Some("agent-0_0badc0de"), "2026-11-23T09:00:00Z", 15);
        let agent = HolderPod::Agent {
            pod: "agent-0".into(),
        };
        let f = judge(Some(&l), &agent, &target(), now());
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("expired"), "{}", f.message);
        let recently = lease(Some("agent-0_0badc0de"), "2026-11-23T09:59:30Z", 15);
        assert_eq!(
            judge(Some(&recently), &agent, &target(), now()).severity,
            Severity::Info
        );
    }

    #[test]
    fn a_released_lease_is_fine_until_nobody_took_it_for_long() {
        let fresh = lease(None, "2026-11-23T09:59:58Z", 1);
        assert_eq!(
            judge(Some(&fresh), &HolderPod::NoPod, &target(), now()).severity,
            Severity::Info
        );
        let old = lease(None, "2026-11-23T08:00:00Z", 1);
        assert_eq!(
            judge(Some(&old), &HolderPod::NoPod, &target(), now()).severity,
            Severity::Critical
        );
    }

    #[test]
    fn no_lease_is_a_warning() {
        let f = judge(None, &HolderPod::NoPod, &target(), now());
        assert_eq!(f.severity, Severity::Warning);
    }
}
