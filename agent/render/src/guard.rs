//! Everything a kustomize build reads must come from the verified commit.
//!
//! kustomize fetches remote resources, bases and components (git, HTTP),
//! loads any file reference from an `http(s)` URL, reads directories outside
//! the kustomization (`--load-restrictor` does not confine them), inflates
//! Helm charts and runs plugins and KRM functions. Before it runs, this
//! module walks every kustomization the build can reach from its root and
//! refuses each of those, naming the kustomization and the field; a path
//! must exist in the exported commit and stay inside it after symlinks.
//! kustomize's own decoder matches field names case-insensitively with the
//! last duplicate winning, so names are folded and duplicates refused.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::error::RenderError;
use crate::paths::relative;

/// How many kustomizations one build may reach: a bound, so a cycle or a
/// hostile tree cannot make the walk run forever.
const MAX_KUSTOMIZATIONS: usize = 1000;

/// The largest kustomization or plugin configuration file read (1 MiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a build must not run, as the guard reports it.
const OUTSIDE: &str = "everything rendered must come from the verified commit";

/// What a reference must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A resource: a file, or a directory with a kustomization.
    Resource,
    /// A component: a directory with a kustomization.
    Directory,
    /// A file (patches, generator sources, CRDs, configurations).
    File,
    /// A generator or transformer: inline YAML, a file of configurations, or
    /// a kustomization of them.
    PluginConfig,
}

/// The walk over one build's kustomizations.
struct Walk<'a> {
    /// The exported commit, canonical.
    root: &'a Path,
    /// Names in errors are relative to this (the repository root).
    base: &'a Path,
    visited: HashSet<PathBuf>,
}

/// Checks the kustomization in `dir` and everything it can reach, inside the
/// exported commit `root` (names in errors are relative to `base`). All
/// three must be canonical paths.
pub fn check(root: &Path, base: &Path, dir: &Path) -> Result<(), RenderError> {
    let mut walk = Walk {
        root,
        base,
        visited: HashSet::new(),
    };
    walk.kustomization(dir)
}

/// Whether a reference names something remote: kustomize would fetch it
/// (URLs, `git::`, `gh:`, `github.com/…`, scp-style `user@host:path`, and
/// the query parameters of its git syntax).
pub fn looks_remote(reference: &str) -> bool {
    let lower = reference.to_ascii_lowercase();
    if lower.contains("://")
        || ["git::", "gh:", "github.com/", "github.com:"]
            .iter()
            .any(|p| lower.starts_with(p))
        || lower.contains("_git/")
    {
        return true;
    }
    if let Some((_, query)) = lower.split_once('?')
        && ["ref=", "timeout=", "submodules=", "version="]
            .iter()
            .any(|k| query.contains(k))
    {
        return true;
    }
    // scp-like: user@host:path, with no '/' before the '@'.
    if let Some((user, rest)) = reference.split_once('@') {
        let user_ok = user.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if user_ok
            && rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains(':'))
        {
            return true;
        }
    }
    false
}

/// The kustomization file in `dir`, if it has (exactly) one.
fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    let found: Vec<PathBuf> = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|p| p.is_file())
        .collect();
    (found.len() == 1).then(|| found[0].clone())
}

fn read_yaml_file(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// A mapping's entries with lower-cased keys; duplicates (after folding) refused.
fn folded(map: &serde_yaml_ng::Mapping) -> Result<Vec<(String, &str, &Value)>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err("a field name that is not a string".into());
        };
        let lower = key.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            return Err(format!(
                "field {key:?} is written twice (kustomize matches names case-insensitively)"
            ));
        }
        out.push((lower, key, value));
    }
    Ok(out)
}

fn strings(value: &Value) -> Vec<(usize, &str)> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_str().map(|s| (i, s)))
            .collect(),
        Value::String(s) => vec![(0, s.as_str())],
        _ => Vec::new(),
    }
}

fn field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value.as_mapping().and_then(|m| {
        m.iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    })
}

