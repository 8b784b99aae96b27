//! Kustomizations of a verified commit, rendered with a pinned `kustomize`
//! (as Argo CD runs it), with nothing from outside that commit.
//!
//! Which directories are built follows Flux's kustomize-controller
//! ([`plan`]): a kustomization at the configured path is built; without
//! one, every directory below that holds a kustomization is built as one
//! unit (not read file by file) and the other files are plain manifests.
//!
//! Before kustomize runs, [`guard`] walks every kustomization the build can
//! reach and refuses what could bring in content the commit does not hold:
//! remote resources, bases and components (URLs, git), remote or
//! out-of-repository file references, Helm chart inflation, plugins and KRM
//! functions (exec or container), validators. kustomize then runs on a
//! private copy of the commit with no PATH, no home and a dead proxy
//! ([`kustomize`]), under a time and an output limit. Rendered objects keep
//! their resource file and line and the kustomization that built them
//! ([`origin`]); kustomize's build annotations are removed before apply.

pub mod guard;
pub mod kustomize;
pub mod origin;
pub mod plan;

mod error;
mod paths;

pub use error::RenderError;
pub use kustomize::Kustomize;
pub use plan::{Plan, plan};

use std::path::Path;

use gitwarden_manifests::Rendered;

/// Renders each kustomization directory of `units` (relative to `base`, the
/// configured path inside the exported commit `root`; both canonical) with
/// `kustomize`, using `scratch` as its private home. Every unit is guarded
/// first; the errors of all units are returned together. Errors and
/// locations name files relative to the repository root, and each object
/// names the kustomization that built it.
pub fn render(
    root: &Path,
    base: &Path,
    units: &[String],
    kustomize: &Kustomize,
    scratch: &Path,
) -> Result<Vec<Rendered>, Vec<RenderError>> {
    let mut rendered = Vec::new();
    let mut errors = Vec::new();
    for unit in units {
        let dir = if unit.is_empty() {
            base.to_path_buf()
        } else {
            base.join(unit)
        };
        let name = paths::relative(root, &dir);
        let result = guard::check(root, root, &dir)
            .and_then(|()| kustomize::enable_origin_annotations(&dir, &name))
            .and_then(|()| kustomize.build(&dir, scratch, &name))
            .and_then(|output| origin::objects(&output, &dir, root, &name));
        match result {
            Ok(mut objects) => rendered.append(&mut objects),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(rendered)
    } else {
        Err(errors)
    }
}
