//! [`RateLimiter`] on the same table, shared by every concurrent worker Lambda: one
//! `RATE#<scope>` / `RATE` item per scope holds the token bucket (`tokens`,
//! `refilled_at_ms`) and a `version` that every write bumps.
//!
//! A grant is one conditional `UpdateItem` in the common case: the limiter remembers the
//! last bucket it saw per scope, computes the take from it locally and writes on condition
//! that the version is still the one it saw. When another worker moved the bucket in
//! between, the refused write returns the item as it is (`ALL_OLD`) and the take is redone
//! from that. Refills compose exactly and other workers only take tokens, so a remembered
//! bucket never holds fewer tokens than the stored one will: when it says wait, nothing is
//! read or written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::Deserialize;

use super::expression::{Expression, number, string};
use super::{from_item, unavailable};
use crate::domain::rate::take;
use crate::domain::{Bucket, RateLimit};
use crate::ports::{Acquired, Clock, PortError, RateLimiter};

const RATE_SK: &str = "RATE";
/// An idle scope's item is deleted (TTL) after a day; the next call starts a full bucket,
/// which is what a day's refill would have given anyway.
const IDLE_EXPIRY_SECONDS: i64 = 24 * 3600;
/// Conditional writes to try before reporting contention as a short wait: each refused one
/// means another worker took a token meanwhile, so the bucket drains quickly either way.
const MAX_TRIES: u32 = 5;
/// The wait reported after [`MAX_TRIES`] refused writes, with jitter so the losers do not
/// come back together.
const CONTENTION_WAIT_MS: std::ops::Range<u64> = 20..100;

/// The bucket item's attributes that matter here (serde ignores the keys and TTL).
#[derive(Debug, Deserialize)]
struct RateItem {
    tokens: f64,
    refilled_at_ms: i64,
    version: u64,
}

/// A bucket as last seen, and the version it was stored under.
#[derive(Debug, Clone, Copy)]
struct Seen {
    bucket: Bucket,
    version: u64,
}

/// Rate limits in DynamoDB, shared by every process that uses the same table.
pub struct DynamoRateLimiter {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    /// Per scope, the newest bucket this process saw: the base for the next take.
    seen: Mutex<HashMap<String, Seen>>,
}

impl DynamoRateLimiter {
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self { client, table: table.into(), clock, seen: Mutex::default() }
    }

    fn seen(&self) -> Result<MutexGuard<'_, HashMap<String, Seen>>, PortError> {
        self.seen.lock().map_err(|_| PortError::Corrupt {
            what: "DynamoDB rate limiter",
            detail: "a task panicked while holding the lock".to_owned(),
        })
    }

    /// Remembers `seen` for `scope` unless a newer version is already remembered (tasks of
    /// this process race each other too); `None` forgets the scope (its item is gone).
    fn remember(&self, scope: &str, seen: Option<Seen>) -> Result<(), PortError> {
        let mut remembered = self.seen()?;
        match seen {
            Some(seen) => {
                let newer = remembered.get(scope).is_none_or(|known| known.version <= seen.version);
                if newer {
                    remembered.insert(scope.to_owned(), seen);
                }
            }
            None => {
                remembered.remove(scope);
            }
        }
        Ok(())
    }

    /// Stores `bucket` if the item is still at `seen`'s version (absent when `seen` is).
    /// `Err` carries what is stored instead (`None`: no item).
    async fn store(
        &self,
        scope: &str,
        bucket: Bucket,
        seen: Option<Seen>,
    ) -> Result<Result<u64, Option<Seen>>, PortError> {
        let version = seen.map_or(0, |seen| seen.version).saturating_add(1);
        let mut expression = Expression::default();
        expression.set("tokens", &bucket.tokens)?;
        expression.set("refilled_at_ms", &bucket.refilled_at_ms)?;
        expression.set("version", &version)?;
        let expires_at = (bucket.refilled_at_ms / 1000).saturating_add(IDLE_EXPIRY_SECONDS);
        expression.set("expires_at", &expires_at)?;
        // The version, not `refilled_at_ms`: two takes in the same millisecond (or by a
        // clock behind the bucket) leave the time unchanged, and would both pass a
        // condition on it.
        match seen {
            Some(seen) => {
                let name = expression.name("version");
                let value = expression.value(number(seen.version));
                expression.require(format!("{name} = {value}"));
            }
            None => expression.require("attribute_not_exists(pk)".to_owned()),
        }
        let key =
            HashMap::from([("pk".to_owned(), string(format!("RATE#{scope}"))), ("sk".to_owned(), string(RATE_SK))]);
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_update_expression(expression.update_expression())
            .set_condition_expression(expression.condition_expression())
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match written {
            Ok(_) => Ok(Ok(version)),
            Err(SdkError::ServiceError(failure))
                if matches!(failure.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let current = match failure.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                Ok(Err(current.map(seen_from_item).transpose()?))
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

fn seen_from_item(item: HashMap<String, AttributeValue>) -> Result<Seen, PortError> {
    let item: RateItem = from_item("rate limit item", item)?;
    Ok(Seen { bucket: Bucket { tokens: item.tokens, refilled_at_ms: item.refilled_at_ms }, version: item.version })
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn acquire(&self, scope: &str, limit: RateLimit) -> Result<Acquired, PortError> {
        let mut seen = self.seen()?.get(scope).copied();
        for _ in 0..MAX_TRIES {
            let now_ms = self.clock.now().as_millisecond();
            let bucket = match take(limit, seen.map(|seen| seen.bucket), now_ms) {
                Ok(bucket) => bucket,
                Err(wait) => return Ok(Acquired::Wait(wait)),
            };
            match self.store(scope, bucket, seen).await? {
                Ok(version) => {
                    self.remember(scope, Some(Seen { bucket, version }))?;
                    return Ok(Acquired::Granted);
                }
                // Another worker moved the bucket: start again from where it is now.
                Err(current) => {
                    self.remember(scope, current)?;
                    seen = current;
                }
            }
        }
        Ok(Acquired::Wait(Duration::from_millis(fastrand::u64(CONTENTION_WAIT_MS))))
    }
}
