//! Reading manifests straight from a commit's tree: no checkout, so nothing on disk can drift
//! from what the (verified) commit says, and no work tree needs cleaning between fetches.

use gix::{ObjectId, objs::tree::EntryKind};

use crate::{SourceError, SourceFile};

/// Only these become manifests; everything else in the repository (README, scripts, images) is
/// ignored. Compared case-insensitively: a file silently ignored because of `.YAML` would have
/// its objects pruned.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// How many symlinks in a row are followed before giving up (same order as Linux's 40, smaller
/// because manifests never need long chains).
const MAX_SYMLINK_HOPS: usize = 8;

/// The manifest path from the spec, split into components: `.`, empty and leading/trailing `/`
/// mean the root; `..` is refused (it could only mean "outside the repository").
pub(crate) fn normalize_path(path: &str) -> Result<Vec<String>, SourceError> {
    let mut out = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(SourceError::InvalidSpec {
                    why: format!("path {path:?} must stay inside the repository (no '..')"),
                });
            }
            other => out.push(other.to_string()),
        }
    }
    Ok(out)
}

/// One entry of a tree, detached from gix's borrowed types.
#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    name: String,
    id: ObjectId,
}

/// Reads manifests out of one commit.
pub(crate) struct TreeReader<'repo> {
    repo: &'repo gix::Repository,
    commit: String,
    root: ObjectId,
    max_file_bytes: u64,
}

impl<'repo> TreeReader<'repo> {
    /// A reader for the tree `root` of `commit` (hex, for errors).
    pub(crate) fn new(
        repo: &'repo gix::Repository,
        commit: String,
        root: ObjectId,
        max_file_bytes: u64,
    ) -> Self {
        TreeReader {
            repo,
            commit,
            root,
            max_file_bytes,
        }
    }

