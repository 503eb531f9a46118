//! [`WorkflowRegistry`] on the same table, one partition per tenant (`WORKFLOWS#<tenant>`):
//!
//! - `NAME#<name>`: the workflow's head — latest version and hash, created and updated times.
//!   Listing the tenant's workflows is a Query over these.
//! - `VERSION#<name>#<version, 10 digits>`: a version's number, hash and time; small, so
//!   listing a workflow's versions (up to [`RegistryLimits::max_versions`]) is one Query page.
//! - `DEFINITION#<name>#<version, 10 digits>`: the same with the definition, as JSON text
//!   (at most 256 KiB; text, so DynamoDB's 32 levels of nesting do not apply to it). Apart from
//!   the version item because a Query reads, and is billed for, whole items: with the
//!   definitions beside them, listing 1,000 versions could read 256 MB.
//! - `COUNT`: how many workflows the tenant has, for [`RegistryLimits::max_workflows`].
//!
//! Registering reads the head and, unless the definition is the latest already, writes
//! version n in one transaction: the head moved from n - 1 to n (or created, and the count
//! raised below its bound, for version 1), and the version and definition items created. A
//! registration that loses the race to another reads the head again and tries the next
//! number. None of these items carries `expires_at`: registered workflows do not expire.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::expression::{Expression, number, string};
use super::{from_item, to_item, unavailable};
use crate::domain::{RegistryLimits, TenantId, WorkflowDefinition, WorkflowName, definition_hash};
use crate::ports::{
    PortError, RegisterError, Registration, VersionSummary, WorkflowPage, WorkflowRegistry, WorkflowSummary,
    WorkflowVersion,
};

const NAME_PREFIX: &str = "NAME#";
const VERSION_PREFIX: &str = "VERSION#";
const DEFINITION_PREFIX: &str = "DEFINITION#";
const COUNT_SK: &str = "COUNT";
/// Tries of a registration that keeps losing the race to others before it gives up: one
/// more than the registrations that can plausibly race on one workflow.
const REGISTER_ATTEMPTS: u32 = 10;
/// The transaction's items in order, as its cancellation reasons list them.
const HEAD: usize = 0;
const COUNT: usize = 3;

/// `NAME#<name>`: the workflow's head.
#[derive(Debug, Serialize, Deserialize)]
struct HeadItem {
    pk: String,
    sk: String,
    name: WorkflowName,
    latest_version: u32,
    latest_hash: String,
    created_at: jiff::Timestamp,
    /// When the latest version was registered.
    updated_at: jiff::Timestamp,
}

/// `VERSION#<name>#<version>`: a version without its definition.
#[derive(Debug, Serialize, Deserialize)]
struct VersionItem {
    pk: String,
    sk: String,
    name: WorkflowName,
    version: u32,
    hash: String,
    created_at: jiff::Timestamp,
}

/// `DEFINITION#<name>#<version>`: a version with its definition.
#[derive(Debug, Serialize, Deserialize)]
struct DefinitionItem {
    pk: String,
    sk: String,
    name: WorkflowName,
    version: u32,
    hash: String,
    created_at: jiff::Timestamp,
    /// The definition as JSON text.
    definition: String,
}

fn workflows_pk(tenant: &TenantId) -> String {
    format!("WORKFLOWS#{tenant}")
}

fn name_sk(name: &WorkflowName) -> String {
    format!("{NAME_PREFIX}{name}")
}

/// Zero-padded, so the versions of a workflow sort by number.
fn version_sk(prefix: &str, name: &WorkflowName, version: u32) -> String {
    format!("{prefix}{name}#{version:010}")
}

fn key(pk: String, sk: impl Into<String>) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), string(pk)), ("sk".to_owned(), string(sk))])
}

/// Registered workflows in DynamoDB.
#[derive(Clone)]
pub struct DynamoWorkflowRegistry {
    client: Client,
    table: String,
    limits: RegistryLimits,
}

