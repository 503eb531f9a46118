//! Map steps (`for_each`): a step whose task runs once per item of a list.
//!
//! The worker that claims a map step evaluates its list, stores one record per item (a map
//! item, named `<step>[<index>]`, run like any step: claimed, leased, retried, followed up)
//! and records on the map step how many there are. At most `max_concurrency` run at once:
//! item `i` waits on item `i - max_concurrency` like a step waits on a dependency, so each
//! item's end releases the next one with the same idempotent countdown write. Each item's end
//! is also counted once on the map step (`RunStore::count_item`); the count that reaches zero
//! (or passes the tolerated failures) ends the map step with `{items: [...]}` in list order,
//! read back from the items, and the map step's own follow-up moves the run on. No list on
//! one record grows with the items, and every follow-up is re-driven by the items' `due`
//! times like any step's.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::progress::context_for;
use super::transitions::{QUEUED_GRACE, follow_up_due};
use super::{Engine, EngineError};
use crate::domain::definition::{MAX_MAP_ITEMS, MAX_RUN_ITEMS};
use crate::domain::{
    Cost, ErrorKind, MapItem, MapProgress, Run, RunEvent, StepDefinition, StepError, StepId, StepState, StepStatus,
    StepTransition, StepUpdate, TemplateContext, Usage,
};
use crate::ports::{ItemOutputs, StepMessage};

/// The largest output a map step may have: its items' outputs together, as JSON.
pub const MAX_MAP_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// One item in a map step's output.
#[derive(Debug, Serialize)]
struct ItemOutcome {
    index: u32,
    status: StepStatus,
    /// The item's output (`null` unless it succeeded).
    output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<StepError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    cost_usd: Cost,
    /// Model calls the item made, failed ones included.
    attempts: usize,
}

impl Engine {
    /// A map step's list: its `for_each` evaluated over `context`.
    fn map_list(&self, step: &StepDefinition, context: &TemplateContext) -> Result<Vec<Value>, StepError> {
        let expression = step.for_each.as_deref().unwrap_or_default();
        let source = Value::String(format!("{{{{ {expression} }}}}"));
        let value = self.templates.render_value(&source, context).map_err(|err| {
            let kind = if err.is_too_large() { ErrorKind::TemplateTooLarge } else { ErrorKind::Template };
            StepError::new(kind, format!("`for_each` could not be evaluated: {err}"))
        })?;
        match value {
            Value::Array(items) if items.len() > MAX_MAP_ITEMS as usize => Err(StepError::new(
                ErrorKind::TemplateTooLarge,
                format!("`for_each` yielded {} items; a map runs at most {MAX_MAP_ITEMS}", items.len()),
            )),
            Value::Array(items) => Ok(items),
            other => Err(StepError::new(
                ErrorKind::Template,
                format!("`for_each` must yield a list, not {}", json_kind(&other)),
            )),
        }
    }

    /// What item `index`'s templates see: the map step's context plus the item.
    pub(super) fn item_context(
        &self,
        map: &StepDefinition,
        index: u32,
        mut context: TemplateContext,
    ) -> Result<TemplateContext, StepError> {
        let list = self.map_list(map, &context)?;
        let item = list.into_iter().nth(index as usize).ok_or_else(|| {
            StepError::new(ErrorKind::Template, format!("`for_each` no longer yields an item {index}"))
        })?;
        context.item = Some(MapItem { item, index });
        Ok(context)
    }

