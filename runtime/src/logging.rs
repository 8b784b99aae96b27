//! Log set-up: structured JSON lines in a cluster, text at a terminal, the
//! level from `RUST_LOG` (or the caller's default: `info` for the services,
//! `warn` for command-line tools), always on standard error so that standard
//! output stays the command's own.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, with the current span (for log pipelines).
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber, filtering by `RUST_LOG` or else by
/// `default_filter`. Call once, first thing in `main`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}
