//! Keeping a bare cache repository per remote up to date and producing revisions from it.
//!
//! Fetching is separate from applying (Flux's source-controller idea): [`Source::fetch`] only
//! talks to git and returns bytes; the agent decides what to do with them.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
};

use gix::{
    ObjectId,
    remote::{Direction, fetch::Shallow, fetch::Tags},
};

use crate::{
    FetchedRevision, GitRef, SourceError, SourceOptions, SourceSpec, credentials,
    remote_url::{RemoteUrl, Transport},
    tls,
    tree::{self, TreeReader},
    verify::{self, Signers},
};

/// gix reports a server without the `shallow` capability with this text and no distinct
/// error type; matched to fall back to a full fetch.
const SHALLOW_UNSUPPORTED: &str = "lack feature \"shallow\"";

/// A git source with its on-disk cache. Blocking: the agent calls [`Source::fetch`] from
/// `tokio::task::spawn_blocking`.
#[derive(Debug)]
pub struct Source {
    spec: SourceSpec,
    options: SourceOptions,
    remote: RemoteUrl,
    path: Vec<String>,
    dir: PathBuf,
    repo: gix::ThreadSafeRepository,
    interrupt: Arc<AtomicBool>,
}

impl Source {
    /// Validate `spec` and open (or create) its bare cache repository below `cache_dir`, one
    /// directory per URL, with default [`SourceOptions`]. No network access happens here, so
    /// a bad configuration fails at startup and an unreachable remote only at fetch time.
    pub fn open(spec: SourceSpec, cache_dir: &Path) -> Result<Self, SourceError> {
        Self::open_with_options(spec, cache_dir, SourceOptions::default())
    }

