//! Sub-workflows: a `workflow` step runs a registered workflow as a child run of the same
//! tenant and completes with the child's output.
//!
//! - **Pinned at submission.** A run's `workflow` steps name the version registered when the
//!   run was submitted (`triage` is stored as `triage@4`), so what a run does is fixed when
//!   it starts.
//! - **One child per step.** The step's start submits the child with an idempotency key made
//!   of the parent run, step and generation: a redelivered start finds the same child. The
//!   step then waits (`waiting_callback`, its `child_run` set) until `timeout_ms` (default 7
//!   days).
//! - **The child's end completes the step.** A child run's follow-up (it always has one)
//!   completes its parent step, which moves the parent on. A child that ended before its
//!   parent step waited for it is found by the start itself, right after it waits.
//! - **Cancellation goes down.** A parent that ends without succeeding, or a step whose wait
//!   expires, cancels the children still running.
//! - **Bounded.** A run sits at most [`MAX_RUN_DEPTH`] levels below the run a client
//!   submitted, and a workflow has at most `MAX_CHILD_STEPS` `workflow` steps.

use serde_json::Value;

use super::submit::Submission;
use super::transitions::follow_up_due;
use super::views::RunView;
use super::{Engine, EngineError};
use crate::domain::{
    Cost, ErrorKind, MAX_RUN_DEPTH, ParentRef, Problem, Run, RunEvent, RunId, RunStatus, StepDefinition, StepError,
    StepId, StepState, StepStatus, StepTransition, StepUpdate, Task, TemplateContext, TenantId, WorkflowDefinition,
};

impl Engine {
    /// Pins each `workflow` step to the version registered now (`triage` → `triage@4`), or
    /// returns a problem for each that names no registered version.
    pub(super) async fn pin_children(
        &self,
        tenant: &TenantId,
        definition: &mut WorkflowDefinition,
    ) -> Result<Result<(), Vec<Problem>>, EngineError> {
        let mut problems = Vec::new();
        for (index, step) in definition.steps.iter_mut().enumerate() {
            let Some(reference) = step.workflow.as_deref().filter(|_| step.task == Task::Workflow) else { continue };
            match self.resolve_workflow(tenant, reference).await? {
                Ok((found, _)) => step.workflow = Some(format!("{}@{}", found.name, found.version)),
                Err(problem) => {
                    problems.push(Problem::new(format!("/workflow/steps/{index}/workflow"), problem.detail))
                }
            }
        }
        Ok(if problems.is_empty() { Ok(()) } else { Err(problems) })
    }

