//! A map step's items on the table: one item per map item under `ITEM#<step>#<index>`, beside
//! the run's steps but outside their `STEP#` range, so a worker reading a run's steps never
//! reads a thousand items. An item's end is counted on its map step in one transaction with
//! the item's own `counted` mark: no list on the map step grows with its items, and each
//! write touches the map step once.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::expression::{Expression, number, string};
use super::items::{StepItem, items_sk_prefix, run_pk, step_sk};
use super::{DynamoRunStore, from_item, missing, unavailable};
use crate::domain::{RunId, StepId, StepState};
use crate::ports::{ItemOutputs, PortError};

/// Times a count cancelled by a colliding transaction is tried again.
const TRANSACTION_RETRIES: u32 = 4;

impl DynamoRunStore {
    /// One step or map item as stored, its output not loaded (a strongly consistent read).
    pub(super) async fn step_item(&self, run_id: &RunId, step_id: &StepId) -> Result<Option<StepItem>, PortError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(run_pk(run_id), step_sk(step_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        found.item.map(|item| from_item("step item", item)).transpose()
    }

    /// Marks `item` counted and counts it down on its map step, both or neither; an item
    /// counted before changes nothing. Then reads the map step back.
    pub(super) async fn count_map_item(
        &self,
        run_id: &RunId,
        item: &StepId,
        succeeded: bool,
    ) -> Result<StepState, PortError> {
        let (map_id, _) = item.map_item().ok_or_else(|| missing("map item", item))?;
        let mut mark = Expression::default();
        mark.set("counted", &true)?;
        let counted = mark.name("counted");
        let yes = mark.value(AttributeValue::Bool(true));
        mark.require(format!("attribute_exists(pk) AND (attribute_not_exists({counted}) OR {counted} <> {yes})"));

        let mut count = Expression::default();
        let (map, pending) = (count.name("map"), count.name("pending"));
        let one = count.value(number(1));
        count.set_raw(format!("{map}.{pending} = {map}.{pending} - {one}"));
        if !succeeded {
            let failed = count.name("failed");
            count.set_raw(format!("{map}.{failed} = {map}.{failed} + {one}"));
        }
        count.require(format!("attribute_exists({map})"));

        // Items of one map ending together meet on the map step; DynamoDB cancels a
        // transaction that collides with another on the same item, so try again a few times.
        for round in 0..=TRANSACTION_RETRIES {
            let written = self
                .client
                .transact_write_items()
                .transact_items(self.update_action(run_id, item, &mark)?)
                .transact_items(self.update_action(run_id, &map_id, &count)?)
                .send()
                .await;
            let Err(error) = written else { break };
            let reasons = match &error {
                SdkError::ServiceError(failure) => match failure.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        cancelled.cancellation_reasons().iter().map(|reason| reason.code().map(str::to_owned)).collect()
                    }
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            let conflict = reasons.iter().flatten().any(|code| code == "TransactionConflict");
            // The item was counted before, or its map step was reset by a retry and has not
            // started its items again (it has no `map`): either way nothing counts.
            if reasons.iter().flatten().any(|code| code == "ConditionalCheckFailed") {
                break;
            }
            if !conflict || round == TRANSACTION_RETRIES {
                return Err(unavailable(error));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << round)).await;
        }
        let map = self.step_item(run_id, &map_id).await?.ok_or_else(|| missing("step", &map_id))?;
        Ok(map.into_state(None))
    }

    fn update_action(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        expression: &Expression,
    ) -> Result<TransactWriteItem, PortError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(run_pk(run_id), step_sk(step_id))))
            .set_update_expression(expression.update_expression())
            .set_condition_expression(expression.condition_expression())
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Every item of map step `step`, in order, with outputs as `outputs` says (counted as
    /// stored JSON text, inline or in the blob store; nothing more is fetched once over).
    pub(super) async fn query_items(
        &self,
        run_id: &RunId,
        step: &StepId,
        outputs: ItemOutputs,
    ) -> Result<Option<Vec<StepState>>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :items)")
            .expression_attribute_values(":pk", string(run_pk(run_id)))
            .expression_attribute_values(":items", string(items_sk_prefix(step)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut items = Vec::new();
        let mut loaded = 0_usize;
        while let Some(item) = pages.next().await {
            let mut item: StepItem = from_item("map item", item.map_err(unavailable)?)?;
            let output = match (outputs, item.output.take()) {
                (ItemOutputs::Within(max), Some(payload)) => {
                    let output = self.load_payload(payload).await?;
                    loaded += output.to_string().len();
                    if loaded > max {
                        return Ok(None);
                    }
                    Some(output)
                }
                _ => None,
            };
            items.push(item.into_state(output));
        }
        Ok(Some(items))
    }
}
