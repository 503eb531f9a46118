//! The single table's items (see docs/architecture.md) as serde structs mapped by
//! serde_dynamo, with their keys. Big JSON payloads are stored as text inline, or in the blob store with
//! only the key kept here (see [`Payload`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{
    BudgetLedger, ForkedFrom, NotifyTarget, ParentRef, RunEvent, RunId, RunStatus, StepError, StepId, StepState,
    StepStatus, TenantId, WorkflowRef,
};

pub(super) const RUN_SK: &str = "RUN";
pub(super) const STEP_SK_PREFIX: &str = "STEP#";
/// Map items sort under their own prefix, so reading a run's steps never reads its items.
pub(super) const ITEM_SK_PREFIX: &str = "ITEM#";
/// The partition of the `reconcile_by_due` index: one, since only items with something due
/// are in it (a sparse index: steps that wait, run, are queued or have a follow-up to do,
/// ended runs whose follow-up is not done) and the sweep reads it once a minute.
pub(super) const DUE_BUCKET: &str = "DUE";
pub(super) const RUNS_BY_TENANT: &str = "runs_by_tenant";
pub(super) const RECONCILE_BY_DUE: &str = "reconcile_by_due";
/// The run item's budget ledger attributes (see [`LedgerItem`]).
pub(super) const BUDGET_COMMITTED: &str = "budget_committed_usd";
pub(super) const BUDGET_RESERVATIONS: &str = "budget_reservations";
pub(super) const BUDGET_SETTLED: &str = "budget_settled";

/// The `reconcile_by_due` index keys for an item due at `due`: both absent when nothing is.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct DueKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_bucket: Option<String>,
    /// Epoch seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<i64>,
}

impl DueKeys {
    pub(super) fn new(due: Option<jiff::Timestamp>) -> Self {
        Self { due_bucket: due.map(|_| DUE_BUCKET.to_owned()), due_at: due.map(|due| due.as_second()) }
    }
}

pub(super) fn run_pk(run_id: &RunId) -> String {
    format!("RUN#{run_id}")
}

/// `STEP#<step>`, or for a map item `ITEM#<step>#<index, 6 digits>` (so items sort in order).
pub(super) fn step_sk(step_id: &StepId) -> String {
    match step_id.map_item() {
        Some((map, index)) => format!("{}{index:06}", items_sk_prefix(&map)),
        None => format!("{STEP_SK_PREFIX}{step_id}"),
    }
}

/// The prefix of the sort keys of a map step's items.
pub(super) fn items_sk_prefix(map: &StepId) -> String {
    format!("{ITEM_SK_PREFIX}{map}#")
}

/// The step or map item a sort key names (the inverse of [`step_sk`]).
pub(super) fn step_id_of_sk(sk: &str) -> Option<StepId> {
    if let Some(id) = sk.strip_prefix(STEP_SK_PREFIX) {
        return StepId::parse(id).ok().filter(|id| !id.is_item());
    }
    let (map, index) = sk.strip_prefix(ITEM_SK_PREFIX)?.split_once('#')?;
    Some(StepId::parse(map).ok()?.item(index.parse().ok()?))
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<jiff::Timestamp>,
    #[serde(flatten)]
    pub due_keys: DueKeys,
    /// TTL (epoch seconds): DynamoDB deletes the item after the retention period.
    pub expires_at: i64,
    /// The run-level history; step history lives on each step's item (written in the same
    /// request as the change it records).
    pub events: Vec<RunEvent>,
    #[serde(flatten)]
    pub budget: LedgerItem,
    /// The registered workflow version the run started from, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowRef>,
    /// Bumped by each retry (`domain::rerun`); absent on runs stored before retries existed.
    #[serde(default)]
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// A child run's parent run and step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    #[serde(default)]
    pub depth: u32,
}

/// The run's [`BudgetLedger`] as run item attributes, written whole at creation (so the map
/// and the list exist for the nested updates) and then only by `reserve_budget` and
/// `settle_budget`. At most one reservation and one settled entry per step, so bounded by
/// the step count like `released_sinks`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct LedgerItem {
    #[serde(default)]
    pub budget_committed_usd: f64,
    #[serde(default)]
    pub budget_reservations: BTreeMap<StepId, f64>,
    #[serde(default)]
    pub budget_settled: Vec<StepId>,
}

