//! Which other replicas to ask: the ready endpoints of the webhook's own
//! Service, other than this pod, from its EndpointSlices.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use gitwarden_shared::names;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use super::Missing;

/// The namespace file of the mounted service account token.
const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Where this replica runs, as the downward API tells it: what identifies
/// this pod among the Service's endpoints, and where the Service lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Here {
    /// This pod's name (`POD_NAME`, else `HOSTNAME`: a pod's host name is
    /// its name).
    pub pod: Option<String>,
    /// This pod's address (`POD_IP`).
    pub ip: Option<IpAddr>,
    /// This pod's namespace (`POD_NAMESPACE`, else the service account's
    /// namespace file, else gitwarden's namespace).
    pub namespace: String,
}

impl Here {
    /// From the environment (deploy/base sets `POD_NAME`, `POD_IP` and
    /// `POD_NAMESPACE` from the downward API).
    pub fn from_env() -> Self {
        let env = |name: &str| std::env::var(name).ok().and_then(non_empty);
        let namespace = env("POD_NAMESPACE")
            .or_else(|| {
                std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE_FILE)
                    .ok()
                    .and_then(non_empty)
            })
            .unwrap_or_else(|| names::SYSTEM_NAMESPACE.to_owned());
        Here {
            pod: env("POD_NAME").or_else(|| env("HOSTNAME")),
            ip: env("POD_IP").and_then(|ip| ip.parse().ok()),
            namespace,
        }
    }

    /// Whether `endpoint` is this pod: its target is this pod by name, or
    /// one of its addresses is this pod's.
    fn is(&self, endpoint: &Endpoint) -> bool {
        let by_name = endpoint
            .target_ref
            .as_ref()
            .and_then(|target| target.name.as_deref())
            .is_some_and(|name| self.pod.as_deref() == Some(name));
        let by_ip = self.ip.is_some_and(|ip| {
            endpoint
                .addresses
                .iter()
                .any(|address| address.parse::<IpAddr>().ok() == Some(ip))
        });
        by_name || by_ip
    }
}

fn non_empty(value: String) -> Option<String> {
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

/// Another replica to ask, as its Service's EndpointSlices list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its pod (the endpoint's target), else its address: names it in
    /// messages.
    pub name: String,
    /// Its pod address and the Service's target port.
    pub address: SocketAddr,
}

/// The other replicas behind the Service: those to ask, and those known
/// but not asked (not ready, no usable address or port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// Ready peers, by name.
    pub ready: Vec<Peer>,
    /// Peers that are not asked, and why.
    pub skipped: Vec<Missing>,
}

/// The peers of `here` among the endpoints of `slices` (the Service's
/// EndpointSlices): every endpoint but this pod's, each pod once (a
/// dual-stack Service lists a pod in one slice per address family; the
/// first listed is used). Ready endpoints are asked at the endpoint's first
/// address and the slice's port (the one named `https` when there are
/// several); the others are reported as missing.
pub fn peers_from_slices(slices: &[EndpointSlice], here: &Here) -> Peers {
    let mut seen = HashSet::new();
    let mut peers = Peers::default();
    for slice in slices {
        let port = slice_port(slice);
        for endpoint in slice.endpoints.iter().flatten() {
            if here.is(endpoint) {
                continue;
            }
            let address = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok());
            let name = endpoint
                .target_ref
                .as_ref()
                .and_then(|target| target.name.clone())
                .or_else(|| endpoint.addresses.first().cloned())
                .unwrap_or_else(|| "an endpoint with no address".to_owned());
            if !seen.insert(name.clone()) {
                continue;
            }
            let ready = crate::service_endpoints::is_ready(endpoint);
            let terminating = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false);
            let skip = |why: &str| Missing {
                replica: name.clone(),
                why: why.to_owned(),
            };
            match (ready, address, port) {
                (false, _, _) if terminating => peers.skipped.push(skip("terminating")),
                (false, _, _) => peers.skipped.push(skip("not ready")),
                (true, None, _) => peers.skipped.push(skip(&format!(
                    "no IP address in its endpoint ({} {:?})",
                    slice.address_type, endpoint.addresses
                ))),
                (true, _, None) => {
                    peers
                        .skipped
                        .push(skip("the Service's EndpointSlice names no port"));
                }
                (true, Some(ip), Some(port)) => peers.ready.push(Peer {
                    name,
                    address: SocketAddr::new(ip, port),
                }),
            }
        }
    }
    peers.ready.sort_by(|a, b| a.name.cmp(&b.name));
    peers
}

