//! Reading the live state of each object of a revision, to decide which ones
//! need an apply at all.

use crate::body::ApplyBody;
use crate::break_glass::BreakGlass;
use crate::decide::Observed;
use crate::discovery::{Discovery, Resolved};
use crate::dry_run::Target;
use crate::dry_run::message;
use crate::error::SyncError;
use crate::fingerprint::fields_fingerprint;
use crate::sync_context::SyncContext;
use futures::StreamExt;
use gitwarden_manifests::{Manifest, ResolvedSet, Scope};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta};
use std::collections::HashMap;
use tracing::warn;

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
    pub body: ApplyBody,
    pub resolved: Option<Resolved>,
    pub live: Live,
}

impl<'a> Planned<'a> {
    /// What the decision needs of this object ([`crate::decide`]).
    pub(crate) fn observed(&self) -> Observed<'_> {
        Observed {
            object: self.manifest.object_ref(),
            hash: self.body.hash(),
            addressable: self.resolved.is_some(),
            service_account: self.pod_service_account(),
            live: &self.live,
        }
    }

    /// The service account a bare Pod runs as (`default` when it names
    /// none); `None` for every other kind.
    fn pod_service_account(&self) -> Option<String> {
        let gvk = &self.manifest.gvk;
        if !(gvk.group.is_empty() && gvk.kind == "Pod") {
            return None;
        }
        let spec = self.manifest.field("spec");
        let named = spec.as_ref().and_then(|s| {
            s.get("serviceAccountName")
                .or_else(|| s.get("serviceAccount"))
                .and_then(|v| v.as_str())
        });
        Some(named.unwrap_or("default").to_string())
    }

    /// The break-glass change on the live object, if any.
    pub(crate) fn break_glass(&self) -> Option<&BreakGlass> {
        match &self.live {
            Live::Present { break_glass, .. } => break_glass.as_ref(),
            _ => None,
        }
    }

    /// The object ready to send, `None` while its kind is unknown.
    pub(crate) fn target(&self, client: &Client) -> Option<Target<'_>> {
        self.resolved.as_ref().map(|resolved| Target {
            manifest: self.manifest,
            body: &self.body,
            api: resolved.api(client.clone(), self.manifest.namespace.as_deref()),
        })
    }
}

/// A kind with at least this many objects of the revision in one namespace
/// (or cluster-wide) is read with one metadata LIST, paged, instead of a GET
/// per object: 5,000 ConfigMaps cost about ten requests instead of 5,000,
/// which is most of a no-op resync. Below it, GETs read less than a LIST of
/// a namespace that holds many more objects than git does.
const LIST_THRESHOLD: usize = 16;

/// Objects per page of a planning LIST: bounds the memory a page takes.
const LIST_PAGE: u32 = 500;

/// Where a group of manifests is listed: the resource's group, version and
/// plural, and the namespace (`None` for cluster-scoped kinds). Borrowed from
/// the plan's own data, so grouping 5,000 manifests allocates nothing.
type ListKey<'k> = (&'k str, &'k str, &'k str, Option<&'k str>);

