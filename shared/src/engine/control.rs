//! Client actions on a running workflow: cancel it, approve or reject an approval step.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::transitions::follow_up_due;
use super::{Engine, EngineError};
use crate::domain::{
    ErrorKind, EventKind, Problem, Run, RunEvent, RunId, RunStatus, StepError, StepId, StepState, StepStatus,
    StepTransition, StepUpdate, TaskOutput, TenantId,
};

/// A person's answer to an approval step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    /// Who decided, in the caller's words (at most 256 characters); defaults to the
    /// tenant. The approving API key's id is recorded beside it whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub by: Option<String>,
    /// At most 4,096 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096)]
    pub comment: Option<String>,
}

/// The longest `by` an approval may carry, in characters.
pub const MAX_APPROVER_CHARS: usize = 256;
/// The longest approval `comment`, in characters.
pub const MAX_COMMENT_CHARS: usize = 4096;

impl ApprovalDecision {
    /// The problems with this decision's sizes, located in the request body.
    fn problems(&self) -> Vec<Problem> {
        let too_long = |text: &Option<String>, max: usize| text.as_ref().is_some_and(|text| text.chars().count() > max);
        let mut problems = Vec::new();
        if too_long(&self.by, MAX_APPROVER_CHARS) {
            problems.push(Problem::new("/by", format!("at most {MAX_APPROVER_CHARS} characters")));
        }
        if too_long(&self.comment, MAX_COMMENT_CHARS) {
            problems.push(Problem::new("/comment", format!("at most {MAX_COMMENT_CHARS} characters")));
        }
        problems
    }
}

impl Engine {
    /// Loads a run the tenant owns; another tenant's run does not exist for them.
    pub(super) async fn owned_run(&self, tenant: &TenantId, run_id: &RunId) -> Result<Run, EngineError> {
        match self.store.get_run(run_id).await? {
            Some(run) if &run.tenant == tenant => Ok(run),
            _ => Err(EngineError::NotFound(format!("run {run_id}"))),
        }
    }

    /// Cancels an unfinished run: no further steps start and the client is notified.
    pub async fn cancel(&self, tenant: &TenantId, run_id: &RunId) -> Result<(), EngineError> {
        let run = self.owned_run(tenant, run_id).await?;
        if run.status == RunStatus::Cancelled && run.follow_up_pending() {
            // A retry of a cancellation that stopped half-way: finish it.
            return self.run_ended(&run).await;
        }
        if run.status.is_terminal() {
            return Err(EngineError::Conflict(format!("run {run_id} already ended ({})", run.status)));
        }
        self.end_run(&run, RunStatus::Cancelled, None, None).await
    }

    /// Approves (`approved`) or rejects a step waiting for approval, as the API key
    /// `key_id`. A rejection fails the step, and with it the run unless the step is optional.
    /// A run that has ended takes no decisions (but the same decision repeated is taken).
    pub async fn decide_approval(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        step_id: &StepId,
        approved: bool,
        decision: ApprovalDecision,
        key_id: &str,
    ) -> Result<(), EngineError> {
        let problems = decision.problems();
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        let run = self.owned_run(tenant, run_id).await?;
        let steps = self.store.get_steps(run_id).await?;
        let Some(state) = steps.iter().find(|s| &s.step_id == step_id) else {
            return Err(EngineError::NotFound(format!("step {step_id} of run {run_id}")));
        };
        if state.status.is_terminal() && recorded_decision(state) == Some(approved) {
            // The same decision again (a client's retry): if the first one stopped before
            // what follows was done, finish it; either way it is taken.
            if state.follow_up_pending() {
                self.step_finished(&run, state.clone()).await?;
            }
            return Ok(());
        }
        if run.status.is_terminal() {
            return Err(EngineError::Conflict(format!("run {run_id} already ended ({})", run.status)));
        }
        if state.status != StepStatus::WaitingApproval {
            return Err(EngineError::Conflict(format!(
                "step {step_id} is not waiting for approval (it is {})",
                state.status
            )));
        }

        let now = self.clock.now();
        let by = decision.by.unwrap_or_else(|| tenant.to_string());
        let key_id = Some(key_id.to_owned());
        let output =
            TaskOutput::Approval { approved, by: by.clone(), comment: decision.comment, key_id: key_id.clone() };
        let (status, error) = if approved {
            (StepStatus::Succeeded, None)
        } else {
            (StepStatus::Failed, Some(StepError::new(ErrorKind::Rejected, format!("rejected by {by}"))))
        };
        let transition = StepTransition {
            from: vec![StepStatus::WaitingApproval],
            update: StepUpdate {
                status: Some(status),
                output: Some(output.to_json()),
                error,
                finished_at: Some(now),
                due: follow_up_due(now),
                ..StepUpdate::default()
            },
            events: vec![
                RunEvent::step(now, step_id, EventKind::ApprovalDecided { approved, by, key_id }),
                RunEvent::step_status(now, step_id, status, None),
            ],
            ..StepTransition::default()
        };
        match self.store.transition_step(run_id, step_id, transition).await? {
            Some(after) => self.step_finished(&run, after).await,
            None => Err(EngineError::Conflict(format!("step {step_id} was decided concurrently"))),
        }
    }
}

/// The decision a finished approval step records: approved or not; `None` when it was not
/// decided by a person (it timed out, was cancelled or skipped).
fn recorded_decision(state: &StepState) -> Option<bool> {
    let decided = state.progress.output.as_ref()?.get("approved")?.as_bool()?;
    matches!(state.status, StepStatus::Succeeded | StepStatus::Failed).then_some(decided)
}
