//! The `gitwarden-agent` binary: `run` keeps the cluster in sync with git,
//! `sync` applies the revision once, `diff` shows what a sync would do, and
//! `status` prints a running agent's status. (Who can still bypass git is
//! `gitwarden-doctor`'s question, an operator's tool of its own.)

mod admission_guard;
mod cli;
mod drift;
mod events;
mod leader_report;
mod pipeline;
mod policy_watch;
mod refusals;
mod rendering;
mod reporter;
mod run;
mod server;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gitwarden_apply::{Action, Diff, RequestCounter};

use gitwarden_agent::standby::Standing;

use crate::cli::{Cli, Command, CommonArgs, Output, RunArgs};
use crate::pipeline::Pipeline;
use gitwarden_agent::status::Synced;

fn main() -> ExitCode {
    let cli = Cli::parse();
    gitwarden_runtime::logging::init(cli.log_format, "warn");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gitwarden-agent: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Sync(args) => match sync(&args.common).await {
                Ok(synced) => {
                    print_sync(&synced, args.output);
                    if synced.report.is_success() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("gitwarden-agent: sync failed: {e:#}");
                    ExitCode::from(2)
                }
            },
            Command::Run(args) => match run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "gitwarden-agent stopped");
                    eprintln!("gitwarden-agent: {e:#}");
                    ExitCode::from(2)
                }
            },
            Command::Status { url, kubeconfig } => {
                match print_status(&url, kubeconfig.as_deref()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("gitwarden-agent status: {e:#}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Diff(args) => match diff(&args).await {
                Ok((commit, d)) => {
                    print_diff(&commit, &d);
                    if d.in_sync() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("gitwarden-agent: diff failed: {e:#}");
                    ExitCode::from(2)
                }
            },
        }
    })
}

async fn kube_config(args: &CommonArgs) -> anyhow::Result<kube::Config> {
    kube_config_from(args.kubeconfig.as_deref()).await
}

/// The client configuration every subcommand uses: the kubeconfig at `path`
/// when one is given (outside the cluster: demo, tests, an admin's laptop),
/// otherwise the pod's service account or `$KUBECONFIG`.
pub(crate) async fn kube_config_from(
    path: Option<&std::path::Path>,
) -> anyhow::Result<kube::Config> {
    Ok(gitwarden_runtime::client::config(path).await?)
}

async fn pipeline(args: &CommonArgs) -> anyhow::Result<(Pipeline, RequestCounter)> {
    let config = kube_config(args).await?;
    let counter = RequestCounter::new();
    let client = counter
        .client(config)
        .context("building the Kubernetes client")?;
    let pipeline = Pipeline::new(client, args.pipeline_config()).await?;
    Ok((pipeline, counter))
}

async fn sync(args: &CommonArgs) -> anyhow::Result<Synced> {
    let (pipeline, _counter) = pipeline(args).await?;
    Ok(pipeline.sync().await?)
}

async fn diff(args: &CommonArgs) -> anyhow::Result<(String, Diff)> {
    let (pipeline, counter) = pipeline(args).await?;
    let result = pipeline.diff().await?;
    debug_assert_eq!(counter.writes(), 0, "diff must never write");
    Ok(result)
}

/// The admission guard's settings for `run`, `None` when it is disabled.
/// Starts the audit delivery when `--audit-url` is set, guard or not: the
/// agent's other reports (drift healed, sync failed, break-glass reverted…)
/// go through it too, and the webhook notifies from them.
fn admission_guard(
    args: &RunArgs,
    config: &kube::Config,
    client: &kube::Client,
) -> anyhow::Result<Option<admission_guard::GuardSettings>> {
    let audit = match &args.audit_url {
        None => admission_guard::Audit::NotAudited,
        Some(url) => {
            let bearer = gitwarden_runtime::credential::TokenSource::of(config).context(
                "--audit-url needs a bearer token (kubeconfig token, token file or exec plugin, or the in-cluster service account) to authenticate the agent to the webhook",
            )?;
            let (sink, _task) =
                gitwarden_agent::audit::AuditSink::start(url, args.audit_ca.as_deref(), bearer)?;
            gitwarden_agent::audit::install(sink.clone());
            tracing::info!(%url, "the agent's own actions are recorded in the webhook's audit log");
            admission_guard::Audit::Webhook(sink)
        }
    };
    if !args.admission_guard {
        tracing::warn!("--admission-guard=false: admission objects outside git are not removed");
        return Ok(None);
    }
    Ok(Some(admission_guard::GuardSettings {
        policy_configmap: args.policy_configmap.clone(),
        inventory: gitwarden_apply::InventoryStore::new(
            client.clone(),
            &args.common.inventory_namespace,
            &args.common.apply_config().inventory_name,
        ),
        audit,
    }))
}

