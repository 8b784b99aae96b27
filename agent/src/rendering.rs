//! The render step of a sync: when the revision holds kustomizations, the
//! verified commit is exported to a private scratch directory, each
//! kustomization is guarded and built with the pinned kustomize, and the
//! scratch directory is removed again. Plain files stay plain.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gitwarden_manifests::Rendered;
use gitwarden_render::{Kustomize, RenderError, plan};
use gitwarden_source::{Source, SourceError};

/// How to render.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// The kustomize to run.
    pub kustomize: Kustomize,
    /// Where scratch directories go (the agent's cache volume: the image's
    /// root filesystem is read-only).
    pub scratch_dir: PathBuf,
    /// The largest repository exported for rendering.
    pub max_export_bytes: u64,
}

/// What rendering produced: the files to load as they are (indices into
/// the revision's files) and the rendered objects.
pub struct RenderedRevision {
    /// Indices of plain manifest files.
    pub plain: Vec<usize>,
    /// Objects kustomize rendered.
    pub rendered: Vec<Rendered>,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    /// The commit could not be exported.
    #[error(transparent)]
    Export(#[from] SourceError),
    /// The scratch directory could not be made.
    #[error("cannot make a scratch directory in {dir}: {error}")]
    Scratch {
        /// Where.
        dir: String,
        /// Why.
        error: std::io::Error,
    },
    /// Kustomizations were refused or failed to build.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Render(Vec<RenderError>),
}

/// Renders the kustomizations of the revision `commit`, whose manifest
/// files are `paths` (blocking: run it off the async runtime). A revision
/// without kustomizations costs nothing here.
pub fn render_revision(
    source: &Arc<Mutex<Source>>,
    commit: &str,
    paths: &[String],
    config: &RenderConfig,
) -> Result<RenderedRevision, RenderFailure> {
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let plan = plan(&paths);
    if plan.kustomizations.is_empty() {
        return Ok(RenderedRevision {
            plain: plan.plain,
            rendered: Vec::new(),
        });
    }
    let span = tracing::info_span!("render", kustomizations = plan.kustomizations.len());
    let _entered = span.enter();
    let scratch_error = |error: std::io::Error| RenderFailure::Scratch {
        dir: config.scratch_dir.display().to_string(),
        error,
    };
    std::fs::create_dir_all(&config.scratch_dir).map_err(scratch_error)?;
    let scratch = tempfile::Builder::new()
        .prefix("render-")
        .tempdir_in(&config.scratch_dir)
        .map_err(scratch_error)?;
    let tree = scratch.path().join("tree");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).map_err(scratch_error)?;
    let spec_path = {
        let source = source.lock().unwrap_or_else(|e| e.into_inner());
        source.export(commit, &tree, config.max_export_bytes)?;
        source.spec().path.clone()
    };
    let root = tree.canonicalize().map_err(scratch_error)?;
    let base = base_dir(&root, &spec_path)
        .canonicalize()
        .map_err(scratch_error)?;
    let started = std::time::Instant::now();
    let rendered =
        gitwarden_render::render(&root, &base, &plan.kustomizations, &config.kustomize, &home)
            .map_err(RenderFailure::Render)?;
    tracing::info!(
        objects = rendered.len(),
        seconds = started.elapsed().as_secs_f64(),
        "rendered kustomizations"
    );
    Ok(RenderedRevision {
        plain: plan.plain,
        rendered,
    })
}

fn base_dir(root: &Path, spec_path: &str) -> PathBuf {
    spec_path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .fold(root.to_path_buf(), |dir, c| dir.join(c))
}