    /// Like [`Source::open`] with explicit options (file size cap, ssh program, shallow).
    pub fn open_with_options(
        mut spec: SourceSpec,
        cache_dir: &Path,
        options: SourceOptions,
    ) -> Result<Self, SourceError> {
        let remote = RemoteUrl::parse(&spec.url, &spec.auth)?;
        let path = tree::normalize_path(&spec.path)?;
        validate_reference(&spec.reference)?;
        if let GitRef::Commit(hex) = &mut spec.reference {
            // Object ids are compared and reported in lowercase, as git prints them.
            hex.make_ascii_lowercase();
        }
        let dir = cache_dir.join(remote.cache_dir_name());
        let repo = open_cache(&dir, config_overrides(&spec, &options))?;
        Ok(Source {
            spec,
            options,
            remote,
            path,
            dir,
            repo,
            interrupt: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The spec this source was opened with.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// The remote URL without credentials, for status and logs.
    pub fn display_url(&self) -> &str {
        &self.remote.display
    }

    /// The bare cache repository of this source (for operators and tests).
    pub fn cache_path(&self) -> &Path {
        &self.dir
    }

    /// A flag that aborts a running pack transfer when set to `true` (at shutdown, or by a
    /// watchdog); a later fetch is aborted too until it is stored `false` again.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    /// Bring the cache up to date with the remote and return the configured revision's
    /// manifests. With verification configured, an unverified head is an
    /// [`SourceError::Unverified`] error and nothing of it is returned.
    ///
    /// Credentials, the allowed-signers file and the OpenPGP keyring are re-read on every call.
    pub fn fetch(&mut self) -> Result<FetchedRevision, SourceError> {
        let span = tracing::info_span!(
            "source_fetch",
            url = %self.remote.display,
            reference = %self.spec.reference,
            commit = tracing::field::Empty,
        );
        let _entered = span.enter();
        let result = self.fetch_inner(&span);
        match &result {
            Ok(revision) => tracing::info!(
                files = revision.files.len(),
                signer = revision.signer.as_ref().map(|s| s.principal.as_str()),
                "fetched revision"
            ),
            Err(err @ SourceError::Unverified { .. }) => {
                tracing::warn!(
                    error = gitwarden_runtime::errors::chain(err),
                    "refusing unverified revision"
                )
            }
            Err(err) => {
                tracing::warn!(
                    error = gitwarden_runtime::errors::chain(err),
                    transient = err.is_transient(),
                    "fetch failed"
                )
            }
        }
        result
    }

    /// Writes every file of `commit` (a revision [`Source::fetch`] returned,
    /// so already verified) below `dir`, for a renderer that reads a
    /// directory; at most `max_total_bytes`. Returns the bytes written.
    pub fn export(
        &self,
        commit: &str,
        dir: &Path,
        max_total_bytes: u64,
    ) -> Result<u64, SourceError> {
        let _lock = self.lock()?;
        let repo = self.repo.to_thread_local();
        let object_error = |err: &dyn std::fmt::Display| SourceError::Object {
            commit: commit.to_string(),
            detail: err.to_string(),
        };
        let id = ObjectId::from_hex(commit.as_bytes()).map_err(|e| object_error(&e))?;
        let tree_id = repo
            .find_commit(id)
            .map_err(|e| object_error(&e))?
            .tree_id()
            .map_err(|e| object_error(&e))?
            .detach();
        TreeReader::new(
            &repo,
            commit.to_string(),
            tree_id,
            self.options.max_file_bytes,
        )
        .export(dir, max_total_bytes)
    }

    fn fetch_inner(&self, span: &tracing::Span) -> Result<FetchedRevision, SourceError> {
        let _lock = self.lock()?;
        let repo = self.repo.to_thread_local();
        let id = self.update(&repo)?;
        let hex = id.to_hex().to_string();
        span.record("commit", hex.as_str());

        let object_error = |err: &dyn std::fmt::Display| SourceError::Object {
            commit: hex.clone(),
            detail: err.to_string(),
        };
        let commit = repo.find_commit(id).map_err(|e| object_error(&e))?;
        // Verify before reading any file: content of an unverified commit is never looked at.
        let signer = match &self.spec.verify {
            None => None,
            Some(verification) => {
                let signers = Signers::read(verification)?;
                let signer = verify::verify_gix_commit(&commit, &signers).map_err(|why| {
                    SourceError::Unverified {
                        commit: hex.clone(),
                        why,
                    }
                })?;
                Some(signer)
            }
        };
        let tree_id = commit.tree_id().map_err(|e| object_error(&e))?.detach();
        let files = TreeReader::new(&repo, hex.clone(), tree_id, self.options.max_file_bytes)
            .manifests(&self.path)?;
        Ok(FetchedRevision {
            commit: hex,
            branch_or_tag: self.spec.reference.name().to_string(),
            files,
            signer,
            fetched_at: jiff::Timestamp::now(),
        })
    }

    /// Fetch what the reference needs and return the commit it designates.
    fn update(&self, repo: &gix::Repository) -> Result<ObjectId, SourceError> {
        match &self.spec.reference {
            GitRef::Branch(name) => {
                let local = format!("refs/remotes/origin/{name}");
                self.fetch_specs(repo, &[format!("+refs/heads/{name}:{local}")], true)?;
                self.resolve(repo, &local)
            }
            GitRef::Tag(name) => {
                let local = format!("refs/tags/{name}");
                self.fetch_specs(repo, &[format!("+{local}:{local}")], true)?;
                self.resolve(repo, &local)
            }
            GitRef::Commit(hex) => self.update_pinned(repo, hex),
        }
    }

    /// A pinned commit never changes, so a cached copy is used as is. Otherwise ask for it by id
    /// (servers with protocol v2 or `uploadpack.allowReachableSHA1InWant` allow that), and if the
    /// server refuses, fetch all branches and tags in full and look for it there.
    fn update_pinned(&self, repo: &gix::Repository, hex: &str) -> Result<ObjectId, SourceError> {
        let id = ObjectId::from_hex(hex.as_bytes()).map_err(|_| SourceError::InvalidSpec {
            why: format!("{hex:?} is not a full commit id"),
        })?;
        let have = |repo: &gix::Repository| repo.find_commit(id).is_ok();
        if have(repo) {
            tracing::debug!("pinned commit already in the cache");
            return Ok(id);
        }
        match self.fetch_specs(
            repo,
            &[format!("+{hex}:refs/gitwarden/pinned/{hex}")],
            false,
        ) {
            Ok(()) if have(repo) => return Ok(id),
            Ok(()) => {}
            Err(err @ (SourceError::AuthFailed { .. } | SourceError::Credentials { .. })) => {
                return Err(err);
            }
            Err(err) => {
                tracing::info!(error = %err, "server did not serve the commit by id; fetching all branches and tags");
            }
        }
        let full = [
            "+refs/heads/*:refs/gitwarden/all/heads/*".to_string(),
            "+refs/tags/*:refs/gitwarden/all/tags/*".to_string(),
        ];
        self.fetch_with(repo, &full, false, unshallow_if_needed(repo))?;
        if have(repo) {
            Ok(id)
        } else {
            Err(self.unknown_ref())
        }
    }

    /// Fetch `specs`, shallow if configured (falling back to a full fetch when the server cannot
    /// do shallow and the cache is not shallow yet).
    fn fetch_specs(
        &self,
        repo: &gix::Repository,
        specs: &[String],
        must_match: bool,
    ) -> Result<(), SourceError> {
        if !self.options.shallow {
            return self.fetch_with(repo, specs, must_match, Shallow::NoChange);
        }
        let depth_one = Shallow::DepthAtRemote(std::num::NonZeroU32::MIN);
        match self.fetch_with(repo, specs, must_match, depth_one) {
            Err(SourceError::Fetch { detail, .. })
                if detail.contains(SHALLOW_UNSUPPORTED) && !repo.is_shallow().unwrap_or(true) =>
            {
                tracing::info!("server does not support shallow fetches; fetching full history");
                self.fetch_with(repo, specs, must_match, Shallow::NoChange)
            }
            other => other,
        }
    }

    /// One connection: handshake, ref listing, pack transfer, ref updates.
    fn fetch_with(
        &self,
        repo: &gix::Repository,
        specs: &[String],
        must_match: bool,
        shallow: Shallow,
    ) -> Result<(), SourceError> {
        let invalid = |err: gix::Error| SourceError::InvalidSpec {
            why: format!("{}: {err:#}", self.spec.reference),
        };
        let remote = repo
            .remote_at_without_url_rewrite(self.remote.url.clone())
            .map_err(invalid)?
            .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
            .map_err(invalid)?
            .with_fetch_tags(Tags::None);
        credentials::check_ssh_files(&self.spec.auth)?;
        let callback =
            credentials::credentials_callback(credentials::http_credentials(&self.spec.auth)?);
        let transport_options =
            tls::transport_options(repo, &self.remote.url, self.options.ca_file.as_deref())?;
        let mut connection = remote
            .connect(Direction::Fetch)
            .map_err(|err| self.connect_error(&err))?
            .with_credentials(callback);
        if let Some(options) = transport_options {
            connection = connection.with_transport_options(options);
        }
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|err| self.connect_error(&err))?;
        if must_match && prepare.ref_map().mappings.is_empty() {
            return Err(self.unknown_ref());
        }
        let outcome = prepare
            .with_shallow(shallow)
            .receive(gix::progress::Discard, &self.interrupt)
            .map_err(|err| self.transfer_error(&err))?;
        tracing::debug!(status = ?status_name(&outcome.status), "fetch done");
        Ok(())
    }

    /// The commit a local ref points to, peeling annotated tags.
    fn resolve(&self, repo: &gix::Repository, local: &str) -> Result<ObjectId, SourceError> {
        let mut reference = repo.find_reference(local).map_err(|_| self.unknown_ref())?;
        let id = reference.peel_to_id().map_err(|err| SourceError::Object {
            commit: local.to_string(),
            detail: format!("{err:#}"),
        })?;
        match repo.find_commit(id) {
            Ok(commit) => Ok(commit.id),
            Err(_) => Err(SourceError::Object {
                commit: id.to_string(),
                detail: format!("{} does not point to a commit", self.spec.reference),
            }),
        }
    }

    /// Serialise fetches of the same cache (two sources for one URL, or two processes sharing
    /// a volume): gix's own ref locks fail rather than wait.
    fn lock(&self) -> Result<File, SourceError> {
        let path = self.dir.join("gitwarden.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| self.cache_error(&err))?;
        file.lock().map_err(|err| self.cache_error(&err))?;
        Ok(file)
    }

    fn unknown_ref(&self) -> SourceError {
        SourceError::UnknownRef {
            url: self.remote.display.clone(),
            reference: self.spec.reference.to_string(),
        }
    }

    fn cache_error(&self, err: &dyn std::fmt::Display) -> SourceError {
        SourceError::Cache {
            path: self.dir.clone(),
            detail: err.to_string(),
        }
    }

    /// A transport message with any `user@` of an http(s) URL removed: people put tokens
    /// there, and some HTTP errors echo the request URL.
    fn scrub(&self, detail: String) -> String {
        match (self.remote.transport, self.remote.url.user()) {
            (Transport::Http { .. }, Some(user)) if !user.is_empty() => {
                detail.replace(&format!("{user}@"), "")
            }
            _ => detail,
        }
    }

    /// Errors before any pack arrives: credentials refused, or the remote not there.
    fn connect_error(&self, err: &gix::Error) -> SourceError {
        let mut detail = self.scrub(format!("{err:#}"));
        if is_auth_failure(err, &detail) {
            if self.remote.transport == Transport::Ssh && err.classify().is_unauthenticated() {
                // gix turns ssh's "Permission denied" into a request for credentials, which we
                // never answer for ssh; its message would only confuse.
                detail = "ssh reported \"Permission denied\": is the deploy key authorised for this repository?".into();
            }
            SourceError::AuthFailed {
                url: self.remote.display.clone(),
                detail,
            }
        } else {
            SourceError::Unreachable {
                url: self.remote.display.clone(),
                detail,
            }
        }
    }

    /// Errors during negotiation and pack transfer.
    fn transfer_error(&self, err: &gix::Error) -> SourceError {
        let detail = self.scrub(format!("{err:#}"));
        if is_auth_failure(err, &detail) {
            return SourceError::AuthFailed {
                url: self.remote.display.clone(),
                detail,
            };
        }
        if err.classify().is_not_found() && self.remote.transport == Transport::File {
            return SourceError::Unreachable {
                url: self.remote.display.clone(),
                detail,
            };
        }
        SourceError::Fetch {
            url: self.remote.display.clone(),
            reference: self.spec.reference.to_string(),
            detail,
        }
    }
}

/// Refuse branch and tag names git would refuse, and commit ids that are not full ids (a short
/// id could become ambiguous; pinning means exactly one commit).
fn validate_reference(reference: &GitRef) -> Result<(), SourceError> {
    let invalid = |why: String| SourceError::InvalidSpec { why };
    match reference {
        GitRef::Branch(name) | GitRef::Tag(name) => {
            let full = match reference {
                GitRef::Branch(_) => format!("refs/heads/{name}"),
                _ => format!("refs/tags/{name}"),
            };
            if name.is_empty() || name.starts_with("refs/") || name.contains('*') {
                return Err(invalid(format!(
                    "{reference}: give the short name, without refs/ or patterns"
                )));
            }
            gix::validate::reference::name(full.as_str().into())
                .map_err(|err| invalid(format!("{reference}: {err}")))?;
        }
        GitRef::Commit(hex) => {
            if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "commit {hex:?} must be a full 40-character hex id"
                )));
            }
        }
    }
    Ok(())
}

