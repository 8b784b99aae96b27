//! Command-line interface of `gitwarden-webhook`: every setting is a flag with an
//! environment variable and a sensible default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::audit::AuditDecision;

/// gitwarden's admission webhook: git is the only write path into the cluster.
#[derive(Debug, Parser)]
#[command(name = "gitwarden-webhook", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `json` (for log collectors) or `text` (for people).
    #[arg(
        long,
        env = "GITWARDEN_LOG_FORMAT",
        default_value = "json",
        global = true
    )]
    pub log_format: LogFormat,
}

pub use gitwarden_runtime::logging::LogFormat;

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve /validate, /mutate, /healthz, /readyz, /metrics and /audit over TLS.
    // Boxed: serving has many settings, the other commands a few.
    Serve(Box<ServeArgs>),
    /// Check the audit log's hash chain end to end; exit 1 at the first broken record.
    Verify {
        /// The audit log directory.
        #[arg(long, env = "GITWARDEN_AUDIT_DIR")]
        audit_dir: PathBuf,
    },
    /// Print audit records (newest first) straight from the files.
    Audit(AuditArgs),
}

/// `serve` settings.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "GITWARDEN_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM serving certificate (chain); reloaded when the file changes.
    #[arg(long, env = "GITWARDEN_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(long, env = "GITWARDEN_TLS_KEY")]
    pub tls_key: PathBuf,
    /// How often the certificate and policy files are checked for changes.
    #[arg(long, env = "GITWARDEN_RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
    /// Namespace of the agent's inventory, where it records the file and
    /// line each object comes from (quoted in refusals).
    #[arg(long, env = "GITWARDEN_INVENTORY_NAMESPACE", default_value = gitwarden_shared::names::SYSTEM_NAMESPACE)]
    pub inventory_namespace: String,
    /// Directory of the durable audit log (a persistent volume in a cluster).
    #[arg(
        long,
        env = "GITWARDEN_AUDIT_DIR",
        default_value = "/var/lib/gitwarden/audit"
    )]
    pub audit_dir: PathBuf,
    /// Rotate audit files at this size, in bytes.
    #[arg(long, env = "GITWARDEN_AUDIT_MAX_FILE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub audit_max_file_bytes: u64,
    /// A file holding a static bearer token that authorizes GET /audit, for
    /// scripts; besides it, callers' own Kubernetes tokens are accepted when
    /// RBAC allows them `get` on the non-resource URL /audit (TokenReview +
    /// SubjectAccessReview, needs the policy ConfigMap's client). With
    /// neither, GET /audit answers nobody.
    #[arg(long, env = "GITWARDEN_AUDIT_TOKEN_FILE")]
    pub audit_token_file: Option<PathBuf>,
    /// This webhook's own Service, in this pod's namespace (`POD_NAMESPACE`):
    /// GET /audit also asks the other ready replicas behind it (each keeps
    /// its own log) with the caller's credentials, verifying them with the
    /// CA bundle beside --tls-cert, and answers with every replica's records
    /// (a replica that cannot answer is named in `x-gitwarden-audit-missing`).
    /// Needs `list` on EndpointSlices there. Unset: GET /audit answers from
    /// this replica's log only.
    #[arg(long, env = "GITWARDEN_AUDIT_PEERS_SERVICE")]
    pub audit_peers_service: Option<String>,
    /// Policy YAML file (mutually exclusive with --policy-configmap).
    #[arg(
        long,
        env = "GITWARDEN_POLICY_FILE",
        conflicts_with = "policy_configmap"
    )]
    pub policy_file: Option<PathBuf>,
    /// Policy ConfigMap as NAMESPACE/NAME (key policy.yaml), watched live.
    #[arg(long, env = "GITWARDEN_POLICY_CONFIGMAP")]
    pub policy_configmap: Option<String>,
    /// Kubeconfig for watching the policy ConfigMap (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "GITWARDEN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "GITWARDEN_MAX_BODY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests not answered within this time get 408.
    #[arg(long, env = "GITWARDEN_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Open connections at most; more are closed at once (bounds what slow
    /// or hostile clients can hold).
    #[arg(long, env = "GITWARDEN_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, env = "GITWARDEN_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a request's headers (also closes idle
    /// keep-alive connections).
    #[arg(long, env = "GITWARDEN_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Notification configuration (`notifications.yaml` of the
    /// `gitwarden-notifications` ConfigMap, mounted as a file; followed
    /// live). Without it, nothing is notified.
    #[arg(long, env = "GITWARDEN_NOTIFICATIONS_CONFIG")]
    pub notifications_config: Option<PathBuf>,
    /// Directory of notification secrets (a mounted Secret): receivers'
    /// relative `urlFile` and `hmacSecretFile` are read here.
    #[arg(long, env = "GITWARDEN_NOTIFICATION_SECRETS_DIR")]
    pub notification_secrets_dir: Option<PathBuf>,
    /// On SIGTERM, how long in-flight requests may take before the process exits.
    #[arg(long, env = "GITWARDEN_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Register the webhook configurations of this template file (the
    /// mounted ConfigMap gitwarden-webhook-configurations) while this
    /// replica is ready, and keep them equal to it. Unset: configurations
    /// come from elsewhere (git through the agent, static manifests).
    #[arg(long, env = "GITWARDEN_REGISTER_CONFIGURATIONS")]
    pub register_configurations: Option<PathBuf>,
    /// The PEM CA bundle the registered configurations carry, and the one
    /// peers' certificates are verified with (default: `ca.crt` beside
    /// --tls-cert).
    #[arg(long, env = "GITWARDEN_REGISTER_CA_BUNDLE")]
    pub register_ca_bundle: Option<PathBuf>,
    /// Time between two comparisons of the registered configurations with
    /// the template.
    #[arg(long, env = "GITWARDEN_REGISTER_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub register_interval: Duration,
}

/// `audit` filters.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The audit log directory.
    #[arg(long, env = "GITWARDEN_AUDIT_DIR")]
    pub audit_dir: PathBuf,
    /// Only records at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<jiff::Timestamp>,
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only `denied` or `break-glass`.
    #[arg(long, value_parser = parse_decision)]
    pub decision: Option<AuditDecision>,
    /// Only this API group (empty: the core group).
    #[arg(long)]
    pub group: Option<String>,
    /// Only this plural resource (`deployments`).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only this object name.
    #[arg(long)]
    pub name: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// `text`: one aligned line per record, for people; `json`: the records as stored.
    #[arg(long, short = 'o', default_value = "text")]
    pub output: AuditOutput,
}

/// How `audit` prints records.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AuditOutput {
    /// One aligned line per record.
    Text,
    /// One JSON object per line, exactly as stored (hashes included).
    Json,
}

fn parse_decision(s: &str) -> Result<AuditDecision, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("decision must be 'denied', 'break-glass', 'removed' or 'reported', not {s:?}")
    })
}
