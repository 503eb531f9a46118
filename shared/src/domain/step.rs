//! A step's state as stored, written once: where it stands ([`StepStatus`]), what it did
//! ([`StepProgress`], what clients see) and how the engine runs it exactly once
//! ([`StepControl`]). The storage item and the client view flatten these structs rather
//! than repeating their fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{Display, IntoStaticStr};
use utoipa::ToSchema;

use super::cost::Cost;
use super::ids::{RunId, StepId};

/// Where a step stands: `pending → queued → running → (waiting_*) → terminal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, IntoStaticStr, Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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

    pub const FINISHED: [StepStatus; 4] =
        [StepStatus::Succeeded, StepStatus::Failed, StepStatus::Skipped, StepStatus::Cancelled];

    pub fn is_terminal(self) -> bool {
        Self::FINISHED.contains(&self)
    }

    pub fn is_waiting(self) -> bool {
        matches!(self, StepStatus::WaitingCallback | StepStatus::WaitingApproval)
    }

    /// The status as written in JSON, e.g. `waiting_approval`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Claims a step may take. A claim writes history, so this bounds the step's item: at most
/// 11 attempts on each of 5 candidates (each may be a claim of its own when the step is
/// handed back to wait), [`MAX_IDLE_REQUEUES`], and workers that died holding it. Beyond it
/// the step fails as undeliverable.
pub const MAX_STEP_CLAIMS: u32 = 100;

/// Hand-backs without a provider call a step may take before it fails `deadline_exceeded`.
pub const MAX_IDLE_REQUEUES: u32 = 20;

/// A step's state as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step_id: StepId,
    pub status: StepStatus,
    #[serde(flatten)]
    pub progress: StepProgress,
    #[serde(flatten)]
    pub control: StepControl,
}

impl StepState {
    /// A step as created at submission, from its place in the plan: queued when it waits
    /// for nothing.
    pub fn new(step_id: StepId, dependencies: u32, dependants: Vec<StepId>) -> Self {
        Self {
            step_id,
            status: if dependencies == 0 { StepStatus::Queued } else { StepStatus::Pending },
            progress: StepProgress::default(),
            control: StepControl { pending_deps: dependencies, dependants, ..StepControl::default() },
        }
    }

    /// Whether no other step waits for this one: its end counts towards the run's end.
    pub fn is_sink(&self) -> bool {
        self.control.dependants.is_empty()
    }

    /// A finished step whose follow-up (releasing its dependants, ending the run) is not
    /// known to be done: whoever finds it so re-drives the follow-up, which is idempotent.
    pub fn follow_up_pending(&self) -> bool {
        self.status.is_terminal() && self.control.due.is_some()
    }
}

/// What a step did: its provider calls and their outcome. This is what clients see of a
/// step, next to its id, task and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepProgress {
    /// The provider and model that produced the output (after any fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Every model call, failed ones included.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the call that answered cost in USD, at the price table's price (0 for the
    /// `local` models, and until a call answers). `null` when its model has no price there:
    /// the call was made and its cost is unknown, not zero.
    #[serde(default)]
    #[schema(value_type = Option<f64>, required = true)]
    pub cost_usd: Cost,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The normalized task output (`{text, finish_reason}`, `{label, confidence, scores}`, …);
    /// while an approval waits, `{question}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<jiff::Timestamp>,
    /// A map step's items once it started them: how many, how many have not ended, how
    /// many failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapProgress>,
    /// On a forked run's step that was not run again: the run whose output it reuses. Its
    /// cost was paid there and is not counted in this run's totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub reused_from: Option<RunId>,
    /// A `workflow` step's child run, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub child_run: Option<RunId>,
}

/// Where a map step's items stand. `pending` and `failed` are counted down and up by each
/// item's end, exactly once per item (see `RunStore::count_item`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MapProgress {
    pub items: u32,
    /// Items that have not ended.
    pub pending: u32,
    pub failed: u32,
}

/// How the engine runs a step exactly once: its claims, the countdown of its dependencies,
/// what it waits for. Never shown to clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepControl {
    /// Times a worker claimed the step.
    pub attempt: u32,
    /// Held while `running`.
    pub lease: Option<Lease>,
    /// When the reconciler (the scheduled sweep) looks at the step next, if nothing else has
    /// moved it by then: a wait's deadline, the end of a running step's lease, a grace period
    /// for a queued step's message, or, on a finished step, its follow-up not yet done
    /// ([`StepState::follow_up_pending`]). `None` when nothing is due: a pending step waits
    /// on its dependencies, a finished one whose follow-up is done waits on nothing.
    pub due: Option<jiff::Timestamp>,
    /// Hand-backs to the queue without a provider call (a rate-limit wait, an invocation
    /// with no time left): capped by [`MAX_IDLE_REQUEUES`], so a step cannot spin.
    #[serde(default)]
    pub idle_requeues: u32,
    /// Dependencies not yet finished; the step is queued when this reaches zero.
    pub pending_deps: u32,
    /// Set when a dependency ended without succeeding: the step will be skipped.
    pub blocked: bool,
    /// Dependencies whose end was already counted, so a redelivered release is a no-op.
    pub released_by: Vec<StepId>,
    /// The steps that wait for this one, fixed at submission (the plan, so finishing a step
    /// never re-reads the workflow's templates).
    pub dependants: Vec<StepId>,
    /// The provider job the step waits on, once one was submitted.
    pub job: Option<JobRef>,
    /// On a map item: its end was counted on its map step (`RunStore::count_item`), so a
    /// re-driven follow-up does not count it twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub counted: bool,
    /// The run generation whose retry last reset the step (0: never reset). A reset applies
    /// only to a step of an older generation, so a re-driven retry resets each step once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// A step's lease: the worker holding it and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until: jiff::Timestamp,
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

