//! The small traits through which the engine reaches the world. Each has a memory adapter
//! (embedded mode and tests) and an AWS one; the conditional writes described here are the
//! contract both honour, checked by one conformance suite per port (`tests/src/*_contract.rs`).

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use utoipa::ToSchema;

use crate::domain::{
    Reservation, Reserved, Run, RunEvent, RunId, RunRetry, RunStatus, Settled, Settlement, StepError, StepId,
    StepReset, StepState, StepTransition, TenantId, WorkflowDefinition, WorkflowName, WorkflowRef,
};

/// A port's backend failed. Always worth retrying later; never shown to clients verbatim.
#[derive(Debug, Error)]
pub enum PortError {
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} holds data that cannot be read: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// A run to create, with its steps, first events and optional idempotency key.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run: Run,
    pub steps: Vec<StepState>,
    pub idempotency: Option<IdempotencyClaim>,
    pub events: Vec<RunEvent>,
}

/// Reserves `key` for this tenant so a retried submission finds the same run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    /// Hash of the request body; the same key with another body is a conflict.
    pub request_hash: String,
}

/// The result of [`RunStore::create_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was taken earlier; nothing was written.
    KeyTaken {
        run_id: RunId,
        request_hash: String,
    },
}

/// The result of [`RunStore::claim_retry_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryKeyClaim {
    Claimed,
    /// The key was taken earlier; nothing was written. `generation` is the generation the
    /// retry that took it moves the run to (`None`: a submission took it).
    Taken {
        run_id: RunId,
        request_hash: String,
        generation: Option<u32>,
    },
}

/// A conditional change of the run item.
#[derive(Debug, Clone)]
pub struct RunTransition {
    pub from: Vec<RunStatus>,
    pub to: RunStatus,
    pub output: Option<Value>,
    pub error: Option<StepError>,
    pub finished_at: Option<jiff::Timestamp>,
    /// Replaces the run's `due` (`None` clears it): set when the run ends, cleared when its
    /// follow-up is done.
    pub due: Option<jiff::Timestamp>,
    pub events: Vec<RunEvent>,
}

impl RunTransition {
    /// Moves the run from one of `from` to `to`, changing nothing else.
    pub fn status(from: Vec<RunStatus>, to: RunStatus) -> Self {
        Self { from, to, output: None, error: None, finished_at: None, due: None, events: Vec::new() }
    }
}

/// A run as listed: enough to pick one, without its definition or input.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunSummary {
    #[schema(value_type = String, example = "run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub id: RunId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: RunStatus,
    pub created_at: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<jiff::Timestamp>,
}

/// One page of a tenant's runs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    /// The last run of this page: pass it back as `after` for the next page. Absent on the
    /// last page.
    pub next_after: Option<RunId>,
}

impl RunPage {
    /// A page from up to `limit + 1` runs fetched newest first: the one beyond `limit` only
    /// tells that another page exists.
    pub fn from_fetched(mut runs: Vec<RunSummary>, limit: usize) -> Self {
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next_after = if more { runs.last().map(|run| run.id.clone()) } else { None };
        Self { runs, next_after }
    }
}

