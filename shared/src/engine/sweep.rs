//! The scheduled sweep: the reconciler that makes every run end. Each step and run carries a
//! `due` time, written in the same conditional write as the transition that sets it, for when
//! the reconciler should look at it if nothing else has moved it by then:
//!
//! | what is due | found as | what the reconciler does |
//! |---|---|---|
//! | a wait (approval, provider job) past its deadline | `waiting_*` | polls a job once, then fails the step `deadline_exceeded` |
//! | a lease that ended | `running` | sends the step's message again (its worker died) |
//! | a queued step's message | `queued` | sends the message again (it was lost or never sent) |
//! | a finished step's follow-up | finished, `due` set | releases dependants / ends the run again |
//! | an ended run's follow-up | run ended, `due` set | cancels unstarted steps, queues the notification again |
//! | a retry's reset of the run's steps | run unfinished, `due` set | resets the steps not yet reset, sends the ready ones |
//!
//! Work per sweep is bounded ([`SWEEP_MAX`] entries, [`SWEEP_CONCURRENCY`] at a time, within
//! [`SWEEP_TIME`]); one entry's error is logged and counted and never stops the others; each
//! entry handled moves its `due` on, so the next sweep reaches the ones behind it.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::transitions::{QUEUED_GRACE, ending};
use super::{Engine, EngineError};
use crate::domain::{ErrorKind, Run, StepError, StepId, StepState, StepStatus, StepTransition, StepUpdate};
use crate::ports::{DueRef, PortError, StepMessage};

/// Entries one sweep looks at; the next sweep takes the rest.
pub const SWEEP_MAX: usize = 1_000;
/// Entries reconciled at once.
const SWEEP_CONCURRENCY: usize = 8;
/// A sweep starts no entry after this long (the notifier function's timeout is 60 s).
pub const SWEEP_TIME: Duration = Duration::from_secs(40);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Entries found due.
    pub due: usize,
    /// Steps whose message was sent again (lost message, dead worker).
    pub resent: usize,
    /// Follow-ups of finished steps and ended runs run again.
    pub followed_up: usize,
    /// Steps failed because their wait outlived its deadline, and runs failed because their
    /// stored state is gone.
    pub failed: usize,
    /// Entries whose reconciliation failed (they stay due for the next sweep).
    pub errors: usize,
    /// Entries left for the next sweep because this one ran out of time.
    pub deferred: usize,
}

/// What reconciling one entry did.
enum Reconciled {
    Nothing,
    Resent,
    FollowedUp,
    Failed,
    Deferred,
}

impl Engine {
    /// Looks at every step and run that is due, up to [`SWEEP_MAX`]. Safe to run
    /// concurrently and repeatedly: every change it makes is a conditional transition or an
    /// idempotent follow-up.
    pub async fn sweep(&self) -> Result<SweepReport, EngineError> {
        let now = self.clock.now();
        let started = Instant::now();
        let due = self.store.due(now, SWEEP_MAX).await?;
        let mut report = SweepReport { due: due.len(), ..SweepReport::default() };
        let outcomes: Vec<_> = futures::stream::iter(due)
            .map(|entry| async move {
                if started.elapsed() > SWEEP_TIME {
                    return Ok(Reconciled::Deferred);
                }
                let outcome = self.reconcile(&entry).await;
                if let Err(error) = &outcome {
                    tracing::warn!(run_id = %entry.run_id, step_id = ?entry.step_id, %error, "could not reconcile");
                }
                outcome
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(Reconciled::Nothing) => {}
                Ok(Reconciled::Resent) => report.resent += 1,
                Ok(Reconciled::FollowedUp) => report.followed_up += 1,
                Ok(Reconciled::Failed) => report.failed += 1,
                Ok(Reconciled::Deferred) => report.deferred += 1,
                Err(_) => report.errors += 1,
            }
        }
        Ok(report)
    }

    async fn reconcile(&self, due: &DueRef) -> Result<Reconciled, EngineError> {
        let run = match self.store.get_run(&due.run_id).await {
            Ok(Some(run)) => run,
            // Steps written by a submission that failed before its run: they expire.
            Ok(None) => return self.forget_orphan(due).await,
            Err(PortError::Corrupt { what, detail }) => return self.fail_unreadable(due, what, &detail).await,
            Err(error) => return Err(error.into()),
        };
        match &due.step_id {
            None if run.follow_up_pending() => {
                self.run_ended(&run).await?;
                Ok(Reconciled::FollowedUp)
            }
            None if run.reset_pending() => {
                self.finish_reset(&run).await?;
                Ok(Reconciled::FollowedUp)
            }
            None => Ok(Reconciled::Nothing),
            Some(step_id) => self.reconcile_step(&run, step_id).await,
        }
    }

