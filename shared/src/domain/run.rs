//! A run as stored: the definition and input it was submitted with, and where it stands.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::definition::WorkflowDefinition;
use super::ids::{RunId, TenantId};
use super::step::StepError;

/// Where a run stands. `waiting` is never stored: it is derived when every unfinished step
/// waits on a person or a provider callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
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

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
}