impl DynamoWorkflowRegistry {
    /// A registry with the default [`RegistryLimits`].
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::with_limits(client, table, RegistryLimits::default())
    }

    /// A registry that bounds versions and workflows by `limits`.
    pub fn with_limits(client: Client, table: impl Into<String>, limits: RegistryLimits) -> Self {
        Self { client, table: table.into(), limits }
    }

    /// The item at `sk` in the tenant's partition, read strongly consistent: a client that
    /// registered a version reads it back at once, and a registration decides on the latest.
    async fn item<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        tenant: &TenantId,
        sk: String,
    ) -> Result<Option<T>, PortError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(workflows_pk(tenant), sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        found.item.map(|item| from_item(what, item)).transpose()
    }

    async fn head(&self, tenant: &TenantId, name: &WorkflowName) -> Result<Option<HeadItem>, PortError> {
        self.item("workflow head item", tenant, name_sk(name)).await
    }

    /// The writes that make version `next` the latest, in the order of [`HEAD`] and
    /// [`COUNT`].
    fn registration(&self, new: &NewVersion<'_>, head: Option<&HeadItem>) -> Result<Vec<TransactWriteItem>, PortError> {
        let NewVersion { tenant, name, version, hash, definition, at } = *new;
        let pk = workflows_pk(tenant);
        let head_write = match head {
            None => {
                let item = HeadItem {
                    pk: pk.clone(),
                    sk: name_sk(name),
                    name: name.clone(),
                    latest_version: version,
                    latest_hash: hash.to_owned(),
                    created_at: at,
                    updated_at: at,
                };
                TransactWriteItem::builder().put(put_new(&self.table, to_item(&item)?)?).build()
            }
            Some(head) => {
                let mut expression = Expression::default();
                expression.set("latest_version", &version)?;
                expression.set("latest_hash", &hash)?;
                expression.set("updated_at", &at)?;
                let (latest, read) = (expression.name("latest_version"), expression.value(number(head.latest_version)));
                expression.require(format!("{latest} = {read}"));
                let update = update(&self.table, key(pk.clone(), name_sk(name)), &expression)?;
                TransactWriteItem::builder().update(update).build()
            }
        };
        let version_item = VersionItem {
            pk: pk.clone(),
            sk: version_sk(VERSION_PREFIX, name, version),
            name: name.clone(),
            version,
            hash: hash.to_owned(),
            created_at: at,
        };
        let definition_item = DefinitionItem {
            pk: pk.clone(),
            sk: version_sk(DEFINITION_PREFIX, name, version),
            name: name.clone(),
            version,
            hash: hash.to_owned(),
            created_at: at,
            definition: definition.to_owned(),
        };
        let mut writes = vec![
            head_write,
            TransactWriteItem::builder().put(put_new(&self.table, to_item(&version_item)?)?).build(),
            TransactWriteItem::builder().put(put_new(&self.table, to_item(&definition_item)?)?).build(),
        ];
        if head.is_none() {
            // A new workflow: counted, below the tenant's bound.
            let mut expression = Expression::default();
            let count = expression.name("workflows");
            let (zero, one) = (expression.value(number(0)), expression.value(number(1)));
            let max = expression.value(number(self.limits.max_workflows));
            expression.set_raw(format!("{count} = if_not_exists({count}, {zero}) + {one}"));
            expression.require(format!("attribute_not_exists({count}) OR {count} < {max}"));
            let update = update(&self.table, key(pk, COUNT_SK), &expression)?;
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(writes)
    }
}

/// What one registration attempt writes.
#[derive(Clone, Copy)]
struct NewVersion<'a> {
    tenant: &'a TenantId,
    name: &'a WorkflowName,
    version: u32,
    hash: &'a str,
    /// The definition as JSON text.
    definition: &'a str,
    at: jiff::Timestamp,
}

/// A put of an item that must not exist yet.
fn put_new(table: &str, item: HashMap<String, AttributeValue>) -> Result<Put, PortError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(unavailable)
}

fn update(table: &str, key: HashMap<String, AttributeValue>, expression: &Expression) -> Result<Update, PortError> {
    Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .set_update_expression(expression.update_expression())
        .set_condition_expression(expression.condition_expression())
        .set_expression_attribute_names(expression.names())
        .set_expression_attribute_values(expression.values())
        .build()
        .map_err(unavailable)
}

