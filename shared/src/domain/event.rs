//! The run's audit history: who or what changed state, provider calls, deliveries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{RunId, StepId};
use super::run::RunStatus;
use super::step::{StepError, StepStatus};

/// One entry of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    pub at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub step_id: Option<StepId>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunSubmitted,
    RunFinished {
        status: RunStatus,
    },
    StepStatusChanged {
        status: StepStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ProviderCalled {
        provider: String,
        model: String,
        latency_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    /// An async provider accepted the step's job; its webhook will complete the step.
    JobSubmitted {
        provider: String,
        model: String,
        job_id: String,
    },
    /// The job's result arrived (by webhook, or by the sweep's poll).
    JobFinished {
        provider: String,
        job_id: String,
        /// The webhook's `webhook-id`; absent when the sweep polled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery_id: Option<String>,
        /// Where the provider's raw output was archived.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived_at: Option<String>,
    },
    ApprovalDecided {
        approved: bool,
        by: String,
        /// The id of the API key that decided (absent on events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    NotificationDelivered {
        attempt: u32,
        http_status: u16,
    },
    NotificationFailed {
        attempt: u32,
        reason: String,
        will_retry: bool,
    },
    /// A retry reopened the ended run: these steps run again, the others keep their results.
    RunRetried {
        /// The run's generation from now on (1 after the first retry).
        generation: u32,
        #[schema(value_type = Vec<String>)]
        steps: Vec<StepId>,
    },
    /// The run was created as a fork of another run, reusing the outputs of `reused`.
    RunForked {
        #[schema(value_type = String)]
        from: RunId,
        #[schema(value_type = Vec<String>)]
        reused: Vec<StepId>,
    },
}

impl RunEvent {
    pub fn run(at: jiff::Timestamp, kind: EventKind) -> Self {
        Self { at, step_id: None, kind }
    }

    pub fn step(at: jiff::Timestamp, step_id: &StepId, kind: EventKind) -> Self {
        Self { at, step_id: Some(step_id.clone()), kind }
    }

    pub fn step_status(at: jiff::Timestamp, step_id: &StepId, status: StepStatus, reason: Option<String>) -> Self {
        Self::step(at, step_id, EventKind::StepStatusChanged { status, reason })
    }
}