    async fn reconcile_step(&self, run: &Run, step_id: &StepId) -> Result<Reconciled, EngineError> {
        let Some(state) = self.store.get_step(&run.id, step_id).await? else { return Ok(Reconciled::Nothing) };
        let now = self.clock.now();
        if state.control.due.is_none_or(|due| due > now) {
            return Ok(Reconciled::Nothing); // moved on since the index was read
        }
        if state.status.is_terminal() {
            if !state.follow_up_pending() {
                return Ok(Reconciled::Nothing);
            }
            self.step_finished(run, state).await?;
            return Ok(Reconciled::FollowedUp);
        }
        match state.status {
            StepStatus::WaitingApproval | StepStatus::WaitingCallback => self.expire_wait(run, &state).await,
            StepStatus::Queued | StepStatus::Running => self.resend(run, &state).await,
            // Not released yet: its dependencies' follow-ups send it. Nothing is due.
            _ => {
                let clear = StepTransition { from: vec![StepStatus::Pending], ..StepTransition::default() };
                self.store.transition_step(&run.id, step_id, clear).await?;
                Ok(Reconciled::Nothing)
            }
        }
    }

    /// A queued step whose message is overdue, or a running one whose worker's lease ended:
    /// sends its message again and looks again after [`QUEUED_GRACE`]. The worker that gets it
    /// claims the step (or, in an ended run, cancels it).
    async fn resend(&self, run: &Run, state: &StepState) -> Result<Reconciled, EngineError> {
        let now = self.clock.now();
        if let Some(lease) = state.control.lease.as_ref().filter(|lease| lease.until >= now) {
            // The lease was extended past its due time: look again when it ends.
            let later = StepTransition {
                from: vec![StepStatus::Running],
                lease_owner: Some(lease.owner.clone()),
                update: StepUpdate { lease: Some(lease.clone()), due: Some(lease.until), ..StepUpdate::default() },
                ..StepTransition::default()
            };
            self.store.transition_step(&run.id, &state.step_id, later).await?;
            return Ok(Reconciled::Nothing);
        }
        let later = StepTransition {
            from: vec![StepStatus::Queued],
            or_lease_expired_before: Some(now),
            update: StepUpdate { due: Some(now + QUEUED_GRACE), ..StepUpdate::default() },
            ..StepTransition::default()
        };
        if self.store.transition_step(&run.id, &state.step_id, later).await?.is_none() {
            return Ok(Reconciled::Nothing); // claimed or ended meanwhile
        }
        let message = StepMessage { run_id: run.id.clone(), step_id: state.step_id.clone() };
        self.steps.send(vec![message], Duration::ZERO).await?;
        Ok(Reconciled::Resent)
    }

    /// A wait past its deadline fails, and the run moves on as after any other failure. A
    /// provider job is asked once first, in case only its webhook was lost.
    async fn expire_wait(&self, run: &Run, state: &StepState) -> Result<Reconciled, EngineError> {
        let reason = match state.status {
            StepStatus::WaitingCallback if state.progress.child_run.is_some() => {
                "the child run did not end before the step's deadline".to_owned()
            }
            StepStatus::WaitingCallback => {
                if self.poll_expired_job(run, state).await?.is_some() {
                    return Ok(Reconciled::FollowedUp); // the job had finished; its webhook was lost
                }
                "the provider's job did not finish before the step's deadline".to_owned()
            }
            _ => "no answer arrived before the step's deadline".to_owned(),
        };
        let now = self.clock.now();
        let error = StepError::new(ErrorKind::DeadlineExceeded, reason.clone());
        let waits = vec![StepStatus::WaitingApproval, StepStatus::WaitingCallback];
        let transition = ending(&state.step_id, waits, StepStatus::Failed, Some(error), reason, now);
        match self.store.transition_step(&run.id, &state.step_id, transition).await? {
            Some(failed) => {
                self.cancel_children(std::slice::from_ref(&failed)).await?;
                self.step_finished(run, failed).await?;
                Ok(Reconciled::Failed)
            }
            None => Ok(Reconciled::Nothing), // decided between the read and now
        }
    }

    /// A run whose stored state cannot be read (a payload in the blob store is gone) fails
    /// with an error that says so, and its client is told.
    async fn fail_unreadable(&self, due: &DueRef, what: &str, detail: &str) -> Result<Reconciled, EngineError> {
        let now = self.clock.now();
        let error = StepError::new(
            ErrorKind::PayloadMissing,
            format!("the run's stored state could not be read ({what}: {detail}); it cannot continue"),
        );
        let failed = self.store.fail_unreadable_run(&due.run_id, error, now).await?;
        if let Some(run) = self.store.get_run(&due.run_id).await?
            && run.follow_up_pending()
        {
            self.run_ended(&run).await?;
        }
        Ok(if failed { Reconciled::Failed } else { Reconciled::Nothing })
    }

    /// A step whose run does not exist leaves the reconciler's view.
    async fn forget_orphan(&self, due: &DueRef) -> Result<Reconciled, EngineError> {
        if let Some(step_id) = &due.step_id {
            let all = StepStatus::UNFINISHED.into_iter().chain(StepStatus::FINISHED).collect();
            let forget = StepTransition { from: all, ..StepTransition::default() };
            self.store.transition_step(&due.run_id, step_id, forget).await?;
        }
        Ok(Reconciled::Nothing)
    }
}