impl From<BudgetLedger> for LedgerItem {
    fn from(ledger: BudgetLedger) -> Self {
        Self {
            budget_committed_usd: ledger.committed_usd,
            budget_reservations: ledger.reservations,
            budget_settled: ledger.settled,
        }
    }
}

impl From<LedgerItem> for BudgetLedger {
    fn from(item: LedgerItem) -> Self {
        Self {
            committed_usd: item.budget_committed_usd,
            reservations: item.budget_reservations,
            settled: item.budget_settled,
        }
    }
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
    /// `reconcile_by_due` index keys, present while something is due.
    #[serde(flatten)]
    pub due_keys: DueKeys,
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
            due_keys: DueKeys::new(state.control.due),
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

/// `IDEM#<tenant>#<key>` / `IDEM`: a submission's or a retry's idempotency key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IdempotencyItem {
    pub pk: String,
    pub sk: String,
    pub run_id: RunId,
    pub request_hash: String,
    pub expires_at: i64,
    /// For a retry's key: the generation the retry moves the run to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
}

/// `RUN#<id>` / `HISTORY#<step sort key>#<generation>`: the history a step had in an earlier
/// generation, moved off the step's item when a retry reset it, so that a step item holds one
/// generation's history and stays as bounded as before retries existed. The run's history
/// reads every item of the run, these included.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct HistoryItem {
    pub pk: String,
    pub sk: String,
    pub events: Vec<RunEvent>,
    pub expires_at: i64,
}

/// The sort key of a step's history from `generation`, moved off by a retry.
pub(super) fn history_sk(step_id: &StepId, generation: u32) -> String {
    format!("HISTORY#{}#{generation:06}", step_sk(step_id))
}

pub(super) const IDEMPOTENCY_SK: &str = "IDEM";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::MAX_FALLBACKS;
    use crate::domain::{Attempt, ErrorKind, EventKind, MAX_IDLE_REQUEUES, MAX_STEP_CLAIMS, StepError};

    /// DynamoDB refuses items over 400 KB. This is what the bounds on retries, fallbacks,
    /// claims, error messages, step counts and inline payloads add up to for a step item at
    /// its worst (its JSON form, which is larger than DynamoDB's own measure).
    #[test]
    fn a_step_item_at_every_bound_at_once_still_fits_dynamodb() {
        let long_id = |n: usize| StepId::parse(&format!("s{n:0>63}")).unwrap();
        let error = StepError::new(ErrorKind::RateLimited, "x".repeat(10_000));
        let calls = (MAX_FALLBACKS + 1) * 11; // every model, 1 + 10 retries each
        let attempt = Attempt {
            provider: "p".repeat(32),
            model: "m".repeat(128),
            latency_ms: u64::MAX,
            error: Some(error.clone()),
        };
        let mut state = StepState::new(long_id(0), 99, (1..100).map(long_id).collect());
        state.control.released_by = (1..100).map(long_id).collect();
        state.progress.attempts = vec![attempt.clone(); calls];
        state.progress.error = Some(error.clone());
        let now = jiff::Timestamp::now();
        let claims = (MAX_STEP_CLAIMS + MAX_IDLE_REQUEUES) as usize;
        let mut item = StepItem::new(&RunId::generate(now), state, i64::MAX);
        item.output = Some(Payload::Json("y".repeat(crate::adapters::dynamodb::INLINE_LIMIT)));
        let called = EventKind::ProviderCalled {
            provider: attempt.provider.clone(),
            model: attempt.model.clone(),
            latency_ms: u64::MAX,
            error: Some(error.clone()),
        };
        item.events = std::iter::repeat_n(RunEvent::step(now, &long_id(0), called), calls)
            .chain(std::iter::repeat_n(RunEvent::step_status(now, &long_id(0), StepStatus::Running, None), claims))
            .collect();
        let size = serde_json::to_vec(&item).unwrap().len();
        assert!(size < 400_000, "a step item can reach {size} bytes");
    }
}
