//! The step transitions several use cases make alike: ending a step without a provider
//! call (skips, cancellations, failures), and the history of provider calls.

use crate::domain::{Attempt, EventKind, RunEvent, StepError, StepId, StepStatus, StepTransition, StepUpdate};

/// Ends a step in `status` (from any of `from`), recording why: skips, cancellations and
/// failures that happen without a provider call.
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
        update: StepUpdate { status: Some(status), error, finished_at: Some(now), ..StepUpdate::default() },
        events: vec![RunEvent::step_status(now, step_id, status, Some(reason))],
        ..StepTransition::default()
    }
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
