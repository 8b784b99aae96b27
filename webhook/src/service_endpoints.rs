//! A Service's EndpointSlices, read where the webhook must know which of its
//! replicas the API server (and its peers) can reach: registration waits for
//! a ready endpoint, and `GET /audit` asks the other ready replicas.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::Api;
use kube::api::ListParams;

/// The EndpointSlices of Service `service` in `namespace` (those labelled
/// `kubernetes.io/service-name=SERVICE`).
pub async fn slices(
    client: kube::Client,
    namespace: &str,
    service: &str,
) -> Result<Vec<EndpointSlice>, kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    Ok(api.list(&params).await?.items)
}

/// Whether an endpoint is ready; the API: an unset `ready` means ready.
pub fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}
