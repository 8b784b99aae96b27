//! Waiting for CustomResourceDefinitions to be Established, and served.
//!
//! Until the API server reports a CRD Established it does not serve the new
//! kind, and applying a custom resource of it fails with "no matches for
//! kind". So the CRD phase ends only when every CRD of the revision is; and
//! since discovery lists a kind a moment after its CRD is Established, the
//! phase then re-reads discovery until every new kind resolves.

use crate::discovery::Discovery;
use crate::error::SyncError;
use gitwarden_manifests::CrdInfo;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::Client;
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use std::time::Duration;
use tokio::time::Instant;

/// Waits until every CRD in `names` is Established, or `timeout` elapses.
/// The wait is kube-runtime's watch-based `is_crd_established` condition,
/// not a poll; on a timeout one read says why (absent, or not yet).
pub(crate) async fn wait_established(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), SyncError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    for name in names {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let waited = tokio::time::timeout(
            remaining,
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await;
        let reason = match waited {
            Ok(Ok(_)) => continue,
            Ok(Err(error)) => format!("watching it: {error}"),
            Err(_) => match api.get_opt(name).await {
                Ok(Some(_)) => "not Established yet".to_owned(),
                Ok(None) => "not found".to_owned(),
                Err(error) => error.to_string(),
            },
        };
        return Err(SyncError::CrdNotEstablished {
            name: name.clone(),
            timeout,
            reason,
        });
    }
    Ok(())
}

/// How often discovery is re-read while a new kind is not listed yet.
const DISCOVERY_POLL: Duration = Duration::from_millis(100);

/// Waits until every CRD of `crds` is Established and discovery serves each
/// of its versions, within `timeout` in all.
pub(crate) async fn wait_served(
    client: &Client,
    discovery: &Discovery,
    crds: &[CrdInfo],
    timeout: Duration,
) -> Result<(), SyncError> {
    let deadline = Instant::now() + timeout;
    let names: Vec<String> = crds.iter().map(|crd| crd.name.clone()).collect();
    wait_established(client, &names, timeout).await?;
    loop {
        discovery.refresh().await.map_err(SyncError::Discovery)?;
        let missing = crds.iter().find_map(|crd| {
            crd.versions
                .iter()
                .map(|version| GroupVersionKind::gvk(&crd.group, version, &crd.kind))
                .find(|gvk| discovery.resolve(gvk).is_none())
                .map(|gvk| (crd, gvk))
        });
        let Some((crd, gvk)) = missing else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(SyncError::CrdNotEstablished {
                name: crd.name.clone(),
                timeout,
                reason: format!(
                    "Established, but discovery does not list {}/{} {} yet",
                    gvk.group, gvk.version, gvk.kind
                ),
            });
        }
        tokio::time::sleep(DISCOVERY_POLL).await;
    }
}