/// Configuration the cache repository is opened with, in memory (the repository's config file
/// stays untouched): our ssh invocation, and timeouts so a dead server fails a fetch instead of
/// hanging a blocking thread.
fn config_overrides(spec: &SourceSpec, options: &SourceOptions) -> Vec<String> {
    let mut overrides = vec![
        "gitoxide.http.connectTimeout=30000".to_string(),
        "http.lowSpeedLimit=1".to_string(),
        "http.lowSpeedTime=60".to_string(),
    ];
    let ssh = match &spec.auth {
        crate::Auth::Ssh {
            private_key_file,
            known_hosts_file,
        } => credentials::ssh_command(&options.ssh_program, private_key_file, known_hosts_file),
        _ => credentials::ssh_command_anonymous(&options.ssh_program),
    };
    overrides.push(format!("core.sshCommand={ssh}"));
    overrides.push("ssh.variant=ssh".to_string());
    // Last, so the operator's settings win.
    overrides.extend(options.git_config.iter().cloned());
    overrides
}

/// Open the cache repository at `dir`, creating it when missing and recreating it when it is
/// not a usable repository (a cache can always be rebuilt from the remote).
fn open_cache(
    dir: &Path,
    overrides: Vec<String>,
) -> Result<gix::ThreadSafeRepository, SourceError> {
    let cache_error = |err: &dyn std::fmt::Display| SourceError::Cache {
        path: dir.to_path_buf(),
        detail: err.to_string(),
    };
    let options = || gix::open::Options::default().config_overrides(overrides.clone());
    if dir.join("HEAD").is_file() {
        match gix::ThreadSafeRepository::open_opts(dir, options()) {
            Ok(repo) => return Ok(repo),
            Err(err) => {
                tracing::warn!(path = %dir.display(), error = gitwarden_runtime::errors::chain(&err), "cache repository unusable; recreating it");
                std::fs::remove_dir_all(dir).map_err(|e| cache_error(&e))?;
            }
        }
    } else if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| cache_error(&e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| cache_error(&e))?;
    gix::init_bare(dir).map_err(|e| cache_error(&format!("{e:#}")))?;
    gix::ThreadSafeRepository::open_opts(dir, options()).map_err(|e| cache_error(&format!("{e:#}")))
}

