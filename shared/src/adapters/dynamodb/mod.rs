//! [`RunStore`] on one DynamoDB table (the data model is in docs/architecture.md). Every state change is a single
//! conditional `UpdateItem` that returns the item as written, with the history it records
//! appended to the same item, so a step costs one request per transition. JSON payloads
//! above [`INLINE_LIMIT`] go to the [`BlobStore`] (S3) and only their key stays in the item.
//! A run's budget ledger lives on its run item (`budget`), where the reservations of steps
//! running in parallel meet in one conditional write each.

mod budget;
mod expression;
mod items;
mod map_items;
mod rate_limiter;
mod rerun;
mod signing_secrets;
mod tenant_directory;
mod workflow_registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::expression::{Expression, number, string};
use self::items::{
    DUE_BUCKET, DueKeys, IDEMPOTENCY_SK, IdempotencyItem, Payload, RECONCILE_BY_DUE, RUN_SK, RUNS_BY_TENANT, RunItem,
    STEP_SK_PREFIX, StepItem, idempotency_pk, run_pk, step_id_of_sk, step_sk,
};
use crate::domain::{
    Change, Lease, Reservation, Reserved, Run, RunEvent, RunId, RunRetry, RunStatus, Settled, Settlement, StepError,
    StepId, StepReset, StepState, StepStatus, StepTransition, TenantId,
};
use crate::ports::{
    BlobStore, CreateOutcome, DueRef, IdempotencyClaim, ItemOutputs, NewRun, PortError, RetryKeyClaim, RunPage,
    RunStore, RunSummary, RunTransition,
};

pub use rate_limiter::DynamoRateLimiter;
pub use signing_secrets::{DynamoSigningSecrets, SEAL_PURPOSE};
pub use tenant_directory::DynamoTenantDirectory;
pub use workflow_registry::DynamoWorkflowRegistry;

/// JSON payloads up to this size stay in the item; bigger ones go to S3. Three
/// of them (definition, input, output) still fit DynamoDB's 400 KB item limit.
pub const INLINE_LIMIT: usize = 64 * 1024;
/// How long an idempotency key holds.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// BatchWriteItem's limit.
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of resending what BatchWriteItem left unprocessed (throttling) before giving up.
const BATCH_WRITE_ROUNDS: u32 = 8;

/// Run state in DynamoDB, payloads above [`INLINE_LIMIT`] in a [`BlobStore`].
pub struct DynamoRunStore {
    client: Client,
    table: String,
    blobs: Arc<dyn BlobStore>,
    /// Items expire (TTL) this long after the run was created.
    retention: Duration,
}

impl DynamoRunStore {
    pub fn new(client: Client, table: impl Into<String>, blobs: Arc<dyn BlobStore>, retention: Duration) -> Self {
        Self { client, table: table.into(), blobs, retention }
    }

