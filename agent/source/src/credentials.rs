//! Turning [`Auth`] into what gix needs: an HTTP credentials callback, or an `ssh` command line.
//!
//! Secrets are read from their files at every fetch (rotation without restart) and live only in
//! the callback handed to gix; nothing here logs or formats them.

use std::path::{Path, PathBuf};

use gix::credentials::{helper, protocol};

use crate::{Auth, DEFAULT_TOKEN_USERNAME, SourceError};

/// A user name and secret for HTTP basic authentication. `Debug` is written by hand so the
/// secret cannot reach a log through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BasicCredentials {
    pub(crate) username: String,
    pub(crate) secret: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Read the HTTP credentials `auth` names, now. `None` when the auth kind sends none.
pub(crate) fn http_credentials(auth: &Auth) -> Result<Option<BasicCredentials>, SourceError> {
    match auth {
        Auth::None | Auth::Ssh { .. } => Ok(None),
        Auth::Token {
            token_file,
            username,
        } => Ok(Some(BasicCredentials {
            username: username
                .clone()
                .unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_string()),
            secret: read_secret(token_file)?,
        })),
        Auth::Basic {
            username,
            password_file,
        } => Ok(Some(BasicCredentials {
            username: username.clone(),
            secret: read_secret(password_file)?,
        })),
    }
}

/// Check that the deploy key and known_hosts files of `auth` are readable, so a missing mount is
/// reported as such instead of as ssh's later, vaguer "Permission denied".
pub(crate) fn check_ssh_files(auth: &Auth) -> Result<(), SourceError> {
    if let Auth::Ssh {
        private_key_file,
        known_hosts_file,
    } = auth
    {
        for path in [private_key_file, known_hosts_file] {
            std::fs::File::open(path).map_err(|source| SourceError::Credentials {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Read a secret file, dropping surrounding whitespace: `kubectl create secret --from-file` and
/// editors leave a trailing newline, which would otherwise be sent as part of the password.
fn read_secret(path: &Path) -> Result<String, SourceError> {
    let raw = std::fs::read_to_string(path).map_err(|source| SourceError::Credentials {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = raw.trim();
    if secret.is_empty() {
        return Err(SourceError::Credentials {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(secret.to_string())
}

/// The type of gix's credential callback.
pub(crate) type CredentialsFn =
    Box<dyn FnMut(helper::Action) -> gix::Result<Option<protocol::Outcome>> + Send + 'static>;

/// A gix credentials callback that answers every request with `credentials` (or with nothing),
/// instead of gix's default of running git credential helpers and prompting, which a daemon
/// must never do.
pub(crate) fn credentials_callback(credentials: Option<BasicCredentials>) -> CredentialsFn {
    Box::new(move |action| match (action, &credentials) {
        (helper::Action::Get(ctx), Some(creds)) => Ok(Some(protocol::Outcome {
            identity: gix::sec::identity::Account {
                username: creds.username.clone(),
                password: creds.secret.clone(),
                oauth_refresh_token: None,
            },
            next: ctx.into(),
        })),
        // Store/Erase would go to a helper's store; we keep nothing.
        _ => Ok(None),
    })
}

/// The value for `core.sshCommand`: `ssh_program` with the deploy key only and strict host-key
/// checking against our known_hosts alone, never prompting (there is no terminal).
///
/// gix runs it through `sh -c`, so every path is single-quoted.
pub(crate) fn ssh_command(
    ssh_program: &Path,
    private_key_file: &Path,
    known_hosts_file: &Path,
) -> String {
    let key = absolute(private_key_file);
    let known_hosts = absolute(known_hosts_file);
    [
        shell_quote(&ssh_program.to_string_lossy()),
        "-i".into(),
        shell_quote(&key.to_string_lossy()),
        "-o IdentitiesOnly=yes".into(),
        "-o".into(),
        shell_quote(&format!(
            "UserKnownHostsFile={}",
            known_hosts.to_string_lossy()
        )),
        "-o GlobalKnownHostsFile=/dev/null".into(),
        "-o StrictHostKeyChecking=yes".into(),
        "-o BatchMode=yes".into(),
    ]
    .join(" ")
}

/// The value for `core.sshCommand` for ssh remotes without a deploy key (the agent's own ssh
/// configuration supplies keys): still strict about host keys and never prompting.
pub(crate) fn ssh_command_anonymous(ssh_program: &Path) -> String {
    format!(
        "{} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        shell_quote(&ssh_program.to_string_lossy())
    )
}

/// Paths relative to the agent's working directory would silently change meaning when ssh
/// runs elsewhere; pin them.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// POSIX single-quoting: `'` inside becomes `'\''`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_file_is_read_and_trimmed_with_default_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "ghp_abc\n").unwrap();
        let creds = http_credentials(&Auth::Token {
            token_file: file,
            username: None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(creds.username, "x-access-token");
        assert_eq!(creds.secret, "ghp_abc");
    }

    #[test]
    fn rotated_secret_is_picked_up_on_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        let auth = Auth::Basic {
            username: "bot".into(),
            password_file: file.clone(),
        };
        std::fs::write(&file, "one").unwrap();
        assert_eq!(http_credentials(&auth).unwrap().unwrap().secret, "one");
        std::fs::write(&file, "two").unwrap();
        assert_eq!(http_credentials(&auth).unwrap().unwrap().secret, "two");
    }

    #[test]
    fn missing_secret_file_is_a_credentials_error_naming_the_file() {
        let err = http_credentials(&Auth::Token {
            token_file: "/nonexistent/token".into(),
            username: None,
        })
        .unwrap_err();
        assert!(matches!(err, SourceError::Credentials { .. }));
        assert!(err.to_string().contains("/nonexistent/token"));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let creds = BasicCredentials {
            username: "bot".into(),
            secret: "s3cr3t".into(),
        };
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }

    #[test]
    fn callback_answers_get_with_the_credentials() {
        let mut callback = credentials_callback(Some(BasicCredentials {
            username: "bot".into(),
            secret: "s3cr3t".into(),
        }));
        let outcome = callback(helper::Action::get_for_url("https://git.example/repo.git"))
            .unwrap()
            .unwrap();
        assert_eq!(outcome.identity.username, "bot");
        assert_eq!(outcome.identity.password, "s3cr3t");
    }

    #[test]
    fn callback_without_credentials_answers_nothing() {
        let mut callback = credentials_callback(None);
        assert!(
            callback(helper::Action::get_for_url("https://git.example/repo.git"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ssh_command_pins_key_and_known_hosts_strictly() {
        let cmd = ssh_command(
            Path::new("ssh"),
            Path::new("/keys/id"),
            Path::new("/keys/it's_known"),
        );
        assert_eq!(
            cmd,
            "'ssh' -i '/keys/id' -o IdentitiesOnly=yes -o 'UserKnownHostsFile=/keys/it'\\''s_known' \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes"
        );
    }
}
