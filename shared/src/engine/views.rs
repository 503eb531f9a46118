//! Read models: a run as clients see it (`GET /v1/runs/{id}` and the notification body),
//! the tenant's run list and the run's history.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Engine, EngineError};
use crate::domain::{
    ForkedFrom, ParentRef, Run, RunEvent, RunId, RunStatus, StepError, StepProgress, StepState, StepStatus, Task,
    TenantId, Usage, WorkflowRef,
};
use crate::ports::RunPage;

/// A run with every step's progress and the totals so far.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunView {
    #[schema(value_type = String, example = "run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub id: RunId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The registered workflow version the run was started from, when the submission named
    /// one; absent for a definition sent inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowRef>,
    /// `waiting` when every unfinished step waits for a person or a provider callback.
    pub status: RunStatus,
    /// The input as submitted: any JSON.
    #[schema(value_type = Value)]
    pub input: Value,
    /// The rendered workflow `output`, once the run succeeded: the JSON the template gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    pub steps: Vec<StepView>,
    pub totals: Totals,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<jiff::Timestamp>,
    /// How many times the run was retried (absent when never).
    #[serde(skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// The run this one was forked from, and the steps reused from it (their cost is not
    /// in `totals`: it was paid by that run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// For a child run, the run and `workflow` step that started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// The child runs its `workflow` steps started, in step order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub children: Vec<RunId>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// One step as clients see it: its id, task and status, and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StepView {
    #[schema(value_type = String)]
    pub id: String,
    pub task: Task,
    pub status: StepStatus,
    #[serde(flatten)]
    pub progress: StepProgress,
    /// False when the model that answered has no price in the price table: `cost_usd` is
    /// then `null`, as its cost is unknown.
    pub cost_known: bool,
}

/// Usage and cost summed over every step the run ran (a forked run's reused steps were paid
/// for by the run they come from).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Totals {
    pub usage: Usage,
    /// The known costs summed, in USD: with `cost_known` false, a lower bound.
    pub cost_usd: f64,
    /// False when some step's cost is unknown (its model has no price in the price table).
    pub cost_known: bool,
    pub model_calls: usize,
}

impl Default for Totals {
    /// Nothing spent, and that is known.
    fn default() -> Self {
        Self { usage: Usage::default(), cost_usd: 0.0, cost_known: true, model_calls: 0 }
    }
}

impl RunView {
    pub fn new(run: Run, mut steps: Vec<StepState>) -> Self {
        let mut totals = Totals::default();
        let mut views = Vec::with_capacity(steps.len());
        for definition in &run.definition.steps {
            let Some(position) = steps.iter().position(|s| s.step_id == definition.id) else { continue };
            let state = steps.swap_remove(position);
            let progress = state.progress;
            let cost_known = progress.cost_usd.is_known();
            if progress.reused_from.is_none() {
                if let Some(usage) = progress.usage {
                    totals.usage += usage;
                }
                totals.cost_usd += progress.cost_usd.usd().unwrap_or(0.0);
                totals.cost_known &= cost_known;
                totals.model_calls += progress.attempts.len();
            }
            views.push(StepView {
                id: state.step_id.to_string(),
                task: definition.task,
                status: state.status,
                progress,
                cost_known,
            });
        }
        let children = views.iter().filter_map(|view| view.progress.child_run.clone()).collect();
        // Nothing queued or running, and something waiting: only a person or a callback can
        // move the run on (pending steps wait behind those).
        let only_waits_left = views.iter().any(|s| s.status.is_waiting())
            && !views.iter().any(|s| matches!(s.status, StepStatus::Queued | StepStatus::Running));
        let status = if run.status == RunStatus::Running && only_waits_left { RunStatus::Waiting } else { run.status };
        Self {
            id: run.id,
            name: run.definition.name,
            workflow: run.workflow,
            status,
            input: run.input,
            output: run.output,
            error: run.error,
            steps: views,
            totals,
            created_at: run.created_at,
            updated_at: run.updated_at,
            finished_at: run.finished_at,
            generation: run.generation,
            forked_from: run.forked_from,
            parent: run.parent,
            children,
        }
    }
}

impl Engine {
    /// The tenant's run with all its steps.
    pub async fn run_view(&self, tenant: &TenantId, run_id: &RunId) -> Result<RunView, EngineError> {
        let run = self.owned_run(tenant, run_id).await?;
        let steps = self.store.get_steps(run_id).await?;
        Ok(RunView::new(run, steps))
    }

    /// The tenant's runs, newest first.
    pub async fn list_runs(
        &self,
        tenant: &TenantId,
        after: Option<&RunId>,
        limit: usize,
    ) -> Result<RunPage, EngineError> {
        Ok(self.store.list_runs(tenant, after, limit).await?)
    }

    /// The run's history, oldest first.
    pub async fn run_events(&self, tenant: &TenantId, run_id: &RunId) -> Result<Vec<RunEvent>, EngineError> {
        self.owned_run(tenant, run_id).await?;
        Ok(self.store.list_events(run_id).await?)
    }
}
