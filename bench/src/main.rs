//! `gitwarden-bench`: measured figures, always against a baseline measured in
//! the same run (these machines are shared and noisy: ratios, not absolutes).
//!
//!     scripts/bench webhook     # see BENCHMARKS.md
//!     scripts/bench agent
//!     scripts/bench fault
//!     scripts/bench e2e
//!     scripts/bench drift
//!     scripts/bench git
//!     scripts/bench kustomize

mod agent;
mod drift;
mod e2e;
mod fault;
mod floor;
mod git;
mod kustomize;
mod latency;
mod load;
mod proc_stats;
mod webhook;

use clap::{Parser, Subcommand};

/// Benchmarks that print figures.
#[derive(Debug, Parser)]
#[command(name = "gitwarden-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// /validate over TLS: allow path, deny path (durable audit), a realistic mix,
    /// and a bare rustls+axum endpoint answering a fixed allow as the floor.
    Webhook(webhook::Options),
    /// The agent: first sync of N objects vs kubectl apply --server-side, and a no-op resync.
    Agent(agent::Options),
    /// Writes through the real API server: no admission vs gitwarden's webhook vs an
    /// equivalent ValidatingAdmissionPolicy; agent, exempt operator, denied human.
    E2e(e2e::Options),
    /// Drift-heal latency of `gitwarden-agent run`, against the watch round trip.
    Drift(drift::Options),
    /// Incremental fetch and first clone: the agent's gix source vs the git program.
    Git(git::Options),
    /// A kustomize base and overlay: gitwarden vs Flux's engine (fluxcd/pkg/ssa) vs
    /// kubectl apply --server-side -k; first sync, resync, peak RSS, writes.
    Kustomize(kustomize::Options),
    /// 20,000 denials with a kill -9 of the webhook in the middle: every denial a
    /// client saw has its audit record, and the hash chain verifies.
    Fault(fault::Options),
    /// Internal: the floor server (a bare rustls+axum endpoint).
    #[command(hide = true)]
    Floor(floor::Options),
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Webhook(opts) => runtime.block_on(webhook::run(opts)),
        Command::Floor(opts) => runtime.block_on(floor::serve(opts)),
        Command::Fault(opts) => runtime.block_on(fault::run(opts)),
        Command::Agent(opts) => agent::run_bench(opts),
        Command::E2e(opts) => runtime.block_on(e2e::run(opts)),
        Command::Drift(opts) => runtime.block_on(drift::run(opts)),
        Command::Git(opts) => git::run_bench(opts),
        Command::Kustomize(opts) => kustomize::run_bench(opts),
    }
}
