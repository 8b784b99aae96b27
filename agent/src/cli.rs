//! Command-line interface of `gitwarden-agent`: every setting is a flag with an
//! environment variable and a sensible default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gitwarden_apply::{ApplyConfig, PrunePolicy};
use gitwarden_manifests::PlaintextSecrets;
use gitwarden_source::{Auth, GitRef, SourceSpec, Verification};

use crate::pipeline::{PipelineConfig, SecretsConfig};
use crate::rendering::RenderConfig;
use gitwarden_render::Kustomize;

/// gitwarden's sync agent: the cluster follows git, and only git.
#[derive(Debug, Parser)]
#[command(name = "gitwarden-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `json` (for log collectors) or `text` (for people).
    #[arg(
        long,
        env = "GITWARDEN_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

pub use gitwarden_runtime::logging::LogFormat;

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, verify and apply the revision once, prune what left git, print the report.
    Sync(SyncArgs),
    /// Show what a sync would create, change and prune, without writing.
    /// Exit 0 when in sync, 1 when not, 2 on error (like `flux diff`).
    Diff(CommonArgs),
    /// Keep the cluster in sync: on an interval, on a push notification, and
    /// on drift; serve /status, /healthz, /readyz, /metrics and /hook.
    Run(Box<RunArgs>),
    /// Print a running agent's status for a person.
    Status {
        /// The agent's HTTP address.
        #[arg(
            long,
            env = "GITWARDEN_AGENT_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
        /// Kubeconfig whose user's bearer token is presented (an agent run
        /// with `--status-auth kubernetes` reviews it). Default: in-cluster,
        /// $KUBECONFIG or ~/.kube/config; none found means no token.
        #[arg(long, env = "GITWARDEN_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
    },
}

/// `run` settings.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Time between syncs.
    #[arg(long, env = "GITWARDEN_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Random share of the interval added or removed (0.0–1.0).
    #[arg(long, env = "GITWARDEN_JITTER", default_value_t = 0.1)]
    pub jitter: f64,
    /// Wait this long after a drift event before healing, to heal a burst at once.
    #[arg(long, env = "GITWARDEN_DRIFT_DEBOUNCE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub drift_debounce: std::time::Duration,
    /// HTTP address for /status, /healthz, /readyz, /metrics and /hook (put TLS in front for /hook).
    #[arg(long, env = "GITWARDEN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// File with the HMAC secret that signs push notifications (X-Hub-Signature-256).
    #[arg(long, env = "GITWARDEN_HOOK_SECRET_FILE")]
    pub hook_secret_file: Option<PathBuf>,
    /// File with a shared bearer token accepted by /hook.
    #[arg(long, env = "GITWARDEN_HOOK_TOKEN_FILE")]
    pub hook_token_file: Option<PathBuf>,
    /// Who may read GET /status: `kubernetes` — callers present their own
    /// bearer token, authenticated by a TokenReview and authorized by a
    /// SubjectAccessReview for `get` on the non-resource URL /status
    /// (ClusterRole gitwarden-status-reader); `none` — anyone who reaches the
    /// port (restrict it with a NetworkPolicy).
    #[arg(long, env = "GITWARDEN_STATUS_AUTH", default_value = "none")]
    pub status_auth: StatusAuth,
    /// Elect a leader through a Lease, so that replicas never apply at once.
    #[arg(long, env = "GITWARDEN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "GITWARDEN_LEASE_NAMESPACE", default_value = gitwarden_shared::names::SYSTEM_NAMESPACE)]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "GITWARDEN_LEASE_NAME", default_value = "gitwarden-agent")]
    pub lease_name: String,
    /// How long a lease is valid without renewal: a standby waits this long after the leader dies.
    #[arg(long, env = "GITWARDEN_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: std::time::Duration,
    /// The leader gives up leading when it could not renew for this long.
    #[arg(long, env = "GITWARDEN_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_renew_deadline: std::time::Duration,
    /// How often to try to acquire or renew the lease.
    #[arg(long, env = "GITWARDEN_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_period: std::time::Duration,
    /// Own the admission chain: while leading, delete every webhook
    /// configuration, admission policy and binding that is neither in git
    /// nor allowed by the policy's `admissionChain.allow`.
    #[arg(long, env = "GITWARDEN_ADMISSION_GUARD", default_value_t = true, action = clap::ArgAction::Set)]
    pub admission_guard: bool,
    /// `NAMESPACE/NAME` of the policy ConfigMap (key `policy.yaml`): its
    /// `admissionChain.allow` names the admission objects allowed outside git.
    #[arg(long, env = "GITWARDEN_POLICY_CONFIGMAP", default_value_t = default_policy_configmap(), value_parser = parse_namespaced)]
    pub policy_configmap: Namespaced,
    /// The webhook's base URL (`https://…`): records of what the agent
    /// removed are appended to its audit log (`POST /audit/events`). Unset:
    /// removals are logged, counted and evented, but not audited.
    #[arg(long, env = "GITWARDEN_AUDIT_URL")]
    pub audit_url: Option<String>,
    /// PEM file of the CA(s) to trust for --audit-url (instead of the system roots).
    #[arg(long, env = "GITWARDEN_AUDIT_CA", requires = "audit_url")]
    pub audit_ca: Option<PathBuf>,
    /// Source and apply settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// An object named `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaced {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl std::fmt::Display for Namespaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn default_policy_configmap() -> Namespaced {
    Namespaced {
        namespace: gitwarden_shared::names::SYSTEM_NAMESPACE.to_owned(),
        name: gitwarden_shared::names::POLICY_CONFIGMAP.to_owned(),
    }
}

