//! The caller's own bearer token, taken from its kubeconfig the way kubectl
//! takes it: an inline `token`, a `tokenFile` (read on every use, because a
//! projected service-account token is rotated under a running process), or
//! an `exec` credential plugin.
//!
//! gitwarden's own endpoints (the webhook's `/audit` and `POST
//! /audit/events`, the agent's `/status`) review bearer tokens with a
//! TokenReview, so every client of them — the agent reporting to the audit
//! log, `gitwarden-agent status`, `gitwarden-doctor`, `kubectl gitwarden` —
//! presents the same credential its kubeconfig gives the API server. A
//! client certificate cannot be forwarded that way, which is why a user
//! without a token gets an error that says so.

use std::path::PathBuf;

use serde_json::Value;

/// Where a kubeconfig user's bearer token comes from.
#[derive(Clone, PartialEq)]
pub enum TokenSource {
    /// `token`.
    Token(String),
    /// `tokenFile`.
    File(PathBuf),
    /// `exec`: the ExecConfig as JSON.
    Exec(Value),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Token(_) => f.write_str("TokenSource::Token(<redacted>)"),
            TokenSource::File(path) => f.debug_tuple("TokenSource::File").field(path).finish(),
            TokenSource::Exec(exec) => f
                .debug_tuple("TokenSource::Exec")
                .field(&exec["command"])
                .finish(),
        }
    }
}

/// Why no token could be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The kubeconfig's user has no token, token file or exec plugin.
    #[error(
        "the kubeconfig's user authenticates without a bearer token (a client certificate?): \
         gitwarden's /audit and /status review bearer tokens (TokenReview); use a kubeconfig \
         with a token, token file or exec plugin"
    )]
    NoToken,
    /// The token file could not be read.
    #[error("reading the token file {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("the token file {} is empty", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The exec plugin could not be started.
    #[error("running the credential plugin {command}")]
    ExecStart {
        /// The plugin.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exec plugin failed or returned no token.
    #[error("the credential plugin {command} {why}")]
    Exec {
        /// The plugin.
        command: String,
        /// What went wrong, with the plugin's own stderr.
        why: String,
    },
}

impl TokenSource {
    /// The token source of `config`'s user, if it has one.
    pub fn of(config: &kube::Config) -> Option<TokenSource> {
        // kube keeps the token as a `secrecy` secret that only its
        // serialisation reveals; the exec config is read the same way.
        let auth = serde_json::to_value(&config.auth_info).ok()?;
        Self::of_auth_info(&auth)
    }

    /// The token source of a kubeconfig `user` entry (kube's `AuthInfo`,
    /// serialised): token, then token file, then exec plugin, as kubectl
    /// prefers them.
    pub fn of_auth_info(auth: &Value) -> Option<TokenSource> {
        if let Some(token) = auth["token"].as_str().filter(|t| !t.is_empty()) {
            return Some(TokenSource::Token(token.to_owned()));
        }
        if let Some(file) = auth["tokenFile"].as_str().filter(|f| !f.is_empty()) {
            return Some(TokenSource::File(PathBuf::from(file)));
        }
        auth.get("exec")
            .filter(|e| e["command"].is_string())
            .map(|e| TokenSource::Exec(e.clone()))
    }

    /// The token now: a file is read again, a plugin run again.
    pub async fn token(&self) -> Result<String, CredentialError> {
        match self {
            TokenSource::Token(token) => Ok(token.trim().to_owned()),
            TokenSource::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|source| {
                    CredentialError::File {
                        path: path.clone(),
                        source,
                    }
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(CredentialError::EmptyFile { path: path.clone() });
                }
                Ok(token.to_owned())
            }
            TokenSource::Exec(exec) => exec_token(exec).await,
        }
    }
}

/// The bearer token of `config`'s user, or why there is none.
pub async fn bearer_token(config: &kube::Config) -> Result<String, CredentialError> {
    TokenSource::of(config)
        .ok_or(CredentialError::NoToken)?
        .token()
        .await
}

/// Runs a kubeconfig exec credential plugin and returns its token.
async fn exec_token(exec: &Value) -> Result<String, CredentialError> {
    let command = exec["command"].as_str().unwrap_or_default().to_owned();
    let mut cmd = tokio::process::Command::new(&command);
    for arg in exec["args"].as_array().into_iter().flatten() {
        cmd.arg(arg.as_str().unwrap_or_default());
    }
    for pair in exec["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (pair["name"].as_str(), pair["value"].as_str()) {
            cmd.env(k, v);
        }
    }
    let api_version = exec["apiVersion"]
        .as_str()
        .unwrap_or("client.authentication.k8s.io/v1");
    cmd.env(
        "KUBERNETES_EXEC_INFO",
        serde_json::json!({"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": false}})
            .to_string(),
    );
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| CredentialError::ExecStart {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CredentialError::Exec {
            command,
            why: format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    let credential: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| CredentialError::Exec {
            command: command.clone(),
            why: format!("printed no ExecCredential: {e}"),
        })?;
    credential["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| CredentialError::Exec {
            command,
            why: "returned no token (a client certificate?)".to_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_token_then_file_then_exec() {
        let token = serde_json::json!({"token": "abc", "tokenFile": "/f"});
        assert_eq!(
            TokenSource::of_auth_info(&token),
            Some(TokenSource::Token("abc".into()))
        );
        let file = serde_json::json!({"tokenFile": "/f"});
        assert_eq!(
            TokenSource::of_auth_info(&file),
            Some(TokenSource::File("/f".into()))
        );
        let exec = serde_json::json!({"exec": {"command": "get-token", "args": ["x"]}});
        assert!(matches!(
            TokenSource::of_auth_info(&exec),
            Some(TokenSource::Exec(_))
        ));
        let cert = serde_json::json!({"client-certificate-data": "…"});
        assert_eq!(TokenSource::of_auth_info(&cert), None);
    }

    #[test]
    fn the_source_comes_from_a_kube_config_and_never_prints_the_token() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        assert!(TokenSource::of(&config).is_none());
        config.auth_info.token_file = Some("/var/run/secrets/token".into());
        assert!(
            matches!(TokenSource::of(&config), Some(TokenSource::File(p)) if p.ends_with("token"))
        );
        config.auth_info.token = Some("s3cret".to_owned().into());
        let source = TokenSource::of(&config).unwrap();
        assert!(matches!(&source, TokenSource::Token(t) if t == "s3cret"));
        assert!(!format!("{source:?}").contains("s3cret"), "never logged");
    }

    #[tokio::test]
    async fn a_token_file_is_read_on_every_use_and_an_empty_one_refused() {
        let dir = std::env::temp_dir().join(format!("gw-credential-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let source = TokenSource::File(path.clone());
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.token().await.unwrap(), "first");
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(source.token().await.unwrap(), "rotated");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            source.token().await,
            Err(CredentialError::EmptyFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_exec_plugin_token_is_read_from_its_exec_credential() {
        let exec = serde_json::json!({
            "command": "sh",
            "args": ["-c", "echo '{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"from-exec\"}}'"],
        });
        assert_eq!(TokenSource::Exec(exec).token().await.unwrap(), "from-exec");
    }

    #[tokio::test]
    async fn a_failing_exec_plugin_names_itself_and_its_error() {
        let exec = serde_json::json!({"command": "sh", "args": ["-c", "echo nope >&2; exit 3"]});
        let err = TokenSource::Exec(exec).token().await.unwrap_err();
        assert_eq!(err.to_string(), "the credential plugin sh failed: nope");
    }
}
