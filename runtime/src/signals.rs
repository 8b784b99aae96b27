//! The shutdown signal: SIGTERM (what the kubelet sends) or Ctrl-C.

/// Resolves when the process is asked to stop. If SIGTERM cannot be listened
/// for, Ctrl-C alone still works, and the failure is logged.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