/// Why a step or run failed, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The longest message a [`StepError`] keeps, in bytes: errors are stored on every attempt,
/// so their size bounds the step's item (see `MAX_STEP_CLAIMS`).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

impl StepError {
    /// An error with `message` cut to [`MAX_ERROR_MESSAGE_BYTES`] (on a character boundary).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut end = MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Self { kind, message }
    }
}

/// What kind of failure a [`StepError`] is: stable and machine-readable. The first group is
/// the provider error taxonomy (one kind per `ProviderError` variant), the second what the
/// engine itself fails steps and runs with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, IntoStaticStr, Display, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorKind {
    /// The provider said 429 (with its `Retry-After`).
    RateLimited,
    /// The provider is busy or warming up (Anthropic 529, Hugging Face 503 "loading").
    Overloaded,
    Timeout,
    /// A 5xx or a lost connection.
    Transient,
    InvalidRequest,
    /// The provider refused our credentials.
    Auth,
    QuotaExhausted,
    ContentFiltered,
    /// The provider's answer could not be understood.
    MalformedResponse,
    /// The model answered, but not with what the step asks for (e.g. its `schema`).
    InvalidOutput,
    /// The call's estimated cost would exceed the run's `budget_usd`; it was not made.
    BudgetExceeded,
    /// The run has a `budget_usd` and the model has no price in the price table, so its cost
    /// cannot be held to the budget; it was not called (unless the workflow sets
    /// `allow_unpriced_models`).
    PriceUnknown,
    /// The provider failed repeatedly and was skipped while it cools down.
    CircuitOpen,
    /// A template or `when` condition of the step could not be rendered.
    Template,
    /// A template of the step would render (or build a value) over its size limit.
    TemplateTooLarge,
    /// The model's output, normalized, is over the step output limit.
    OutputTooLarge,
    /// A person rejected the approval step.
    Rejected,
    /// A wait (approval, provider job) outlived its deadline.
    DeadlineExceeded,
    /// The step's message kept failing to be processed and was dead-lettered, or workers
    /// claimed it more than `MAX_STEP_CLAIMS` times without finishing it (they crashed).
    Undeliverable,
    /// The run failed because this required step failed; or a map step failed because more
    /// of its items failed than it tolerates.
    StepFailed,
    /// A `workflow` step's child run failed or was cancelled.
    ChildFailed,
    /// A bound of the service was reached: sub-workflows nested deeper than allowed.
    LimitExceeded,
    /// The workflow's `output` could not be rendered.
    OutputTemplate,
    /// Part of the run's stored state (a payload in the blob store) is gone.
    PayloadMissing,
}

impl ErrorKind {
    /// The kind as written in JSON, e.g. `rate_limited`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a call that failed this way may succeed if made again on the same model.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Timeout | ErrorKind::Transient)
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn names_are_the_same_in_json_and_in_words() {
        for kind in ErrorKind::iter() {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in StepStatus::UNFINISHED.into_iter().chain([StepStatus::Succeeded, StepStatus::Cancelled]) {
            assert_eq!(serde_json::to_value(status).unwrap(), status.to_string());
        }
    }

    #[test]
    fn error_kinds_are_written_in_snake_case() {
        let error = StepError::new(ErrorKind::DeadlineExceeded, "late");
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "deadline_exceeded", "message": "late"}));
        assert_eq!(serde_json::from_value::<StepError>(json).unwrap(), error);
    }

    #[test]
    fn a_step_state_round_trips_through_its_flattened_form() {
        let mut state = StepState::new(StepId::parse("a").unwrap(), 1, vec![StepId::parse("b").unwrap()]);
        state.progress.output = Some(serde_json::json!({"text": "hi"}));
        state.control.lease = Some(Lease { owner: "w".into(), until: jiff::Timestamp::UNIX_EPOCH });
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["pending_deps"], 1);
        assert_eq!(json["output"]["text"], "hi");
        assert_eq!(serde_json::from_value::<StepState>(json).unwrap(), state);
    }
}