async fn run(args: Box<RunArgs>) -> anyhow::Result<()> {
    use std::sync::Arc;
    let (pipeline, _counter) = pipeline(&args.common).await?;
    let config = kube_config(&args.common).await?;
    let client = kube::Client::try_from(config.clone())?;
    let guard_settings = admission_guard(&args, &config, &client)?;
    let reporter = reporter::Reporter::new(args.common.repo.clone());
    let trigger = Arc::new(tokio::sync::Notify::new());
    let read = |path: &Option<std::path::PathBuf>| -> anyhow::Result<Option<Arc<[u8]>>> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|s| Arc::from(s.trim().as_bytes()))
                    .with_context(|| format!("reading {}", p.display()))
            })
            .transpose()
    };
    let hook = server::HookAuth {
        secret: read(&args.hook_secret_file)?,
        token: read(&args.hook_token_file)?,
    };
    let identity = gitwarden_agent::leader::LeaseConfig::default_identity();
    let here = gitwarden_agent::leader_status::Whereabouts::from_env();
    // This replica's name in /status answers: its pod, else the base of its
    // Lease identity (the host name outside a pod).
    let replica = here
        .pod
        .clone()
        .or_else(|| identity.rsplit_once('_').map(|(base, _)| base.to_owned()))
        .unwrap_or_else(|| identity.clone());
    // A standby answers /status with the leader's: the Service sends callers
    // to any replica.
    let leader = if args.leader_elect {
        Some(Arc::new(gitwarden_agent::leader_status::LeaderStatus::new(
            client.clone(),
            here,
            args.listen.port(),
        )?))
    } else {
        None
    };
    let app = server::router(server::ServerState {
        reporter: reporter.clone(),
        trigger: trigger.clone(),
        hook,
        status_auth: (args.status_auth == cli::StatusAuth::Kubernetes)
            .then(|| gitwarden_runtime::access::Reviewer::new(client.clone())),
        leader,
        replica: Arc::from(replica),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /status, /healthz, /readyz, /metrics, /hook");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(gitwarden_runtime::signals::shutdown_signal())
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let settings = run::LoopSettings {
        interval: args.interval,
        jitter: args.jitter.clamp(0.0, 1.0),
        drift_debounce: args.drift_debounce,
    };
    // The guard runs beside the sync loop, only while leading: it is
    // dropped with the loop when leadership ends.
    let guard = {
        let (client, discovery, git, reporter) = (
            client.clone(),
            pipeline.discovery(),
            pipeline.git_objects(),
            reporter.clone(),
        );
        async move {
            match guard_settings {
                Some(settings) => {
                    admission_guard::guard(client, discovery, git, settings, reporter).await
                }
                None => std::future::pending().await,
            }
        }
    };
    if args.leader_elect {
        let lease = gitwarden_agent::leader::LeaseConfig {
            lease_duration: args.lease_duration,
            renew_deadline: args.lease_renew_deadline,
            retry_period: args.lease_retry_period,
            ..gitwarden_agent::leader::LeaseConfig::new(
                &args.lease_namespace,
                &args.lease_name,
                identity,
            )
        };
        let watch_client = client.clone();
        let loop_reporter = reporter.clone();
        run::run_with_leader_election(client, lease, reporter, move |leading| async move {
            tokio::select! {
                () = run::sync_loop(
                    pipeline,
                    loop_reporter,
                    trigger,
                    settings,
                    watch_client,
                    leading,
                ) => {}
                () = guard => {}
            }
        })
        .await
    } else {
        reporter.set_role(gitwarden_agent::status::Role::Leader);
        reporter.leader_election(gitwarden_agent::standby::Standing::Leading);
        let (_leading_tx, leading) = tokio::sync::watch::channel(true);
        tokio::select! {
            () = run::sync_loop(pipeline, reporter, trigger, settings, client, leading) => {}
            () = guard => {}
            () = gitwarden_runtime::signals::shutdown_signal() => tracing::info!("shutting down"),
        }
        Ok(())
    }
}

async fn print_status(url: &str, kubeconfig: Option<&std::path::Path>) -> anyhow::Result<()> {
    // The caller's own token, when it has one: an agent that reviews tokens
    // answers 401 without it, and the error then says why none was sent.
    let (token, no_token) = match gitwarden_runtime::client::config(kubeconfig).await {
        Ok(config) => match gitwarden_runtime::credential::bearer_token(&config).await {
            Ok(token) => (Some(token), None),
            Err(e) => (None, Some(gitwarden_runtime::errors::chain(&e))),
        },
        Err(e) if kubeconfig.is_some() => return Err(e.into()),
        Err(e) => (None, Some(gitwarden_runtime::errors::chain(&e))),
    };
    let status_url = format!("{}/status", url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().get(&status_url);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("GET {status_url}"))?;
    let code = response.status();
    let answered = Answered::from_headers(response.headers());
    let body = response.text().await.unwrap_or_default();
    match (code.as_u16(), &no_token) {
        (200..=299, _) => {}
        (401, Some(why)) => anyhow::bail!(
            "the agent wants a bearer token for /status (401) and none was sent: {why}"
        ),
        (401 | 403, _) => anyhow::bail!(
            "the agent refused /status ({code}): {} (reading it needs `get` on the non-resource URL /status, e.g. the ClusterRole gitwarden-status-reader)",
            body.trim()
        ),
        _ => anyhow::bail!("the agent answered /status with {code}: {}", body.trim()),
    }
    let s: gitwarden_agent::status::Status = serde_json::from_str(&body)
        .context("reading the agent's /status (a different version?)")?;
    answered.tell();
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    println!("role:          {}", s.role);
    println!("source:        {}", s.source);
    println!("revision:      {}", or_dash(&s.revision));
    println!("signed by:     {}", or_dash(&s.verified_signer));
    println!("last attempt:  {}", or_dash(&s.last_attempt));
    println!("last success:  {}", or_dash(&s.last_success));
    println!("drift healed:  {}", s.drift_healed);
    match &s.leader_election {
        Standing::Stuck { message, .. } => println!("leader:        STUCK: {message}"),
        Standing::Waiting {
            holder,
            waiting_since,
        } => println!(
            "leader:        waiting for {} (since {waiting_since})",
            holder.as_ref().map_or("?", |h| h.identity.as_str())
        ),
        Standing::Leading => println!("leader:        leading"),
        Standing::Starting => println!("leader:        starting"),
    }
    for w in &s.workloads {
        println!(
            "workload:      {} {:?}: {}",
            w.object, w.health.status, w.health.message
        );
    }
    let guard = match s.admission_guard.state {
        gitwarden_agent::status::GuardState::Off => "off",
        gitwarden_agent::status::GuardState::Waiting => "waiting",
        gitwarden_agent::status::GuardState::Armed => "armed",
    };
    println!(
        "admission:     guard {guard}, {} object(s) outside git removed since start",
        s.admission_objects_removed
    );
    for r in &s.admission_refusals {
        println!(
            "  refused     {} by {}: {}",
            r.object, r.refused_by, r.message
        );
    }
    println!(
        "break-glass:   {} held, {} reverted, {} deleted since start",
        s.last_report
            .as_ref()
            .map_or(0, |report| report.break_glass.held.len()),
        s.break_glass_reverted,
        s.break_glass_deleted
    );
    if let Some(report) = &s.last_report {
        println!(
            "objects:       {} (pruned {}, writes {})",
            report.applied.len(),
            report.pruned.len(),
            report.write_requests
        );
        for o in report
            .applied
            .iter()
            .filter(|o| o.action != Action::Unchanged)
        {
            println!("  {:<11} {}", action_word(&o.action), o.object);
        }
    }
    if let Some(error) = &s.error {
        println!("error:         {error}");
    }
    Ok(())
}

/// Who answered a /status request, from its headers (see
/// [`gitwarden_agent::leader_status`]): a standby forwards to the leader.
struct Answered {
    by: Option<String>,
    through: Option<String>,
    leader_unreachable: Option<String>,
}

impl Answered {
    fn from_headers(headers: &reqwest::header::HeaderMap) -> Self {
        use gitwarden_shared::names;
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Answered {
            by: text(names::STATUS_ANSWERED_BY_HEADER),
            through: text(names::STATUS_FORWARDED_BY_HEADER),
            leader_unreachable: text(names::STATUS_LEADER_UNREACHABLE_HEADER),
        }
    }

    /// One line on stderr when a standby answered (stdout stays the status).
    fn tell(&self) {
        if let Some(why) = &self.leader_unreachable {
            eprintln!(
                "warning: {} is a standby and shows its own status: the leader could not be reached: {why}",
                self.by.as_deref().unwrap_or("the replica that answered")
            );
        } else if let (Some(by), Some(through)) = (&self.by, &self.through) {
            eprintln!("answered by the leader {by} (through {through})");
        }
    }
}

/// The word `/status` uses for an object's action.
fn action_word(action: &Action) -> &'static str {
    use gitwarden_apply::Action;
    match action {
        Action::Created => "created",
        Action::Configured => "configured",
        Action::Recreated => "recreated",
        Action::Unchanged => "unchanged",
        Action::Failed(_) => "failed",
        Action::BreakGlass(_) => "breakGlass",
    }
}