/// Durable run state. Every method that changes state is a single conditional write, so
/// concurrent and duplicate workers cannot both win.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates the run and its steps, unless the idempotency key is already taken.
    async fn create_run(&self, new: NewRun) -> Result<CreateOutcome, PortError>;

    async fn get_run(&self, run_id: &RunId) -> Result<Option<Run>, PortError>;

    /// All steps of a run, in no particular order (not the items of its map steps).
    async fn get_steps(&self, run_id: &RunId) -> Result<Vec<StepState>, PortError>;

    /// All steps of a run with the outputs of `reading` only (the others' `output` is
    /// `None`): a step about to run loads what its templates read, not every output of the
    /// run (each up to 1 MiB, from the blob store when large).
    async fn get_steps_reading(
        &self,
        run_id: &RunId,
        reading: &std::collections::BTreeSet<StepId>,
    ) -> Result<Vec<StepState>, PortError> {
        let mut steps = self.get_steps(run_id).await?;
        for step in &mut steps {
            if !reading.contains(&step.step_id) {
                step.progress.output = None;
            }
        }
        Ok(steps)
    }

    /// One step with its output, or one map item (which `get_steps` does not list).
    async fn get_step(&self, run_id: &RunId, step_id: &StepId) -> Result<Option<StepState>, PortError>;

    /// Stores the items of a map step as they start (`pending`, or `queued` for the first
    /// ones to run), replacing any stored before: called only before the map step records
    /// that it started them, so nothing has run any of them yet.
    async fn create_items(&self, run: &Run, items: Vec<StepState>) -> Result<(), PortError>;

    /// Counts the end of map item `item` on its map step, once: marks the item counted and
    /// takes one from the map's `pending` (and adds one to `failed` unless it succeeded),
    /// atomically. Counting an item again changes nothing. Returns the map step afterwards
    /// (without its output).
    async fn count_item(&self, run_id: &RunId, item: &StepId, succeeded: bool) -> Result<StepState, PortError>;

    /// Every item of map step `step`, in item order, with their outputs as `outputs` says.
    /// `None` when the outputs together are more than [`ItemOutputs::Within`] allows (then no
    /// more is loaded: a map's items may hold a gigabyte of outputs between them).
    async fn list_items(
        &self,
        run_id: &RunId,
        step: &StepId,
        outputs: ItemOutputs,
    ) -> Result<Option<Vec<StepState>>, PortError>;

    /// The tenant's runs, newest first, starting after the run `after` (from a previous page).
    async fn list_runs(&self, tenant: &TenantId, after: Option<&RunId>, limit: usize) -> Result<RunPage, PortError>;

    /// Applies `transition` if its conditions hold; returns the new state, or `None` when they
    /// did not (someone else got there first).
    async fn transition_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        transition: StepTransition,
    ) -> Result<Option<StepState>, PortError>;

    /// Counts `upstream` as finished for `dependant`: decrements `pending_deps` and, when
    /// `upstream_succeeded` is false, marks it blocked. A `pending` step whose count reaches
    /// zero without being blocked is `queued` from then on, with no further write: this is
    /// the one write a dependency costs. Counting the same upstream twice is a no-op.
    /// Returns the dependant's state afterwards.
    async fn release_step(
        &self,
        run_id: &RunId,
        dependant: &StepId,
        upstream: &StepId,
        upstream_succeeded: bool,
    ) -> Result<StepState, PortError>;

    /// Counts the sink step as finished for the run; idempotent per sink. Returns the run.
    async fn release_run(&self, run_id: &RunId, sink: &StepId) -> Result<Run, PortError>;

    /// Applies `transition` if the run is in one of its `from` statuses.
    async fn transition_run(&self, run_id: &RunId, transition: RunTransition) -> Result<Option<Run>, PortError>;

    /// Reserves part of the run's budget for `step`'s next call, replacing what the step
    /// reserved before, in one conditional write on the run: only if the step still holds
    /// what `reservation.replaces` says, has not been settled, and (when the reservation
    /// grows) the run's committed spending stays within `reservation.budget_usd`. See
    /// `domain::budget`; nothing changes unless the outcome is `Held`.
    async fn reserve_budget(
        &self,
        run_id: &RunId,
        step: &StepId,
        reservation: Reservation,
    ) -> Result<Reserved, PortError>;

    /// Settles `step`'s spending once it ended, in one conditional write on the run: releases
    /// what it holds (if still `settlement.held`) and counts its cost instead. Settling a
    /// step again changes nothing (`Already`).
    async fn settle_budget(&self, run_id: &RunId, step: &StepId, settlement: Settlement) -> Result<Settled, PortError>;

    async fn append_events(&self, run_id: &RunId, events: Vec<RunEvent>) -> Result<(), PortError>;

    /// Reopens an ended run for a retry in one conditional write, if `retry.admits` it
    /// (`failed` or `cancelled` in the generation before `retry.generation`, its follow-up
    /// done): see [`RunRetry`]. It also forgets the re-run steps (and their map items) among
    /// the sinks [`Self::release_run`] counted, so they count again. Returns the run as
    /// reopened, or `None` when the condition did not hold.
    async fn retry_run(&self, run_id: &RunId, retry: RunRetry) -> Result<Option<Run>, PortError>;

    /// A retry's resets are done: clears the run's `due` if it is `running` in `generation`.
    /// Returns whether it did.
    async fn finish_retry(&self, run_id: &RunId, generation: u32) -> Result<bool, PortError>;

    /// Resets `step_id` for a retry in one conditional write (on DynamoDB a transaction that
    /// also checks the run and moves the step's history aside), if `reset.admits` it (a
    /// finished step of an older generation) and the run is `running` in `reset.generation`:
    /// see [`StepReset`]. What the step did before stays in the run's history. Returns the step
    /// as reset, or `None` when a condition did not hold.
    async fn reset_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        reset: StepReset,
    ) -> Result<Option<StepState>, PortError>;

    /// Takes the tenant's idempotency key `claim.key` for a retry of `run_id` to
    /// `generation`, unless it is taken (by a retry or a submission: keys are shared), in which
    /// case nothing is written and the claim found is returned. A key expires after a day.
    async fn claim_retry_key(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        run_id: &RunId,
        generation: u32,
        now: jiff::Timestamp,
    ) -> Result<RetryKeyClaim, PortError>;

    /// The run's history in the order it happened.
    async fn list_events(&self, run_id: &RunId) -> Result<Vec<RunEvent>, PortError>;

    /// Up to `limit` steps and runs whose `due` time is before `now`, earliest first: what
    /// the reconciler looks at (waits past their deadline, leases that ended, queued steps
    /// whose message may be lost, follow-ups not done).
    async fn due(&self, now: jiff::Timestamp, limit: usize) -> Result<Vec<DueRef>, PortError>;

    /// Fails an unfinished run whose stored state cannot be read any more (a payload in the
    /// blob store is gone), with `error`. What cannot be read is replaced by an empty value
    /// (the input by `null`, the definition by one without steps, an output is dropped) so
    /// that the run can be shown and its client told. Returns whether the run was failed.
    async fn fail_unreadable_run(
        &self,
        run_id: &RunId,
        error: StepError,
        now: jiff::Timestamp,
    ) -> Result<bool, PortError>;
}

