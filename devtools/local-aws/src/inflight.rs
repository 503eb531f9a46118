//! The bridge's invocations in flight, per function, and the three ways one ends early.
//!
//! - Every invocation has a deadline: its function's `Timeout`, as on AWS. Past it the
//!   invocation counts as failed and its batch is left to come back after the visibility timeout.
//! - An invocation whose runtime process died is abandoned at once, when the supervisor reports
//!   the death ([`InFlight::runtime_died`]): `cargo lambda watch` never answers an invocation its
//!   runtime took and then lost, so without this it would wait for its whole deadline.
//! - An invocation that reaches its deadline while the function answered nothing at all since it
//!   was sent means the runtime is stuck; it is reported (see [`InFlight::reporting_hangs`]) so
//!   the supervisor can kill and replace the runtime, as AWS replaces a timed-out execution
//!   environment.
//!
//! Both rules rest on how `cargo lambda watch` serves a function: one runtime instance, one
//! invocation at a time, oldest first. So the invocation a dying runtime held is the oldest one
//! still outstanding, and an invocation merely queued behind a slow one sees the slow one answered
//! before its own deadline.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Why an invocation ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The deadline passed. `hung`: the function answered no invocation since this one was
    /// sent, so its runtime is stuck (or gone) rather than busy with an earlier invocation.
    Deadline { hung: bool },
    /// The runtime process that held it died; it will never be answered.
    RuntimeDied,
}

/// The invocations in flight of every function. Cheap to clone; clones share their state.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    functions: HashMap<String, Calls>,
    hangs: Option<mpsc::UnboundedSender<String>>,
}

/// One function's invocations.
#[derive(Debug, Default)]
struct Calls {
    /// By id, which grows with the send time: the first entry is the oldest.
    outstanding: BTreeMap<u64, Outstanding>,
    /// When an invocation of this function last got an answer (any answer, even an error).
    last_answer: Option<Instant>,
}

#[derive(Debug)]
struct Outstanding {
    sent: Instant,
    abandon: oneshot::Sender<()>,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hung functions (an invocation past its deadline with nothing answered since it was sent)
    /// are named on the returned channel from now on.
    pub fn reporting_hangs(&self) -> mpsc::UnboundedReceiver<String> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().hangs = Some(sender);
        receiver
    }

    /// Runs `call`, an invocation of `function`, until it answers, `deadline` passes, or its
    /// runtime is reported dead. Dropping the returned future forgets the invocation.
    pub async fn call<F: Future>(&self, function: &str, deadline: Duration, call: F) -> Result<F::Output, Interrupted> {
        let (id, sent, abandoned) = self.begin(function);
        let _forget = Forget { in_flight: self, function, id };
        let outcome = tokio::select! {
            output = call => Ok(output),
            () = tokio::time::sleep(deadline) => Err(Interrupted::Deadline { hung: false }),
            Ok(()) = abandoned => Err(Interrupted::RuntimeDied),
        };
        self.end(function, sent, outcome)
    }

    /// `function`'s runtime died by `died_by`: the oldest invocation sent before then, which is
    /// the one it held if it held any, is abandoned. Whether there was one.
    pub fn runtime_died(&self, function: &str, died_by: Instant) -> bool {
        let mut inner = self.lock();
        let Some(calls) = inner.functions.get_mut(function) else { return false };
        let Some((&id, oldest)) = calls.outstanding.first_key_value() else { return false };
        if oldest.sent > died_by {
            return false;
        }
        calls.outstanding.remove(&id).is_some_and(|oldest| oldest.abandon.send(()).is_ok())
    }

    /// How many invocations of `function` are outstanding.
    pub fn outstanding(&self, function: &str) -> usize {
        self.lock().functions.get(function).map_or(0, |calls| calls.outstanding.len())
    }

    fn begin(&self, function: &str) -> (u64, Instant, oneshot::Receiver<()>) {
        let (abandon, abandoned) = oneshot::channel();
        let sent = Instant::now();
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.functions.entry(function.to_owned()).or_default().outstanding.insert(id, Outstanding { sent, abandon });
        (id, sent, abandoned)
    }

    fn end<T>(&self, function: &str, sent: Instant, outcome: Result<T, Interrupted>) -> Result<T, Interrupted> {
        let mut inner = self.lock();
        let calls = inner.functions.entry(function.to_owned()).or_default();
        match outcome {
            Ok(output) => {
                calls.last_answer = Some(Instant::now());
                Ok(output)
            }
            Err(Interrupted::Deadline { .. }) => {
                let hung = calls.last_answer.is_none_or(|answered| answered < sent);
                if hung && let Some(hangs) = &inner.hangs {
                    // Nobody listening (the supervisor stopped) is fine: the deadline stands.
                    let _ = hangs.send(function.to_owned());
                }
                Err(Interrupted::Deadline { hung })
            }
            Err(Interrupted::RuntimeDied) => Err(Interrupted::RuntimeDied),
        }
    }

    /// The state stays consistent whatever a panicking holder did (every change is one insert
    /// or remove), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes an invocation from the outstanding ones however [`InFlight::call`] ends, including
