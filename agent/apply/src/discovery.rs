//! Which kinds the API server serves, and how to address them.
//!
//! Manifests name a group, version and kind; the API needs the resource's
//! plural and whether it is namespaced. Discovery answers both, and must be
//! refreshed after CRDs are applied, since they add kinds.

use gitwarden_manifests::{Scope, ScopeLookup};
use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope as KubeScope};
use std::sync::RwLock;
use tracing::debug;

/// A snapshot of the API server's kinds, refreshable in place.
///
/// Shared by reference between the applier and scope resolution; the lock
/// lets [`Discovery::refresh`] run through `&self` after a CRD phase.
pub struct Discovery {
    client: Client,
    cache: RwLock<kube::Discovery>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

/// How an object of one kind is addressed.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The resource (plural, group, version) for the API paths.
    pub resource: ApiResource,
    /// Whether objects of the kind live in a namespace.
    pub scope: Scope,
}

impl Discovery {
    /// Discovers every kind the API server serves.
    ///
    /// Uses aggregated discovery (two requests) and falls back to the
    /// per-group walk for servers without it.
    pub async fn new(client: Client) -> Result<Self, kube::Error> {
        let cache = run(client.clone()).await?;
        Ok(Self {
            client,
            cache: RwLock::new(cache),
        })
    }

    /// Re-reads discovery, so kinds of CRDs applied since become known.
    pub async fn refresh(&self) -> Result<(), kube::Error> {
        let fresh = run(self.client.clone()).await?;
        match self.cache.write() {
            Ok(mut cache) => *cache = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// The resource and scope of `gvk` (exact version), `None` when the API
    /// server does not serve it.
    pub fn resolve(&self, gvk: &GroupVersionKind) -> Option<Resolved> {
        let cache = match self.cache.read() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.resolve_gvk(gvk).map(to_resolved)
    }

    /// Like [`Self::resolve`], but when the exact version is no longer
    /// served, falls back to the group's preferred version of the same kind.
    ///
    /// Prune needs this: an inventory entry may name a version that a
    /// cluster upgrade removed while the object still exists.
    pub fn resolve_any_version(&self, gvk: &GroupVersionKind) -> Option<Resolved> {
        if let Some(resolved) = self.resolve(gvk) {
            return Some(resolved);
        }
        let cache = match self.cache.read() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .get(&gvk.group)
            .and_then(|group| group.recommended_kind(&gvk.kind))
            .map(to_resolved)
    }
}

impl Discovery {
    /// Every kind whose objects can be listed, patched and deleted, each at
    /// its group's most stable version: the kinds the break-glass sweep looks
    /// through for objects a human created or changed under break-glass.
    /// Subresources are not kinds and are never included.
    pub fn listable_kinds(&self) -> Vec<Resolved> {
        use kube::discovery::verbs::{DELETE, LIST, PATCH};
        let cache = match self.cache.read() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .groups()
            .flat_map(|group| group.resources_by_stability())
            .filter(|(_, capabilities)| {
                [LIST, PATCH, DELETE]
                    .iter()
                    .all(|verb| capabilities.supports_operation(verb))
            })
            .map(to_resolved)
            .collect()
    }
}

impl Discovery {
    /// The kinds of `group`, each at its most stable served version, whose
    /// objects can be listed, watched and deleted: what the admission guard
    /// watches in `admissionregistration.k8s.io` (a kind served only in beta
    /// is included at its beta version). Empty when the group is not served.
    pub fn watchable_kinds_of(&self, group: &str) -> Vec<Resolved> {
        use kube::discovery::verbs::{DELETE, LIST, WATCH};
        let cache = match self.cache.read() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(group) = cache.get(group) else {
            return Vec::new();
        };
        group
            .resources_by_stability()
            .into_iter()
            .filter(|(_, capabilities)| {
                [LIST, WATCH, DELETE]
                    .iter()
                    .all(|verb| capabilities.supports_operation(verb))
            })
            .map(to_resolved)
            .collect()
    }
}

fn to_resolved((resource, capabilities): (ApiResource, ApiCapabilities)) -> Resolved {
    Resolved {
        resource,
        scope: match capabilities.scope {
            KubeScope::Cluster => Scope::Cluster,
            KubeScope::Namespaced => Scope::Namespaced,
        },
    }
}

async fn run(client: Client) -> Result<kube::Discovery, kube::Error> {
    match kube::Discovery::new(client.clone()).run_aggregated().await {
        Ok(discovery) => Ok(discovery),
        Err(error) => {
            debug!(%error, "aggregated discovery failed, walking groups");
            kube::Discovery::new(client).run().await
        }
    }
}

impl ScopeLookup for Discovery {
    fn scope(&self, gvk: &GroupVersionKind) -> Option<Scope> {
        self.resolve(gvk).map(|resolved| resolved.scope)
    }
}

impl Resolved {
    /// The dynamic API for objects of this kind in `namespace` (ignored for
    /// cluster-scoped kinds).
    pub fn api(
        &self,
        client: Client,
        namespace: Option<&str>,
    ) -> kube::Api<kube::core::DynamicObject> {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                kube::Api::namespaced_with(client, namespace, &self.resource)
            }
            _ => kube::Api::all_with(client, &self.resource),
        }
    }
}