fn print_sync(synced: &Synced, output: Output) {
    let r = &synced.report;
    if let Output::Json = output {
        match serde_json::to_string_pretty(synced) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("gitwarden-agent: cannot print the report: {e}"),
        }
        return;
    }
    println!("synced {} at {}", synced.source, synced.commit);
    if let Some(signer) = &synced.signer {
        println!("signed by {signer}");
    }
    println!(
        "{} objects: {} created, {} configured, {} recreated, {} unchanged, {} failed; {} pruned; {} write requests in {} ms",
        r.applied.len(),
        r.count(&Action::Created),
        r.count(&Action::Configured),
        r.count(&Action::Recreated),
        r.count(&Action::Unchanged),
        r.failures().count(),
        r.pruned.len(),
        r.write_requests,
        r.duration.as_millis()
    );
    for o in &r.applied {
        match &o.action {
            Action::Unchanged => {}
            Action::Failed(why) => match &o.refused_by {
                Some(plugin) => println!(
                    "  refused    {} ({}) by {plugin}: {why}",
                    o.object, o.location
                ),
                None => println!("  failed     {} ({}): {why}", o.object, o.location),
            },
            Action::BreakGlass(why) => println!("  held       {} ({why})", o.object),
            action => println!(
                "  {:<10} {}",
                format!("{action:?}").to_lowercase(),
                o.object
            ),
        }
    }
    for p in &r.pruned {
        println!("  pruned     {p}");
    }
    for h in &synced.health {
        println!(
            "  health     {} {:?}: {}",
            h.object, h.health.status, h.health.message
        );
    }
    for k in &r.kept {
        println!("  kept       {} ({})", k.object, k.reason);
    }
    let bg = &r.break_glass;
    for h in bg.held.iter().filter(|h| !h.in_git) {
        println!(
            "  held       {} (break-glass, not in git, until {})",
            h.object, h.until
        );
    }
    for o in &bg.reverted {
        println!("  reverted   {o} (break-glass window closed)");
    }
    for o in &bg.deleted {
        println!("  deleted    {o} (created under break-glass, not in git, window closed)");
    }
    for k in &bg.kept {
        println!("  kept       {} ({})", k.object, k.reason);
    }
    if let Some(why) = &r.prune_refused {
        println!("prune refused: {why}");
    }
}

fn print_diff(commit: &str, d: &Diff) {
    let print_held = || {
        for h in &d.held {
            println!(
                "= held   {} ({}): break-glass window open until {}; a sync reverts it to git after that",
                h.object, h.location, h.until
            );
        }
    };
    if d.in_sync() {
        println!("in sync with {commit}");
        print_held();
        return;
    }
    println!("differences from {commit}:");
    for c in &d.create {
        println!("+ create {} ({})", c.object, c.location);
    }
    for c in &d.change {
        println!("~ change {} ({})", c.object, c.location);
        if let Ok(ops) = serde_json::to_value(&c.patch) {
            for op in ops.as_array().into_iter().flatten() {
                println!("    {op}");
            }
        }
    }
    for c in &d.recreate {
        println!(
            "± recreate {} ({}): an immutable field changes; deleted and created again (gitwarden.io/force: enabled)",
            c.object, c.location
        );
    }
    print_held();
    for e in &d.invalid {
        println!("! invalid {e}");
    }
    for p in &d.prune {
        println!("- prune  {p}");
    }
    if let Some(why) = &d.prune_refused {
        println!("(prune would be refused: {why})");
    }
}