/// The StatefulSet a pod named `<set>-<ordinal>` belongs to, by the
/// StatefulSet controller's naming rule.
pub fn statefulset_of(pod: &str) -> Option<&str> {
    let (set, ordinal) = pod.rsplit_once('-')?;
    (!set.is_empty() && !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
        .then_some(set)
}

/// The replicas a StatefulSet `set` of `replicas` should have that the
/// Service lists nowhere, this pod left out: their records are missing too,
/// and the answer must say so (a pod that is gone or being rescheduled has
/// no endpoint at all, ready or not).
pub fn absent_replicas(set: &str, replicas: i32, peers: &Peers, here: &Here) -> Vec<Missing> {
    let known: HashSet<&str> = peers
        .ready
        .iter()
        .map(|p| p.name.as_str())
        .chain(peers.skipped.iter().map(|m| m.replica.as_str()))
        .chain(here.pod.as_deref())
        .collect();
    (0..replicas.max(0))
        .map(|ordinal| format!("{set}-{ordinal}"))
        .filter(|name| !known.contains(name.as_str()))
        .map(|replica| Missing {
            replica,
            why: "no endpoint: the pod is not running".to_owned(),
        })
        .collect()
}

/// The port of a slice: its only one, else the one named `https`.
fn slice_port(slice: &EndpointSlice) -> Option<u16> {
    let ports: Vec<_> = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .collect();
    let port = match ports.as_slice() {
        [only] => only,
        several => several
            .iter()
            .find(|p| p.name.as_deref() == Some("https"))?,
    };
    port.port.and_then(|p| u16::try_from(p).ok())
}

/// Whether `name` can name a Service (an RFC 1035 label).
pub(super) fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
}