    fn key(pk: String, sk: impl Into<String>) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), string(pk)), ("sk".to_owned(), string(sk))])
    }

    /// Stores `value` inline, or in the blob store under `tenants/<tenant>/runs/<run>/…`.
    /// Without `tenant`, a large payload costs one read to find it.
    async fn store_payload(
        &self,
        tenant: Option<&TenantId>,
        run_id: &RunId,
        name: &str,
        value: &Value,
    ) -> Result<Payload, PortError> {
        let text = serde_json::to_string(value)
            .map_err(|err| PortError::Corrupt { what: "JSON payload", detail: err.to_string() })?;
        if text.len() <= INLINE_LIMIT {
            return Ok(Payload::Json(text));
        }
        let tenant = match tenant {
            Some(tenant) => tenant.clone(),
            None => self.tenant_of(run_id).await?,
        };
        // A fresh key per write: a payload is never overwritten in place, so a reader never
        // sees a key whose object changed under it. Its suffix comes from the OS-seeded
        // CSPRNG, so a key cannot be guessed from another.
        let key = format!("tenants/{tenant}/runs/{run_id}/{name}-{:016x}.json", rand::random::<u64>());
        self.blobs.put(&key, Bytes::from(text)).await?;
        Ok(Payload::Blob(key))
    }

    async fn load_payload(&self, payload: Payload) -> Result<Value, PortError> {
        let text = match payload {
            Payload::Json(text) => Bytes::from(text),
            Payload::Blob(key) => self.blobs.get(&key).await?.ok_or_else(|| PortError::Corrupt {
                what: "blob store",
                detail: format!("payload `{key}` is missing"),
            })?,
        };
        serde_json::from_slice(&text)
            .map_err(|err| PortError::Corrupt { what: "JSON payload", detail: err.to_string() })
    }

    async fn load_optional(&self, payload: Option<Payload>) -> Result<Option<Value>, PortError> {
        match payload {
            Some(payload) => Ok(Some(self.load_payload(payload).await?)),
            None => Ok(None),
        }
    }

    async fn run_from_item(&self, item: RunItem) -> Result<Run, PortError> {
        Ok(Run {
            definition: serde_json::from_value(self.load_payload(item.definition).await?)
                .map_err(|err| PortError::Corrupt { what: "stored workflow definition", detail: err.to_string() })?,
            input: self.load_payload(item.input).await?,
            output: self.load_optional(item.output).await?,
            id: item.id,
            tenant: item.tenant,
            status: item.status,
            notify: item.notify,
            error: item.error,
            pending_sinks: item.pending_sinks,
            created_at: item.created_at,
            updated_at: item.updated_at,
            finished_at: item.finished_at,
            due: item.due,
            budget: item.budget.into(),
            workflow: item.workflow,
            generation: item.generation,
            forked_from: item.forked_from,
            parent: item.parent,
            depth: item.depth,
        })
    }

    async fn step_from_item(&self, mut item: StepItem) -> Result<StepState, PortError> {
        let output = self.load_optional(item.output.take()).await?;
        Ok(item.into_state(output))
    }

    /// A run's steps, with every output (`reading: None`) or those of `reading` only (the
    /// others are neither kept nor fetched from the blob store).
    async fn query_steps(
        &self,
        run_id: &RunId,
        reading: Option<&std::collections::BTreeSet<StepId>>,
    ) -> Result<Vec<StepState>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :steps)")
            .expression_attribute_values(":pk", string(run_pk(run_id)))
            .expression_attribute_values(":steps", string(STEP_SK_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut steps = Vec::new();
        while let Some(item) = pages.next().await {
            let mut item: StepItem = from_item("step item", item.map_err(unavailable)?)?;
            if reading.is_some_and(|reading| !reading.contains(&item.state.step_id)) {
                item.output = None;
            }
            steps.push(self.step_from_item(item).await?);
        }
        Ok(steps)
    }

    /// The run's item as stored, its payloads not loaded (a strongly consistent read).
    async fn run_item(&self, run_id: &RunId) -> Result<Option<RunItem>, PortError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(run_pk(run_id), RUN_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        found.item.map(|item| from_item("run item", item)).transpose()
    }

    /// The tenant a run belongs to, for blob keys (only needed for large outputs).
    async fn tenant_of(&self, run_id: &RunId) -> Result<TenantId, PortError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(run_pk(run_id), RUN_SK)))
            .projection_expression("tenant")
            .send()
            .await
            .map_err(unavailable)?;
        let item = found.item.ok_or_else(|| missing("run", run_id))?;
        let tenant = item.get("tenant").and_then(|value| value.as_s().ok()).ok_or_else(|| missing("run", run_id))?;
        TenantId::parse(tenant).map_err(|err| PortError::Corrupt { what: "run item", detail: err.to_string() })
    }

    fn expires_at(&self, from: jiff::Timestamp) -> i64 {
        (from + self.retention).as_second()
    }

    /// Writes the steps in batches, resending what DynamoDB leaves unprocessed.
    async fn put_steps(&self, items: Vec<HashMap<String, AttributeValue>>) -> Result<(), PortError> {
        for chunk in items.chunks(BATCH_WRITE_MAX) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder().set_item(Some(item.clone())).build().map_err(unavailable)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, PortError>>()?;
            let mut round = 0;
            while !requests.is_empty() {
                if round == BATCH_WRITE_ROUNDS {
                    return Err(PortError::Unavailable {
                        what: "DynamoDB",
                        source: "writes stayed unprocessed (throttled)".into(),
                    });
                }
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << round)).await;
                }
                let written = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(unavailable)?;
                requests = written.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
                round += 1;
            }
        }
        Ok(())
    }

    /// Runs a conditional update. `Ok(None)` when the condition failed; with
    /// `old_on_failure`, the item as it was is returned in the error case instead.
    async fn update(
        &self,
        key: HashMap<String, AttributeValue>,
        expression: Expression,
        old_on_failure: bool,
    ) -> Result<Updated, PortError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_update_expression(expression.update_expression())
            .set_condition_expression(expression.condition_expression())
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .return_values(ReturnValue::AllNew);
        let request = if old_on_failure {
            request.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        } else {
            request
        };
        match request.send().await {
            Ok(output) => Ok(Updated::Applied(output.attributes.unwrap_or_default())),
            Err(SdkError::ServiceError(failure))
                if matches!(failure.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let old = match failure.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                Ok(Updated::Refused(old))
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

impl DynamoRunStore {
    /// `SET field = value` for one field of a step update, with what the table keeps beside
    /// some fields: the output goes to the blob store when large, the lease's end is mirrored
    /// as a number for conditions, and a due time puts the step in the `reconcile_by_due`
    /// index (clearing it takes the step out).
    async fn set_step_field(
        &self,
        expression: &mut Expression,
        run_id: &RunId,
        step_id: &StepId,
        field: &str,
        value: Value,
    ) -> Result<(), PortError> {
        match field {
            "output" if !value.is_null() => {
                let name = format!("steps/{step_id}/output");
                let payload = self.store_payload(None, run_id, &name, &value).await?;
                return expression.set(field, &payload);
            }
            "lease" => match serde_json::from_value::<Option<Lease>>(value.clone()) {
                Ok(Some(lease)) => expression.set("lease_until_ms", &lease.until.as_millisecond())?,
                Ok(None) => expression.remove("lease_until_ms"),
                Err(err) => return Err(PortError::Corrupt { what: "step lease", detail: err.to_string() }),
            },
            "due" => match serde_json::from_value::<Option<jiff::Timestamp>>(value.clone()) {
                Ok(due) => set_due_keys(expression, due)?,
                Err(err) => return Err(PortError::Corrupt { what: "step due time", detail: err.to_string() }),
            },
            _ => {}
        }
        expression.set(field, &value)
    }
}

/// Whether a payload failed to load because it is gone or unreadable (rather than because
/// the blob store is unavailable, which is an error).
fn unreadable<T>(loaded: Result<T, PortError>) -> Result<bool, PortError> {
    match loaded {
        Ok(_) => Ok(false),
        Err(PortError::Corrupt { .. }) => Ok(true),
        Err(err) => Err(err),
    }
}

/// Puts the item in the `reconcile_by_due` index at `due`, or takes it out.
fn set_due_keys(expression: &mut Expression, due: Option<jiff::Timestamp>) -> Result<(), PortError> {
    match due {
        Some(due) => {
            expression.set("due_bucket", &DUE_BUCKET)?;
            expression.set("due_at", &due.as_second())
        }
        None => {
            expression.remove("due_bucket");
            expression.remove("due_at");
            Ok(())
        }
    }
}

/// The outcome of a conditional update.
enum Updated {
    Applied(HashMap<String, AttributeValue>),
    /// The condition failed; the item as it was, when asked for and when it exists.
    Refused(Option<HashMap<String, AttributeValue>>),
}

fn from_item<T: DeserializeOwned>(what: &'static str, item: HashMap<String, AttributeValue>) -> Result<T, PortError> {
    serde_dynamo::from_item(item).map_err(|err| PortError::Corrupt { what, detail: err.to_string() })
}

fn to_item(value: &impl serde::Serialize) -> Result<HashMap<String, AttributeValue>, PortError> {
    serde_dynamo::to_item(value)
        .map_err(|err| PortError::Corrupt { what: "DynamoDB item", detail: format!("cannot be written: {err}") })
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::Unavailable { what: "DynamoDB", source: Box::new(err) }
}

fn missing(what: &str, id: &impl std::fmt::Display) -> PortError {
    PortError::Corrupt { what: "DynamoDB run store", detail: format!("{what} `{id}` does not exist") }
}

/// The condition that a step is in one of `from`. `queued` also covers a `pending` step
/// whose dependencies were all released (see [`StepItem::into_state`]), and `pending`
/// excludes it. The clauses are joined by OR without parentheses (AND binds tighter).
fn step_status_condition(expression: &mut Expression, from: &[StepStatus]) -> Result<String, PortError> {
    // DynamoDB refuses placeholders an expression does not use: declare them as needed.
    let status = expression.name("status");
    let mut clauses = Vec::new();
    for wanted in from {
        let value = expression.serde_value(wanted)?;
        let clause = match wanted {
            StepStatus::Queued => {
                let (deps, blocked) = (expression.name("pending_deps"), expression.name("blocked"));
                let pending = expression.serde_value(&StepStatus::Pending)?;
                let (zero, no) = (expression.value(number(0)), expression.value(AttributeValue::Bool(false)));
                format!("{status} = {value} OR ({status} = {pending} AND {deps} = {zero} AND {blocked} = {no})")
            }
            StepStatus::Pending => {
                let (deps, blocked) = (expression.name("pending_deps"), expression.name("blocked"));
                let (zero, yes) = (expression.value(number(0)), expression.value(AttributeValue::Bool(true)));
                format!("{status} = {value} AND ({deps} > {zero} OR {blocked} = {yes})")
            }
            _ => format!("{status} = {value}"),
        };
        clauses.push(clause);
    }
    Ok(if clauses.is_empty() { "attribute_not_exists(pk)".to_owned() } else { clauses.join(" OR ") })
}

#[async_trait]
impl RunStore for DynamoRunStore {
    async fn create_run(&self, new: NewRun) -> Result<CreateOutcome, PortError> {
        let NewRun { run, steps, idempotency, events } = new;
        let expires_at = self.expires_at(run.created_at);
        // Steps first, the run item last: a run is visible only once complete. Steps
        // orphaned by a failure in between expire with their TTL.
        let mut step_items = Vec::with_capacity(steps.len());
        for state in steps {
            // A forked run's reused steps are created with their outputs.
            let output = match &state.progress.output {
                Some(output) => {
                    let name = format!("steps/{}/output", state.step_id);
                    Some(self.store_payload(Some(&run.tenant), &run.id, &name, output).await?)
                }
                None => None,
            };
            let mut item = StepItem::new(&run.id, state, expires_at);
            item.output = output;
            step_items.push(to_item(&item)?);
        }
        self.put_steps(step_items).await?;

        let definition = serde_json::to_value(&run.definition)
            .map_err(|err| PortError::Corrupt { what: "workflow definition", detail: err.to_string() })?;
        let output = match &run.output {
            Some(output) => Some(self.store_payload(Some(&run.tenant), &run.id, "output", output).await?),
            None => None,
        };
        let item = RunItem {
            pk: run_pk(&run.id),
            sk: RUN_SK.to_owned(),
            tenant_pk: run.tenant.to_string(),
            created_sk: run.id.to_string(),
            run_name: run.definition.name.clone(),
            definition: self.store_payload(Some(&run.tenant), &run.id, "definition", &definition).await?,
            input: self.store_payload(Some(&run.tenant), &run.id, "input", &run.input).await?,
            output,
            id: run.id.clone(),
            tenant: run.tenant.clone(),
            status: run.status,
            notify: run.notify,
            error: run.error,
            pending_sinks: run.pending_sinks,
            released_sinks: Vec::new(),
            created_at: run.created_at,
            updated_at: run.updated_at,
            finished_at: run.finished_at,
            due: run.due,
            due_keys: DueKeys::new(run.due),
            expires_at,
            events,
            budget: run.budget.into(),
            workflow: run.workflow,
            generation: run.generation,
            forked_from: run.forked_from,
            parent: run.parent,
            depth: run.depth,
        };
        let Some(claim) = idempotency else {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_item(&item)?))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map_err(unavailable)?;
            return Ok(CreateOutcome::Created);
        };
        // With a key, the run and the key are written together or not at all.
        let run_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let key_item = IdempotencyItem {
            pk: idempotency_pk(&run.tenant, &claim.key),
            sk: IDEMPOTENCY_SK.to_owned(),
            run_id: run.id.clone(),
            request_hash: claim.request_hash,
            expires_at: (run.created_at + IDEMPOTENCY_TTL).as_second(),
            generation: None,
        };
        // TTL deletes lazily (within days): an expired key counts as free.
        let key_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&key_item)?))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", number(run.created_at.as_second()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(unavailable)?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(key_put).build())
            .transact_items(TransactWriteItem::builder().put(run_put).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(SdkError::ServiceError(failure)) => {
                let taken = match failure.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
                        .cancellation_reasons()
                        .first()
                        .filter(|reason| reason.code() == Some("ConditionalCheckFailed"))
                        .and_then(|reason| reason.item().cloned()),
                    _ => None,
                };
                match taken {
                    Some(item) => {
                        let existing: IdempotencyItem = from_item("idempotency item", item)?;
                        Ok(CreateOutcome::KeyTaken { run_id: existing.run_id, request_hash: existing.request_hash })
                    }
                    None => Err(unavailable(SdkError::ServiceError(failure))),
                }
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn get_run(&self, run_id: &RunId) -> Result<Option<Run>, PortError> {
        match self.run_item(run_id).await? {
            Some(item) => Ok(Some(self.run_from_item(item).await?)),
            None => Ok(None),
        }
    }

    async fn get_steps(&self, run_id: &RunId) -> Result<Vec<StepState>, PortError> {
        self.query_steps(run_id, None).await
    }

    async fn get_step(&self, run_id: &RunId, step_id: &StepId) -> Result<Option<StepState>, PortError> {
        match self.step_item(run_id, step_id).await? {
            Some(item) => Ok(Some(self.step_from_item(item).await?)),
            None => Ok(None),
        }
    }

    async fn create_items(&self, run: &Run, items: Vec<StepState>) -> Result<(), PortError> {
        let expires_at = self.expires_at(run.created_at);
        let items = items
            .into_iter()
            .map(|state| to_item(&StepItem::new(&run.id, state, expires_at)))
            .collect::<Result<Vec<_>, _>>()?;
        self.put_steps(items).await
    }

    async fn count_item(&self, run_id: &RunId, item: &StepId, succeeded: bool) -> Result<StepState, PortError> {
        self.count_map_item(run_id, item, succeeded).await
    }

    async fn list_items(
        &self,
        run_id: &RunId,
        step: &StepId,
        outputs: ItemOutputs,
    ) -> Result<Option<Vec<StepState>>, PortError> {
        self.query_items(run_id, step, outputs).await
    }

    async fn get_steps_reading(
        &self,
        run_id: &RunId,
        reading: &std::collections::BTreeSet<StepId>,
    ) -> Result<Vec<StepState>, PortError> {
        self.query_steps(run_id, Some(reading)).await
    }

    async fn list_runs(&self, tenant: &TenantId, after: Option<&RunId>, limit: usize) -> Result<RunPage, PortError> {
        let start = after.map(|after| {
            HashMap::from([
                ("pk".to_owned(), string(run_pk(after))),
                ("sk".to_owned(), string(RUN_SK)),
                ("tenant_pk".to_owned(), string(tenant.to_string())),
                ("created_sk".to_owned(), string(after.to_string())),
            ])
        });
        // One more than asked tells whether another page exists. A query stops at 1 MB
        // whatever its limit, so follow `LastEvaluatedKey` until enough runs are in.
        let wanted = limit.saturating_add(1);
        let mut runs = Vec::new();
        let mut start = start;
        loop {
            let fetch = i32::try_from(wanted - runs.len()).unwrap_or(i32::MAX);
            let found = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(RUNS_BY_TENANT)
                .key_condition_expression("tenant_pk = :tenant")
                .expression_attribute_values(":tenant", string(tenant.to_string()))
                .scan_index_forward(false)
                .limit(fetch)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in found.items.unwrap_or_default() {
                runs.push(RunSummary::from(from_item::<SummaryItem>("run summary", item)?));
            }
            start = found.last_evaluated_key;
            if runs.len() >= wanted || start.is_none() {
                break;
            }
        }
        Ok(RunPage::from_fetched(runs, limit))
    }

    async fn transition_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        transition: StepTransition,
    ) -> Result<Option<StepState>, PortError> {
        let StepTransition { from, or_lease_expired_before, lease_owner, update, events } = transition;
        let mut expression = Expression::default();

        let mut allowed = step_status_condition(&mut expression, &from)?;
        if let Some(now) = or_lease_expired_before {
            let (status, until) = (expression.name("status"), expression.name("lease_until_ms"));
            let running = expression.serde_value(&StepStatus::Running)?;
            let now = expression.value(number(now.as_millisecond()));
            allowed =
                format!("{allowed} OR ({status} = {running} AND (attribute_not_exists({until}) OR {until} < {now}))");
        }
        expression.require("attribute_exists(pk)".to_owned());
        expression.require(allowed);
        if let Some(owner) = &lease_owner {
            let (lease, owner_name) = (expression.name("lease"), expression.name("owner"));
            let owner = expression.value(string(owner.clone()));
            expression.require(format!("{lease}.{owner_name} = {owner}"));
        }

        let changes =
            update.changes().map_err(|err| PortError::Corrupt { what: "step update", detail: err.to_string() })?;
        for change in changes {
            match change {
                Change::Set { field, value } => {
                    self.set_step_field(&mut expression, run_id, step_id, &field, value).await?
                }
                Change::Increment { field } => {
                    let name = expression.name(field);
                    let one = expression.value(number(1));
                    expression.set_raw(format!("{name} = {name} + {one}"));
                }
                Change::Append { field, items } => expression.append(field, &items)?,
            }
        }
        if !events.is_empty() {
            expression.append("events", &events)?;
        }

        match self.update(Self::key(run_pk(run_id), step_sk(step_id)), expression, false).await? {
            Updated::Applied(item) => Ok(Some(self.step_from_item(from_item("step item", item)?).await?)),
            Updated::Refused(_) => Ok(None),
        }
    }

    async fn release_step(
        &self,
        run_id: &RunId,
        dependant: &StepId,
        upstream: &StepId,
        upstream_succeeded: bool,
    ) -> Result<StepState, PortError> {
        let mut expression = Expression::default();
        let (deps, released) = (expression.name("pending_deps"), expression.name("released_by"));
        let one = expression.value(number(1));
        expression.set_raw(format!("{deps} = {deps} - {one}"));
        expression.append("released_by", &[upstream])?;
        if !upstream_succeeded {
            expression.set("blocked", &true)?;
        }
        let upstream = expression.serde_value(upstream)?;
        expression.require(format!("attribute_exists(pk) AND NOT contains({released}, {upstream})"));

        let item = match self.update(Self::key(run_pk(run_id), step_sk(dependant)), expression, true).await? {
            Updated::Applied(item) => item,
            // Counted before: report the step as it is.
            Updated::Refused(Some(item)) => item,
            Updated::Refused(None) => return Err(missing("step", dependant)),
        };
        self.step_from_item(from_item("step item", item)?).await
    }

    async fn release_run(&self, run_id: &RunId, sink: &StepId) -> Result<Run, PortError> {
        let mut expression = Expression::default();
        let (pending, released) = (expression.name("pending_sinks"), expression.name("released_sinks"));
        let one = expression.value(number(1));
        expression.set_raw(format!("{pending} = {pending} - {one}"));
        expression.append("released_sinks", &[sink])?;
        let sink = expression.serde_value(sink)?;
        expression.require(format!("attribute_exists(pk) AND NOT contains({released}, {sink})"));

        let item = match self.update(Self::key(run_pk(run_id), RUN_SK), expression, true).await? {
            Updated::Applied(item) | Updated::Refused(Some(item)) => item,
            Updated::Refused(None) => return Err(missing("run", run_id)),
        };
        self.run_from_item(from_item("run item", item)?).await
    }

    async fn transition_run(&self, run_id: &RunId, transition: RunTransition) -> Result<Option<Run>, PortError> {
        let RunTransition { from, to, output, error, finished_at, due, events } = transition;
        let mut expression = Expression::default();
        let status = expression.name("status");
        let allowed = from
            .iter()
            .map(|wanted| Ok(format!("{status} = {}", expression.serde_value(wanted)?)))
            .collect::<Result<Vec<_>, PortError>>()?;
        expression.require("attribute_exists(pk)".to_owned());
        expression.require(if allowed.is_empty() {
            "attribute_not_exists(pk)".to_owned()
        } else {
            allowed.join(" OR ")
        });

        expression.set("status", &to)?;
        if let Some(output) = &output {
            expression.set("output", &self.store_payload(None, run_id, "output", output).await?)?;
        }
        if let Some(error) = &error {
            expression.set("error", error)?;
        }
        if let Some(at) = finished_at {
            expression.set("finished_at", &at)?;
        }
        expression.set("due", &due)?;
        set_due_keys(&mut expression, due)?;
        if let Some(last) = events.last() {
            expression.set("updated_at", &last.at)?;
        }
        if !events.is_empty() {
            expression.append("events", &events)?;
        }

        match self.update(Self::key(run_pk(run_id), RUN_SK), expression, false).await? {
            Updated::Applied(item) => Ok(Some(self.run_from_item(from_item("run item", item)?).await?)),
            Updated::Refused(_) => Ok(None),
        }
    }

    async fn reserve_budget(
        &self,
        run_id: &RunId,
        step: &StepId,
        reservation: Reservation,
    ) -> Result<Reserved, PortError> {
        let expression = budget::reserve_expression(step, reservation)?;
        match self.update(Self::key(run_pk(run_id), RUN_SK), expression, true).await? {
            Updated::Applied(_) => Ok(Reserved::Held),
            Updated::Refused(Some(item)) => {
                Ok(budget::why_not_reserved(from_item("run item", item)?, step, reservation))
            }
            Updated::Refused(None) => Err(missing("run", run_id)),
        }
    }

    async fn settle_budget(&self, run_id: &RunId, step: &StepId, settlement: Settlement) -> Result<Settled, PortError> {
        let expression = budget::settle_expression(step, settlement)?;
        match self.update(Self::key(run_pk(run_id), RUN_SK), expression, true).await? {
            Updated::Applied(_) => Ok(Settled::Done),
            Updated::Refused(Some(item)) => Ok(budget::why_not_settled(from_item("run item", item)?, step, settlement)),
            Updated::Refused(None) => Err(missing("run", run_id)),
        }
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<RunEvent>) -> Result<(), PortError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut expression = Expression::default();
        expression.append("events", &events)?;
        expression.require("attribute_exists(pk)".to_owned());
        match self.update(Self::key(run_pk(run_id), RUN_SK), expression, false).await? {
            Updated::Applied(_) => Ok(()),
            Updated::Refused(_) => Err(missing("run", run_id)),
        }
    }

    async fn retry_run(&self, run_id: &RunId, retry: RunRetry) -> Result<Option<Run>, PortError> {
        self.reopen_run(run_id, retry).await
    }

    async fn finish_retry(&self, run_id: &RunId, generation: u32) -> Result<bool, PortError> {
        self.end_reset(run_id, generation).await
    }

    async fn reset_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        reset: StepReset,
    ) -> Result<Option<StepState>, PortError> {
        self.reset_step_item(run_id, step_id, reset).await
    }

    async fn claim_retry_key(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        run_id: &RunId,
        generation: u32,
        now: jiff::Timestamp,
    ) -> Result<RetryKeyClaim, PortError> {
        self.put_retry_key(tenant, claim, run_id, generation, now).await
    }

    async fn list_events(&self, run_id: &RunId) -> Result<Vec<RunEvent>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", string(run_pk(run_id)))
            .projection_expression("events")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut events = Vec::new();
        while let Some(item) = pages.next().await {
            let item: EventsItem = from_item("event history", item.map_err(unavailable)?)?;
            events.extend(item.events);
        }
        // Each item keeps its own events in order; merging them by time is stable.
        events.sort_by_key(|event| event.at);
        Ok(events)
    }

    async fn due(&self, now: jiff::Timestamp, limit: usize) -> Result<Vec<DueRef>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(RECONCILE_BY_DUE)
            .key_condition_expression("due_bucket = :bucket AND due_at < :now")
            .expression_attribute_values(":bucket", string(DUE_BUCKET))
            .expression_attribute_values(":now", number(now.as_second()))
            .limit(i32::try_from(limit.min(1_000)).unwrap_or(1_000))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while found.len() < limit
            && let Some(item) = pages.next().await
        {
            let keys: KeysItem = from_item("due index entry", item.map_err(unavailable)?)?;
            let corrupt = || PortError::Corrupt { what: "due index entry", detail: format!("{}/{}", keys.pk, keys.sk) };
            let run_id = keys.pk.strip_prefix("RUN#").and_then(|id| RunId::parse(id).ok()).ok_or_else(corrupt)?;
            let step_id = match step_id_of_sk(&keys.sk) {
                Some(id) => Some(id),
                None if keys.sk == RUN_SK => None,
                None => return Err(corrupt()),
            };
            found.push(DueRef { run_id, step_id });
        }
        Ok(found)
    }

    async fn fail_unreadable_run(
        &self,
        run_id: &RunId,
        error: StepError,
        now: jiff::Timestamp,
    ) -> Result<bool, PortError> {
        let Some(item) = self.run_item(run_id).await? else { return Ok(false) };
        let mut expression = Expression::default();
        // What cannot be read is replaced, so the run can be read, shown and notified. A blob
        // store that does not answer is not a missing payload: that error is passed on.
        if unreadable(self.load_payload(item.definition).await)? {
            expression.set("definition", &Payload::Json(r#"{"steps":[]}"#.to_owned()))?;
        }
        if unreadable(self.load_payload(item.input).await)? {
            expression.set("input", &Payload::Json("null".to_owned()))?;
        }
        if unreadable(self.load_optional(item.output).await)? {
            expression.remove("output");
        }
        let status = expression.name("status");
        let unfinished = RunStatus::UNFINISHED
            .iter()
            .map(|wanted| Ok(format!("{status} = {}", expression.serde_value(wanted)?)))
            .collect::<Result<Vec<_>, PortError>>()?;
        expression.require(format!("attribute_exists(pk) AND ({})", unfinished.join(" OR ")));
        expression.set("status", &RunStatus::Failed)?;
        expression.set("error", &error)?;
        expression.set("finished_at", &now)?;
        expression.set("updated_at", &now)?;
        expression.set("due", &now)?;
        set_due_keys(&mut expression, Some(now))?;
        match self.update(Self::key(run_pk(run_id), RUN_SK), expression, false).await? {
            Updated::Applied(_) => Ok(true),
            Updated::Refused(_) => Ok(false),
        }
    }
}

/// What the `runs_by_tenant` index projects.
#[derive(serde::Deserialize)]
struct SummaryItem {
    id: RunId,
    run_name: Option<String>,
    status: crate::domain::RunStatus,
    created_at: jiff::Timestamp,
    finished_at: Option<jiff::Timestamp>,
}

impl From<SummaryItem> for RunSummary {
    fn from(item: SummaryItem) -> Self {
        Self {
            id: item.id,
            name: item.run_name,
            status: item.status,
            created_at: item.created_at,
            finished_at: item.finished_at,
        }
    }
}

#[derive(serde::Deserialize)]
struct EventsItem {
    #[serde(default)]
    events: Vec<RunEvent>,
}

#[derive(serde::Deserialize)]
struct KeysItem {
    pk: String,
    sk: String,
}
