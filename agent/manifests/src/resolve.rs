//! Resolution: the scope of each object's kind, and the namespace it lands in.
//!
//! Manifests often omit the namespace of namespaced objects (the configured
//! default applies, as with `kubectl apply -n`), and a namespace written on a
//! cluster-scoped object is a mistake the API server would silently ignore.
//! Both need the kind's scope, which only the cluster (discovery) and the
//! revision's own CRDs know.

use crate::crd::CrdInfo;
use crate::error::{LoadError, LoadErrors};
use crate::kind::{Scope, ScopeLookup};
use crate::object_ref::ObjectRef;
use crate::set::{ManifestSet, ResolvedSet};
use crate::validate::{self, check_namespace_name};
use kube::core::GroupVersionKind;

/// The scope of `gvk`: the revision's CRDs first (they are what the cluster
/// will serve once applied, and discovery may not know them yet), then
/// discovery. `Err` explains why the kind is unknown.
fn scope_of(
    gvk: &GroupVersionKind,
    crds: &[CrdInfo],
    discovery: &dyn ScopeLookup,
) -> Result<Scope, String> {
    let defining = crds.iter().find(|crd| crd.defines(gvk));
    if let Some(crd) = defining
        && crd.serves(gvk)
    {
        return Ok(crd.scope);
    }
    if let Some(scope) = discovery.scope(gvk) {
        return Ok(scope);
    }
    let api_version = ObjectRef::api_version_of(&gvk.group, &gvk.version);
    Err(match defining {
        Some(crd) => format!(
            "unknown kind {api_version} {}: the CustomResourceDefinition {} at {} does not \
             serve version {} (it serves {})",
            gvk.kind,
            crd.name,
            crd.location,
            gvk.version,
            crd.versions.join(", ")
        ),
        None => format!(
            "unknown kind {api_version} {} (is its CRD installed or in this revision?)",
            gvk.kind
        ),
    })
}

impl ManifestSet {
    /// Sets every manifest's scope and final namespace, turning the loaded
    /// set into the [`ResolvedSet`] the agent applies.
    ///
    /// Namespaced objects without a namespace get `default_namespace`;
    /// cluster-scoped objects with a namespace, kinds neither discovery nor
    /// the revision's CRDs know, and objects that collide once defaulted
    /// (one written without a namespace, one with the default) are errors,
    /// all collected; then there is no resolved set.
    pub fn resolve_namespaces(
        self,
        scopes: &dyn ScopeLookup,
        default_namespace: &str,
    ) -> Result<ResolvedSet, LoadErrors> {
        let crds = self.crds();
        let mut errors = Vec::new();
        let mut resolved = Vec::with_capacity(self.manifests.len());
        for manifest in &self.manifests {
            let scope = match scope_of(&manifest.gvk, &crds, scopes) {
                Ok(scope) => scope,
                Err(message) => {
                    errors.push(LoadError::new(manifest.location.clone(), message));
                    continue;
                }
            };
            let namespace = match (scope, &manifest.namespace) {
                (Scope::Namespaced, Some(namespace)) => Some(namespace.clone()),
                (Scope::Namespaced, None) => {
                    if let Err(rule) = check_namespace_name(default_namespace) {
                        errors.push(LoadError::new(
                            manifest.location.clone(),
                            format!(
                                "{} has no namespace and the default namespace \
                                 {default_namespace:?} is not valid: it must be {rule}",
                                manifest.object_ref()
                            ),
                        ));
                        continue;
                    }
                    Some(default_namespace.to_owned())
                }
                (Scope::Cluster, Some(namespace)) => {
                    errors.push(LoadError::new(
                        manifest.location.clone(),
                        format!(
                            "{} {} is cluster-scoped but has metadata.namespace {namespace:?}: \
                             remove it",
                            manifest.gvk.kind, manifest.name
                        ),
                    ));
                    continue;
                }
                (Scope::Cluster, None) => None,
            };
            resolved.push((scope, namespace));
        }
        if errors.is_empty() {
            errors.extend(validate::duplicates(
                self.manifests
                    .iter()
                    .zip(&resolved)
                    .map(|(manifest, (_, namespace))| {
                        (
                            ObjectRef::new(&manifest.gvk, namespace.as_deref(), &manifest.name),
                            &manifest.location,
                        )
                    }),
            ));
        }
        if let Some(errors) = LoadErrors::from_vec(errors) {
            return Err(errors);
        }
        let mut manifests = self.manifests;
        for (manifest, (scope, namespace)) in manifests.iter_mut().zip(resolved) {
            manifest.scope = Some(scope);
            manifest.metadata.namespace = namespace.clone();
            manifest.namespace = namespace;
        }
        Ok(ResolvedSet::new(manifests))
    }
}
