//! [`RunStore`] in memory: every run under one mutex, each transition checked and applied
//! with the domain's own [`StepTransition::admits`](crate::domain::StepTransition::admits)
//! and [`StepUpdate::apply`](crate::domain::StepUpdate::apply), and the budget with the
//! domain's [`BudgetLedger`](crate::domain::BudgetLedger) arithmetic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::poisoned;
use crate::domain::{
    Reservation, Reserved, Run, RunEvent, RunId, RunRetry, RunStatus, Settled, Settlement, StepError, StepId,
    StepReset, StepState, StepStatus, StepTransition, TenantId,
};
use crate::ports::{
    CreateOutcome, DueRef, IdempotencyClaim, ItemOutputs, NewRun, PortError, RetryKeyClaim, RunPage, RunStore,
    RunSummary, RunTransition,
};

/// One run with its steps and history.
struct RunEntry {
    run: Run,
    steps: BTreeMap<StepId, StepState>,
    events: Vec<RunEvent>,
    /// Sinks already counted by [`RunStore::release_run`].
    released_sinks: Vec<StepId>,
}

#[derive(Default)]
struct State {
    runs: HashMap<RunId, RunEntry>,
    /// (tenant, key) → (run, request hash, the generation a retry that took it moves to)
    idempotency: HashMap<(TenantId, String), (RunId, String, Option<u32>)>,
}

/// [`RunStore`] in memory.
#[derive(Default)]
pub struct MemoryRunStore {
    state: Mutex<State>,
}

impl MemoryRunStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, PortError> {
        self.state.lock().map_err(|_| poisoned("memory run store"))
    }
}

fn missing(what: &str, id: &impl std::fmt::Display) -> PortError {
    PortError::Corrupt { what: "memory run store", detail: format!("{what} `{id}` does not exist") }
}

#[async_trait]
impl RunStore for MemoryRunStore {
    async fn create_run(&self, new: NewRun) -> Result<CreateOutcome, PortError> {
        let mut state = self.lock()?;
        if let Some(claim) = &new.idempotency {
            let slot = (new.run.tenant.clone(), claim.key.clone());
            if let Some((run_id, request_hash, _)) = state.idempotency.get(&slot) {
                return Ok(CreateOutcome::KeyTaken { run_id: run_id.clone(), request_hash: request_hash.clone() });
            }
            state.idempotency.insert(slot, (new.run.id.clone(), claim.request_hash.clone(), None));
        }
        let entry = RunEntry {
            steps: new.steps.into_iter().map(|s| (s.step_id.clone(), s)).collect(),
            events: new.events,
            released_sinks: Vec::new(),
            run: new.run,
        };
        state.runs.insert(entry.run.id.clone(), entry);
        Ok(CreateOutcome::Created)
    }

    async fn get_run(&self, run_id: &RunId) -> Result<Option<Run>, PortError> {
        Ok(self.lock()?.runs.get(run_id).map(|e| e.run.clone()))
    }

    async fn get_steps(&self, run_id: &RunId) -> Result<Vec<StepState>, PortError> {
        let state = self.lock()?;
        let steps = state.runs.get(run_id).map(|e| e.steps.values().filter(|s| !s.step_id.is_item()).cloned());
        Ok(steps.map(Iterator::collect).unwrap_or_default())
    }

    async fn get_step(&self, run_id: &RunId, step_id: &StepId) -> Result<Option<StepState>, PortError> {
        Ok(self.lock()?.runs.get(run_id).and_then(|e| e.steps.get(step_id).cloned()))
    }

