//! The `gitwarden-webhook` binary.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gitwarden_webhook::audit::{
    AuditLog, AuditMetrics, AuditOptions, AuditQuery, query_dir, run_verify_cli,
};
use gitwarden_webhook::cli::{AuditArgs, AuditOutput, Cli, Command, ServeArgs};
use gitwarden_webhook::listener::{self, ConnectionLimits};
use gitwarden_webhook::metrics::WebhookMetrics;
use gitwarden_webhook::policy_store::{PolicySource, PolicyStore};
use gitwarden_webhook::review::ReviewState;
use gitwarden_webhook::server::{AppState, Limits, router};
use gitwarden_webhook::sources::SourceIndex;
use gitwarden_webhook::tls;

fn main() -> ExitCode {
    let cli = Cli::parse();
    gitwarden_runtime::logging::init(cli.log_format, "info");
    match cli.command {
        Command::Verify { audit_dir } => run_verify_cli(&audit_dir),
        Command::Audit(args) => match print_audit(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gitwarden-webhook audit: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("gitwarden-webhook: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "gitwarden-webhook stopped");
                    eprintln!("gitwarden-webhook: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_audit(args: &AuditArgs) -> anyhow::Result<()> {
    let query = AuditQuery {
        since: args.since,
        user: args.user.clone(),
        namespace: args.namespace.clone(),
        decision: args.decision,
        group: args.group.clone(),
        resource: args.resource.clone(),
        name: args.name.clone(),
        limit: args.limit,
    };
    let records = query_dir(&args.audit_dir, &query)
        .with_context(|| format!("reading {}", args.audit_dir.display()))?;
    match args.output {
        AuditOutput::Json => {
            for record in records {
                println!("{}", serde_json::to_string(&record)?);
            }
        }
        AuditOutput::Text => {
            println!(
                "{:<22} {:<12} {:<11} {:<30} {:<7} {:<40} TIME",
                "ID", "USER", "DECISION", "REASON", "OP", "OBJECT"
            );
            for r in records {
                let resource = match &r.subresource {
                    Some(sub) => format!("{}/{sub}", r.resource),
                    None => r.resource.clone(),
                };
                let object = match (&r.namespace, &r.name) {
                    (Some(ns), Some(name)) => format!("{resource} {ns}/{name}"),
                    (None, Some(name)) => format!("{resource} {name}"),
                    (_, None) => resource,
                };
                println!(
                    "{:<22} {:<12} {:<11} {:<30} {:<7} {:<40} {}",
                    r.id,
                    r.user,
                    r.decision.as_str(),
                    r.reason,
                    r.operation,
                    object,
                    r.time
                );
                if let Some(reason) = &r.break_glass_reason {
                    let until = r
                        .break_glass_until
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    println!("{:<22} break-glass reason: {reason:?}, until {until}", "");
                }
            }
        }
    }
    Ok(())
}

fn policy_source(args: &ServeArgs) -> anyhow::Result<PolicySource> {
    if let Some(path) = &args.policy_file {
        return Ok(PolicySource::File {
            path: path.clone(),
            poll: args.reload_interval,
        });
    }
    if let Some(spec) = &args.policy_configmap {
        let (namespace, name) = spec
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .with_context(|| format!("--policy-configmap must be NAMESPACE/NAME, got {spec:?}"))?;
        return Ok(PolicySource::ConfigMap {
            namespace: namespace.into(),
            name: name.into(),
        });
    }
    Ok(PolicySource::Defaults)
}

async fn kube_client(args: &ServeArgs) -> anyhow::Result<kube::Client> {
    Ok(gitwarden_runtime::client::client(args.kubeconfig.as_deref()).await?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(WebhookMetrics::new(&mut registry));
    let audit_metrics = Arc::new(AuditMetrics::new());
    audit_metrics.register(&mut registry);
    let notify_metrics = gitwarden_webhook::notify::NotifyMetrics::new(&mut registry);
    let registration_metrics =
        gitwarden_webhook::registration::RegistrationMetrics::new(&mut registry);
    let audit_write_errors = audit_metrics.write_errors.clone();

    let audit_dir = args.audit_dir.clone();
    let audit_options = AuditOptions {
        max_file_bytes: args.audit_max_file_bytes,
        metrics: Some(audit_metrics),
        ..Default::default()
    };
    let audit = tokio::task::spawn_blocking(move || AuditLog::open(&audit_dir, audit_options))
        .await?
        .with_context(|| format!("opening the audit log in {}", args.audit_dir.display()))?;

    let source = policy_source(&args)?;
    let needs_cluster = matches!(source, PolicySource::ConfigMap { .. })
        || args.register_configurations.is_some()
        || args.audit_peers_service.is_some();
    let client = match needs_cluster {
        true => Some(kube_client(&args).await?),
        false => None,
    };
    let policy = PolicyStore::new(&source, metrics.clone());
    policy.follow(source, client.clone()).await?;

    let files = tls::CertFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        poll: args.reload_interval,
    };
    // In a fresh install the certificate Secret is filled by the bootstrap
    // Job after the pods start: wait for it instead of crash-looping.
    let tls_config = tls::load_when_present(&files).await?;
    let tls_status = tls::spawn_reloader(files, tls_config.clone(), metrics.clone());

    // Notifications follow the audit log from their own cursors: nothing on
    // the admission path waits for them.
    if let Some(config) = &args.notifications_config {
        gitwarden_webhook::notify::spawn(
            gitwarden_webhook::notify::NotifyOptions {
                config: config.clone(),
                secrets_dir: args.notification_secrets_dir.clone(),
                audit_dir: args.audit_dir.clone(),
                durable: audit.durable(),
                cursor_dir: args.audit_dir.join("notify-cursors"),
                poll: args.reload_interval,
            },
            notify_metrics,
            gitwarden_webhook::notify::Observed {
                audit_write_errors: Some(audit_write_errors),
                cert_not_after: metrics.cert_not_after_seconds.clone(),
            },
        );
    }

    let audit_token = match &args.audit_token_file {
        Some(path) => Some(Arc::from(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim(),
        )),
        None => None,
    };
    let readiness = gitwarden_webhook::readiness::Readiness {
        policy: policy.clone(),
        tls: tls_status,
        audit: audit.clone(),
    };
    // The CA that signs this webhook's serving certificate: registered with
    // the configurations, and what peers' certificates are verified with.
    let ca_bundle = args.register_ca_bundle.clone().unwrap_or_else(|| {
        args.tls_cert
            .parent()
            .map_or_else(|| "ca.crt".into(), |dir| dir.join("ca.crt"))
    });
    let audit_peers = match (&args.audit_peers_service, &client) {
        (Some(service), Some(client)) => {
            let here = gitwarden_webhook::audit_peers::Here::from_env();
            tracing::info!(%service, namespace = %here.namespace, pod = ?here.pod,
                "GET /audit also asks the other replicas behind the Service");
            Some(Arc::new(gitwarden_webhook::audit_peers::AuditPeers::new(
                client.clone(),
                service,
                here,
                ca_bundle.clone(),
            )?))
        }
        _ => None,
    };
    if let (Some(template), Some(client)) = (&args.register_configurations, &client) {
        let registrar = gitwarden_webhook::registration::Registrar::new(
            client.clone(),
            gitwarden_webhook::registration::RegistrationOptions {
                template: template.clone(),
                ca_bundle,
                interval: args.register_interval,
            },
            readiness.clone(),
            registration_metrics,
        );
        tokio::spawn(registrar.run());
    }
    let state = AppState {
        review: ReviewState {
            policy,
            audit: audit.clone(),
            metrics,
            sources: client
                .clone()
                .map(|client| SourceIndex::new(client, &args.inventory_namespace)),
        },
        registry: Arc::new(registry),
        readiness,
        access: gitwarden_webhook::access::Access::new(client.clone(), audit_token),
        audit_peers,
    };
    let app = router(
        state,
        Limits {
            max_body_bytes: args.max_body_bytes,
            request_timeout: args.request_timeout,
        },
    );

    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    let grace = args.shutdown_grace;
    tokio::spawn(async move {
        gitwarden_runtime::signals::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown.graceful_shutdown(Some(grace));
    });
    let listening = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = listening.listening().await {
            tracing::info!(%addr, "gitwarden-webhook listening");
        }
    });
    let limits = ConnectionLimits {
        max_connections: args.max_connections,
        tls_handshake_timeout: args.tls_handshake_timeout,
        header_read_timeout: args.header_read_timeout,
    };
    listener::serve(args.listen, tls_config, app, handle, limits)
        .await
        .with_context(|| format!("serving on {}", args.listen))?;
    audit.close().await.context("closing the audit log")?;
    tracing::info!("stopped");
    Ok(())
}
