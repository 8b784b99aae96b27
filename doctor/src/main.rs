//! `gitwarden-doctor`: who can still change the cluster without a commit, and
//! whether gitwarden's webhook, certificate, agent and Lease are healthy.
//!
//! An operator's tool, beside `gitwarden-certs`: it runs with an
//! administrator's kubeconfig, reads all of RBAC, and shares nothing with the
//! agent's sync, so the agent binary does not carry it (nor the certificate
//! code it needs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use gitwarden_doctor::{Options, Protected};
use gitwarden_shared::names;

/// How the report is printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DoctorOutput {
    /// Sections for people, the worst finding first.
    Text,
    /// Every finding with severity, check id, subject and path, for scripts.
    Json,
}

/// `gitwarden-doctor` settings.
#[derive(Debug, Parser)]
#[command(name = "gitwarden-doctor", version, about)]
struct DoctorArgs {
    /// An admin kubeconfig (default: $KUBECONFIG, then in-cluster): doctor
    /// reads all of RBAC and the webhook configurations.
    #[arg(long, env = "GITWARDEN_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The agent's HTTP address; when given, its /status is checked too.
    #[arg(long, env = "GITWARDEN_AGENT_URL")]
    agent_url: Option<String>,
    /// Report format.
    #[arg(long, short = 'o', default_value = "text")]
    output: DoctorOutput,
    /// List expected identities (the agent, control-plane components, policy
    /// exemptions) one by one instead of counting them.
    #[arg(long)]
    show_expected: bool,
    /// Warn when a webhook certificate expires within this many days.
    #[arg(long, default_value_t = 30)]
    cert_warn_days: u64,
    /// Warn when the agent's last successful sync is older than this.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    agent_max_age: std::time::Duration,
    /// Timeout of each network probe (webhook TLS handshake, agent status).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// gitwarden's namespace.
    #[arg(long, default_value = names::SYSTEM_NAMESPACE)]
    namespace: String,
    /// The agent's service account in that namespace.
    #[arg(long, default_value = names::AGENT_SERVICE_ACCOUNT)]
    agent_service_account: String,
    /// The name of the Validating- and MutatingWebhookConfiguration.
    #[arg(long, default_value = names::WEBHOOK_CONFIGURATION)]
    webhook_configuration: String,
    /// The policy ConfigMap in that namespace.
    #[arg(long, default_value = names::POLICY_CONFIGMAP)]
    policy_configmap: String,
    /// Namespace of the agent's leader Lease (default: --namespace).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the agent's leader Lease.
    #[arg(long, default_value = "gitwarden-agent")]
    lease_name: String,
    /// A Lease expired (or released and not taken) for longer than this
    /// means no agent leads: critical.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    lease_max_expired: std::time::Duration,
}

impl DoctorArgs {
    fn options(&self) -> Options {
        Options {
            protected: Protected {
                system_namespace: self.namespace.clone(),
                agent_service_account: self.agent_service_account.clone(),
                webhook_configuration: self.webhook_configuration.clone(),
                policy_configmap: self.policy_configmap.clone(),
            },
            agent_url: self.agent_url.clone(),
            agent_token: None,
            cert_warn_before: std::time::Duration::from_secs(self.cert_warn_days * 86_400),
            agent_max_age: self.agent_max_age,
            timeout: self.timeout,
            lease: gitwarden_doctor::lease::LeaseTarget {
                namespace: self
                    .lease_namespace
                    .clone()
                    .unwrap_or_else(|| self.namespace.clone()),
                name: self.lease_name.clone(),
                agent_service_account: self.agent_service_account.clone(),
                max_expired: self.lease_max_expired,
            },
        }
    }
}

fn main() -> ExitCode {
    let args = DoctorArgs::parse();
    gitwarden_runtime::logging::init(gitwarden_runtime::logging::LogFormat::Text, "warn");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(&args)),
        Err(e) => {
            eprintln!("gitwarden-doctor: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the checks and prints the report. Exit 0: nothing critical; 1:
/// critical findings; 2: doctor could not run.
async fn run(args: &DoctorArgs) -> ExitCode {
    let config = match gitwarden_runtime::client::config(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gitwarden-doctor: {}", gitwarden_runtime::errors::chain(&e));
            return ExitCode::from(2);
        }
    };
    let mut options = args.options();
    if options.agent_url.is_some() {
        // Doctor reads the agent's /status as its own user, like kubectl gitwarden.
        options.agent_token = gitwarden_runtime::credential::bearer_token(&config)
            .await
            .ok();
    }
    let client = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "gitwarden-doctor: building the Kubernetes client: {}",
                gitwarden_runtime::errors::chain(&e)
            );
            return ExitCode::from(2);
        }
    };
    let report = gitwarden_doctor::diagnose(&client, &options).await;
    match args.output {
        DoctorOutput::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("gitwarden-doctor: cannot print the report: {e}");
                return ExitCode::from(2);
            }
        },
        DoctorOutput::Text => print!("{}", report.to_text(args.show_expected)),
    }
    ExitCode::from(report.exit_code())
}