    async fn create_items(&self, run: &Run, items: Vec<StepState>) -> Result<(), PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(&run.id).ok_or_else(|| missing("run", &run.id))?;
        entry.steps.extend(items.into_iter().map(|item| (item.step_id.clone(), item)));
        Ok(())
    }

    async fn count_item(&self, run_id: &RunId, item: &StepId, succeeded: bool) -> Result<StepState, PortError> {
        let (map_id, _) = item.map_item().ok_or_else(|| missing("map item", item))?;
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        let map = entry.steps.get(&map_id).ok_or_else(|| missing("step", &map_id))?;
        // A map step that a retry reset and that has not started its items again: an item
        // left over from before counts for nothing, and is not marked (as on DynamoDB, where
        // the mark and the count are one transaction).
        if map.progress.map.is_none() {
            let mut after = map.clone();
            after.progress.output = None;
            return Ok(after);
        }
        let counted = entry.steps.get_mut(item).ok_or_else(|| missing("step", item))?;
        let first = !counted.control.counted;
        counted.control.counted = true;
        let map = entry.steps.get_mut(&map_id).ok_or_else(|| missing("step", &map_id))?;
        let progress = map.progress.map.as_mut().ok_or_else(|| missing("started map", &map_id))?;
        if first {
            progress.pending = progress.pending.saturating_sub(1);
            progress.failed += u32::from(!succeeded);
        }
        let mut after = map.clone();
        after.progress.output = None;
        Ok(after)
    }

    async fn list_items(
        &self,
        run_id: &RunId,
        step: &StepId,
        outputs: ItemOutputs,
    ) -> Result<Option<Vec<StepState>>, PortError> {
        let state = self.lock()?;
        let Some(entry) = state.runs.get(run_id) else { return Ok(Some(Vec::new())) };
        let mut items: Vec<(u32, StepState)> = entry
            .steps
            .values()
            .filter_map(|s| s.step_id.map_item().filter(|(map, _)| map == step).map(|(_, index)| (index, s.clone())))
            .collect();
        items.sort_by_key(|(index, _)| *index);
        let mut items: Vec<StepState> = items.into_iter().map(|(_, item)| item).collect();
        match outputs {
            ItemOutputs::Skip => items.iter_mut().for_each(|item| item.progress.output = None),
            ItemOutputs::Within(max) => {
                let size = |item: &StepState| item.progress.output.as_ref().map_or(0, |o| o.to_string().len());
                if items.iter().map(size).sum::<usize>() > max {
                    return Ok(None);
                }
            }
        }
        Ok(Some(items))
    }

    async fn list_runs(&self, tenant: &TenantId, after: Option<&RunId>, limit: usize) -> Result<RunPage, PortError> {
        let state = self.lock()?;
        let mut runs: Vec<&Run> = state
            .runs
            .values()
            .map(|e| &e.run)
            .filter(|r| &r.tenant == tenant && after.is_none_or(|after| &r.id < after))
            .collect();
        // Run ids are ULIDs: descending id order is newest first.
        runs.sort_by(|a, b| b.id.cmp(&a.id));
        let runs = runs
            .into_iter()
            .take(limit.saturating_add(1))
            .map(|r| RunSummary {
                id: r.id.clone(),
                name: r.definition.name.clone(),
                status: r.status,
                created_at: r.created_at,
                finished_at: r.finished_at,
            })
            .collect();
        Ok(RunPage::from_fetched(runs, limit))
    }

    async fn transition_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        transition: StepTransition,
    ) -> Result<Option<StepState>, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        let step = entry.steps.get_mut(step_id).ok_or_else(|| missing("step", step_id))?;

        if !transition.admits(step) {
            return Ok(None);
        }
        transition
            .update
            .apply(step)
            .map_err(|err| PortError::Corrupt { what: "memory run store", detail: err.to_string() })?;
        let after = step.clone();
        entry.events.extend(transition.events);
        Ok(Some(after))
    }

    async fn release_step(
        &self,
        run_id: &RunId,
        dependant: &StepId,
        upstream: &StepId,
        upstream_succeeded: bool,
    ) -> Result<StepState, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        let step = entry.steps.get_mut(dependant).ok_or_else(|| missing("step", dependant))?;
        let control = &mut step.control;
        if !control.released_by.contains(upstream) {
            control.released_by.push(upstream.clone());
            control.pending_deps = control.pending_deps.saturating_sub(1);
            control.blocked |= !upstream_succeeded;
            if step.status == StepStatus::Pending && control.pending_deps == 0 && !control.blocked {
                step.status = StepStatus::Queued;
            }
        }
        Ok(step.clone())
    }

    async fn release_run(&self, run_id: &RunId, sink: &StepId) -> Result<Run, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        if !entry.released_sinks.contains(sink) {
            entry.released_sinks.push(sink.clone());
            entry.run.pending_sinks = entry.run.pending_sinks.saturating_sub(1);
        }
        Ok(entry.run.clone())
    }

    async fn transition_run(&self, run_id: &RunId, transition: RunTransition) -> Result<Option<Run>, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        if !transition.from.contains(&entry.run.status) {
            return Ok(None);
        }
        let run = &mut entry.run;
        run.status = transition.to;
        if let Some(output) = transition.output {
            run.output = Some(output);
        }
        if let Some(error) = transition.error {
            run.error = Some(error);
        }
        if let Some(at) = transition.finished_at {
            run.finished_at = Some(at);
        }
        run.due = transition.due;
        if let Some(last) = transition.events.last() {
            run.updated_at = last.at;
        }
        let after = run.clone();
        entry.events.extend(transition.events);
        Ok(Some(after))
    }

    async fn reserve_budget(
        &self,
        run_id: &RunId,
        step: &StepId,
        reservation: Reservation,
    ) -> Result<Reserved, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        Ok(entry.run.budget.reserve(step, reservation))
    }

    async fn settle_budget(&self, run_id: &RunId, step: &StepId, settlement: Settlement) -> Result<Settled, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        Ok(entry.run.budget.settle(step, settlement))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<RunEvent>) -> Result<(), PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        entry.events.extend(events);
        Ok(())
    }

    async fn retry_run(&self, run_id: &RunId, retry: RunRetry) -> Result<Option<Run>, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        if !retry.admits(&entry.run) {
            return Ok(None);
        }
        retry.apply(&mut entry.run);
        entry.released_sinks.retain(|sink| !retry.forgets(sink));
        entry.events.extend(retry.events);
        Ok(Some(entry.run.clone()))
    }

    async fn finish_retry(&self, run_id: &RunId, generation: u32) -> Result<bool, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        let run = &mut entry.run;
        if run.status != RunStatus::Running || run.generation != generation {
            return Ok(false);
        }
        run.due = None;
        Ok(true)
    }

    async fn reset_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        reset: StepReset,
    ) -> Result<Option<StepState>, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        if entry.run.status != RunStatus::Running || entry.run.generation != reset.generation {
            return Ok(None);
        }
        let step = entry.steps.get_mut(step_id).ok_or_else(|| missing("step", step_id))?;
        if !reset.admits(step) {
            return Ok(None);
        }
        *step = reset.apply(step);
        let after = step.clone();
        entry.events.extend(reset.events);
        Ok(Some(after))
    }

    async fn claim_retry_key(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        run_id: &RunId,
        generation: u32,
        _now: jiff::Timestamp,
    ) -> Result<RetryKeyClaim, PortError> {
        let mut state = self.lock()?;
        let slot = (tenant.clone(), claim.key.clone());
        if let Some((run_id, request_hash, generation)) = state.idempotency.get(&slot) {
            return Ok(RetryKeyClaim::Taken {
                run_id: run_id.clone(),
                request_hash: request_hash.clone(),
                generation: *generation,
            });
        }
        state.idempotency.insert(slot, (run_id.clone(), claim.request_hash.clone(), Some(generation)));
        Ok(RetryKeyClaim::Claimed)
    }

    async fn list_events(&self, run_id: &RunId) -> Result<Vec<RunEvent>, PortError> {
        Ok(self.lock()?.runs.get(run_id).map(|e| e.events.clone()).unwrap_or_default())
    }

    async fn due(&self, now: jiff::Timestamp, limit: usize) -> Result<Vec<DueRef>, PortError> {
        let state = self.lock()?;
        let runs = state.runs.values().filter_map(|entry| {
            let due = entry.run.due.filter(|due| *due < now)?;
            Some((due, DueRef { run_id: entry.run.id.clone(), step_id: None }))
        });
        let steps = state.runs.values().flat_map(|entry| {
            entry.steps.values().filter_map(move |step| {
                let due = step.control.due.filter(|due| *due < now)?;
                Some((due, DueRef { run_id: entry.run.id.clone(), step_id: Some(step.step_id.clone()) }))
            })
        });
        let mut found: Vec<(jiff::Timestamp, DueRef)> = runs.chain(steps).collect();
        found.sort();
        Ok(found.into_iter().take(limit).map(|(_, due)| due).collect())
    }

    /// Payloads are kept inline here and cannot go missing: the run is only failed.
    async fn fail_unreadable_run(
        &self,
        run_id: &RunId,
        error: StepError,
        now: jiff::Timestamp,
    ) -> Result<bool, PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        if entry.run.status.is_terminal() {
            return Ok(false);
        }
        let run = &mut entry.run;
        run.status = RunStatus::Failed;
        run.error = Some(error);
        run.finished_at = Some(now);
        run.updated_at = now;
        run.due = Some(now);
        Ok(true)
    }
}
