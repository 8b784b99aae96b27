//! Waiting for the cluster to reach a state, without timed assertions: a
//! bounded poll that reports failure as `None` for the test to explain.

use std::future::Future;
use std::time::Duration;

/// Polls `probe` every 200 ms until it returns `Some` or `limit` passes.
pub async fn wait_for<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`wait_for`] for tests that are not async: polls `probe` every half
/// second until it returns `Some` or `limit` passes.
pub fn wait_blocking<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