/// Which outputs [`RunStore::list_items`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutputs {
    /// None: the items' states only.
    Skip,
    /// All of them, while their stored JSON stays within this many bytes together.
    Within(usize),
}

/// A step or run the reconciler should look at, as found by [`RunStore::due`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueRef {
    pub run_id: RunId,
    /// `None`: the run itself.
    pub step_id: Option<StepId>,
}

/// Large payloads (definitions, inputs, outputs) kept out of the run store's items. Keys
/// are chosen by the caller and written once.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, body: bytes::Bytes) -> Result<(), PortError>;

    /// The blob, or `None` when nothing was stored under `key`.
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, PortError>;
}

/// "Run this step": the message on the steps queue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepMessage {
    pub run_id: RunId,
    pub step_id: StepId,
}

/// "Tell the client this run ended": the message on the notifications queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationMessage {
    pub run_id: RunId,
    /// Delivery attempts already made.
    pub attempt: u32,
    /// The run's generation when it ended: a run retried since has ended again (or will),
    /// and this end's notification is superseded.
    #[serde(default)]
    pub generation: u32,
}

/// An at-least-once queue (SQS in AWS). Consumers must tolerate duplicates.
#[async_trait]
pub trait Queue<M: Send + Sync + 'static>: Send + Sync {
    /// Sends the messages, each becoming visible after `delay`.
    async fn send(&self, messages: Vec<M>, delay: Duration) -> Result<(), PortError>;
}

