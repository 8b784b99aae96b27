//! Where in git each object is written, read from the agent's inventory, so
//! that a refusal says which file and line to edit ("edit apps/web.yaml line
//! 12") and the audit record carries it.
//!
//! The agent records every object's `file:line` in its inventory ConfigMaps
//! (`gitwarden.io/inventory` shards in the inventory namespace), which only
//! it can write. The webhook lists them at most every [`MAX_AGE`], when a
//! refusal needs a source, and never on the allow path; a list that fails
//! or is slow leaves the refusal without the line, never without an answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitwarden_shared::source::{INVENTORY_LABEL, ObjectKey, SourceRef, shard_sources};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use tokio::sync::Mutex;

/// How stale the index may be: objects move in git with commits, minutes apart.
const MAX_AGE: Duration = Duration::from_secs(5);
/// An object missing from the index may have been applied since it was
/// read: it is read again, but not more often than this.
const MISS_RELOAD_AFTER: Duration = Duration::from_secs(1);
/// How long a refusal may wait for the inventory.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// Objects and where they are written, as last read.
type Index = Arc<HashMap<ObjectKey, SourceRef>>;

/// The index of the agent's inventory, refreshed on demand.
#[derive(Clone)]
pub struct SourceIndex {
    api: Api<ConfigMap>,
    cache: Arc<Mutex<Option<(Instant, Index)>>>,
}

impl SourceIndex {
    /// An index of the inventory in `namespace`, read with `client`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        SourceIndex {
            api: Api::namespaced(client, namespace),
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// Where the object of `request` is written in git, if the agent recorded it.
    pub async fn source_of(&self, request: &AdmissionRequest<DynamicObject>) -> Option<SourceRef> {
        if request
            .sub_resource
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            // A subresource's request names the subresource's kind (Scale).
            return None;
        }
        let key = ObjectKey {
            group: request.kind.group.clone(),
            kind: request.kind.kind.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            name: request.name.clone(),
        };
        if let Some(source) = self.index(MAX_AGE).await?.get(&key) {
            return Some(source.clone());
        }
        self.index(MISS_RELOAD_AFTER).await?.get(&key).cloned()
    }

    /// The index, read again when older than `max_age`.
    async fn index(&self, max_age: Duration) -> Option<Index> {
        let mut cache = self.cache.lock().await;
        if let Some((at, index)) = cache.as_ref()
            && at.elapsed() < max_age
        {
            return Some(index.clone());
        }
        let listed = tokio::time::timeout(
            LIST_TIMEOUT,
            self.api
                .list(&ListParams::default().labels(INVENTORY_LABEL)),
        )
        .await;
        match listed {
            Ok(Ok(list)) => {
                let mut index = HashMap::new();
                for map in &list.items {
                    if let Some(data) = &map.data {
                        index.extend(shard_sources(data));
                    }
                }
                let index = Arc::new(index);
                *cache = Some((Instant::now(), index.clone()));
                Some(index)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read the agent's inventory: refusals name no line");
                cache.as_ref().map(|(_, index)| index.clone())
            }
            Err(_) => {
                tracing::warn!("reading the agent's inventory timed out: refusals name no line");
                cache.as_ref().map(|(_, index)| index.clone())
            }
        }
    }
}
