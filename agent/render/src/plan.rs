//! Which directories of a revision kustomize builds, and which files are
//! plain manifests: the rule of Flux's kustomize-controller, so a Flux
//! user's repository syncs as it does there.
//!
//! - A kustomization file (`kustomization.yaml`, `kustomization.yml` or
//!   `Kustomization`) at the configured path: that kustomization is built,
//!   and it alone says what the revision holds (other files are only what
//!   it references).
//! - Otherwise Flux generates a kustomization listing the path's contents:
//!   a directory holding a kustomization file becomes one resource (built
//!   as a unit, its files not read one by one), every other manifest file
//!   is read as it is. gitwarden does the same without the generated file:
//!   the top-most kustomization directories are built, the rest loaded
//!   plainly (with `file:line` errors).

/// What to render and what to load plainly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Directories to build with kustomize, relative to the configured path
    /// (`""` is the path itself), sorted.
    pub kustomizations: Vec<String>,
    /// Indices (into the given paths) of files to load as plain manifests.
    pub plain: Vec<usize>,
}

/// Whether `name` is a kustomization file name.
pub fn is_kustomization_file(name: &str) -> bool {
    matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The plan for a revision whose files (relative to the configured path,
/// `/`-separated) are `paths`.
pub fn plan(paths: &[&str]) -> Plan {
    let mut dirs: Vec<&str> = paths
        .iter()
        .map(|p| split(p))
        .filter(|(_, name)| is_kustomization_file(name))
        .map(|(dir, _)| dir)
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    // Only the top-most: a kustomization inside another is that one's business.
    let top: Vec<&str> = dirs
        .iter()
        .copied()
        .filter(|d| !dirs.iter().any(|outer| outer != d && is_under(d, outer)))
        .collect();
    let plain = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| !top.iter().any(|dir| is_under(p, dir)))
        .map(|(i, _)| i)
        .collect();
    Plan {
        kustomizations: top.into_iter().map(str::to_string).collect(),
        plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kustomization_at_the_path_is_the_whole_revision() {
        let p = plan(&[
            "kustomization.yaml",
            "deploy.yaml",
            "base/kustomization.yaml",
            "base/a.yaml",
        ]);
        assert_eq!(p.kustomizations, [""]);
        assert!(p.plain.is_empty());
    }

    #[test]
    fn without_one_nested_kustomizations_are_units_and_other_files_plain() {
        let p = plan(&[
            "apps/web/kustomization.yml",
            "apps/web/deploy.yaml",
            "apps/web/base/Kustomization",
            "apps/api.yaml",
            "infra/ns.yaml",
            "apps/webhooks.yaml",
        ]);
        assert_eq!(p.kustomizations, ["apps/web"]);
        assert_eq!(p.plain, [3, 4, 5]);
    }

    #[test]
    fn a_plain_directory_has_nothing_to_render() {
        let p = plan(&["a.yaml", "b/c.json"]);
        assert_eq!(
            p,
            Plan {
                kustomizations: vec![],
                plain: vec![0, 1]
            }
        );
    }
}
