//! `gitwarden-bench`: measured figures, always against a baseline measured in
//! the same run (these machines are shared and noisy: ratios, not absolutes).
//!
//!     scripts/bench webhook     # see BENCHMARKS.md
//!     scripts/bench agent

mod agent;
mod floor;
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
        Command::Agent(opts) => agent::run_bench(opts),
    }
}