/// The DNS name of Service `service` in `namespace` that its serving
/// certificate carries: `NAME.NAMESPACE.svc`.
pub(super) fn service_dns_name(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};

    fn endpoint(pod: &str, ip: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.to_owned()],
            conditions: Some(EndpointConditions {
                ready,
                ..Default::default()
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_owned()),
                name: Some(pod.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(address_type: &str, ports: &[(&str, i32)], endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: address_type.to_owned(),
            endpoints: Some(endpoints),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: Some((*name).to_owned()),
                        port: Some(*port),
                        protocol: Some("TCP".to_owned()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    pub(in crate::audit_peers) fn here(pod: Option<&str>, ip: Option<&str>) -> Here {
        Here {
            pod: pod.map(str::to_owned),
            ip: ip.map(|ip| ip.parse().unwrap()),
            namespace: "gitwarden-system".to_owned(),
        }
    }

    fn webhook_slice() -> EndpointSlice {
        slice(
            "IPv4",
            &[("https", 8443)],
            vec![
                endpoint("gitwarden-webhook-0", "10.0.0.10", Some(true)),
                endpoint("gitwarden-webhook-1", "10.0.0.11", Some(true)),
                endpoint("gitwarden-webhook-2", "10.0.0.12", None),
            ],
        )
    }

    #[test]
    fn a_statefulset_pod_names_its_set() {
        assert_eq!(
            statefulset_of("gitwarden-webhook-1"),
            Some("gitwarden-webhook")
        );
        assert_eq!(
            statefulset_of("gitwarden-webhook-12"),
            Some("gitwarden-webhook")
        );
        assert_eq!(statefulset_of("gitwarden-webhook-abc12"), None);
        assert_eq!(statefulset_of("webhook"), None);
        assert_eq!(statefulset_of("-1"), None);
    }

    #[test]
    fn a_replica_the_service_lists_nowhere_is_missing_but_listed_ones_are_not() {
        let slice = slice(
            "IPv4",
            &[("https", 8443)],
            vec![
                endpoint("gitwarden-webhook-0", "10.0.0.10", Some(true)),
                endpoint("gitwarden-webhook-2", "10.0.0.12", Some(false)),
            ],
        );
        let here = here(Some("gitwarden-webhook-0"), None);
        let peers = peers_from_slices(&[slice], &here);
        let absent = absent_replicas("gitwarden-webhook", 4, &peers, &here);
        let names: Vec<&str> = absent.iter().map(|m| m.replica.as_str()).collect();
        assert_eq!(names, ["gitwarden-webhook-1", "gitwarden-webhook-3"]);
        assert!(absent[0].why.contains("no endpoint"), "{:?}", absent[0]);
        assert!(absent_replicas("gitwarden-webhook", 1, &peers, &here).is_empty());
    }

    #[test]
    fn peers_are_the_other_ready_endpoints_at_the_slices_port() {
        let peers = peers_from_slices(&[webhook_slice()], &here(Some("gitwarden-webhook-1"), None));
        assert_eq!(
            peers.ready,
            vec![
                Peer {
                    name: "gitwarden-webhook-0".into(),
                    address: "10.0.0.10:8443".parse().unwrap(),
                },
                Peer {
                    name: "gitwarden-webhook-2".into(),
                    address: "10.0.0.12:8443".parse().unwrap(),
                },
            ]
        );
        assert!(peers.skipped.is_empty());
    }

    #[test]
    fn this_pod_is_recognised_by_its_address_too() {
        let peers = peers_from_slices(&[webhook_slice()], &here(None, Some("10.0.0.10")));
        let names: Vec<_> = peers.ready.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["gitwarden-webhook-1", "gitwarden-webhook-2"]);
    }

    #[test]
    fn endpoints_that_cannot_answer_are_reported_not_asked() {
        let mut terminating = endpoint("gitwarden-webhook-2", "10.0.0.12", Some(false));
        terminating.conditions = Some(EndpointConditions {
            ready: Some(false),
            terminating: Some(true),
            ..Default::default()
        });
        let slices = [slice(
            "IPv4",
            &[("https", 8443)],
            vec![
                endpoint("gitwarden-webhook-0", "10.0.0.10", Some(true)),
                endpoint("gitwarden-webhook-1", "10.0.0.11", Some(false)),
                terminating,
            ],
        )];
        let peers = peers_from_slices(&slices, &here(Some("gitwarden-webhook-0"), None));
        assert!(peers.ready.is_empty(), "{peers:?}");
        assert_eq!(
            peers.skipped,
            vec![
                Missing {
                    replica: "gitwarden-webhook-1".into(),
                    why: "not ready".into()
                },
                Missing {
                    replica: "gitwarden-webhook-2".into(),
                    why: "terminating".into()
                },
            ]
        );
    }

    #[test]
    fn a_pod_in_two_slices_is_asked_once() {
        let v6 = slice(
            "IPv6",
            &[("https", 8443)],
            vec![endpoint("gitwarden-webhook-1", "fd00::11", Some(true))],
        );
        let peers = peers_from_slices(
            &[webhook_slice(), v6],
            &here(Some("gitwarden-webhook-0"), None),
        );
        let names: Vec<_> = peers.ready.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["gitwarden-webhook-1", "gitwarden-webhook-2"]);
    }

    #[test]
    fn the_port_is_the_only_one_or_the_one_named_https() {
        let two = slice(
            "IPv4",
            &[("metrics", 9090), ("https", 8443)],
            vec![endpoint("p", "10.0.0.1", Some(true))],
        );
        assert_eq!(slice_port(&two), Some(8443));
        let other = slice("IPv4", &[("web", 8080)], vec![]);
        assert_eq!(slice_port(&other), Some(8080));
        let ambiguous = slice(
            "IPv4",
            &[("a", 1), ("b", 2)],
            vec![endpoint("p", "10.0.0.1", Some(true))],
        );
        assert_eq!(slice_port(&ambiguous), None);
        let peers = peers_from_slices(&[ambiguous], &here(None, None));
        assert_eq!(peers.skipped.len(), 1, "{peers:?}");
        assert!(peers.skipped[0].why.contains("no port"), "{peers:?}");
    }

    #[test]
    fn an_fqdn_endpoint_is_reported() {
        let fqdn = slice(
            "FQDN",
            &[("https", 443)],
            vec![endpoint("p", "example.com", Some(true))],
        );
        let peers = peers_from_slices(&[fqdn], &here(None, None));
        assert!(peers.ready.is_empty());
        assert!(peers.skipped[0].why.contains("no IP address"), "{peers:?}");
    }

    #[test]
    fn only_service_names_are_accepted() {
        for bad in ["", "Upper", "a.b", "-a", "a-", "1a", "a/b", &"a".repeat(64)] {
            assert!(!is_service_name(bad), "{bad:?}");
        }
        assert!(is_service_name("gitwarden-webhook"));
        assert_eq!(
            service_dns_name("gitwarden-webhook", "gitwarden-system"),
            "gitwarden-webhook.gitwarden-system.svc"
        );
    }
}