/// when its future is dropped.
struct Forget<'a> {
    in_flight: &'a InFlight,
    function: &'a str,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(calls) = self.in_flight.lock().functions.get_mut(self.function) {
            calls.outstanding.remove(&self.id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(120);

    /// An invocation answered after `after`.
    async fn answer(after: Duration) -> &'static str {
        tokio::time::sleep(after).await;
        "answered"
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_deadline_is_returned() {
        let in_flight = InFlight::new();
        let output = in_flight.call("worker", DEADLINE, answer(Duration::from_secs(119))).await;
        assert_eq!(output, Ok("answered"));
        assert_eq!(in_flight.outstanding("worker"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_that_never_answers_fails_at_its_deadline_and_is_reported_hung() {
        let in_flight = InFlight::new();
        let mut hangs = in_flight.reporting_hangs();
        let started = Instant::now();
        let output = in_flight.call("worker", DEADLINE, std::future::pending::<()>()).await;
        assert_eq!(output, Err(Interrupted::Deadline { hung: true }));
        assert_eq!(started.elapsed(), DEADLINE, "exactly the function's timeout");
        assert_eq!(hangs.try_recv().unwrap(), "worker");
        assert_eq!(in_flight.outstanding("worker"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_queued_behind_a_slow_one_times_out_without_calling_the_runtime_hung() {
        let in_flight = InFlight::new();
        let mut hangs = in_flight.reporting_hangs();
        // The slow one answers after 100 s; the one behind it was sent 5 s later and is served
        // one at a time after it, so it runs out of time, but the runtime worked meanwhile.
        let slow = in_flight.call("worker", DEADLINE, answer(Duration::from_secs(100)));
        let behind = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            in_flight.call("worker", DEADLINE, std::future::pending::<&str>()).await
        };
        let (slow, behind) = tokio::join!(slow, behind);
        assert_eq!(slow, Ok("answered"));
        assert_eq!(behind, Err(Interrupted::Deadline { hung: false }));
        assert!(hangs.try_recv().is_err(), "nothing is reported");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_runtime_abandons_the_oldest_invocation_at_once_and_only_it() {
        let in_flight = InFlight::new();
        let held = in_flight.call("worker", DEADLINE, std::future::pending::<&str>());
        let queued = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            in_flight.call("worker", DEADLINE, answer(Duration::from_secs(10))).await
        };
        let other_function = in_flight.call("notifier", DEADLINE, std::future::pending::<&str>());
        let death = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(in_flight.outstanding("worker"), 2);
            let started = Instant::now();
            assert!(in_flight.runtime_died("worker", Instant::now()));
            started
        };
        let (held, queued, death, other) = tokio::join!(
            async { (held.await, Instant::now()) },
            queued,
            death,
            tokio::time::timeout(Duration::from_secs(30), other_function)
        );
        assert_eq!(held.0, Err(Interrupted::RuntimeDied));
        assert_eq!(held.1, death, "abandoned when the death is reported, not at the deadline");
        assert_eq!(queued, Ok("answered"), "the next invocation is served by the replacement");
        assert!(other.is_err(), "another function's invocation is untouched");
    }

    #[tokio::test(start_paused = true)]
    async fn a_death_before_any_outstanding_invocation_was_sent_abandons_nothing() {
        let in_flight = InFlight::new();
        let died = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let call = in_flight.call("worker", DEADLINE, answer(Duration::from_secs(3)));
        let report = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            in_flight.runtime_died("worker", died)
        };
        let (output, abandoned) = tokio::join!(call, report);
        assert!(!abandoned);
        assert_eq!(output, Ok("answered"));
        assert!(!in_flight.runtime_died("nobody", Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_invocation_is_forgotten() {
        let in_flight = InFlight::new();
        let dropped = tokio::time::timeout(
            Duration::from_secs(1),
            in_flight.call("worker", DEADLINE, std::future::pending::<()>()),
        )
        .await;
        assert!(dropped.is_err());
        assert_eq!(in_flight.outstanding("worker"), 0);
    }
}
