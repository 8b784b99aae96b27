//! The `gitwarden-agent` binary: `sync` applies the git revision once, `diff`
//! shows what a sync would do. The continuous loop (`run`: interval, hook,
//! drift watching, leader election, /status) is not built yet.

mod cli;
mod pipeline;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gitwarden_apply::{Action, Diff, RequestCounter};

use crate::cli::{Cli, Command, CommonArgs, LogFormat, Output};
use crate::pipeline::{Pipeline, Synced};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn pipeline(args: &CommonArgs) -> anyhow::Result<(Pipeline, RequestCounter)> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("finding a Kubernetes configuration (in-cluster or $KUBECONFIG)")?,
    };
    let counter = RequestCounter::new();
    let client = counter
        .client(config)
        .context("building the Kubernetes client")?;
    let pipeline = Pipeline::new(
        client,
        args.source_spec(),
        args.cache_dir.clone(),
        args.default_namespace.clone(),
        args.apply_config(),
    )
    .await?;
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
        "{} objects: {} created, {} configured, {} unchanged, {} failed; {} pruned; {} write requests in {} ms",
        r.applied.len(),
        r.count(&Action::Created),
        r.count(&Action::Configured),
        r.count(&Action::Unchanged),
        r.failures().count(),
        r.pruned.len(),
        r.write_requests,
        r.duration.as_millis()
    );
    for o in &r.applied {
        match &o.action {
            Action::Unchanged => {}
            Action::Failed(why) => println!("  failed     {} ({}): {why}", o.object, o.location),
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
    for k in &r.kept {
        println!("  kept       {} ({})", k.object, k.reason);
    }
    if let Some(why) = &r.prune_refused {
        println!("prune refused: {why}");
    }
}

fn print_diff(commit: &str, d: &Diff) {
    if d.in_sync() {
        println!("in sync with {commit}");
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