fn condition_failed(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

fn corrupt_definition(err: serde_json::Error) -> PortError {
    PortError::Corrupt { what: "registered workflow definition", detail: err.to_string() }
}

impl From<HeadItem> for WorkflowSummary {
    fn from(head: HeadItem) -> Self {
        Self {
            name: head.name,
            latest_version: head.latest_version,
            latest_hash: head.latest_hash,
            created_at: head.created_at,
            updated_at: head.updated_at,
        }
    }
}

#[async_trait]
impl WorkflowRegistry for DynamoWorkflowRegistry {
    async fn register(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        definition: &WorkflowDefinition,
        at: jiff::Timestamp,
    ) -> Result<Registration, RegisterError> {
        let hash = definition_hash(definition);
        let text = serde_json::to_string(definition).map_err(corrupt_definition)?;
        // Set when a first version was refused for the tenant's count alone: the bound holds
        // unless the workflow turns out to exist by now (someone else created it).
        let mut at_workflow_bound = false;
        for attempt in 0..REGISTER_ATTEMPTS {
            if attempt > 0 {
                // Spread out the retries of registrations that collided.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=20 * u64::from(attempt)))).await;
            }
            let head = self.head(tenant, name).await?;
            match &head {
                Some(head) if head.latest_hash == hash => {
                    let version = VersionSummary { version: head.latest_version, hash, created_at: head.updated_at };
                    return Ok(Registration { version, created: false });
                }
                None if at_workflow_bound => {
                    return Err(RegisterError::TooManyWorkflows { max: self.limits.max_workflows });
                }
                _ => {}
            }
            let next = head.as_ref().map_or(1, |head| head.latest_version.saturating_add(1));
            if next > self.limits.max_versions {
                return Err(RegisterError::TooManyVersions { name: name.clone(), max: self.limits.max_versions });
            }
            let new = NewVersion { tenant, name, version: next, hash: &hash, definition: &text, at };
            let written = self
                .client
                .transact_write_items()
                .set_transact_items(Some(self.registration(&new, head.as_ref())?))
                .send()
                .await;
            match written {
                Ok(_) => {
                    let version = VersionSummary { version: next, hash, created_at: at };
                    return Ok(Registration { version, created: true });
                }
                // Another registration got in first (a condition failed, or the transactions
                // collided): try again from what is stored now.
                Err(SdkError::ServiceError(failure)) => {
                    let TransactWriteItemsError::TransactionCanceledException(cancelled) = failure.err() else {
                        return Err(unavailable(SdkError::ServiceError(failure)).into());
                    };
                    let reasons = cancelled.cancellation_reasons();
                    at_workflow_bound =
                        head.is_none() && condition_failed(reasons, COUNT) && !condition_failed(reasons, HEAD);
                }
                Err(err) => return Err(unavailable(err).into()),
            }
        }
        Err(PortError::Unavailable {
            what: "DynamoDB",
            source: format!("workflow `{name}` kept changing during {REGISTER_ATTEMPTS} attempts to register it")
                .into(),
        }
        .into())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        version: Option<u32>,
    ) -> Result<Option<WorkflowVersion>, PortError> {
        let version = match version {
            Some(version) => version,
            None => match self.head(tenant, name).await? {
                Some(head) => head.latest_version,
                None => return Ok(None),
            },
        };
        let sk = version_sk(DEFINITION_PREFIX, name, version);
        let Some(item) = self.item::<DefinitionItem>("workflow definition item", tenant, sk).await? else {
            return Ok(None);
        };
        Ok(Some(WorkflowVersion {
            definition: serde_json::from_str(&item.definition).map_err(corrupt_definition)?,
            name: item.name,
            version: item.version,
            hash: item.hash,
            created_at: item.created_at,
        }))
    }

    async fn versions(&self, tenant: &TenantId, name: &WorkflowName) -> Result<Vec<VersionSummary>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :versions)")
            .expression_attribute_values(":pk", string(workflows_pk(tenant)))
            .expression_attribute_values(":versions", string(format!("{VERSION_PREFIX}{name}#")))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut versions = Vec::new();
        while let Some(item) = pages.next().await {
            let item: VersionItem = from_item("workflow version item", item.map_err(unavailable)?)?;
            versions.push(VersionSummary { version: item.version, hash: item.hash, created_at: item.created_at });
        }
        Ok(versions)
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&WorkflowName>,
        limit: usize,
    ) -> Result<WorkflowPage, PortError> {
        let pk = workflows_pk(tenant);
        let mut start = after.map(|after| key(pk.clone(), name_sk(after)));
        // One more than asked tells whether another page exists; a Query stops at 1 MB
        // whatever its limit, so follow `LastEvaluatedKey` until enough are in.
        let wanted = limit.saturating_add(1);
        let mut workflows = Vec::new();
        loop {
            let fetch = i32::try_from(wanted - workflows.len()).unwrap_or(i32::MAX);
            let found = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :names)")
                .expression_attribute_values(":pk", string(pk.clone()))
                .expression_attribute_values(":names", string(NAME_PREFIX))
                .consistent_read(true)
                .limit(fetch)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in found.items.unwrap_or_default() {
                workflows.push(WorkflowSummary::from(from_item::<HeadItem>("workflow head item", item)?));
            }
            start = found.last_evaluated_key;
            if workflows.len() >= wanted || start.is_none() {
                break;
            }
        }
        Ok(WorkflowPage::from_fetched(workflows, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DynamoDB refuses items over 400 KB: a definition item at the largest definition
    /// validation lets through (256 KiB as JSON) still fits.
    #[test]
    fn a_definition_item_at_the_largest_definition_fits_dynamodb() {
        let name = WorkflowName::parse(&"w".repeat(WorkflowName::MAX_LEN)).unwrap();
        let largest = crate::domain::Limits::default().max_definition_bytes;
        let item = DefinitionItem {
            pk: workflows_pk(&TenantId::parse(&"t".repeat(64)).unwrap()),
            sk: version_sk(DEFINITION_PREFIX, &name, u32::MAX),
            name,
            version: u32::MAX,
            hash: "f".repeat(64),
            created_at: jiff::Timestamp::MAX,
            definition: "x".repeat(largest),
        };
        let size = serde_json::to_vec(&item).unwrap().len();
        assert!(size < 400_000, "a definition item can reach {size} bytes");
    }

    #[test]
    fn version_keys_sort_by_number() {
        let name = WorkflowName::parse("triage").unwrap();
        let keys: Vec<String> = [1, 9, 10, 100, 1_000].iter().map(|v| version_sk(VERSION_PREFIX, &name, *v)).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
        assert_eq!(keys[0], "VERSION#triage#0000000001");
    }
}