    /// All manifest files below `path` (components from [`normalize_path`]), recursively,
    /// sorted by their path relative to `path`.
    pub(crate) fn manifests(&self, path: &[String]) -> Result<Vec<SourceFile>, SourceError> {
        let start = self.directory(path)?;
        let mut files = Vec::new();
        // (tree id, path relative to `path`, path from the repository root)
        let mut pending = vec![(start, String::new(), path.to_vec())];
        while let Some((tree, relative, absolute)) = pending.pop() {
            for entry in self.entries(tree)? {
                let rel = join(&relative, &entry.name);
                let mut abs = absolute.clone();
                abs.push(entry.name.clone());
                match entry.kind {
                    EntryKind::Tree => pending.push((entry.id, rel, abs)),
                    EntryKind::Blob | EntryKind::BlobExecutable => {
                        if is_manifest(&entry.name) {
                            let content = self.read_blob(entry.id, &abs.join("/"))?;
                            files.push(SourceFile { path: rel, content });
                        }
                    }
                    EntryKind::Link => {
                        if is_manifest(&entry.name)
                            && let Some(content) = self.follow_symlink(entry.id, &abs)?
                        {
                            files.push(SourceFile { path: rel, content });
                        }
                    }
                    EntryKind::Commit => {
                        tracing::debug!(path = %abs.join("/"), "skipping submodule");
                    }
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Writes every file of the commit below `dir`, for a renderer that reads
    /// a directory (kustomize): regular files as committed, symlinks inside
    /// the repository as copies of their target, nothing else (submodules,
    /// links leaving the repository). Every file is capped like a manifest
    /// and the whole export by `max_total_bytes`. Returns the bytes written.
    pub(crate) fn export(
        &self,
        dir: &std::path::Path,
        max_total_bytes: u64,
    ) -> Result<u64, SourceError> {
        let io = |path: &std::path::Path, err: std::io::Error| SourceError::Export {
            commit: self.commit.clone(),
            detail: format!("{}: {err}", path.display()),
        };
        let mut written = 0u64;
        let mut pending = vec![(self.root, Vec::<String>::new())];
        while let Some((tree, at)) = pending.pop() {
            let here = at.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
            std::fs::create_dir_all(&here).map_err(|e| io(&here, e))?;
            for entry in self.entries(tree)? {
                if entry.name == ".git" || entry.name.contains('/') || entry.name == ".." {
                    continue;
                }
                let mut path = at.clone();
                path.push(entry.name.clone());
                let content = match entry.kind {
                    EntryKind::Tree => {
                        pending.push((entry.id, path));
                        continue;
                    }
                    EntryKind::Blob | EntryKind::BlobExecutable => {
                        Some(self.read_blob(entry.id, &path.join("/"))?)
                    }
                    EntryKind::Link => self.follow_symlink(entry.id, &path)?,
                    EntryKind::Commit => None,
                };
                let Some(content) = content else { continue };
                written += content.len() as u64;
                if written > max_total_bytes {
                    return Err(SourceError::Export {
                        commit: self.commit.clone(),
                        detail: format!("the repository is larger than {max_total_bytes} bytes"),
                    });
                }
                let file = here.join(&entry.name);
                std::fs::write(&file, content).map_err(|e| io(&file, e))?;
            }
        }
        Ok(written)
    }

    /// The tree at `path`, or `PathNotFound` when it is missing or not a directory.
    fn directory(&self, path: &[String]) -> Result<ObjectId, SourceError> {
        let not_found = || SourceError::PathNotFound {
            commit: self.commit.clone(),
            path: if path.is_empty() {
                ".".into()
            } else {
                path.join("/")
            },
        };
        match self.lookup(path)? {
            Some(entry) if entry.kind == EntryKind::Tree => Ok(entry.id),
            _ => Err(not_found()),
        }
    }

    /// The entry at `path` from the root (the root itself for an empty path).
    fn lookup(&self, path: &[String]) -> Result<Option<Entry>, SourceError> {
        let mut current = Entry {
            kind: EntryKind::Tree,
            name: String::new(),
            id: self.root,
        };
        for component in path {
            if current.kind != EntryKind::Tree {
                return Ok(None);
            }
            match self
                .entries(current.id)?
                .into_iter()
                .find(|e| &e.name == component)
            {
                Some(entry) => current = entry,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// The entries of one tree.
    fn entries(&self, tree: ObjectId) -> Result<Vec<Entry>, SourceError> {
        let tree = self
            .repo
            .find_tree(tree)
            .map_err(|err| self.object_error(&err))?;
        let mut out = Vec::new();
        for entry in tree.iter() {
            let entry = entry.map_err(|err| self.object_error(&err))?;
            out.push(Entry {
                kind: entry.mode().kind(),
                name: entry.filename().to_string(),
                id: entry.oid().to_owned(),
            });
        }
        Ok(out)
    }

    /// A blob's bytes, after checking its size from the object header (so an oversized blob is
    /// never inflated into memory).
    fn read_blob(&self, id: ObjectId, repo_path: &str) -> Result<Vec<u8>, SourceError> {
        let size = self
            .repo
            .find_header(id)
            .map_err(|err| self.object_error(&err))?
            .size();
        if size > self.max_file_bytes {
            return Err(SourceError::FileTooLarge {
                commit: self.commit.clone(),
                path: repo_path.to_string(),
                size,
                limit: self.max_file_bytes,
            });
        }
        let blob = self
            .repo
            .find_blob(id)
            .map_err(|err| self.object_error(&err))?;
        Ok(blob.detach().data)
    }

    /// The content behind a symlink at `link_path` (from the root) whose target blob is `id`,
    /// or `None` (with a warning) when it leaves the repository, dangles or names a directory.
    /// Targets inside the repository are fine even outside the manifest path: the commit (and
    /// its signature) covers them.
    fn follow_symlink(
        &self,
        id: ObjectId,
        link_path: &[String],
    ) -> Result<Option<Vec<u8>>, SourceError> {
        let shown = link_path.join("/");
        let mut link_id = id;
        let mut link_at = link_path.to_vec();
        for _ in 0..MAX_SYMLINK_HOPS {
            // A symlink's blob is its target path; cap it like any file.
            let target = self.read_blob(link_id, &link_at.join("/"))?;
            let target = String::from_utf8_lossy(&target).into_owned();
            let Some(resolved) = resolve_link(&link_at, &target) else {
                tracing::warn!(path = %shown, target = %target, "skipping symlink that leaves the repository");
                return Ok(None);
            };
            match self.lookup(&resolved)? {
                Some(entry)
                    if matches!(entry.kind, EntryKind::Blob | EntryKind::BlobExecutable) =>
                {
                    return self.read_blob(entry.id, &resolved.join("/")).map(Some);
                }
                Some(entry) if entry.kind == EntryKind::Link => {
                    link_id = entry.id;
                    link_at = resolved;
                }
                Some(_) => {
                    tracing::warn!(path = %shown, target = %target, "skipping symlink to a directory or submodule");
                    return Ok(None);
                }
                None => {
                    tracing::warn!(path = %shown, target = %target, "skipping dangling symlink");
                    return Ok(None);
                }
            }
        }
        tracing::warn!(path = %shown, "skipping symlink: too many levels of symbolic links");
        Ok(None)
    }

    fn object_error(&self, err: &dyn std::fmt::Display) -> SourceError {
        SourceError::Object {
            commit: self.commit.clone(),
            detail: err.to_string(),
        }
    }
}

/// Resolve `target` relative to the directory holding the link at `link_path`; `None` when it is
/// absolute or climbs above the repository root.
fn resolve_link(link_path: &[String], target: &str) -> Option<Vec<String>> {
    if target.starts_with('/') {
        return None;
    }
    let mut resolved: Vec<String> = link_path[..link_path.len().saturating_sub(1)].to_vec();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                resolved.pop()?;
            }
            other => resolved.push(other.to_string()),
        }
    }
    Some(resolved)
}

/// Kustomize's file names for a kustomization. `Kustomization` has no
/// extension but is one of the revision's files all the same (it decides how
/// its directory is rendered).
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

fn is_manifest(name: &str) -> bool {
    if name == "Kustomization" {
        return true;
    }
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && MANIFEST_EXTENSIONS
                .iter()
                .any(|m| ext.eq_ignore_ascii_case(m))
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(path: &str) -> Vec<String> {
        path.split('/').map(String::from).collect()
    }

    #[test]
    fn manifest_extensions_are_yaml_yml_json_in_any_case() {
        assert!(is_manifest("a.yaml"));
        assert!(is_manifest("a.yml"));
        assert!(is_manifest("a.json"));
        assert!(is_manifest("A.YAML"));
        assert!(!is_manifest("README.md"));
        assert!(!is_manifest("yaml"));
        assert!(!is_manifest(".yaml"));
        assert!(!is_manifest("a.yaml.bak"));
    }

    #[test]
    fn dot_and_slashes_normalize_to_the_root() {
        assert!(normalize_path(".").unwrap().is_empty());
        assert!(normalize_path("").unwrap().is_empty());
        assert_eq!(
            normalize_path("./deploy//prod/").unwrap(),
            vec!["deploy", "prod"]
        );
    }

    #[test]
    fn dot_dot_in_path_is_refused() {
        assert!(normalize_path("deploy/../../etc").is_err());
    }

    #[test]
    fn relative_symlink_resolves_from_its_directory() {
        assert_eq!(
            resolve_link(&parts("a/b/link.yaml"), "../c/x.yaml"),
            Some(parts("a/c/x.yaml"))
        );
        assert_eq!(
            resolve_link(&parts("link.yaml"), "./x.yaml"),
            Some(parts("x.yaml"))
        );
    }

    #[test]
    fn symlink_leaving_the_repository_does_not_resolve() {
        assert_eq!(
            resolve_link(&parts("a/link.yaml"), "../../etc/passwd"),
            None
        );
        assert_eq!(resolve_link(&parts("a/link.yaml"), "/etc/passwd"), None);
    }
}
