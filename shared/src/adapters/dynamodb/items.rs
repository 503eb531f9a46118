//! The single table's items (see docs/architecture.md) as serde structs mapped by
//! serde_dynamo, with their keys. Big JSON payloads are stored as text inline, or in the blob store with
//! only the key kept here (see [`Payload`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{NotifyTarget, RunEvent, RunId, RunStatus, StepError, StepId, StepState, StepStatus, TenantId};

pub(super) const RUN_SK: &str = "RUN";
pub(super) const STEP_SK_PREFIX: &str = "STEP#";
/// The partition of the `waits_by_deadline` index: one, since only steps that wait are in
/// it (a sparse index) and the sweep reads it once a minute.
pub(super) const WAIT_BUCKET: &str = "WAIT";
pub(super) const RUNS_BY_TENANT: &str = "runs_by_tenant";
pub(super) const WAITS_BY_DEADLINE: &str = "waits_by_deadline";

pub(super) fn run_pk(run_id: &RunId) -> String {
    format!("RUN#{run_id}")
}

pub(super) fn step_sk(step_id: &StepId) -> String {
    format!("{STEP_SK_PREFIX}{step_id}")
}

pub(super) fn idempotency_pk(tenant: &TenantId, key: &str) -> String {
    format!("IDEM#{tenant}#{key}")
}

/// A JSON document as stored: its text inline, or the blob-store key it was moved to when
/// too big for an item. Text rather than a DynamoDB map because it is never queried, its
/// size is known exactly, and DynamoDB's 32-level nesting limit does not apply to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Payload {
    Json(String),
    Blob(String),
}

/// `RUN#<id>` / `RUN`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RunItem {
    pub pk: String,
    pub sk: String,
    /// `runs_by_tenant` index keys: the tenant, and the run id (a ULID, so it sorts by time).
    pub tenant_pk: String,
    pub created_sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    pub id: RunId,
    pub tenant: TenantId,
    pub status: RunStatus,
    pub definition: Payload,
    pub input: Payload,
    pub notify: Option<NotifyTarget>,
    pub output: Option<Payload>,
    pub error: Option<StepError>,
    pub pending_sinks: u32,
    /// Sinks already counted, so a repeated release is a no-op.
    pub released_sinks: Vec<StepId>,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
    pub finished_at: Option<jiff::Timestamp>,
    /// TTL (epoch seconds): DynamoDB deletes the item after the retention period.
    pub expires_at: i64,
    /// The run-level history; step history lives on each step's item (written in the same
    /// request as the change it records).
    pub events: Vec<RunEvent>,
}

/// `RUN#<id>` / `STEP#<step>`: the step's state, one attribute per field of [`StepState`]
/// (flattened, so the item's attribute names are the state's), with its output stored as a
/// [`Payload`], and the attributes only the table needs.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StepItem {
    pub pk: String,
    pub sk: String,
    /// Stored without its output, which is [`Self::output`].
    #[serde(flatten)]
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Payload>,
    /// The lease's end in epoch milliseconds: conditions compare numbers, not timestamps
    /// as text (whose fraction digits vary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<i64>,
    /// `waits_by_deadline` index keys, present only while the step waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_deadline: Option<i64>,
    pub expires_at: i64,
    pub events: Vec<RunEvent>,
}

impl StepItem {
    /// A step as created; its output is set later by transitions.
    pub(super) fn new(run_id: &RunId, mut state: StepState, expires_at: i64) -> Self {
        state.progress.output = None;
        Self {
            pk: run_pk(run_id),
            sk: step_sk(&state.step_id),
            lease_until_ms: state.control.lease.as_ref().map(|lease| lease.until.as_millisecond()),
            wait_bucket: state.control.deadline.map(|_| WAIT_BUCKET.to_owned()),
            wait_deadline: state.control.deadline.map(|deadline| deadline.as_second()),
            output: None,
            state,
            expires_at,
            events: Vec::new(),
        }
    }

    /// The domain's view of the item, with its output already loaded.
    pub(super) fn into_state(self, output: Option<Value>) -> StepState {
        let mut state = self.state;
        state.progress.output = output;
        // A release that counted the last dependency leaves the step `pending` with nothing
        // left to wait for: it is queued (see `RunStore::release_step`).
        if state.status == StepStatus::Pending && state.control.pending_deps == 0 && !state.control.blocked {
            state.status = StepStatus::Queued;
        }
        state
    }
}

/// `IDEM#<tenant>#<key>` / `IDEM`: a submission's idempotency key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IdempotencyItem {
    pub pk: String,
    pub sk: String,
    pub run_id: RunId,
    pub request_hash: String,
    pub expires_at: i64,
}

pub(super) const IDEMPOTENCY_SK: &str = "IDEM";
