//! Server-side-applying one object, and what came of it.

use crate::dry_run::{Target, message};
use crate::fingerprint::fields_fingerprint;
use crate::inventory::InventoryEntry;
use crate::plan::Live;
use crate::recreate::{RecreateError, Refused};
use crate::refusal::AdmissionRefusal;
use crate::report::Action;
use crate::sync_context::SyncContext;
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use tracing::warn;

/// The outcome of applying one object.
pub(crate) struct Applied {
    pub action: Action,
    pub entry: Option<InventoryEntry>,
    /// Who refused the apply, when an admission plugin did.
    pub refused_by: Option<AdmissionRefusal>,
}

/// Server-side-applies one object (force, gitwarden's field manager).
pub(crate) async fn apply_one(
    ctx: &SyncContext,
    target: &Target<'_>,
    live: Option<&Live>,
) -> Applied {
    ctx.count_writes(1);
    let params = PatchParams::apply(&ctx.field_manager).force();
    match target
        .api
        .patch(
            &target.manifest.name,
            &params,
            &Patch::Apply(target.body.json()),
        )
        .await
    {
        Ok(object) => {
            let resource_version = object.metadata.resource_version.clone().unwrap_or_default();
            let action = match live {
                Some(Live::Present {
                    resource_version: before,
                    ..
                }) if *before == resource_version => Action::Unchanged,
                Some(Live::Present { .. }) => Action::Configured,
                _ => Action::Created,
            };
            Applied {
                action,
                entry: Some(entry(ctx, target, &object)),
                refused_by: None,
            }
        }
        Err(error) => match crate::recreate::judge(ctx, target, &error).await {
            Refused::Stands {
                message,
                refused_by,
            } => failed(target, message, refused_by),
            Refused::Recreate => match crate::recreate::recreate(ctx, target).await {
                Ok(object) => {
                    tracing::info!(object = %target.manifest.object_ref(), location = %target.manifest.location, "an immutable field changed: deleted and created again (gitwarden.io/force: enabled)");
                    Applied {
                        action: Action::Recreated,
                        entry: Some(entry(ctx, target, &object)),
                        refused_by: None,
                    }
                }
                Err(RecreateError::Api(error)) => failed(
                    target,
                    message(&error),
                    AdmissionRefusal::from_error(&error),
                ),
                Err(error) => failed(target, error.to_string(), None),
            },
        },
    }
}

/// The inventory entry of an object as the API server answered an apply.
fn entry(ctx: &SyncContext, target: &Target<'_>, object: &DynamicObject) -> InventoryEntry {
    InventoryEntry {
        hash: target.body.hash().to_owned(),
        fields: fields_fingerprint(
            object.metadata.managed_fields.as_deref(),
            &ctx.field_manager,
        ),
        resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
        source: String::new(),
    }
}

/// A failed apply, logged with who refused it.
fn failed(target: &Target<'_>, message: String, refused_by: Option<AdmissionRefusal>) -> Applied {
    match &refused_by {
        Some(plugin) => {
            warn!(object = %target.manifest.object_ref(), location = %target.manifest.location, %plugin, %message, "apply refused by an admission plugin")
        }
        None => {
            warn!(object = %target.manifest.object_ref(), location = %target.manifest.location, %message, "apply failed")
        }
    }
    Applied {
        action: Action::Failed(message),
        entry: None,
        refused_by,
    }
}
