//! Validating objects with a server-side dry-run before writing any.
//!
//! Only the API server knows every rule an object must pass (schemas of
//! built-in kinds and CRDs, defaulting, admission webhooks and policies). A
//! dry-run apply runs all of them and persists nothing, so a revision with
//! one bad object can be refused as a whole.

use crate::body::ApplyBody;
use crate::error::ObjectError;
use crate::recreate::Refused;
use crate::sync_context::SyncContext;
use futures::StreamExt;
use gitwarden_manifests::Manifest;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;

/// One object ready to be sent: its manifest, body and API.
#[derive(Clone)]
pub(crate) struct Target<'a> {
    /// The manifest, for its identity and location.
    pub manifest: &'a Manifest,
    /// The body to apply, borrowed from the plan: a sync of thousands of
    /// objects must not copy each body for every list of targets.
    pub body: &'a ApplyBody,
    /// The API addressing the object.
    pub api: Api<DynamicObject>,
}

/// The API server's message for a failed request.
pub(crate) fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Server-side-applies `target` as a dry-run and returns what the object
/// would become.
pub(crate) async fn dry_run_one(
    ctx: &SyncContext,
    target: &Target<'_>,
) -> Result<DynamicObject, kube::Error> {
    ctx.count_dry_run();
    let params = PatchParams::apply(&ctx.field_manager).force().dry_run();
    target
        .api
        .patch(
            &target.manifest.name,
            &params,
            &Patch::Apply(target.body.json()),
        )
        .await
}

/// Dry-runs every target (bounded concurrency) and returns every refusal,
/// sorted by location; empty when all passed.
///
/// Targets are taken from an iterator as requests go out, so only as many
/// exist at once as run at once, not one per object of the revision.
pub(crate) async fn dry_run_all<'a>(
    ctx: &SyncContext,
    targets: impl IntoIterator<Item = Target<'a>>,
) -> Vec<ObjectError> {
    let mut errors: Vec<ObjectError> = futures::stream::iter(targets)
        .map(|target| async move {
            let error = dry_run_one(ctx, &target).await.err()?;
            match crate::recreate::judge(ctx, &target, &error).await {
                // Valid as a new object: the apply recreates it.
                Refused::Recreate => None,
                Refused::Stands {
                    message,
                    refused_by,
                } => Some(ObjectError {
                    object: target.manifest.object_ref(),
                    location: target.manifest.location.clone(),
                    message,
                    refused_by,
                }),
            }
        })
        .buffer_unordered(ctx.concurrency)
        .filter_map(|error| async move { error })
        .collect()
        .await;
    errors.sort_by(|a, b| a.location.cmp(&b.location));
    errors
}
