//! What happens after a step ends: settle what it spent on the run's budget, release its
//! dependants (queueing or skipping those now free to go), fail the run on a required step's
//! failure, and finish the run when its last sink ends; and after a run ends: cancel what has
//! not started and queue the notification.
//! Shared by the worker, approvals, provider callbacks, the dead-letter handler and the
//! reconciler.
//!
//! Durability: the transition that ends a step (or run) also sets its `due` time, in the same
//! conditional write; the follow-up clears it as its last act. Whoever finds a finished step
//! or run with `due` still set (a redelivery, a retried approval or callback, the reconciler)
//! runs the follow-up again. Every part of it is idempotent (conditional counts, conditional
//! transitions, duplicate messages that workers drop), so running it twice is harmless and a
//! crash anywhere in it costs one re-drive.

use std::collections::VecDeque;
use std::time::Duration;

use super::transitions::{ending, follow_up_due, followed_up};
use super::{Engine, EngineError};
use crate::domain::{
    ErrorKind, EventKind, Run, RunEvent, RunStatus, StepError, StepState, StepStatus, TemplateContext,
};
use crate::ports::{NotificationMessage, RunTransition, StepMessage};

/// Inputs and the outputs of succeeded steps: what templates see.
pub(super) fn context_for(run: &Run, steps: &[StepState]) -> TemplateContext {
    TemplateContext {
        input: run.input.clone(),
        steps: steps
            .iter()
            .filter(|s| s.status == StepStatus::Succeeded)
            .filter_map(|s| Some((s.step_id.to_string(), s.progress.output.clone()?)))
            .collect(),
        item: None,
    }
}

impl Engine {
    /// Moves the run forward after `state` reached a terminal status, then marks the step's
    /// follow-up done. Idempotent: running it again for the same step changes nothing but may
    /// re-send queue messages.
    pub(super) async fn step_finished(&self, run: &Run, state: StepState) -> Result<(), EngineError> {
        let mut finished = VecDeque::from([state]);
        while let Some(state) = finished.pop_front() {
            self.follow_up_step(run, &state, &mut finished).await?;
            if state.control.due.is_some() {
                self.store.transition_step(&run.id, &state.step_id, followed_up()).await?;
            }
        }
        Ok(())
    }

    /// What follows one step's end; dependants it skips are pushed onto `finished`.
    async fn follow_up_step(
        &self,
        run: &Run,
        state: &StepState,
        finished: &mut VecDeque<StepState>,
    ) -> Result<(), EngineError> {
        // First: whatever follows, the budget the step held is free for the others.
        self.settle_budget(run, state).await?;
        if state.step_id.is_item() {
            return self.item_finished(run, state, finished).await;
        }
        let optional = run.definition.steps.iter().any(|s| s.id == state.step_id && s.optional);
        match state.status {
            StepStatus::Failed if !optional => return self.fail_run(run, state).await,
            StepStatus::Cancelled => return Ok(()),
            _ => {}
        }
        let succeeded = state.status == StepStatus::Succeeded;
        let now = self.clock.now();
        let mut ready = Vec::new();
        for dependant in &state.control.dependants {
            let after = self.store.release_step(&run.id, dependant, &state.step_id, succeeded).await?;
            if after.control.pending_deps > 0 {
                continue;
            }
            match after.status {
                StepStatus::Pending if after.control.blocked => {
                    let reason = "a step it depends on did not succeed".to_owned();
                    let skip = ending(dependant, vec![StepStatus::Pending], StepStatus::Skipped, None, reason, now);
                    // `None`: another delivery skipped it first and follows it up.
                    if let Some(skipped) = self.store.transition_step(&run.id, dependant, skip).await? {
                        finished.push_back(skipped);
                    }
                }
                // The release made it ready (or a delivery that crashed before sending
                // did): send it. A duplicate message is harmless, the claim is conditional.
                StepStatus::Queued => ready.push(dependant.clone()),
                // Skipped earlier by a follow-up that crashed before finishing its own.
                status if status.is_terminal() && after.follow_up_pending() => finished.push_back(after),
                _ => {}
            }
        }
        if !ready.is_empty() {
            let messages = ready.into_iter().map(|step_id| StepMessage { run_id: run.id.clone(), step_id }).collect();
            self.steps.send(messages, Duration::ZERO).await?;
        }
        if state.is_sink() {
            let after = self.store.release_run(&run.id, &state.step_id).await?;
            if after.pending_sinks == 0 {
                self.finish_run(&after).await?;
            }
        }
        Ok(())
    }

