//! `gitwarden-certs`: the webhook's TLS, in files or in the cluster.
//!
//! - `install`: create (or reuse) the CA and serving certificate, store them
//!   in Secrets `gitwarden-webhook-ca` and `gitwarden-webhook-tls`, and inject
//!   the CA bundle into every entry of the webhook configurations.
//! - `rotate`: the same for existing Secrets only (what the bootstrap Job
//!   and the daily CronJob run, as a service account that may not create
//!   Secrets): issue into the empty Secrets `deploy/base` ships, renew what
//!   expires within the windows.
//! - `check`: print expiry and what a rotate would do; write nothing.
//! - `files` (or no subcommand, as before): write `ca.crt`, `ca.key`,
//!   `tls.crt`, `tls.key` into a directory, for running the webhook outside a
//!   cluster (the demo, tests).
//!
//! Exit codes: 0 done (or nothing to do); 1 `check` found something due, or
//! a named webhook configuration does not exist (not with
//! `--configurations-optional`: the webhook registers them itself once
//! ready, so the bootstrap Job finds none); 2 error (flags, cluster
//! unreachable, forbidden, a Secret of another type, a stored CA that cannot
//! be used — never replaced); 3 `rotate` found a Secret absent (apply
//! `deploy/base`, which ships both empty, or run `install`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use gitwarden_certs::CertificateAuthority;
use gitwarden_certs::cluster::{
    self, CA_SECRET, ClusterError, Options, TLS_SECRET, Target, service_dns_names,
};
use gitwarden_certs::rotation::{Lifetimes, Wanted};

/// Webhook TLS for gitwarden: a CA, a serving certificate, their Secrets and the CA bundle.
#[derive(Debug, Parser)]
#[command(
    name = "gitwarden-certs",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: `files` (kept for existing scripts).
    #[command(flatten)]
    files: FilesArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or reuse the certificates, write both Secrets, inject the CA bundle.
    Install(ClusterArgs),
    /// Issue into empty Secrets, renew what expires within the windows (Secrets must exist); inject the bundle.
    Rotate(ClusterArgs),
    /// Print expiry and what `rotate` would do; exit 1 if anything is due.
    Check(ClusterArgs),
    /// Write ca.crt, ca.key, tls.crt and tls.key into a directory.
    Files(FilesArgs),
}

#[derive(Debug, Args)]
struct FilesArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long)]
    out: Option<PathBuf>,
    /// DNS names of the serving certificate (repeatable).
    #[arg(long = "dns", default_values_t = ["gitwarden-webhook.gitwarden-system.svc".to_string(), "localhost".to_string()])]
    dns: Vec<String>,
    /// IP addresses of the serving certificate (repeatable).
    #[arg(long = "ip", default_values_t = ["127.0.0.1".parse::<IpAddr>().expect("literal address")])]
    ips: Vec<IpAddr>,
    /// Validity of the serving certificate (the CA gets four times this).
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    validity: Duration,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the Secrets.
    #[arg(long, env = "GITWARDEN_NAMESPACE", default_value = gitwarden_shared::names::SYSTEM_NAMESPACE)]
    namespace: String,
    /// The Secret the webhook pods mount (tls.crt, tls.key, ca.crt).
    #[arg(long, default_value = TLS_SECRET)]
    tls_secret: String,
    /// The Secret holding the CA key and the bundle.
    #[arg(long, default_value = CA_SECRET)]
    ca_secret: String,
    /// The webhook's Service: the certificate is for NAME.NAMESPACE.svc and NAME.NAMESPACE.svc.cluster.local.
    #[arg(long, default_value = "gitwarden-webhook")]
    service: String,
    /// Namespace of the Service (default: --namespace).
    #[arg(long)]
    service_namespace: Option<String>,
    /// Further DNS names of the serving certificate (repeatable).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// IP addresses of the serving certificate (repeatable).
    #[arg(long = "ip")]
    ips: Vec<IpAddr>,
    /// ValidatingWebhookConfigurations to inject the bundle into (repeatable).
    #[arg(long = "validating-webhook", default_values_t = [gitwarden_shared::names::WEBHOOK_CONFIGURATION.to_string()])]
    validating: Vec<String>,
    /// MutatingWebhookConfigurations to inject the bundle into (repeatable).
    #[arg(long = "mutating-webhook", default_values_t = [gitwarden_shared::names::WEBHOOK_CONFIGURATION.to_string()])]
    mutating: Vec<String>,
    /// Validity of a new serving certificate (never beyond the CA's).
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    validity: Duration,
    /// Validity of a new CA.
    #[arg(long, default_value = "1825days", value_parser = humantime::parse_duration)]
    ca_validity: Duration,
    /// Renew the serving certificate when it expires within this.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration)]
    renew_before: Duration,
    /// Renew the CA when it expires within this; the old CA stays in the bundle until it expires.
    #[arg(long, default_value = "180days", value_parser = humantime::parse_duration)]
    ca_renew_before: Duration,
    /// Decide and print, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// A webhook configuration that does not exist is a note, not exit 1: the
    /// webhook registers them once ready (what the Job and CronJob pass).
    #[arg(long)]
    configurations_optional: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    gitwarden_runtime::logging::init(gitwarden_runtime::logging::LogFormat::Text, "warn");
    let (args, mode) = match cli.command {
        None => return report_files(write_files(&cli.files)),
        Some(Command::Files(files)) => return report_files(write_files(&files)),
        Some(Command::Install(args)) => (args, Mode::Install),
        Some(Command::Rotate(args)) => (args, Mode::Rotate),
        Some(Command::Check(args)) => (args, Mode::Check),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gitwarden-certs: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run_cluster(args, mode))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Install,
    Rotate,
    Check,
}