/// A tenant: who owns runs. Its webhook signing secrets are not part of it: only the notifier
/// reads them, through a [`SigningSecretStore`], so what authenticates requests and serves the
/// API never holds one (and cannot return or log one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    /// The tenant's own API request rate, when it has one; otherwise the deployment's
    /// default (`CHORUS_TENANT_REQUEST_LIMIT`) applies.
    pub request_limit: Option<crate::domain::RateLimit>,
}

impl Tenant {
    /// A tenant on the deployment's default limits.
    pub fn new(id: TenantId) -> Self {
        Self { id, request_limit: None }
    }
}

/// API keys and tenants. Keys are stored hashed ([`hash_api_key`]); the plaintext never is.
#[async_trait]
pub trait TenantDirectory: Send + Sync {
    async fn tenant_for_key(&self, api_key: &SecretString) -> Result<Option<Tenant>, PortError>;
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, PortError>;
}

/// A tenant's Standard Webhooks signing secrets (`whsec_` + base64), newest first: one, or two
/// while the tenant rotates, when each notification carries one signature per secret so that
/// the receiver may verify with either. Never printed: `Debug` shows only how many there are.
#[derive(Clone)]
pub struct SigningSecrets {
    newest: SecretString,
    previous: Option<SecretString>,
}

impl SigningSecrets {
    /// One secret.
    pub fn new(secret: SecretString) -> Self {
        Self { newest: secret, previous: None }
    }

    /// `newest`, and the secret it replaces while receivers switch over.
    pub fn with_previous(newest: SecretString, previous: Option<SecretString>) -> Self {
        Self { newest, previous }
    }

    /// Starts a rotation: `secret` becomes the newest and the newest so far stays valid
    /// beside it; a secret older than that is dropped (at most two are ever active).
    pub fn rotate(self, secret: SecretString) -> Self {
        Self { newest: secret, previous: Some(self.newest) }
    }

    /// Ends a rotation: only the newest secret remains.
    pub fn retire_previous(self) -> Self {
        Self { newest: self.newest, previous: None }
    }

    pub fn newest(&self) -> &SecretString {
        &self.newest
    }

    pub fn previous(&self) -> Option<&SecretString> {
        self.previous.as_ref()
    }

    /// The active secrets, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &SecretString> {
        std::iter::once(&self.newest).chain(self.previous.as_ref())
    }
}

impl std::fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningSecrets({} active, [REDACTED])", self.iter().count())
    }
}

/// Tenants' webhook signing secrets, for the notifier alone: apart from the
/// [`TenantDirectory`] so that authenticating a request never reads (or decrypts) one.
#[async_trait]
pub trait SigningSecretStore: Send + Sync {
    /// The tenant's active secrets, newest first; `None` for a tenant it does not know.
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<SigningSecrets>, PortError>;
}

/// A new random API key (`ck_` + 32 hex digits, 128 bits) from the operating system's CSPRNG,
/// as `WebhookSecret::generate` makes signing secrets.
pub fn generate_api_key() -> SecretString {
    let mut bytes = [0_u8; 16];
    rand::fill(&mut bytes[..]);
    SecretString::from(format!("ck_{}", hex::encode(bytes)))
}

/// The public id of an API key: `key_` and the first 16 hex digits of its stored hash. It
/// names the key in records (who approved a step) without revealing it, and matches the
/// stored item's hash prefix for operators.
pub fn api_key_id(api_key: &SecretString) -> String {
    let hash = hash_api_key(api_key);
    format!("key_{}", hash.get(..16).unwrap_or(&hash))
}

/// The stored form of an API key: hex SHA-256 (keys are random, so no salt is needed).
pub fn hash_api_key(api_key: &SecretString) -> String {
    hex::encode(Sha256::digest(api_key.expose_secret().as_bytes()))
}

