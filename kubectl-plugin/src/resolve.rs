//! `KIND/NAME` as kubectl reads it (`configmap/web`, `cm/web`,
//! `deployments.apps/web`), resolved against the server's discovery.

use anyhow::{Context as _, Result, bail};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

/// A parsed `KIND[.GROUP]/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Kind, plural or short name, lower-cased.
    pub kind: String,
    /// The group after the first dot, when given.
    pub group: Option<String>,
    /// The object's name.
    pub name: String,
}

/// Parses `KIND/NAME`.
pub fn parse_target(s: &str) -> Result<Target> {
    let Some((kind, name)) = s.split_once('/') else {
        bail!("expected KIND/NAME (e.g. configmap/web, deployment.apps/web), not {s:?}");
    };
    if kind.is_empty() || name.is_empty() || name.contains('/') {
        bail!("expected KIND/NAME (e.g. configmap/web, deployment.apps/web), not {s:?}");
    }
    let kind = kind.to_lowercase();
    let (kind, group) = match kind.split_once('.') {
        Some((k, g)) => (k.to_owned(), Some(g.to_owned())),
        None => (kind, None),
    };
    Ok(Target {
        kind,
        group,
        name: name.to_owned(),
    })
}

/// kubectl's short names of the built-in kinds (discovery's `shortNames`
/// are not kept by kube's discovery types).
fn short_names(plural: &str) -> &'static [&'static str] {
    match plural {
        "configmaps" => &["cm"],
        "deployments" => &["deploy"],
        "services" => &["svc"],
        "serviceaccounts" => &["sa"],
        "namespaces" => &["ns"],
        "statefulsets" => &["sts"],
        "daemonsets" => &["ds"],
        "replicasets" => &["rs"],
        "pods" => &["po"],
        "cronjobs" => &["cj"],
        "ingresses" => &["ing"],
        "persistentvolumeclaims" => &["pvc"],
        "persistentvolumes" => &["pv"],
        "networkpolicies" => &["netpol"],
        "horizontalpodautoscalers" => &["hpa"],
        "poddisruptionbudgets" => &["pdb"],
        "priorityclasses" => &["pc"],
        "storageclasses" => &["sc"],
        "customresourcedefinitions" => &["crd", "crds"],
        "replicationcontrollers" => &["rc"],
        "limitranges" => &["limits"],
        "resourcequotas" => &["quota"],
        "endpoints" => &["ep"],
        "events" => &["ev"],
        "nodes" => &["no"],
        _ => &[],
    }
}

/// Whether `resource` answers to `target`'s kind word and group.
pub fn matches(resource: &ApiResource, target: &Target) -> bool {
    let word = target.kind.as_str();
    let named = resource.kind.to_lowercase() == word
        || resource.plural == word
        || short_names(&resource.plural).contains(&word);
    named && target.group.as_deref().is_none_or(|g| resource.group == g)
}

/// The resource `target` names, preferring the core group and then the
/// server's order (as kubectl does for `events`).
pub async fn resolve(
    client: &kube::Client,
    target: &Target,
) -> Result<(ApiResource, ApiCapabilities)> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("discovering the server's resources")?;
    let mut found: Vec<(ApiResource, ApiCapabilities)> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, _)| matches(ar, target))
        .collect();
    found.sort_by_key(|(ar, _)| !ar.group.is_empty());
    found.into_iter().next().with_context(|| {
        format!(
            "the server has no resource type {:?}",
            match &target.group {
                Some(g) => format!("{}.{g}", target.kind),
                None => target.kind.clone(),
            }
        )
    })
}

/// Whether objects of this resource live in namespaces.
pub fn namespaced(caps: &ApiCapabilities) -> bool {
    caps.scope == Scope::Namespaced
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;

    fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    }

    #[test]
    fn targets_parse_like_kubectl() {
        assert_eq!(
            parse_target("Deployment.apps/web").unwrap(),
            Target {
                kind: "deployment".into(),
                group: Some("apps".into()),
                name: "web".into()
            }
        );
        assert_eq!(parse_target("cm/settings").unwrap().kind, "cm");
        for bad in ["configmap", "/x", "cm/", "a/b/c"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kind_plural_and_short_names_match_within_the_group() {
        let cm = resource("", "ConfigMap", "configmaps");
        for word in ["configmap/x", "configmaps/x", "cm/x", "ConfigMap/x"] {
            assert!(matches(&cm, &parse_target(word).unwrap()), "{word}");
        }
        let deploy = resource("apps", "Deployment", "deployments");
        assert!(matches(&deploy, &parse_target("deploy.apps/x").unwrap()));
        assert!(!matches(
            &deploy,
            &parse_target("deploy.extensions/x").unwrap()
        ));
        assert!(!matches(&cm, &parse_target("secret/x").unwrap()));
    }
}