fn parse_namespaced(text: &str) -> Result<Namespaced, String> {
    match text.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(Namespaced {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => Err(format!("expected NAMESPACE/NAME, got {text:?}")),
    }
}

/// `sync` settings.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Accepted for scripts written for other tools: `sync` always syncs
    /// once and exits (`run` is the continuous loop).
    #[arg(long, default_value_t = true, hide = true)]
    pub once: bool,
    /// Report format.
    #[arg(long, short = 'o', default_value = "text")]
    pub output: Output,
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Report formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// A summary and one line per object that changed or failed.
    Text,
    /// The full report as JSON.
    Json,
}

/// Source and apply settings shared by every subcommand.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The git repository: https://, ssh://, git@host:path, file:// or a local path.
    #[arg(long, env = "GITWARDEN_REPO")]
    pub repo: String,
    /// Branch to follow.
    #[arg(long, env = "GITWARDEN_BRANCH", default_value = "main", conflicts_with_all = ["tag", "commit"])]
    pub branch: String,
    /// Tag to follow instead of a branch.
    #[arg(long, env = "GITWARDEN_TAG")]
    pub tag: Option<String>,
    /// Pin one commit (full hex id) instead of a branch.
    #[arg(long, env = "GITWARDEN_COMMIT")]
    pub commit: Option<String>,
    /// Directory of manifests inside the repository.
    #[arg(long, env = "GITWARDEN_PATH", default_value = ".")]
    pub path: String,
    /// File with an HTTPS token (basic auth as x-access-token).
    #[arg(long, env = "GITWARDEN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// SSH deploy key (needs --known-hosts).
    #[arg(long, env = "GITWARDEN_SSH_KEY_FILE", requires = "known_hosts")]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts for the SSH server.
    #[arg(long, env = "GITWARDEN_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Require the head commit to be SSH-signed by a key in this allowed_signers file
    /// (with --openpgp-keyring too: SSH- or OpenPGP-signed).
    #[arg(long, env = "GITWARDEN_ALLOWED_SIGNERS")]
    pub allowed_signers: Option<PathBuf>,
    /// Require the head commit to be OpenPGP-signed by a key (or subkey) in this armored
    /// keyring (`gpg --armor --export`; with --allowed-signers too: SSH- or OpenPGP-signed).
    #[arg(long, env = "GITWARDEN_OPENPGP_KEYRING")]
    pub openpgp_keyring: Option<PathBuf>,
    /// Where fetched repositories are cached.
    #[arg(
        long,
        env = "GITWARDEN_CACHE_DIR",
        default_value = "/var/cache/gitwarden"
    )]
    pub cache_dir: PathBuf,
    /// Kubeconfig (default: in-cluster service account, or $KUBECONFIG).
    #[arg(long, env = "GITWARDEN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace for namespaced objects that name none.
    #[arg(long, env = "GITWARDEN_DEFAULT_NAMESPACE", default_value = "default")]
    pub default_namespace: String,
    /// Namespace of the inventory ConfigMaps (must exist).
    #[arg(long, env = "GITWARDEN_INVENTORY_NAMESPACE", default_value = gitwarden_shared::names::SYSTEM_NAMESPACE)]
    pub inventory_namespace: String,
    /// Objects applied at once within a phase.
    #[arg(long, env = "GITWARDEN_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Never delete objects that left git.
    #[arg(long, env = "GITWARDEN_NO_PRUNE")]
    pub no_prune: bool,
    /// Refuse a prune of more than this share of the inventory (0.0–1.0).
    #[arg(long, env = "GITWARDEN_MAX_PRUNE_SHARE", default_value_t = 0.25)]
    pub max_prune_share: f64,
    /// Prune even beyond --max-prune-share (an intended mass removal).
    #[arg(long, env = "GITWARDEN_ALLOW_MASS_PRUNE")]
    pub allow_mass_prune: bool,
    /// After applying, wait at most this long for changed Deployments,
    /// StatefulSets, DaemonSets and Jobs to be ready, and report them (0s: don't wait).
    #[arg(long, env = "GITWARDEN_HEALTH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub health_timeout: std::time::Duration,
    /// age identities (age-keygen's key file) that decrypt SOPS-encrypted files
    /// in memory; re-read at every sync.
    #[arg(long, env = "GITWARDEN_SOPS_AGE_KEY_FILE")]
    pub sops_age_key_file: Option<PathBuf>,
    /// The kustomize binary that renders directories holding a kustomization
    /// (the agent image ships a pinned one).
    #[arg(long, env = "GITWARDEN_KUSTOMIZE", default_value = "kustomize")]
    pub kustomize: PathBuf,
    /// A kustomize build taking longer fails the revision.
    #[arg(long, env = "GITWARDEN_RENDER_TIMEOUT", default_value = "3m", value_parser = humantime::parse_duration)]
    pub render_timeout: std::time::Duration,
    /// Accept Secrets whose data or stringData is plain text in git (refused by
    /// default; one Secret can be excepted with gitwarden.io/plaintext-secret: allowed).
    #[arg(long, env = "GITWARDEN_ALLOW_PLAINTEXT_SECRETS")]
    pub allow_plaintext_secrets: bool,
}