/// When the cache is shallow, a full fetch must also remove the shallow boundary, or the
/// server would stop at the commits we already have and never send older ones.
fn unshallow_if_needed(repo: &gix::Repository) -> Shallow {
    // When unsure, unshallow: slower but always complete.
    if repo.is_shallow().unwrap_or(true) {
        Shallow::undo()
    } else {
        Shallow::NoChange
    }
}

fn is_auth_failure(err: &gix::Error, detail: &str) -> bool {
    if err.classify().is_unauthenticated() || err.classify().is_permission_denied() {
        return true;
    }
    let lower = detail.to_ascii_lowercase();
    [
        "permission denied",
        "host key verification failed",
        "authentication failed",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

fn status_name(status: &gix::remote::fetch::Status) -> &'static str {
    match status {
        gix::remote::fetch::Status::NoPackReceived { .. } => "up to date",
        gix::remote::fetch::Status::Change { .. } => "received pack",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_commit_ids_are_refused() {
        assert!(validate_reference(&GitRef::Commit("abc123".into())).is_err());
        assert!(validate_reference(&GitRef::Commit("a".repeat(40))).is_ok());
    }

    #[test]
    fn branch_names_with_patterns_or_prefixes_are_refused() {
        assert!(validate_reference(&GitRef::Branch("main".into())).is_ok());
        assert!(validate_reference(&GitRef::Branch("feature/x".into())).is_ok());
        assert!(validate_reference(&GitRef::Branch("refs/heads/main".into())).is_err());
        assert!(validate_reference(&GitRef::Branch("ma*".into())).is_err());
        assert!(validate_reference(&GitRef::Tag("bad..name".into())).is_err());
    }

    #[test]
    fn source_is_send_for_spawn_blocking() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Source>();
    }
}
