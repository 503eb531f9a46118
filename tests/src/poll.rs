//! Waiting with a deadline: every test that waits for something (a run to end, a message to
//! arrive, a server to start) waits through [`until`], so a stuck wait fails with what it was
//! waiting for and what it last saw, instead of hanging the suite.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// Calls `attempt` every `every` until it returns `Ok`, and returns that. After `within` the
/// test fails, naming `what` and the last `Err` (what the attempt saw). The whole wait is
/// bounded, including an attempt that never returns.
pub async fn until<T, E, F, Fut>(what: &str, within: Duration, every: Duration, mut attempt: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut last = None;
    let polling = async {
        loop {
            match attempt().await {
                Ok(value) => return value,
                Err(seen) => last = Some(seen.to_string()),
            }
            tokio::time::sleep(every).await;
        }
    };
    let outcome = tokio::time::timeout(within, polling).await;
    outcome.unwrap_or_else(|_| {
        let last = last.unwrap_or_else(|| "no attempt returned".to_owned());
        panic!("{what}: not done within {within:?}; last seen: {last}")
    })
}