async fn run_cluster(args: ClusterArgs, mode: Mode) -> ExitCode {
    let name = match mode {
        Mode::Install => "install",
        Mode::Rotate => "rotate",
        Mode::Check => "check",
    };
    let client = match gitwarden_runtime::client::client(args.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "gitwarden-certs {name}: {}",
                gitwarden_runtime::errors::chain(&e)
            );
            return ExitCode::from(2);
        }
    };
    let service_namespace = args
        .service_namespace
        .clone()
        .unwrap_or_else(|| args.namespace.clone());
    let wanted = Wanted {
        dns_names: service_dns_names(&args.service, &service_namespace, &args.dns),
        ips: args.ips.clone(),
    };
    let lifetimes = Lifetimes {
        renew_before: args.renew_before,
        ca_renew_before: args.ca_renew_before,
        validity: args.validity,
        ca_validity: args.ca_validity,
    };
    let target = Target {
        namespace: args.namespace.clone(),
        tls_secret: args.tls_secret.clone(),
        ca_secret: args.ca_secret.clone(),
        validating: args
            .validating
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        mutating: args
            .mutating
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
    };
    let options = Options {
        create_missing: mode == Mode::Install,
        dry_run: args.dry_run || mode == Mode::Check,
        configurations_optional: args.configurations_optional,
    };
    let result = cluster::reconcile(
        client,
        &target,
        &wanted,
        &lifetimes,
        options,
        SystemTime::now(),
    )
    .await;
    match result {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            if report.incomplete() || (mode == Mode::Check && report.changed()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e @ ClusterError::NotInstalled { .. }) => {
            eprintln!("gitwarden-certs {name}: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!(
                "gitwarden-certs {name}: {}",
                gitwarden_runtime::errors::chain(&e)
            );
            ExitCode::from(2)
        }
    }
}

fn report_files(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gitwarden-certs: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn write(dir: &Path, name: &str, content: &str, private: bool) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn write_files(args: &FilesArgs) -> Result<()> {
    let out = args
        .out
        .as_deref()
        .context("--out DIR is required (or use a subcommand: install, rotate, check, files)")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The CA outlives several serving certificates, so that rotation keeps the CA bundle.
    let ca =
        CertificateAuthority::generate("gitwarden-webhook-ca", args.validity.saturating_mul(4))?;
    let names: Vec<&str> = args.dns.iter().map(String::as_str).collect();
    let serving = ca.issue_serving_cert(&names, &args.ips, args.validity)?;
    write(out, "ca.crt", ca.cert_pem(), false)?;
    write(out, "ca.key", &ca.key_pem(), true)?;
    write(out, "tls.crt", &serving.cert_pem, false)?;
    write(out, "tls.key", &serving.key_pem, true)?;
    println!(
        "wrote ca.crt, ca.key, tls.crt, tls.key to {}",
        out.display()
    );
    Ok(())
}
