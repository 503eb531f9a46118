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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn given_an_attempt_that_succeeds_on_the_third_try_when_polled_then_its_value_is_returned() {
        let tries = AtomicU32::new(0);
        let tries = &tries;
        let value = until("the third try", Duration::from_secs(5), Duration::ZERO, || async move {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 { Err(format!("try {n}")) } else { Ok(n) }
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "the impossible: not done within 50ms; last seen: never")]
    async fn given_an_attempt_that_never_succeeds_when_polled_then_the_test_fails_with_what_it_saw() {
        until("the impossible", Duration::from_millis(50), Duration::from_millis(5), || async {
            Err::<(), _>("never")
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "a hung attempt: not done within 50ms; last seen: no attempt returned")]
    async fn given_an_attempt_that_hangs_when_polled_then_the_deadline_still_holds() {
        until("a hung attempt", Duration::from_millis(50), Duration::ZERO, || {
            std::future::pending::<Result<(), String>>()
        })
        .await;
    }
}
