//! The step transitions several use cases make alike: ending a step without a provider
//! call (skips, cancellations, failures), marking a follow-up done, the history of provider
//! calls, and when the reconciler should look at a step or run next.

use std::time::Duration;

use crate::domain::{Attempt, EventKind, RunEvent, StepError, StepId, StepStatus, StepTransition, StepUpdate};

/// How long what follows a step's or run's end (releasing dependants, ending the run,
/// queueing the notification) may take in the request that ended it before the reconciler
/// re-drives it. Re-driving is idempotent, so a short grace only risks duplicate messages.
pub(super) const FOLLOW_UP_GRACE: Duration = Duration::from_secs(60);

/// How long a queued step's message may take to reach a worker before the reconciler sends
/// another (the first was lost, or never sent because the sender died or SQS refused it). A
/// duplicate costs two reads and is dropped by the conditional claim, so this is short enough
/// that a lost message delays a run by about two minutes, and long enough for an ordinary
/// backlog.
pub(super) const QUEUED_GRACE: Duration = Duration::from_secs(90);

/// When the reconciler should re-drive the follow-up of something that ends `now`.
pub(super) fn follow_up_due(now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    Some(now + FOLLOW_UP_GRACE)
}

/// Ends a step in `status` (from any of `from`), recording why: skips, cancellations and
/// failures that happen without a provider call. A cancelled step has no follow-up (only an
/// ended run cancels steps); the others are due for it.
pub(super) fn ending(
    step_id: &StepId,
    from: Vec<StepStatus>,
    status: StepStatus,
    error: Option<StepError>,
    reason: String,
    now: jiff::Timestamp,
) -> StepTransition {
    StepTransition {
        from,
        update: StepUpdate {
            status: Some(status),
            error,
            finished_at: Some(now),
            due: if status == StepStatus::Cancelled { None } else { follow_up_due(now) },
            ..StepUpdate::default()
        },
        events: vec![RunEvent::step_status(now, step_id, status, Some(reason))],
        ..StepTransition::default()
    }
}

/// The follow-up of a finished step is done: it leaves the reconciler's view.
pub(super) fn followed_up() -> StepTransition {
    StepTransition { from: StepStatus::FINISHED.to_vec(), ..StepTransition::default() }
}

/// The history entries of a step's provider calls.
pub(super) fn provider_events(now: jiff::Timestamp, step_id: &StepId, attempts: &[Attempt]) -> Vec<RunEvent> {
    attempts
        .iter()
        .map(|attempt| {
            RunEvent::step(
                now,
                step_id,
                EventKind::ProviderCalled {
                    provider: attempt.provider.clone(),
                    model: attempt.model.clone(),
                    latency_ms: attempt.latency_ms,
                    error: attempt.error.clone(),
                },
            )
        })
        .collect()
}
