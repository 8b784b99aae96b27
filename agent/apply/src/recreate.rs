//! Deleting and creating again an object whose change the API server will
//! not make in place.
//!
//! Some fields cannot change once an object exists: a Job's pod template, a
//! Service's `clusterIP`, a Deployment's selector, the data of an immutable
//! ConfigMap. An apply that changes one is refused as Invalid (422). When git
//! marks the object `gitwarden.io/force: enabled` (as Flux's
//! `kustomize.toolkit.fluxcd.io/force: enabled`), the agent deletes it and
//! creates it from git instead — but only when git's object is valid on its
//! own (a dry-run create under a generated name passes), so an object that
//! is simply wrong still fails the revision and the live one stays.

use std::time::Duration;

use crate::dry_run::{Target, message};
use crate::refusal::AdmissionRefusal;
use crate::sync_context::SyncContext;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::core::DynamicObject;

/// How long a recreate waits for the deleted object to be gone (finalizers).
const GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often it looks.
const GONE_POLL: Duration = Duration::from_millis(100);

/// What a refused dry-run or apply of an object comes to.
pub(crate) enum Refused {
    /// The refusal stands: its message, and the admission plugin that
    /// refused, when one did.
    Stands {
        message: String,
        refused_by: Option<AdmissionRefusal>,
    },
    /// Git's object is valid on its own, so what blocks it is the live one:
    /// delete it and create it again.
    Recreate,
}

/// What `error`, refusing a dry-run or an apply of `target`, comes to.
///
/// Only the API server's own validation counts (status reason `Invalid`):
/// an admission plugin's refusal, whatever its code, never costs the live
/// object — a policy that refuses updates but not creates must not turn an
/// apply into a delete.
pub(crate) async fn judge(ctx: &SyncContext, target: &Target<'_>, error: &kube::Error) -> Refused {
    let stands = || Refused::Stands {
        message: message(error),
        refused_by: AdmissionRefusal::from_error(error),
    };
    let invalid = matches!(error, kube::Error::Api(status) if status.code == 422 && status.reason == "Invalid");
    if !invalid || AdmissionRefusal::from_error(error).is_some() || !target.manifest.force_enabled()
    {
        return stands();
    }
    match valid_as_new(ctx, target).await {
        Ok(()) => Refused::Recreate,
        Err(own) => Refused::Stands {
            message: format!(
                "git changes a field that cannot change in place, and the object is refused as a new one too (gitwarden.io/force: enabled; the live one is kept): {}",
                message(&own)
            ),
            refused_by: AdmissionRefusal::from_error(&own),
        },
    }
}

/// A dry-run create of git's object under a generated name: every rule of
/// a new object, none of the live one's.
async fn valid_as_new(ctx: &SyncContext, target: &Target<'_>) -> Result<(), kube::Error> {
    ctx.count_dry_run();
    let mut body: serde_json::Value =
        serde_json::from_str(target.body.json().get()).map_err(kube::Error::SerdeError)?;
    let prefix: String = target.manifest.name.chars().take(40).collect();
    if let Some(metadata) = body["metadata"].as_object_mut() {
        metadata.remove("name");
        metadata.insert("generateName".to_owned(), format!("{prefix}-").into());
    }
    let probe: DynamicObject = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
    let params = PostParams {
        dry_run: true,
        field_manager: Some(ctx.field_manager.clone()),
    };
    target.api.create(&params, &probe).await.map(|_| ())
}

/// Why a recreate failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecreateError {
    /// The API server refused the delete or the create.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// Deleted, but still there (finalizers) after the timeout.
    #[error(
        "an immutable field changes (gitwarden.io/force: enabled): deleted, but still terminating after {}s; the next sync creates it",
        GONE_TIMEOUT.as_secs()
    )]
    StillTerminating,
}

/// Deletes the live object (this uid only, its dependents in the
/// background) and, once it is gone, applies git's.
pub(crate) async fn recreate(
    ctx: &SyncContext,
    target: &Target<'_>,
) -> Result<DynamicObject, RecreateError> {
    let name = &target.manifest.name;
    if let Some(live) = target.api.get_opt(name).await? {
        let uid = live.metadata.uid.clone();
        ctx.count_writes(1);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match target.api.delete(name, &params).await {
            Ok(_) => {}
            // Gone already, or replaced meanwhile: the apply below decides.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
        let started = tokio::time::Instant::now();
        loop {
            match target.api.get_opt(name).await? {
                Some(still) if still.metadata.uid == uid => {}
                _ => break,
            }
            if started.elapsed() >= GONE_TIMEOUT {
                return Err(RecreateError::StillTerminating);
            }
            tokio::time::sleep(GONE_POLL).await;
        }
    }
    ctx.count_writes(1);
    let params = PatchParams::apply(&ctx.field_manager).force();
    Ok(target
        .api
        .patch(name, &params, &Patch::Apply(target.body.json()))
        .await?)
}
