//! What to notify, where: the `notifications.yaml` of the
//! `gitwarden-notifications` ConfigMap (mounted as a file, applied from git
//! like the policy), with the secrets (webhook URLs, HMAC keys) read from
//! files under `--notification-secrets-dir` (a mounted Secret).
//!
//! ```yaml
//! denialWindow: 60s          # denials of one user on one object within it: one message
//! receivers:
//!   - name: oncall
//!     type: webhook          # webhook | slack | teams | alertmanager
//!     urlFile: oncall-url    # under --notification-secrets-dir; or `url:` inline
//!     hmacSecretFile: oncall-hmac
//!     events: [break-glass, denied]   # default: every event
//!     ratePerMinute: 30      # token bucket; excess waits, nothing is dropped
//!     burst: 10
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::event::EventKind;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    #[serde(default, with = "humantime_serde_opt")]
    denial_window: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    certificate_expiry_warning: Option<Duration>,
    #[serde(default)]
    receivers: Vec<ReceiverFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReceiverFile {
    name: String,
    #[serde(rename = "type")]
    kind: ReceiverKind,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    #[serde(default)]
    hmac_secret_file: Option<PathBuf>,
    #[serde(default)]
    events: Option<Vec<EventKind>>,
    #[serde(default)]
    rate_per_minute: Option<u32>,
    #[serde(default)]
    burst: Option<u32>,
}

/// The kind of a receiver: how its payload is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Generic JSON, signed with HMAC-SHA256 when a secret is set.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams incoming webhook (MessageCard).
    Teams,
    /// Alertmanager's API (`POST <url>/api/v2/alerts`).
    Alertmanager,
}

impl ReceiverKind {
    /// The spelling in the configuration and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Teams => "teams",
            ReceiverKind::Alertmanager => "alertmanager",
        }
    }
}

