//! Reading the live state of each object of a revision, to decide which ones
//! need an apply at all.

use crate::break_glass::BreakGlass;
use crate::discovery::{Discovery, Resolved};
use crate::dry_run::Target;
use crate::error::SyncError;
use crate::fingerprint::{fields_fingerprint, manifest_hash};
use crate::inventory::InventoryEntry;
use crate::sync_context::SyncContext;
use futures::StreamExt;
use gitwarden_manifests::{Manifest, ManifestSet, prepare_for_apply};
use kube::Client;
use serde_json::Value;
use std::collections::HashSet;

/// What the cluster holds for one manifest before the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Live {
    /// The kind is not served yet (its CRD comes with this revision).
    Unaddressable,
    /// No such object.
    Absent,
    /// The object exists.
    Present {
        /// Its `resourceVersion`.
        resource_version: String,
        /// The digest of gitwarden's managed fields on it.
        fields: String,
        /// Its break-glass state, when a human broke glass on it.
        break_glass: Option<BreakGlass>,
    },
}

/// One manifest with its body, hash, address and live state.
pub(crate) struct Planned<'a> {
    pub manifest: &'a Manifest,
    pub body: Value,
    pub hash: String,
    pub resolved: Option<Resolved>,
    pub live: Live,
}

impl<'a> Planned<'a> {
    /// Whether the last apply recorded in `previous` still stands: git did
    /// not change the object (same hash) and nobody changed it since (same
    /// `resourceVersion`, or the same fields owned by gitwarden).
    pub(crate) fn up_to_date(&self, previous: Option<&InventoryEntry>) -> bool {
        let (
            Some(entry),
            Live::Present {
                resource_version,
                fields,
                ..
            },
        ) = (previous, &self.live)
        else {
            return false;
        };
        entry.hash == self.hash
            && ((!entry.resource_version.is_empty() && entry.resource_version == *resource_version)
                || (!entry.fields.is_empty() && entry.fields == *fields))
    }

    /// The break-glass change on the live object, if any.
    pub(crate) fn break_glass(&self) -> Option<&BreakGlass> {
        match &self.live {
            Live::Present { break_glass, .. } => break_glass.as_ref(),
            _ => None,
        }
    }

    /// The object ready to send, `None` while its kind is unknown.
    pub(crate) fn target(&self, client: &Client) -> Option<Target<'a>> {
        self.resolved.as_ref().map(|resolved| Target {
            manifest: self.manifest,
            body: self.body.clone(),
            api: resolved.api(client.clone(), self.manifest.namespace.as_deref()),
        })
    }
}

/// Plans every manifest of `set` (in the set's order), reading each live
/// object's metadata with bounded concurrency. Reads only.
pub(crate) async fn plan<'a>(
    ctx: &SyncContext,
    client: &Client,
    discovery: &Discovery,
    set: &'a ManifestSet,
) -> Result<Vec<Planned<'a>>, SyncError> {
    let results: Vec<Result<Planned<'a>, SyncError>> = futures::stream::iter(&set.manifests)
        .map(|manifest| plan_one(ctx, client, discovery, manifest))
        .buffered(ctx.concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn plan_one<'a>(
    ctx: &SyncContext,
    client: &Client,
    discovery: &Discovery,
    manifest: &'a Manifest,
) -> Result<Planned<'a>, SyncError> {
    let body = prepare_for_apply(manifest);
    let hash = manifest_hash(&body);
    let resolved = discovery.resolve(&manifest.gvk);
    let live = match &resolved {
        None => Live::Unaddressable,
        Some(resolved) => read_live(ctx, client, resolved, manifest).await?,
    };
    Ok(Planned {
        manifest,
        body,
        hash,
        resolved,
        live,
    })
}

/// The live state of one object (a metadata-only GET).
pub(crate) async fn read_live(
    ctx: &SyncContext,
    client: &Client,
    resolved: &Resolved,
    manifest: &Manifest,
) -> Result<Live, SyncError> {
    let api = resolved.api(client.clone(), manifest.namespace.as_deref());
    match api.get_metadata_opt(&manifest.name).await {
        Ok(Some(meta)) => Ok(Live::Present {
            break_glass: BreakGlass::of(&meta.metadata),
            resource_version: meta.metadata.resource_version.clone().unwrap_or_default(),
            fields: fields_fingerprint(meta.metadata.managed_fields.as_deref(), &ctx.field_manager),
        }),
        Ok(None) => Ok(Live::Absent),
        Err(source) => Err(SyncError::Read {
            object: manifest.object_ref(),
            source,
        }),
    }
}

/// The namespaces the revision declares that do not exist yet: objects in
/// them cannot be dry-run before the namespace is applied.
pub(crate) fn new_namespaces(planned: &[Planned<'_>]) -> HashSet<String> {
    planned
        .iter()
        .filter(|p| p.manifest.is_namespace() && p.live != Live::Unaddressable)
        .filter(|p| matches!(p.live, Live::Absent))
        .map(|p| p.manifest.name.clone())
        .collect()
}