/// A signed HTTP POST to a client's notification URL.
#[derive(Debug, Clone)]
pub struct OutgoingWebhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a webhook could not be delivered.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The URL is not allowed (scheme, or it resolves to a private address).
    #[error("notification URL refused: {0}")]
    Refused(String),
    #[error("the notification receiver answered HTTP {0}")]
    Status(u16),
    #[error("the notification receiver could not be reached: {0}")]
    Unreachable(String),
}

/// Delivers outgoing webhooks (the notifier's HTTP client).
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Posts the webhook; `Ok` carries the 2xx status.
    async fn send(&self, webhook: &OutgoingWebhook) -> Result<u16, DeliveryError>;
}

/// The time, injectable so tests can control leases and deadlines.
pub trait Clock: Send + Sync {
    fn now(&self) -> jiff::Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Whether a provider call may go now, from [`RateLimiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// A token was taken: call the provider.
    Granted,
    /// No token before this long; nothing was taken.
    Wait(Duration),
}

/// Per-provider rate limits shared by every worker (a `RATE#<provider>` item on AWS), so a burst
/// of runs is spread out before the provider answers 429. A token bucket per scope (a
/// provider name such as `openai`); see [`crate::domain::rate::take`].
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one token from `scope`'s bucket, created full on first use. Never sleeps: the
    /// caller decides between sleeping and re-enqueueing the step with a delay.
    async fn acquire(&self, scope: &str, limit: crate::domain::RateLimit) -> Result<Acquired, PortError>;
}

/// Where secrets referenced from settings are kept (AWS Systems Manager Parameter Store, and
/// Secrets Manager through it). Provider credentials are read through it once per process.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The decrypted value of `parameter` (an SSM parameter name such as
    /// `/chorus/openai-api-key`).
    async fn read(&self, parameter: &str) -> Result<SecretString, PortError>;
}

/// One version of a registered workflow: its definition, as validated when it was
/// registered, and never changed since.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowVersion {
    pub name: WorkflowName,
    pub version: u32,
    /// [`crate::domain::definition_hash`] of the definition.
    pub hash: String,
    pub definition: WorkflowDefinition,
    pub created_at: jiff::Timestamp,
}

impl WorkflowVersion {
    /// What a run started from this version records.
    pub fn reference(&self) -> WorkflowRef {
        WorkflowRef { name: self.name.clone(), version: self.version, hash: self.hash.clone() }
    }

    pub fn summary(&self) -> VersionSummary {
        VersionSummary { version: self.version, hash: self.hash.clone(), created_at: self.created_at }
    }
}

/// A version as listed: its number and hash, without its definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VersionSummary {
    #[schema(minimum = 1, example = 3)]
    pub version: u32,
    /// SHA-256, in hex, of the version's definition in canonical JSON.
    #[schema(example = "5b0e7b1f6a0b5d1c1d4e3a0c9a7c6d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718")]
    pub hash: String,
    pub created_at: jiff::Timestamp,
}

/// A registered workflow as listed: its name and latest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WorkflowSummary {
    #[schema(value_type = String, example = "triage", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: WorkflowName,
    #[schema(minimum = 1, example = 3)]
    pub latest_version: u32,
    /// The latest version's hash.
    #[schema(example = "5b0e7b1f6a0b5d1c1d4e3a0c9a7c6d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718")]
    pub latest_hash: String,
    /// When version 1 was registered.
    pub created_at: jiff::Timestamp,
    /// When the latest version was registered.
    pub updated_at: jiff::Timestamp,
}

/// One page of a tenant's registered workflows, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPage {
    pub workflows: Vec<WorkflowSummary>,
    /// The last workflow of this page: pass it back as `after` for the next page. Absent on
    /// the last page.
    pub next_after: Option<WorkflowName>,
}