/// One receiver, its secrets resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Unique name (also the cursor's file name and the metrics label).
    pub name: String,
    /// Payload shape.
    pub kind: ReceiverKind,
    /// Where to POST.
    pub url: String,
    /// HMAC-SHA256 key for `X-Gitwarden-Signature` (webhook receivers).
    pub hmac_secret: Option<Vec<u8>>,
    /// Events it wants; `None`: all.
    pub events: Option<Vec<EventKind>>,
    /// Messages per minute (token bucket refill).
    pub rate_per_minute: u32,
    /// Bucket size.
    pub burst: u32,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs of Slack/Teams webhooks are credentials: never logged.
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Whether this receiver wants `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&kind))
    }
}

/// The whole configuration, secrets resolved; compared to notice changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Denials of one user on one object within this window become one message.
    pub denial_window: Duration,
    /// Warn when the serving certificate expires within this.
    pub certificate_expiry_warning: Duration,
    /// Where to send.
    pub receivers: Vec<Receiver>,
}

/// Default [`NotifyConfig::denial_window`].
pub const DEFAULT_DENIAL_WINDOW: Duration = Duration::from_secs(60);
/// Default [`NotifyConfig::certificate_expiry_warning`].
pub const DEFAULT_CERT_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);
const DEFAULT_RATE: u32 = 60;
const DEFAULT_BURST: u32 = 20;

/// Why a configuration was not taken (the previous one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML for this schema.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A semantic problem.
    #[error("receiver {receiver:?}: {problem}")]
    Invalid {
        /// Which receiver.
        receiver: String,
        /// What is wrong.
        problem: String,
    },
    /// A secret file could not be read.
    #[error("receiver {receiver:?}: reading secret {path}")]
    Secret {
        /// Which receiver.
        receiver: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Reads and resolves the configuration file. A missing file (the
/// optional ConfigMap not created) configures no receivers.
pub fn load(path: &Path, secrets_dir: Option<&Path>) -> Result<NotifyConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(&text, path, secrets_dir)
}

/// Parses and resolves `text` (read from `path`, named in errors).
pub fn parse(
    text: &str,
    path: &Path,
    secrets_dir: Option<&Path>,
) -> Result<NotifyConfig, ConfigError> {
    // The ConfigMap key may be empty before anything is configured.
    let file: ConfigFile = if text.trim().is_empty() {
        ConfigFile {
            denial_window: None,
            certificate_expiry_warning: None,
            receivers: Vec::new(),
        }
    } else {
        serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?
    };
    let mut receivers: Vec<Receiver> = Vec::new();
    for r in file.receivers {
        let invalid = |problem: &str| ConfigError::Invalid {
            receiver: r.name.clone(),
            problem: problem.to_owned(),
        };
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("name must be non-empty [A-Za-z0-9_-]"));
        }
        if receivers.iter().any(|other| other.name == r.name) {
            return Err(invalid("name used twice"));
        }
        let read_secret = |file: &Path| -> Result<String, ConfigError> {
            let full = match secrets_dir {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.to_owned(),
            };
            std::fs::read_to_string(&full)
                .map(|s| s.trim().to_owned())
                .map_err(|source| ConfigError::Secret {
                    receiver: r.name.clone(),
                    path: full,
                    source,
                })
        };
        let url = match (&r.url, &r.url_file) {
            (Some(url), None) => url.clone(),
            (None, Some(file)) => read_secret(file)?,
            _ => return Err(invalid("set exactly one of url and urlFile")),
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid("the URL must be http:// or https://"));
        }
        let hmac_secret = match &r.hmac_secret_file {
            Some(file) if r.kind == ReceiverKind::Webhook => Some(read_secret(file)?.into_bytes()),
            Some(_) => return Err(invalid("hmacSecretFile is for type webhook only")),
            None => None,
        };
        if hmac_secret.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("the HMAC secret is empty"));
        }
        let rate_per_minute = r.rate_per_minute.unwrap_or(DEFAULT_RATE);
        let burst = r.burst.unwrap_or(DEFAULT_BURST);
        if rate_per_minute == 0 || burst == 0 {
            return Err(invalid("ratePerMinute and burst must be at least 1"));
        }
        receivers.push(Receiver {
            name: r.name,
            kind: r.kind,
            url,
            hmac_secret,
            events: r.events,
            rate_per_minute,
            burst,
        });
    }
    Ok(NotifyConfig {
        denial_window: file.denial_window.unwrap_or(DEFAULT_DENIAL_WINDOW),
        certificate_expiry_warning: file
            .certificate_expiry_warning
            .unwrap_or(DEFAULT_CERT_WARNING),
        receivers,
    })
}

/// `60s`, `5m`: humantime durations in YAML.
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_receivers_and_resolves_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("url"), "https://hooks.example/x\n").expect("write");
        std::fs::write(dir.path().join("key"), "s3cret\n").expect("write");
        let config = parse(
            "denialWindow: 30s\nreceivers:\n- name: a\n  type: webhook\n  urlFile: url\n  hmacSecretFile: key\n  events: [denied, break-glass]\n- name: b\n  type: alertmanager\n  url: http://am:9093\n",
            Path::new("n.yaml"),
            Some(dir.path()),
        )
        .expect("valid");
        assert_eq!(config.denial_window, Duration::from_secs(30));
        assert_eq!(config.receivers[0].url, "https://hooks.example/x");
        assert_eq!(
            config.receivers[0].hmac_secret.as_deref(),
            Some(&b"s3cret"[..])
        );
        assert!(config.receivers[0].wants(EventKind::Denied));
        assert!(!config.receivers[0].wants(EventKind::DriftHealed));
        assert!(config.receivers[1].wants(EventKind::DriftHealed));
    }

    #[test]
    fn rejects_unknown_fields_types_and_events() {
        for bad in [
            "receivers:\n- name: a\n  type: pager\n  url: http://x\n",
            "receivers:\n- name: a\n  type: slack\n  url: http://x\n  colour: red\n",
            "receivers:\n- name: a\n  type: slack\n  url: http://x\n  events: [everything]\n",
            "receivers:\n- name: a\n  type: slack\n",
            "receivers:\n- name: a\n  type: slack\n  url: ftp://x\n",
            "receivers:\n- name: a\n  type: slack\n  url: http://x\n- name: a\n  type: slack\n  url: http://y\n",
            "receivers:\n- name: a\n  type: slack\n  url: http://x\n  hmacSecretFile: k\n",
        ] {
            assert!(parse(bad, Path::new("n.yaml"), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_file_configures_nothing() {
        let config = parse("", Path::new("n.yaml"), None).expect("valid");
        assert!(config.receivers.is_empty());
        assert_eq!(config.denial_window, DEFAULT_DENIAL_WINDOW);
    }
}