/// Plans every manifest of `set` (in the set's order), reading the live
/// metadata of each object: one LIST per kind and namespace holding at least
/// [`LIST_THRESHOLD`] of them, a GET for the others (and for all of a group
/// whose LIST failed, so a list the agent may not make costs speed, not the
/// sync). Reads only, with bounded concurrency.
pub(crate) async fn plan<'a>(
    ctx: &SyncContext,
    client: &Client,
    discovery: &Discovery,
    set: &'a ResolvedSet,
) -> Result<Vec<Planned<'a>>, SyncError> {
    let resolved: Vec<Option<Resolved>> = set
        .manifests()
        .iter()
        .map(|manifest| discovery.resolve(&manifest.gvk))
        .collect();
    let keys: Vec<Option<ListKey<'_>>> = set
        .manifests()
        .iter()
        .zip(&resolved)
        .map(|(manifest, resolved)| resolved.as_ref().map(|r| list_key(r, manifest)))
        .collect();
    // Each key with how many manifests it covers and one resolved kind to list it with.
    let mut groups: HashMap<ListKey<'_>, (usize, &Resolved)> = HashMap::new();
    for (key, resolved) in keys.iter().zip(&resolved) {
        if let (Some(key), Some(resolved)) = (key, resolved) {
            groups.entry(*key).or_insert((0, resolved)).0 += 1;
        }
    }
    let mut listed: HashMap<ListKey<'_>, HashMap<String, Live>> = futures::stream::iter(
        groups
            .into_iter()
            .filter(|(_, (count, _))| *count >= LIST_THRESHOLD),
    )
    .map(|(key, (_, resolved))| async move {
        let api = resolved.api(client.clone(), key.3);
        (key, list_live(ctx, &api).await)
    })
    .buffer_unordered(ctx.concurrency)
    .filter_map(|(key, lives)| async move { lives.map(|lives| (key, lives)) })
    .collect()
    .await;

    let known: Vec<Option<Live>> = set
        .manifests()
        .iter()
        .zip(&keys)
        .map(|(manifest, key)| match key {
            None => Some(Live::Unaddressable),
            Some(key) => listed
                .get_mut(key)
                .map(|lives| lives.remove(&manifest.name).unwrap_or(Live::Absent)),
        })
        .collect();
    drop(listed);
    drop(keys);

    let mut planned = Vec::with_capacity(set.manifests().len());
    let mut stream = futures::stream::iter(set.manifests().iter().zip(resolved).zip(known))
        .map(|((manifest, resolved), known)| async move {
            let live = match (known, &resolved) {
                (Some(live), _) => live,
                (None, Some(resolved)) => read_live(ctx, client, resolved, manifest).await?,
                (None, None) => Live::Unaddressable,
            };
            Ok::<_, SyncError>(Planned {
                manifest,
                body: ApplyBody::new(manifest),
                resolved,
                live,
            })
        })
        .buffered(ctx.concurrency);
    while let Some(result) = stream.next().await {
        planned.push(result?);
    }
    Ok(planned)
}

/// The LIST that covers `manifest`.
fn list_key<'k>(resolved: &'k Resolved, manifest: &'k Manifest) -> ListKey<'k> {
    let resource = &resolved.resource;
    let namespace = match resolved.scope {
        Scope::Namespaced => manifest.namespace.as_deref(),
        Scope::Cluster => None,
    };
    (
        &resource.group,
        &resource.version,
        &resource.plural,
        namespace,
    )
}

/// The live state of every object `api` lists, by name; `None` (after a
/// warning) when the LIST fails, so its objects are read one by one instead.
async fn list_live(ctx: &SyncContext, api: &Api<DynamicObject>) -> Option<HashMap<String, Live>> {
    let mut lives = HashMap::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = match api.list_metadata(&params).await {
            Ok(page) => page,
            Err(error) => {
                warn!(resource = %api.resource_url(), error = %message(&error), "listing for the plan failed: reading these objects one by one");
                return None;
            }
        };
        for item in page.items {
            let Some(name) = item.metadata.name.clone() else {
                continue;
            };
            lives.insert(name, live_of(ctx, &item.metadata));
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Some(lives),
        }
    }
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
        Ok(Some(meta)) => Ok(live_of(ctx, &meta.metadata)),
        Ok(None) => Ok(Live::Absent),
        Err(source) => Err(SyncError::Read {
            object: manifest.object_ref(),
            source,
        }),
    }
}

/// What the plan needs of an object's metadata.
fn live_of(ctx: &SyncContext, metadata: &ObjectMeta) -> Live {
    Live::Present {
        break_glass: BreakGlass::of(metadata),
        resource_version: metadata.resource_version.clone().unwrap_or_default(),
        fields: fields_fingerprint(metadata.managed_fields.as_deref(), &ctx.field_manager),
    }
}
