//! Waiting for CustomResourceDefinitions to be Established.
//!
//! Until the API server reports a CRD Established it does not serve the new
//! kind, and applying a custom resource of it fails with "no matches for
//! kind". So the CRD phase ends only when every CRD of the revision is.

use crate::error::SyncError;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::Client;
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
