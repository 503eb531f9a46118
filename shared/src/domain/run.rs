//! A run as stored: the definition and input it was submitted with, and where it stands.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{Display, IntoStaticStr};
use utoipa::ToSchema;

use super::budget::BudgetLedger;
use super::definition::WorkflowDefinition;
use super::ids::{RunId, StepId, TenantId};
use super::registry::WorkflowRef;
use super::step::StepError;

/// Where a run stands. `waiting` is never stored: it is derived when every unfinished step
/// waits on a person or a provider callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, IntoStaticStr, Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const UNFINISHED: [RunStatus; 3] = [RunStatus::Queued, RunStatus::Running, RunStatus::Waiting];

    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }

    /// The status as written in JSON, e.g. `succeeded`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where the run's result is sent when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// The URL that receives a signed POST when the run ends.
    #[schema(example = "https://example.com/hooks/chorus")]
    pub url: String,
}

/// A run as stored: the definition and input it was submitted with and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub tenant: TenantId,
    pub status: RunStatus,
    pub definition: WorkflowDefinition,
    pub input: Value,
    pub notify: Option<NotifyTarget>,
    pub output: Option<Value>,
    pub error: Option<StepError>,
    /// Sinks (steps nothing depends on) not yet finished; the run completes at zero.
    pub pending_sinks: u32,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
    pub finished_at: Option<jiff::Timestamp>,
    /// Set when the run ends, cleared once what follows its end is done (unstarted steps
    /// cancelled, the notification queued): until then the reconciler re-drives it from
    /// this time on.
    #[serde(default)]
    pub due: Option<jiff::Timestamp>,
    /// What the run has spent and reserved against its `budget_usd` (untouched without one).
    #[serde(default)]
    pub budget: BudgetLedger,
    /// The registered workflow version the run was started from, when the submission named
    /// one (`triage@3`); `None` for a definition sent inline.
    #[serde(default)]
    pub workflow: Option<WorkflowRef>,
    /// How many times the run was retried (`POST /v1/runs/{id}/retry`): each retry bumps it
    /// in the write that reopens the run, and each step it re-runs records it, so a reset that
    /// is re-driven after a crash never resets a step twice (`domain::rerun`).
    #[serde(default)]
    pub generation: u32,
    /// The run this one was forked from (`POST /v1/runs/{id}/fork`), with the steps reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// For a child run (a `workflow` step's), the run and step that started it.
    #[serde(default)]
    pub parent: Option<ParentRef>,
    /// How many parents above this run: 0 for a run a client submitted.
    #[serde(default)]
    pub depth: u32,
}

/// Where a forked run came from: the source run, and the steps whose outputs it reused
/// instead of running them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForkedFrom {
    #[schema(value_type = String, example = "run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub run_id: RunId,
    /// The steps created already succeeded with the source's outputs.
    #[schema(value_type = Vec<String>)]
    pub reused: Vec<StepId>,
}

/// The run and step a child run completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParentRef {
    #[schema(value_type = String, example = "run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub run_id: RunId,
    #[schema(value_type = String, example = "triage")]
    pub step_id: StepId,
}

/// The deepest a run may sit below the run a client submitted (a child of a child of a
/// child): with [`MAX_CHILD_STEPS`], one submission makes at most 1 + 10 + 100 + 1,000 runs.
pub const MAX_RUN_DEPTH: u32 = 3;
/// The most `workflow` steps one workflow may have.
pub const MAX_CHILD_STEPS: usize = 10;

impl Run {
    /// An ended run whose follow-up is not known to be done.
    pub fn follow_up_pending(&self) -> bool {
        self.status.is_terminal() && self.due.is_some()
    }

    /// An unfinished run with `due` set: a retry reopened it and has not finished resetting
    /// its steps (the reconciler re-drives the reset from this time on).
    pub fn reset_pending(&self) -> bool {
        !self.status.is_terminal() && self.due.is_some()
    }
}
