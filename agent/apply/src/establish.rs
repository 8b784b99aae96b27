//! Waiting for CustomResourceDefinitions to be Established.
//!
//! Until the API server reports a CRD Established it does not serve the new
//! kind, and applying a custom resource of it fails with "no matches for
//! kind". So the CRD phase ends only when every CRD of the revision is.

use crate::error::SyncError;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::Client;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// How often to re-check a CRD's conditions.
const POLL: Duration = Duration::from_millis(200);

/// Waits until every CRD in `names` is Established, or `timeout` elapses.
pub(crate) async fn wait_established(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), SyncError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    for name in names {
        loop {
            let reason = match api.get_opt(name).await {
                Ok(Some(crd)) if is_established(&crd) => break,
                Ok(Some(_)) => "not Established yet".to_owned(),
                Ok(None) => "not found".to_owned(),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(SyncError::CrdNotEstablished {
                    name: name.clone(),
                    timeout,
                    reason,
                });
            }
            sleep(POLL).await;
        }
    }
    Ok(())
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}