    /// Starts a queued `workflow` step: submits its child run (once, whatever the
    /// deliveries) and waits for it.
    pub(super) async fn start_child(
        &self,
        run: &Run,
        step: &StepDefinition,
        context: &TemplateContext,
    ) -> Result<(), EngineError> {
        if run.depth >= MAX_RUN_DEPTH {
            let error = StepError::new(
                ErrorKind::LimitExceeded,
                format!("sub-workflows nest at most {MAX_RUN_DEPTH} levels below the run a client submitted"),
            );
            return self.fail_unclaimed(run, step, error).await;
        }
        let input = match &step.input {
            Some(template) => match self.templates.render_value(&Value::String(template.clone()), context) {
                Ok(input) => input,
                Err(err) => {
                    let kind = if err.is_too_large() { ErrorKind::TemplateTooLarge } else { ErrorKind::Template };
                    let error = StepError::new(kind, format!("`input` could not be rendered: {err}"));
                    return self.fail_unclaimed(run, step, error).await;
                }
            },
            None => Value::Object(Default::default()),
        };
        let reference = step.workflow.clone().unwrap_or_default();
        let submission = Submission { workflow: Value::String(reference), input, notify: None };
        let key = format!("child:{}:{}:{}", run.id, step.id, run.generation);
        let parent = ParentRef { run_id: run.id.clone(), step_id: step.id.clone() };
        let child = match self.submit_run(&run.tenant, submission, Some(&key), Some((parent, run.depth + 1))).await {
            Ok(submitted) => submitted.run_id,
            Err(EngineError::Invalid(problems)) => {
                let listed: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.pointer, p.detail)).collect();
                let error =
                    StepError::new(ErrorKind::ChildFailed, format!("the child run was refused: {}", listed.join("; ")));
                return self.fail_unclaimed(run, step, error).await;
            }
            Err(other) => return Err(other),
        };

        let now = self.clock.now();
        let waiting = StepTransition {
            from: vec![StepStatus::Queued],
            update: StepUpdate {
                status: Some(StepStatus::WaitingCallback),
                due: Some(now + step.wait_timeout()),
                child_run: Some(child.clone()),
                started_at: Some(now),
                ..StepUpdate::default()
            },
            events: vec![RunEvent::step_status(
                now,
                &step.id,
                StepStatus::WaitingCallback,
                Some(format!("child run {child} started")),
            )],
            ..StepTransition::default()
        };
        if self.store.transition_step(&run.id, &step.id, waiting).await?.is_none() {
            return Ok(()); // another delivery got there first
        }
        self.mark_run_started(run).await?;
        // A child that ended before this step waited for it found nothing to complete.
        if let Some(ended) = self.store.get_run(&child).await?.filter(|child| child.status.is_terminal()) {
            self.complete_parent_step(run, &step.id, &ended).await?;
        }
        Ok(())
    }

    async fn fail_unclaimed(&self, run: &Run, step: &StepDefinition, error: StepError) -> Result<(), EngineError> {
        let reason = error.message.clone();
        self.settle_unclaimed(run, step, StepStatus::Failed, Some(error), reason).await
    }

    /// Part of an ended child run's follow-up: completes the step that waits for it.
    pub(super) async fn child_ended(&self, child: &Run, parent: &ParentRef) -> Result<(), EngineError> {
        let Some(parent_run) = self.store.get_run(&parent.run_id).await? else { return Ok(()) };
        // Boxed: completing the parent step may end the parent run, whose own follow-up may
        // complete its parent's step in turn (as deep as runs nest).
        Box::pin(self.complete_parent_step(&parent_run, &parent.step_id, child)).await
    }

    /// Completes `step_id` of `parent` with its child's end: the child's output (or `{}`) and
    /// its totals when it succeeded, `child_failed` otherwise. Only the step waiting for this
    /// very child is completed (after a retry, the step waits for another).
    async fn complete_parent_step(&self, parent: &Run, step_id: &StepId, child: &Run) -> Result<(), EngineError> {
        let Some(state) = self.store.get_step(&parent.id, step_id).await? else { return Ok(()) };
        if state.progress.child_run.as_ref() != Some(&child.id) {
            return Ok(());
        }
        if state.status.is_terminal() {
            return if state.follow_up_pending() { self.step_finished(parent, state).await } else { Ok(()) };
        }
        let now = self.clock.now();
        let totals = RunView::new(child.clone(), self.store.get_steps(&child.id).await?).totals;
        let mut update = StepUpdate {
            usage: Some(totals.usage),
            cost_usd: Some(if totals.cost_known { Cost::Known(totals.cost_usd) } else { Cost::Unknown }),
            finished_at: Some(now),
            due: follow_up_due(now),
            ..StepUpdate::default()
        };
        let reason = if child.status == RunStatus::Succeeded {
            update.status = Some(StepStatus::Succeeded);
            update.output = Some(child.output.clone().unwrap_or_else(|| Value::Object(Default::default())));
            None
        } else {
            let why = child.error.as_ref().map_or(String::new(), |error| format!(": {}", error.message));
            let error = StepError::new(ErrorKind::ChildFailed, format!("child run {} {}{why}", child.id, child.status));
            update.status = Some(StepStatus::Failed);
            let reason = error.message.clone();
            update.error = Some(error);
            Some(reason)
        };
        let status = update.status.unwrap_or(StepStatus::Failed);
        let completion = StepTransition {
            from: vec![StepStatus::WaitingCallback],
            update,
            events: vec![RunEvent::step_status(now, step_id, status, reason)],
            ..StepTransition::default()
        };
        match self.store.transition_step(&parent.id, step_id, completion).await? {
            Some(done) => self.step_finished(parent, done).await,
            None => Ok(()),
        }
    }

    /// Cancels the children of `steps` still running (their parent ended, or their step's
    /// wait expired). Idempotent: an ended child is left as it is.
    pub(super) async fn cancel_children(&self, steps: &[StepState]) -> Result<(), EngineError> {
        for step in steps.iter().filter(|step| step.status != StepStatus::Succeeded) {
            if let Some(child) = &step.progress.child_run {
                self.cancel_child(child).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn cancel_child(&self, child: &RunId) -> Result<(), EngineError> {
        match self.store.get_run(child).await? {
            // Boxed: the child's end cancels its own children in turn.
            Some(run) if !run.status.is_terminal() => {
                Box::pin(self.end_run(&run, RunStatus::Cancelled, None, None)).await
            }
            _ => Ok(()),
        }
    }
}
