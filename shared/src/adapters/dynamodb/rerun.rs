//! A retry's writes on the table (`domain::rerun` has the design): the run item reopened in
//! one conditional `UpdateItem`; each step reset in one transaction, conditional on the run
//! running in the retry's generation and the step being a finished step of an older one, that
//! also moves the step's history to an item of its own; and the retry's idempotency key.
//!
//! The run item's `released_sinks` and `budget_settled` lists only ever grow by appends, so
//! forgetting the re-run steps there removes them by index, conditional on each list's size
//! being what was read: an append in between makes the write fail, and it is tried again on
//! the lists as they are.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};

use super::expression::{Expression, number};
use super::items::{
    BUDGET_SETTLED, HistoryItem, IDEMPOTENCY_SK, IdempotencyItem, RUN_SK, RunItem, StepItem, history_sk,
    idempotency_pk, run_pk,
};
use super::{
    DynamoRunStore, IDEMPOTENCY_TTL, Updated, from_item, missing, set_due_keys, step_status_condition, to_item,
    unavailable,
};
use crate::domain::{Run, RunId, RunRetry, RunStatus, StepId, StepReset, StepState, StepStatus, TenantId};
use crate::ports::{IdempotencyClaim, PortError, RetryKeyClaim};

/// Reads of the run item before giving up on reopening it while other writes keep
/// appending to its lists (only a step of an earlier generation still ending can).
const TRIES: usize = 4;

impl DynamoRunStore {
    /// [`crate::ports::RunStore::retry_run`].
    pub(super) async fn reopen_run(&self, run_id: &RunId, retry: RunRetry) -> Result<Option<Run>, PortError> {
        for _ in 0..TRIES {
            let item = self.run_item(run_id).await?.ok_or_else(|| missing("run", run_id))?;
            let admitted = matches!(item.status, RunStatus::Failed | RunStatus::Cancelled)
                && item.generation.checked_add(1) == Some(retry.generation)
                && item.due_keys.due_at.is_none();
            if !admitted {
                return Ok(None);
            }
            let expression = reopen_expression(&item, &retry)?;
            match self.update(Self::key(run_pk(run_id), RUN_SK), expression, false).await? {
                Updated::Applied(after) => return Ok(Some(self.run_from_item(from_item("run item", after)?).await?)),
                // Retried or appended to in between: read again.
                Updated::Refused(_) => continue,
            }
        }
        Err(PortError::Unavailable { what: "DynamoDB", source: "the run item kept changing under a retry".into() })
    }

    /// [`crate::ports::RunStore::finish_retry`].
    pub(super) async fn end_reset(&self, run_id: &RunId, generation: u32) -> Result<bool, PortError> {
        let mut expression = Expression::default();
        expression.set("due", &None::<jiff::Timestamp>)?;
        set_due_keys(&mut expression, None)?;
        let (status, stored) = (expression.name("status"), expression.name("generation"));
        let running = expression.serde_value(&RunStatus::Running)?;
        let generation = expression.value(number(generation));
        expression.require(format!("attribute_exists(pk) AND {status} = {running} AND {stored} = {generation}"));
        Ok(matches!(self.update(Self::key(run_pk(run_id), RUN_SK), expression, false).await?, Updated::Applied(_)))
    }