impl CommonArgs {
    /// The source to fetch.
    pub fn source_spec(&self) -> SourceSpec {
        let reference = match (&self.tag, &self.commit) {
            (Some(tag), _) => GitRef::Tag(tag.clone()),
            (None, Some(commit)) => GitRef::Commit(commit.clone()),
            (None, None) => GitRef::Branch(self.branch.clone()),
        };
        let mut spec = SourceSpec::new(self.repo.clone(), reference);
        spec.path = self.path.clone();
        spec.auth = match (&self.token_file, &self.ssh_key_file, &self.known_hosts) {
            (Some(token_file), _, _) => Auth::Token {
                token_file: token_file.clone(),
                username: None,
            },
            (None, Some(key), Some(known_hosts)) => Auth::Ssh {
                private_key_file: key.clone(),
                known_hosts_file: known_hosts.clone(),
            },
            _ => Auth::None,
        };
        spec.verify =
            Verification::from_files(self.allowed_signers.clone(), self.openpgp_keyring.clone());
        spec
    }

    /// Everything the sync pipeline is configured with.
    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig {
            spec: self.source_spec(),
            cache_dir: self.cache_dir.clone(),
            default_namespace: self.default_namespace.clone(),
            apply: self.apply_config(),
            health_timeout: self.health_timeout,
            secrets: self.secrets(),
            render: self.render_config(),
        }
    }

    /// How kustomizations are rendered.
    pub fn render_config(&self) -> RenderConfig {
        RenderConfig {
            kustomize: Kustomize {
                binary: self.kustomize.clone(),
                timeout: self.render_timeout,
                ..Kustomize::default()
            },
            scratch_dir: self.cache_dir.join("render"),
            max_export_bytes: 256 << 20,
        }
    }

    /// How the revision's Secrets are read.
    pub fn secrets(&self) -> SecretsConfig {
        SecretsConfig {
            sops_age_key_file: self.sops_age_key_file.clone(),
            plaintext: if self.allow_plaintext_secrets {
                PlaintextSecrets::Allow
            } else {
                PlaintextSecrets::Refuse
            },
        }
    }

    /// How to apply and prune.
    pub fn apply_config(&self) -> ApplyConfig {
        ApplyConfig {
            concurrency: self.concurrency.max(1),
            inventory_namespace: self.inventory_namespace.clone(),
            prune: PrunePolicy {
                enabled: !self.no_prune,
                max_share: self.max_prune_share,
                allow_mass_prune: self.allow_mass_prune,
            },
            ..ApplyConfig::default()
        }
    }
}

/// How GET /status is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusAuth {
    /// Anyone who reaches the port.
    None,
    /// TokenReview + SubjectAccessReview (`get` on the non-resource URL /status).
    Kubernetes,
}
