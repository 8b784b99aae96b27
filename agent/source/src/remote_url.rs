//! Parsing a remote URL once: which transport it needs, how to show it without credentials,
//! and the name of its cache directory.

use sha2::{Digest, Sha256};

use crate::{Auth, SourceError};

/// The transports gitwarden supports, which decide how credentials are passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// In-process HTTP(S); `tls` is false for plain `http://`.
    Http { tls: bool },
    /// The `ssh` program.
    Ssh,
    /// `git upload-pack` on a local path.
    File,
}

/// A parsed, validated remote URL.
#[derive(Debug, Clone)]
pub(crate) struct RemoteUrl {
    /// What gix connects to.
    pub(crate) url: gix::Url,
    /// For logs, errors and status: no password, and no user name for http(s) (tokens are
    /// sometimes put there).
    pub(crate) display: String,
    /// How to talk to it.
    pub(crate) transport: Transport,
}

impl RemoteUrl {
    /// Parse `raw` and check it fits `auth`: credentials only over TLS, ssh keys only for ssh.
    pub(crate) fn parse(raw: &str, auth: &Auth) -> Result<Self, SourceError> {
        let invalid = |why: String| SourceError::InvalidSpec { why };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid("the url is empty".into()));
        }
        let url = gix::url::parse(trimmed).map_err(|_| {
            // gix's message may echo the input, which could hold a password: say it ourselves.
            invalid(format!("{:?} is not a git url", redact_free_form(trimmed)))
        })?;
        let transport = match url.scheme {
            gix::url::Scheme::Https => Transport::Http { tls: true },
            gix::url::Scheme::Http => Transport::Http { tls: false },
            gix::url::Scheme::Ssh => Transport::Ssh,
            gix::url::Scheme::File => Transport::File,
            gix::url::Scheme::Git => {
                return Err(invalid(
                    "git:// is neither authenticated nor encrypted; use https:// or ssh://".into(),
                ));
            }
            gix::url::Scheme::Ext
            | gix::url::Scheme::Helper(_)
            | gix::url::Scheme::HelperUrl(_) => {
                return Err(invalid(format!(
                    "{:?}: unsupported url scheme",
                    redact_free_form(trimmed)
                )));
            }
        };
        let display = display_without_credentials(&url);
        if url.password().is_some() {
            return Err(invalid(format!(
                "{display}: the url contains a password; put it in a file and use token or basic auth"
            )));
        }
        match (auth, transport) {
            (Auth::None, _) => {}
            (Auth::Token { .. } | Auth::Basic { .. }, Transport::Http { tls: true }) => {}
            (Auth::Token { .. } | Auth::Basic { .. }, Transport::Http { tls: false }) => {
                return Err(invalid(format!(
                    "{display}: refusing to send credentials over plain http; use https"
                )));
            }
            (Auth::Token { .. } | Auth::Basic { .. }, _) => {
                return Err(invalid(format!(
                    "{display}: token and basic auth need an https:// url"
                )));
            }
            (Auth::Ssh { .. }, Transport::Ssh) => {}
            (Auth::Ssh { .. }, _) => {
                return Err(invalid(format!(
                    "{display}: ssh auth needs an ssh:// or user@host:path url"
                )));
            }
        }
        Ok(RemoteUrl {
            url,
            display,
            transport,
        })
    }

    /// A directory name unique to this URL (hash of the credential-free URL) with a readable
    /// prefix, so an operator looking at the cache volume can tell repositories apart.
    pub(crate) fn cache_dir_name(&self) -> String {
        let mut keyed = self.url.clone();
        keyed.set_password(None);
        let digest = Sha256::digest(keyed.to_bstring().as_slice());
        let hash = hex::encode(&digest[..12]);
        let path = keyed.path.to_string();
        let last = path
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .trim_end_matches(".git");
        let readable: String = last
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(40)
            .collect();
        let readable = readable.trim_start_matches('.');
        if readable.is_empty() {
            hash
        } else {
            format!("{readable}-{hash}")
        }
    }
}

/// The URL as shown to people: without password, and without user for http(s).
fn display_without_credentials(url: &gix::Url) -> String {
    let mut shown = url.clone();
    shown.set_password(None);
    if matches!(url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https) {
        shown.set_user(None);
    }
    shown.to_bstring().to_string()
}

/// Best effort for an unparsable URL: drop anything between `://` and the last `@` of the
/// authority, where credentials would be.
fn redact_free_form(raw: &str) -> String {
    if let Some((scheme, rest)) = raw.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    raw.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::PathBuf;

    fn token() -> Auth {
        Auth::Token {
            token_file: PathBuf::from("/t"),
            username: None,
        }
    }

    #[test]
    fn https_user_is_hidden_from_display() {
        let url =
            RemoteUrl::parse("https://ghp_secret@github.com/org/repo.git", &Auth::None).unwrap();
        assert_eq!(url.display, "https://github.com/org/repo.git");
        assert_eq!(url.transport, Transport::Http { tls: true });
    }

    #[test]
    fn embedded_password_is_rejected_without_echoing_it() {
        let err = RemoteUrl::parse("https://me:hunter2@github.com/org/repo.git", &Auth::None)
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn scp_like_url_is_ssh() {
        let url = RemoteUrl::parse("git@github.com:org/repo.git", &Auth::None).unwrap();
        assert_eq!(url.transport, Transport::Ssh);
        assert!(url.display.contains("git@github.com"), "{}", url.display);
    }

    #[test]
    fn local_path_and_file_url_are_file_transport() {
        assert_eq!(
            RemoteUrl::parse("/srv/git/repo", &Auth::None)
                .unwrap()
                .transport,
            Transport::File
        );
        assert_eq!(
            RemoteUrl::parse("file:///srv/git/repo", &Auth::None)
                .unwrap()
                .transport,
            Transport::File
        );
    }

    #[test]
    fn token_over_plain_http_is_refused() {
        assert!(RemoteUrl::parse("http://git.local/repo.git", &token()).is_err());
        assert!(RemoteUrl::parse("https://git.local/repo.git", &token()).is_ok());
    }

    #[test]
    fn ssh_key_with_https_url_is_refused() {
        let auth = Auth::Ssh {
            private_key_file: "/k".into(),
            known_hosts_file: "/h".into(),
        };
        assert!(RemoteUrl::parse("https://git.local/repo.git", &auth).is_err());
        assert!(RemoteUrl::parse("ssh://git@git.local/repo.git", &auth).is_ok());
    }

    #[test]
    fn git_protocol_is_refused() {
        assert!(RemoteUrl::parse("git://git.local/repo.git", &Auth::None).is_err());
    }

    #[test]
    fn cache_dir_name_is_readable_and_distinct_per_url() {
        let a = RemoteUrl::parse("https://github.com/org/app.git", &Auth::None).unwrap();
        let b = RemoteUrl::parse("https://github.com/other/app.git", &Auth::None).unwrap();
        assert!(
            a.cache_dir_name().starts_with("app-"),
            "{}",
            a.cache_dir_name()
        );
        assert_ne!(a.cache_dir_name(), b.cache_dir_name());
        assert_eq!(
            a.cache_dir_name(),
            RemoteUrl::parse("https://github.com/org/app.git", &Auth::None)
                .unwrap()
                .cache_dir_name()
        );
    }
}
