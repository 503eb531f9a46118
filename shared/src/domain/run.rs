//! The state of a run and its steps as stored, with the status machine of DESIGN §4.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::definition::WorkflowDefinition;
use super::ids::{RunId, StepId, TenantId};

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

/// Where a step stands: `pending → queued → running → (waiting_*) → terminal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for dependencies.
    Pending,
    /// Dependencies done; a message is on its way to a worker.
    Queued,
    Running,
    WaitingCallback,
    WaitingApproval,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub const UNFINISHED: [StepStatus; 5] = [
        StepStatus::Pending,
        StepStatus::Queued,
        StepStatus::Running,
        StepStatus::WaitingCallback,
        StepStatus::WaitingApproval,
    ];

    pub fn is_terminal(self) -> bool {
        !Self::UNFINISHED.contains(&self)
    }

    pub fn is_waiting(self) -> bool {
        matches!(self, StepStatus::WaitingCallback | StepStatus::WaitingApproval)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Queued => "queued",
            StepStatus::Running => "running",
            StepStatus::WaitingCallback => "waiting_callback",
            StepStatus::WaitingApproval => "waiting_approval",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for StepStatus {
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

/// A step's lease: the worker holding it and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until: jiff::Timestamp,
}

/// Tokens a model call consumed. `estimated` when the provider did not report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub estimated: bool,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.estimated |= other.estimated;
    }
}

/// Why a step or run failed, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepError {
    /// Stable, machine-readable: `rate_limited`, `invalid_request`, `rejected`, `template`, …
    pub kind: String,
    pub message: String,
}

impl StepError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind: kind.into(), message: message.into() }
    }
}

/// One call to one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    pub latency_ms: u64,
    /// Absent when the call succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// A provider job a step waits on: an async call whose result arrives by webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub provider: String,
    pub model: String,
    /// The provider's id for the job (a Replicate prediction id).
    pub id: String,
    /// SHA-256 (hex) of the secret in the job's callback URL; the URL itself is not stored.
    pub token_sha256: String,
}

/// A step's state as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step_id: StepId,
    pub status: StepStatus,
    /// Times a worker claimed the step.
    pub attempt: u32,
    pub lease: Option<Lease>,
    /// While waiting: when the wait times out and the sweep fails the step.
    #[serde(default)]
    pub deadline: Option<jiff::Timestamp>,
    /// Dependencies not yet finished; the step is queued when this reaches zero.
    pub pending_deps: u32,
    /// The provider job the step waits on, once one was submitted.
    #[serde(default)]
    pub job: Option<JobRef>,
    /// Set when a dependency ended without succeeding: the step will be skipped.
    pub blocked: bool,
    /// Dependencies whose completion was already counted, so a redelivered release is a no-op.
    pub released_by: Vec<StepId>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub attempts: Vec<Attempt>,
    pub usage: Option<Usage>,
    pub cost_usd: f64,
    pub latency_ms: Option<u64>,
    pub output: Option<Value>,
    pub error: Option<StepError>,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
}

impl StepState {
    /// A step as created at submission: queued when it has no dependencies.
    pub fn new(step_id: StepId, pending_deps: u32) -> Self {
        Self {
            step_id,
            status: if pending_deps == 0 { StepStatus::Queued } else { StepStatus::Pending },
            attempt: 0,
            lease: None,
            deadline: None,
            pending_deps,
            job: None,
            blocked: false,
            released_by: Vec::new(),
            provider: None,
            model: None,
            attempts: Vec::new(),
            usage: None,
            cost_usd: 0.0,
            latency_ms: None,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
        }
    }
}