impl WorkflowPage {
    /// A page from up to `limit + 1` workflows fetched in name order: the one beyond `limit`
    /// only tells that another page exists.
    pub fn from_fetched(mut workflows: Vec<WorkflowSummary>, limit: usize) -> Self {
        let more = workflows.len() > limit;
        workflows.truncate(limit);
        let next_after = if more { workflows.last().map(|workflow| workflow.name.clone()) } else { None };
        Self { workflows, next_after }
    }
}

/// The result of [`WorkflowRegistry::register`]: the version that holds the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub version: VersionSummary,
    /// False when the definition was already the latest version: nothing was written.
    pub created: bool,
}

/// Why [`WorkflowRegistry::register`] stored nothing.
#[derive(Debug, Error)]
pub enum RegisterError {
    /// The workflow has as many versions as it may have ([`crate::domain::RegistryLimits::max_versions`]).
    #[error("workflow `{name}` already has {max} versions, the most a workflow may have")]
    TooManyVersions { name: WorkflowName, max: u32 },
    /// The tenant has as many workflows as it may have ([`crate::domain::RegistryLimits::max_workflows`]).
    #[error("this tenant already has {max} registered workflows, the most it may have")]
    TooManyWorkflows { max: u32 },
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A tenant's registered workflows: named definitions, each change a new immutable version
/// numbered 1, 2, 3… with its content hash. Every method is scoped by the tenant, so another
/// tenant's workflow is one that does not exist. Nothing here expires.
#[async_trait]
pub trait WorkflowRegistry: Send + Sync {
    /// Stores `definition` (already validated) as the workflow's next version, created with
    /// the workflow when it has none, at `at`. A definition whose hash is the latest
    /// version's is not stored again: that version is returned, `created: false`. Concurrent
    /// registrations are serialized by conditional writes: different definitions get
    /// distinct consecutive versions, the same definition one version.
    async fn register(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        definition: &WorkflowDefinition,
        at: jiff::Timestamp,
    ) -> Result<Registration, RegisterError>;

    /// Version `version` of the workflow, or its latest with `None`; `None` when the
    /// workflow or that version does not exist.
    async fn get(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        version: Option<u32>,
    ) -> Result<Option<WorkflowVersion>, PortError>;

    /// Every version of the workflow, oldest first; empty when it does not exist.
    async fn versions(&self, tenant: &TenantId, name: &WorkflowName) -> Result<Vec<VersionSummary>, PortError>;

    /// The tenant's workflows in name order, starting after `after` (from a previous page).
    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&WorkflowName>,
        limit: usize,
    ) -> Result<WorkflowPage, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_look_like_chorus_keys_and_are_stored_hashed() {
        let key = generate_api_key();
        let text = key.expose_secret();
        assert!(text.starts_with("ck_"));
        assert_eq!(text.len(), 35);
        assert!(text[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(text, generate_api_key().expose_secret());
        assert_eq!(hash_api_key(&key).len(), 64);
        assert!(!hash_api_key(&key).contains(&text[3..]));
    }

    #[test]
    fn a_rotation_keeps_two_secrets_newest_first_and_never_prints_them() {
        let secret = |text: &str| SecretString::from(text.to_owned());
        let listed =
            |secrets: &SigningSecrets| secrets.iter().map(|s| s.expose_secret().to_owned()).collect::<Vec<_>>();
        let one = SigningSecrets::new(secret("whsec_one"));
        assert_eq!(listed(&one), ["whsec_one"]);
        let two = one.rotate(secret("whsec_two"));
        assert_eq!(listed(&two), ["whsec_two", "whsec_one"]);
        let three = two.clone().rotate(secret("whsec_three"));
        assert_eq!(listed(&three), ["whsec_three", "whsec_two"], "at most two are active");
        assert_eq!(listed(&three.retire_previous()), ["whsec_three"]);
        assert_eq!(format!("{two:?}"), "SigningSecrets(2 active, [REDACTED])");
    }
}