    /// Starts a map step this worker has claimed: stores its items, records how many there
    /// are, and sends the first `max_concurrency`. A crash before the record leaves the step
    /// claimed; the next claim stores the items again (none has run: none was sent).
    pub(super) async fn start_map(
        &self,
        run: &Run,
        step: &StepDefinition,
        steps: &[StepState],
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let list = match self.map_list(step, &context_for(run, steps)) {
            Ok(list) => list,
            Err(error) => return self.end_claimed_map(run, step, Err(error)).await,
        };
        let count = u32::try_from(list.len()).unwrap_or(u32::MAX);
        let others: u32 = steps.iter().filter_map(|s| s.progress.map).map(|map| map.items).sum();
        if others.saturating_add(count) > MAX_RUN_ITEMS {
            let error = StepError::new(
                ErrorKind::TemplateTooLarge,
                format!("this map's {count} items would take the run past {MAX_RUN_ITEMS} map items"),
            );
            return self.end_claimed_map(run, step, Err(error)).await;
        }
        if count == 0 {
            return self.end_claimed_map(run, step, Ok(serde_json::json!({ "items": [] }))).await;
        }
        let slots = step.max_concurrency();
        let items: Vec<StepState> = (0..count)
            .map(|index| {
                let next = index.checked_add(slots).filter(|next| *next < count);
                let dependants = next.map(|next| step.id.item(next)).into_iter().collect();
                let mut item = StepState::new(step.id.item(index), u32::from(index >= slots), dependants);
                if index < slots {
                    item.control.due = Some(now + QUEUED_GRACE);
                }
                item
            })
            .collect();
        self.store.create_items(run, items).await?;
        let started = StepTransition {
            from: vec![StepStatus::Running],
            lease_owner: Some(self.worker_id.clone()),
            update: StepUpdate {
                status: Some(StepStatus::Running),
                // The items carry the map on from here: no lease, nothing due on the step.
                map: Some(MapProgress { items: count, pending: count, failed: 0 }),
                ..StepUpdate::default()
            },
            events: vec![RunEvent::step_status(
                now,
                &step.id,
                StepStatus::Running,
                Some(format!("{count} items, {} at a time", slots.min(count))),
            )],
            ..StepTransition::default()
        };
        if self.store.transition_step(&run.id, &step.id, started).await?.is_none() {
            tracing::warn!(run_id = %run.id, step_id = %step.id, "lost the map step's lease before starting its items");
            return Ok(());
        }
        let first =
            (0..slots.min(count)).map(|index| StepMessage { run_id: run.id.clone(), step_id: step.id.item(index) });
        self.steps.send(first.collect(), Duration::ZERO).await?;
        Ok(())
    }

    /// Ends a claimed map step that has no items to run (an empty list), or could not start.
    async fn end_claimed_map(
        &self,
        run: &Run,
        step: &StepDefinition,
        result: Result<Value, StepError>,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let (status, output, error) = match result {
            Ok(output) => (StepStatus::Succeeded, Some(output), None),
            Err(error) => (StepStatus::Failed, None, Some(error)),
        };
        let reason = error.as_ref().map(|error| error.message.clone());
        let ended = StepTransition {
            from: vec![StepStatus::Running],
            lease_owner: Some(self.worker_id.clone()),
            update: StepUpdate {
                status: Some(status),
                output,
                error,
                finished_at: Some(now),
                due: follow_up_due(now),
                ..StepUpdate::default()
            },
            events: vec![RunEvent::step_status(now, &step.id, status, reason)],
            ..StepTransition::default()
        };
        match self.store.transition_step(&run.id, &step.id, ended).await? {
            Some(state) => self.step_finished(run, state).await,
            None => Ok(()),
        }
    }

    /// What follows a map item's end: count it on its map step, then end the map (every item
    /// ended, or more failed than it tolerates) or release the item waiting for this one's
    /// slot. Idempotent like every follow-up. The map step, once ended, is pushed onto
    /// `finished` for its own follow-up.
    pub(super) async fn item_finished(
        &self,
        run: &Run,
        item: &StepState,
        finished: &mut VecDeque<StepState>,
    ) -> Result<(), EngineError> {
        // Cancelled items belong to a map or run that ended first: nothing counts them.
        let Some((map_id, _)) = item.step_id.map_item().filter(|_| item.status != StepStatus::Cancelled) else {
            return Ok(());
        };
        let Some(map) = run.definition.find_step(&map_id) else { return Ok(()) };
        let after = self.store.count_item(&run.id, &item.step_id, item.status == StepStatus::Succeeded).await?;
        let Some(progress) = after.progress.map else { return Ok(()) };
        if after.status.is_terminal() {
            if after.follow_up_pending() {
                finished.push_back(after);
            }
            return Ok(());
        }
        let too_many_failed = progress.failed > map.tolerated_failures(progress.items);
        if too_many_failed || progress.pending == 0 {
            return self.finish_map(run, &map, progress, finished).await;
        }
        let mut ready = Vec::new();
        for next in &item.control.dependants {
            let released = self.store.release_step(&run.id, next, &item.step_id, true).await?;
            if released.status == StepStatus::Queued {
                ready.push(StepMessage { run_id: run.id.clone(), step_id: next.clone() });
            }
        }
        if !ready.is_empty() {
            self.steps.send(ready, Duration::ZERO).await?;
        }
        Ok(())
    }