    /// [`crate::ports::RunStore::reset_step`]: one transaction that checks the run, moves the
    /// step's history to a [`HistoryItem`] and writes the step as reset in place of the old.
    pub(super) async fn reset_step_item(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        reset: StepReset,
    ) -> Result<Option<StepState>, PortError> {
        let old = self.step_item(run_id, step_id).await?.ok_or_else(|| missing("step", step_id))?;
        if !reset.admits(&old.state) {
            return Ok(None);
        }
        let state = reset.apply(&old.state);
        let mut item = StepItem::new(run_id, state.clone(), old.expires_at);
        item.events = reset.events.clone();

        let mut run = Expression::default();
        let (status, stored) = (run.name("status"), run.name("generation"));
        let running = run.serde_value(&RunStatus::Running)?;
        let generation = run.value(number(reset.generation));
        run.require(format!("{status} = {running} AND {stored} = {generation}"));
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(run_pk(run_id), RUN_SK)))
            .set_condition_expression(run.condition_expression())
            .set_expression_attribute_names(run.names())
            .set_expression_attribute_values(run.values())
            .build()
            .map_err(unavailable)?;

        let mut step = Expression::default();
        let finished = step_status_condition(&mut step, &StepStatus::FINISHED)?;
        let stored = step.name("generation");
        let generation = step.value(number(reset.generation));
        step.require("attribute_exists(pk)".to_owned());
        step.require(finished);
        step.require(format!("attribute_not_exists({stored}) OR {stored} < {generation}"));
        let put_step = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .set_condition_expression(step.condition_expression())
            .set_expression_attribute_names(step.names())
            .set_expression_attribute_values(step.values())
            .build()
            .map_err(unavailable)?;

        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(TransactWriteItem::builder().put(put_step).build());
        if !old.events.is_empty() {
            let history = HistoryItem {
                pk: run_pk(run_id),
                sk: history_sk(step_id, old.state.control.generation),
                events: old.events,
                expires_at: old.expires_at,
            };
            let put_history = Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_item(&history)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(unavailable)?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put_history).build());
        }
        match transaction.send().await {
            Ok(_) => Ok(Some(state)),
            Err(SdkError::ServiceError(failure)) => {
                let refused = match failure.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled
                        .cancellation_reasons()
                        .iter()
                        .any(|reason| reason.code() == Some("ConditionalCheckFailed")),
                    _ => false,
                };
                if refused { Ok(None) } else { Err(unavailable(SdkError::ServiceError(failure))) }
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// [`crate::ports::RunStore::claim_retry_key`]: one conditional `PutItem` that returns
    /// the claim found when the key is taken.
    pub(super) async fn put_retry_key(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        run_id: &RunId,
        generation: u32,
        now: jiff::Timestamp,
    ) -> Result<RetryKeyClaim, PortError> {
        let key_item = IdempotencyItem {
            pk: idempotency_pk(tenant, &claim.key),
            sk: IDEMPOTENCY_SK.to_owned(),
            run_id: run_id.clone(),
            request_hash: claim.request_hash.clone(),
            expires_at: (now + IDEMPOTENCY_TTL).as_second(),
            generation: Some(generation),
        };
        // TTL deletes lazily (within days): an expired key counts as free.
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&key_item)?))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", number(now.as_second()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(RetryKeyClaim::Claimed),
            Err(SdkError::ServiceError(failure))
                if matches!(failure.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let item = match failure.into_err() {
                    PutItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                let existing: IdempotencyItem = from_item("idempotency item", item.unwrap_or_default())?;
                Ok(RetryKeyClaim::Taken {
                    run_id: existing.run_id,
                    request_hash: existing.request_hash,
                    generation: existing.generation,
                })
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

/// The reopening of `item` (as read) for `retry`: the run back to `running` in the new
/// generation, its end cleared, the re-run steps forgotten in its lists by index, on the
/// condition that it is still as read (status, generation, nothing due, the lists' sizes).
fn reopen_expression(item: &RunItem, retry: &RunRetry) -> Result<Expression, PortError> {
    let mut expression = Expression::default();
    let (status, stored) = (expression.name("status"), expression.name("generation"));
    let was = expression.serde_value(&item.status)?;
    let before = expression.value(number(item.generation));
    let due_at = expression.name("due_at");
    expression.require("attribute_exists(pk)".to_owned());
    expression.require(format!("{status} = {was}"));
    expression.require(if item.generation == 0 {
        format!("attribute_not_exists({stored}) OR {stored} = {before}")
    } else {
        format!("{stored} = {before}")
    });
    expression.require(format!("attribute_not_exists({due_at})"));
    for (list, entries) in [("released_sinks", &item.released_sinks), (BUDGET_SETTLED, &item.budget.budget_settled)] {
        let name = expression.name(list);
        let size = expression.value(number(entries.len()));
        expression.require(if entries.is_empty() {
            format!("attribute_not_exists({name}) OR size({name}) = {size}")
        } else {
            format!("size({name}) = {size}")
        });
        for (index, entry) in entries.iter().enumerate() {
            if retry.forgets(entry) {
                expression.remove_raw(format!("{name}[{index}]"));
            }
        }
    }

    expression.set("status", &RunStatus::Running)?;
    expression.set("generation", &retry.generation)?;
    expression.set("pending_sinks", &retry.pending_sinks)?;
    expression.set("due", &retry.due)?;
    set_due_keys(&mut expression, Some(retry.due))?;
    for cleared in ["output", "error", "finished_at"] {
        expression.remove(cleared);
    }
    if let Some(last) = retry.events.last() {
        expression.set("updated_at", &last.at)?;
    }
    if !retry.events.is_empty() {
        expression.append("events", &retry.events)?;
    }
    Ok(expression)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(step: &str) -> StepId {
        StepId::parse(step).unwrap()
    }

    #[test]
    fn a_steps_earlier_history_is_kept_outside_the_ranges_steps_and_items_are_read_from() {
        use super::super::items::{ITEM_SK_PREFIX, STEP_SK_PREFIX, step_id_of_sk};
        for step in [id("draft"), id("each").item(7)] {
            let sk = history_sk(&step, 2);
            assert!(!sk.starts_with(STEP_SK_PREFIX) && !sk.starts_with(ITEM_SK_PREFIX), "{sk}");
            assert_eq!(step_id_of_sk(&sk), None, "{sk}");
            assert_ne!(sk, history_sk(&step, 3), "one item per generation");
        }
    }

    #[test]
    fn a_reopening_forgets_the_rerun_steps_by_index_on_the_lists_as_read() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let run = serde_json::json!({
            "pk": "RUN#x", "sk": "RUN", "tenant_pk": "acme", "created_sk": "x",
            "id": "run_01jd7v1b0m4xk3r0c9z9qz5y7w", "tenant": "acme", "status": "failed",
            "definition": {"json": "{}"}, "input": {"json": "{}"}, "notify": null, "output": null,
            "error": null, "pending_sinks": 0, "released_sinks": ["a", "b", "m"],
            "created_at": now, "updated_at": now, "finished_at": now, "expires_at": 0, "events": [],
            "budget_settled": ["a", "m[0]", "b", "m[1]"], "generation": 1
        });
        let item: RunItem = serde_json::from_value(run).unwrap();
        let retry =
            RunRetry { generation: 2, rerun: vec![id("b"), id("m")], pending_sinks: 2, due: now, events: vec![] };
        let expression = reopen_expression(&item, &retry).unwrap();
        let update = expression.update_expression().unwrap();
        for removed in [
            "#released_sinks[1]",
            "#released_sinks[2]",
            "#budget_settled[1]",
            "#budget_settled[2]",
            "#budget_settled[3]",
        ] {
            assert!(update.contains(removed), "{removed}: {update}");
        }
        assert!(!update.contains("#released_sinks[0]") && !update.contains("#budget_settled[0]"), "{update}");
        let condition = expression.condition_expression().unwrap();
        assert!(condition.contains("size(#released_sinks) = ") && condition.contains("size(#budget_settled) = "));
        assert!(condition.contains("attribute_not_exists(#due_at)"), "{condition}");
        assert!(
            !condition.contains("attribute_not_exists(#generation)"),
            "a retried run has a generation: {condition}"
        );
    }
}