impl Walk<'_> {
    fn name(&self, path: &Path) -> String {
        relative(self.base, path)
    }

    fn refused(&self, file: &Path, field: &str, reason: impl Into<String>) -> RenderError {
        RenderError::Refused {
            kustomization: self.name(file),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Checks the kustomization in `dir` (once) and what it references.
    fn kustomization(&mut self, dir: &Path) -> Result<(), RenderError> {
        if !self.visited.insert(dir.to_path_buf()) {
            return Ok(());
        }
        if self.visited.len() > MAX_KUSTOMIZATIONS {
            return Err(RenderError::Invalid {
                kustomization: self.name(dir),
                reason: format!("reaches more than {MAX_KUSTOMIZATIONS} kustomizations"),
            });
        }
        let Some(file) = kustomization_file(dir) else {
            return Err(RenderError::Invalid {
                kustomization: self.name(dir),
                reason: "the directory has no kustomization file, or more than one".into(),
            });
        };
        let invalid = |reason: String| RenderError::Invalid {
            kustomization: relative(self.base, &file),
            reason,
        };
        let text = read_yaml_file(&file).map_err(invalid)?;
        let document: Value = serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let map = match &document {
            Value::Mapping(map) => map,
            Value::Null => return Ok(()),
            _ => return Err(invalid("not a mapping".into())),
        };
        for (lower, key, value) in folded(map).map_err(invalid)? {
            self.field(dir, &file, &lower, key, value)?;
        }
        Ok(())
    }

    /// One field of a kustomization: `lower` is its folded name, `key` as written.
    fn field(
        &mut self,
        dir: &Path,
        file: &Path,
        lower: &str,
        key: &str,
        value: &Value,
    ) -> Result<(), RenderError> {
        match lower {
            "helmcharts" | "helmglobals" | "helmchartinflationgenerator" => Err(self.refused(
                file,
                key,
                format!(
                    "Helm chart inflation is not allowed: render the chart into git ({OUTSIDE})"
                ),
            )),
            "validators" if !matches!(value, Value::Null) => Err(self.refused(
                file,
                key,
                format!("validators are plugins, which are not allowed ({OUTSIDE})"),
            )),
            "resources" | "bases" => self.references(dir, file, key, value, Expect::Resource),
            "components" => self.references(dir, file, key, value, Expect::Directory),
            "crds" | "configurations" => self.references(dir, file, key, value, Expect::File),
            "generators" | "transformers" => {
                self.references(dir, file, key, value, Expect::PluginConfig)
            }
            "openapi" => match field(value, "path").and_then(Value::as_str) {
                Some(path) => self.reference(dir, file, "openapi.path", path, Expect::File),
                None => Ok(()),
            },
            "patches" | "patchesjson6902" | "replacements" => {
                for (i, item) in value.as_sequence().into_iter().flatten().enumerate() {
                    if let Some(path) = field(item, "path").and_then(Value::as_str) {
                        self.reference(dir, file, &format!("{key}[{i}].path"), path, Expect::File)?;
                    }
                }
                Ok(())
            }
            "patchesstrategicmerge" => {
                for (i, patch) in strings(value) {
                    // A string that holds YAML is an inline patch.
                    if !patch.contains('\n') && !patch.contains(": ") {
                        self.reference(dir, file, &format!("{key}[{i}]"), patch, Expect::File)?;
                    }
                }
                Ok(())
            }
            "configmapgenerator" | "secretgenerator" => {
                for (i, generator) in value.as_sequence().into_iter().flatten().enumerate() {
                    self.generator_sources(dir, file, &format!("{key}[{i}]"), generator)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `files` (`[key=]path`), `envs` and `env` of a ConfigMap or Secret generator.
    fn generator_sources(
        &mut self,
        dir: &Path,
        file: &Path,
        at: &str,
        generator: &Value,
    ) -> Result<(), RenderError> {
        for (name, strip_key) in [("files", true), ("envs", false), ("env", false)] {
            for (i, source) in field(generator, name).map(strings).unwrap_or_default() {
                let path = if strip_key {
                    source.split_once('=').map_or(source, |(_, p)| p)
                } else {
                    source
                };
                self.reference(dir, file, &format!("{at}.{name}[{i}]"), path, Expect::File)?;
            }
        }
        Ok(())
    }

    fn references(
        &mut self,
        dir: &Path,
        file: &Path,
        key: &str,
        value: &Value,
        expect: Expect,
    ) -> Result<(), RenderError> {
        for (i, reference) in strings(value) {
            let at = format!("{key}[{i}]");
            if expect == Expect::PluginConfig && reference.contains('\n') {
                self.plugin_configs(file, &at, reference, dir)?;
            } else {
                self.reference(dir, file, &at, reference, expect)?;
            }
        }
        Ok(())
    }

    /// Checks one reference and, for a directory, the kustomization in it.
    fn reference(
        &mut self,
        dir: &Path,
        file: &Path,
        at: &str,
        reference: &str,
        expect: Expect,
    ) -> Result<(), RenderError> {
        let shown = format!("{at} {reference:?}");
        if looks_remote(reference) {
            return Err(self.refused(
                file,
                &shown,
                format!("remote content is not allowed ({OUTSIDE})"),
            ));
        }
        let path = Path::new(reference);
        if path.is_absolute() {
            return Err(self.refused(
                file,
                &shown,
                format!("absolute paths are not allowed ({OUTSIDE})"),
            ));
        }
        let joined = dir.join(path);
        let Ok(resolved) = joined.canonicalize() else {
            return Err(self.refused(file, &shown, "does not exist in the commit"));
        };
        if !resolved.starts_with(self.root) {
            return Err(self.refused(file, &shown, format!("leaves the repository ({OUTSIDE})")));
        }
        match (expect, resolved.is_dir()) {
            (Expect::File, true) => {
                Err(self.refused(file, &shown, "is a directory, a file is expected"))
            }
            (Expect::Directory, false) => Err(self.refused(
                file,
                &shown,
                "is a file, a directory with a kustomization is expected",
            )),
            (_, true) => self.kustomization(&resolved),
            (Expect::PluginConfig, false) => {
                let text = read_yaml_file(&resolved).map_err(|e| self.refused(file, &shown, e))?;
                let dir_of = resolved.parent().unwrap_or(self.root).to_path_buf();
                self.plugin_configs(file, &shown, &text, &dir_of)
            }
            (_, false) => Ok(()),
        }
    }

    /// Every configuration in `text` must be one of kustomize's built-in
    /// generators or transformers (not Helm), and its own paths are checked.
    fn plugin_configs(
        &mut self,
        file: &Path,
        at: &str,
        text: &str,
        dir: &Path,
    ) -> Result<(), RenderError> {
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let config = <Value as serde::Deserialize>::deserialize(document)
                .map_err(|e| self.refused(file, at, format!("not a plugin configuration: {e}")))?;
            if config.is_null() {
                continue;
            }
            let api_version = field(&config, "apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = field(&config, "kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let function = field(&config, "metadata")
                .and_then(|m| field(m, "annotations"))
                .is_some_and(|a| {
                    field(a, "config.kubernetes.io/function").is_some()
                        || field(a, "config.k8s.io/function").is_some()
                });
            if api_version != "builtin" || function {
                return Err(self.refused(
                    file,
                    at,
                    format!(
                        "{kind} ({api_version}) is a plugin or KRM function; only kustomize's built-in generators and transformers are allowed ({OUTSIDE})"
                    ),
                ));
            }
            if kind == "HelmChartInflationGenerator" {
                return Err(self.refused(
                    file,
                    at,
                    format!("Helm chart inflation is not allowed ({OUTSIDE})"),
                ));
            }
            for name in ["path", "env"] {
                if let Some(path) = field(&config, name).and_then(Value::as_str) {
                    self.reference(
                        dir,
                        file,
                        &format!("{at} {kind}.{name}"),
                        path,
                        Expect::File,
                    )?;
                }
            }
            for name in ["paths", "envs"] {
                for (i, path) in field(&config, name).map(strings).unwrap_or_default() {
                    self.reference(
                        dir,
                        file,
                        &format!("{at} {kind}.{name}[{i}]"),
                        path,
                        Expect::File,
                    )?;
                }
            }
            for (i, source) in field(&config, "files").map(strings).unwrap_or_default() {
                let path = source.split_once('=').map_or(source, |(_, p)| p);
                self.reference(
                    dir,
                    file,
                    &format!("{at} {kind}.files[{i}]"),
                    path,
                    Expect::File,
                )?;
            }
            for (i, item) in field(&config, "replacements")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(path) = field(item, "path").and_then(Value::as_str) {
                    self.reference(
                        dir,
                        file,
                        &format!("{at} {kind}.replacements[{i}].path"),
                        path,
                        Expect::File,
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tree of files in a temporary directory; returns it canonical.
    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    fn check_at(files: &[(&str, &str)], unit: &str) -> Result<(), RenderError> {
        let (_dir, root) = tree(files);
        check(&root, &root, &root.join(unit).canonicalize().unwrap())
    }

    fn refusal(files: &[(&str, &str)], unit: &str) -> String {
        check_at(files, unit).unwrap_err().to_string()
    }

    #[test]
    fn an_overlay_of_a_local_base_with_patches_and_generators_passes() {
        let files = [
            (
                "base/kustomization.yaml",
                "resources: [cm.yaml]\nconfigMapGenerator:\n- name: g\n  files: [k=data.txt]\n  envs: [vars.env]\n",
            ),
            (
                "base/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            ),
            ("base/data.txt", "x"),
            ("base/vars.env", "A=1"),
            (
                "prod/kustomization.yaml",
                "resources: [../base]\npatches:\n- path: patch.yaml\ntransformers:\n- |\n  apiVersion: builtin\n  kind: LabelTransformer\n  metadata: {name: l}\n  labels: {a: b}\n",
            ),
            (
                "prod/patch.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            ),
        ];
        check_at(&files, "prod").unwrap();
    }

    #[test]
    fn remote_resources_and_bases_are_refused_naming_the_kustomization_and_field() {
        for remote in [
            "https://example.com/cm.yaml",
            "github.com/org/repo/dir?ref=v1",
            "git@github.com:org/repo.git",
            "git::https://example.com/repo",
            "ssh://git@example.com/repo",
        ] {
            let files = [(
                "app/kustomization.yaml",
                format!("resources:\n- {remote}\n"),
            )];
            let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
            let error = refusal(&files, "app");
            assert!(
                error.starts_with("kustomization app/kustomization.yaml: resources[0]"),
                "{error}"
            );
            assert!(error.contains("remote content is not allowed"), "{error}");
        }
    }

    #[test]
    fn a_remote_file_reference_in_a_patch_or_generator_is_refused() {
        let error = refusal(
            &[(
                "kustomization.yaml",
                "patches:\n- path: https://example.com/p.yaml\n",
            )],
            "",
        );
        assert!(
            error.contains("patches[0].path") && error.contains("remote"),
            "{error}"
        );
        let error = refusal(
            &[(
                "kustomization.yaml",
                "secretGenerator:\n- name: s\n  files: [key=http://x/y]\n",
            )],
            "",
        );
        assert!(error.contains("secretGenerator[0].files[0]"), "{error}");
    }

    #[test]
    fn a_base_outside_the_repository_is_refused() {
        let (outside, _) = tree(&[("kustomization.yaml", "resources: []\n")]);
        let (_dir, root) = tree(&[("app/kustomization.yaml", "resources: []\n")]);
        let base = outside.path().canonicalize().unwrap();
        let relative_path = format!(
            "{}{}",
            "../".repeat(root.components().count() + 1),
            base.display()
        );
        std::fs::write(
            root.join("app/kustomization.yaml"),
            format!("resources: [{relative_path}]\n"),
        )
        .unwrap();
        let error = check(&root, &root, &root.join("app"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("leaves the repository"), "{error}");
    }

    #[test]
    fn helm_charts_plugins_and_validators_are_refused() {
        let error = refusal(&[("kustomization.yaml", "helmCharts:\n- name: x\n")], "");
        assert!(
            error.contains("helmCharts: Helm chart inflation is not allowed"),
            "{error}"
        );
        let error = refusal(
            &[
                ("kustomization.yaml", "generators: [gen.yaml]\n"),
                (
                    "gen.yaml",
                    "apiVersion: example.com/v1\nkind: Exec\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      exec: {path: ./x}\n",
                ),
            ],
            "",
        );
        assert!(error.contains("is a plugin or KRM function"), "{error}");
        let error = refusal(
            &[
                ("kustomization.yaml", "validators: [v.yaml]\n"),
                ("v.yaml", "a: b\n"),
            ],
            "",
        );
        assert!(error.contains("validators are plugins"), "{error}");
        let error = refusal(
            &[(
                "kustomization.yaml",
                "generators:\n- |\n  apiVersion: builtin\n  kind: HelmChartInflationGenerator\n  metadata: {name: h}\n",
            )],
            "",
        );
        assert!(error.contains("Helm chart inflation"), "{error}");
    }

    #[test]
    fn field_names_differing_only_in_case_are_refused_not_guessed() {
        let error = refusal(
            &[
                (
                    "kustomization.yaml",
                    "Resources: [a.yaml]\nresources: [b.yaml]\n",
                ),
                ("a.yaml", ""),
                ("b.yaml", ""),
            ],
            "",
        );
        assert!(error.contains("written twice"), "{error}");
    }

    #[test]
    fn a_missing_reference_is_refused_before_kustomize_could_try_it_as_a_url() {
        let error = refusal(&[("kustomization.yaml", "resources: [org/repo]\n")], "");
        assert!(error.contains("does not exist in the commit"), "{error}");
    }
}