    /// Every sink has ended: render the output and mark the run succeeded.
    async fn finish_run(&self, run: &Run) -> Result<(), EngineError> {
        let steps = self.store.get_steps(&run.id).await?;
        let context = context_for(run, &steps);
        let rendered = run.definition.output.as_ref().map(|output| self.templates.render_value(output, &context));
        let (status, output, error) = match rendered.transpose() {
            Ok(output) => (RunStatus::Succeeded, output, None),
            Err(err) => (
                RunStatus::Failed,
                None,
                Some(StepError::new(
                    ErrorKind::OutputTemplate,
                    format!("the workflow `output` could not be rendered: {err}"),
                )),
            ),
        };
        self.end_run(run, status, output, error).await
    }

    /// A required step failed: the run fails and steps not yet started are cancelled.
    async fn fail_run(&self, run: &Run, failed: &StepState) -> Result<(), EngineError> {
        let detail = failed.progress.error.as_ref().map_or("it failed", |e| e.message.as_str());
        let error = StepError::new(ErrorKind::StepFailed, format!("step `{}` failed: {detail}", failed.step_id));
        self.end_run(run, RunStatus::Failed, None, Some(error)).await
    }

    /// Moves an unfinished run to a terminal status, then does what follows: cancels what has
    /// not started and queues the notification. If the run had already ended, its follow-up
    /// is re-driven when it is not known to be done.
    pub(super) async fn end_run(
        &self,
        run: &Run,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<StepError>,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let transition = RunTransition {
            from: RunStatus::UNFINISHED.to_vec(),
            to: status,
            output,
            error,
            finished_at: Some(now),
            // A run that succeeded with no one to notify and no parent step to complete has
            // nothing to follow up.
            due: if status == RunStatus::Succeeded && run.notify.is_none() && run.parent.is_none() {
                None
            } else {
                follow_up_due(now)
            },
            events: vec![RunEvent::run(now, EventKind::RunFinished { status })],
        };
        match self.store.transition_run(&run.id, transition).await? {
            Some(ended) => self.run_ended(&ended).await,
            None => match self.store.get_run(&run.id).await? {
                Some(ended) if ended.follow_up_pending() => self.run_ended(&ended).await,
                _ => Ok(()),
            },
        }
    }

    /// What follows a run's end, then marks it done. Idempotent; a re-drive may queue the
    /// notification twice, and the notification keeps one `webhook-id` for the receiver to
    /// drop the duplicate.
    pub(super) async fn run_ended(&self, run: &Run) -> Result<(), EngineError> {
        // A run succeeds when its last sink ends, and a sink ends only after everything
        // upstream of it: then nothing is left to cancel, and the read is saved.
        if run.status != RunStatus::Succeeded {
            let steps = self.cancel_unstarted(run, run.status == RunStatus::Cancelled).await?;
            self.cancel_children(&steps).await?;
        }
        if let Some(parent) = &run.parent {
            self.child_ended(run, parent).await?;
        }
        if run.notify.is_some() {
            let message = NotificationMessage { run_id: run.id.clone(), attempt: 0, generation: run.generation };
            self.notifications.send(vec![message], Duration::ZERO).await?;
        }
        if run.due.is_some() {
            let done = RunTransition::status(vec![run.status], run.status);
            self.store.transition_run(&run.id, done).await?;
        }
        Ok(())
    }

    /// Cancels the run's unfinished steps; `running` ones too when the client cancelled
    /// (their results are then discarded because the completion's condition fails). Returns
    /// the steps as read before.
    async fn cancel_unstarted(&self, run: &Run, including_running: bool) -> Result<Vec<StepState>, EngineError> {
        let mut from =
            vec![StepStatus::Pending, StepStatus::Queued, StepStatus::WaitingApproval, StepStatus::WaitingCallback];
        if including_running {
            from.push(StepStatus::Running);
        }
        let now = self.clock.now();
        let steps = self.store.get_steps(&run.id).await?;
        for state in &steps {
            // A started map step is `running` without a lease: nobody runs it but its items,
            // which are cancelled as their messages find it ended.
            let started_map = state.status == StepStatus::Running && state.progress.map.is_some();
            if !from.contains(&state.status) && !started_map {
                continue;
            }
            let reason = format!("the run {}", run.status);
            let from = if started_map { vec![StepStatus::Running] } else { from.clone() };
            let cancel = ending(&state.step_id, from, StepStatus::Cancelled, None, reason, now);
            self.store.transition_step(&run.id, &state.step_id, cancel).await?;
        }
        Ok(steps)
    }
}