    /// Ends a started map step from its items: succeeded with `{items: [...]}` in list order
    /// and the items' usage and cost summed, or failed when more items failed than it
    /// tolerates (items not yet run are then cancelled when their message arrives).
    async fn finish_map(
        &self,
        run: &Run,
        map: &StepDefinition,
        progress: MapProgress,
        finished: &mut VecDeque<StepState>,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let listed = self.store.list_items(&run.id, &map.id, ItemOutputs::Within(MAX_MAP_OUTPUT_BYTES)).await?;
        let outputs_fit = listed.is_some();
        let items = match listed {
            Some(items) => items,
            // Over the limit: the map fails with its items' states, without their outputs.
            None => self.store.list_items(&run.id, &map.id, ItemOutputs::Skip).await?.unwrap_or_default(),
        };
        // Items beyond this start's count are left over from a start before a retry.
        let items = items.into_iter().filter(|item| item.step_id.map_item().is_some_and(|(_, i)| i < progress.items));
        let (outcomes, usage, cost) = summarize_items(items.collect());
        let tolerated = map.tolerated_failures(progress.items);
        let mut error = (progress.failed > tolerated).then(|| {
            let first = outcomes.iter().find_map(|item| item.error.as_ref().map(|e| (item.index, e.message.clone())));
            let (index, detail) = first.unwrap_or_default();
            StepError::new(
                ErrorKind::StepFailed,
                format!(
                    "{} of {} items failed ({tolerated} tolerated); item {index}: {detail}",
                    progress.failed, progress.items
                ),
            )
        });
        let output = serde_json::json!({ "items": outcomes });
        let size = serde_json::to_vec(&output).map_or(usize::MAX, |bytes| bytes.len());
        let output = if !outputs_fit || size > MAX_MAP_OUTPUT_BYTES {
            error.get_or_insert_with(|| {
                StepError::new(
                    ErrorKind::OutputTooLarge,
                    format!("the items' outputs are more than a map step's {MAX_MAP_OUTPUT_BYTES} bytes together"),
                )
            });
            None
        } else {
            Some(output)
        };
        let status = if error.is_some() { StepStatus::Failed } else { StepStatus::Succeeded };
        let reason = error.as_ref().map(|error| error.message.clone());
        let ended = StepTransition {
            // A started map step is `running` with no lease: whoever counts its end ends it.
            from: vec![StepStatus::Running],
            update: StepUpdate {
                status: Some(status),
                output,
                error,
                usage: Some(usage),
                cost_usd: Some(cost),
                latency_ms: None,
                finished_at: Some(now),
                due: follow_up_due(now),
                ..StepUpdate::default()
            },
            events: vec![RunEvent::step_status(now, &map.id, status, reason)],
            ..StepTransition::default()
        };
        match self.store.transition_step(&run.id, &map.id, ended).await? {
            Some(state) => finished.push_back(state),
            // Another item's follow-up ended it first; make sure its own follow-up is done.
            None => {
                if let Some(state) = self.store.get_step(&run.id, &map.id).await?
                    && state.follow_up_pending()
                {
                    finished.push_back(state);
                }
            }
        }
        Ok(())
    }
}

/// The items as the map step's output shows them, with their usage and cost summed.
fn summarize_items(items: Vec<StepState>) -> (Vec<ItemOutcome>, Usage, Cost) {
    let mut usage = Usage::default();
    let mut cost = Some(0.0);
    let outcomes = items
        .into_iter()
        .filter_map(|item| {
            let (_, index) = item.step_id.map_item()?;
            let progress = item.progress;
            if let Some(used) = progress.usage {
                usage += used;
            }
            cost = cost.zip(progress.cost_usd.usd()).map(|(sum, usd)| sum + usd);
            Some(ItemOutcome {
                index,
                status: item.status,
                output: if item.status == StepStatus::Succeeded {
                    progress.output.unwrap_or_default()
                } else {
                    Value::Null
                },
                error: progress.error,
                model: progress.provider.zip(progress.model).map(|(provider, model)| format!("{provider}:{model}")),
                usage: progress.usage,
                cost_usd: progress.cost_usd,
                attempts: progress.attempts.len(),
            })
        })
        .collect();
    (outcomes, usage, Cost::from(cost))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// For a map item, its map step among the run's `steps`.
pub(super) fn map_of<'a>(item: &StepId, steps: &'a [StepState]) -> Option<&'a StepState> {
    let (map, _) = item.map_item()?;
    steps.iter().find(|s| s.step_id == map)
}
