//! The render step of a sync: when the revision holds kustomizations, the
//! verified commit is exported to a private scratch directory, each
//! kustomization is guarded and built with the pinned kustomize, and the
//! scratch directory is removed again. Plain files stay plain.
//!
//! A render is a function of the commit, the path, the kustomizations and
//! the kustomize binary, so it is kept in the cache directory under a key of
//! all four and reused: a resync of an unchanged commit runs no kustomize
//! (which grows quadratically with the objects of a build). The cached
//! objects are what kustomize printed, SOPS values still encrypted.

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
    let spec_path = source
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .spec()
        .path
        .clone();
    let cache = RenderCache::new(config, commit, &spec_path, &plan.kustomizations);
    if let Some(rendered) = cache.as_ref().and_then(RenderCache::load) {
        tracing::debug!(
            objects = rendered.len(),
            "reusing the render of this commit"
        );
        return Ok(RenderedRevision {
            plain: plan.plain,
            rendered,
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
    source.lock().unwrap_or_else(|e| e.into_inner()).export(
        commit,
        &tree,
        config.max_export_bytes,
    )?;
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
    if let Some(cache) = &cache {
        cache.store(&rendered);
    }
    Ok(RenderedRevision {
        plain: plan.plain,
        rendered,
    })
}

/// The kept render of one commit (see the module docs).
struct RenderCache {
    dir: PathBuf,
    file: PathBuf,
}

impl RenderCache {
    /// The cache entry for this render; `None` when the kustomize binary
    /// cannot be identified (then nothing is reused).
    fn new(config: &RenderConfig, commit: &str, spec_path: &str, units: &[String]) -> Option<Self> {
        use sha2::Digest as _;
        let binary = which(&config.kustomize.binary)?;
        let meta = std::fs::metadata(&binary).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let mut hash = sha2::Sha256::new();
        for part in [
            commit,
            spec_path,
            &units.join("\n"),
            &binary.display().to_string(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(meta.len().to_le_bytes());
        hash.update(modified.to_le_bytes());
        let dir = config.scratch_dir.join("cache");
        let file = dir.join(format!("{}.json", hex::encode(hash.finalize())));
        Some(RenderCache { dir, file })
    }

    fn load(&self) -> Option<Vec<Rendered>> {
        let text = std::fs::read(&self.file).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Keeps `rendered` as the one cached render (older ones are removed).
    fn store(&self, rendered: &[Rendered]) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            for entry in std::fs::read_dir(&self.dir)? {
                let _ = std::fs::remove_file(entry?.path());
            }
            let temporary = self.file.with_extension("tmp");
            std::fs::write(&temporary, serde_json::to_vec(rendered)?)?;
            std::fs::rename(&temporary, &self.file)
        };
        if let Err(error) = write() {
            tracing::warn!(%error, "cannot keep the render for the next sync");
        }
    }
}

/// `binary` as a path: itself when it names one, else found on `PATH`.
fn which(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return Some(binary.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

fn base_dir(root: &Path, spec_path: &str) -> PathBuf {
    path_components(spec_path).fold(root.to_path_buf(), |dir, c| dir.join(c))
}

/// The directories of the configured path (`.` and empty parts are the root).
pub fn path_components(spec_path: &str) -> impl Iterator<Item = &str> {
    spec_path.split('/').filter(|c| !c.is_empty() && *c != ".")
}
