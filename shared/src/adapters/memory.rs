//! In-process adapters: the embedded `chorus dev` backend and the unit-test double. They
//! honour the same conditional-write contract as the DynamoDB adapter, under one mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use secrecy::SecretString;
use tokio::sync::mpsc;

use crate::domain::{Run, RunEvent, RunId, StepId, StepState, StepStatus, TenantId};
use crate::ports::{
    BlobStore, CreateOutcome, NewRun, PortError, Queue, RunPage, RunStore, RunSummary, RunTransition, StepTransition,
    Tenant, TenantDirectory, WaitRef, hash_api_key,
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
    /// (tenant, key) → (run, request hash)
    idempotency: HashMap<(TenantId, String), (RunId, String)>,
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
            if let Some((run_id, request_hash)) = state.idempotency.get(&slot) {
                return Ok(CreateOutcome::KeyTaken { run_id: run_id.clone(), request_hash: request_hash.clone() });
            }
            state.idempotency.insert(slot, (new.run.id.clone(), claim.request_hash.clone()));
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
        Ok(self.lock()?.runs.get(run_id).map(|e| e.steps.values().cloned().collect()).unwrap_or_default())
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
        let more = runs.len() > limit;
        runs.truncate(limit);
        let next_after = if more { runs.last().map(|r| r.id.clone()) } else { None };
        let runs = runs
            .into_iter()
            .map(|r| RunSummary {
                id: r.id.clone(),
                name: r.definition.name.clone(),
                status: r.status,
                created_at: r.created_at,
                finished_at: r.finished_at,
            })
            .collect();
        Ok(RunPage { runs, next_after })
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

        let status_ok = transition.from.contains(&step.status)
            || transition.or_lease_expired_before.is_some_and(|now| {
                step.status == StepStatus::Running && step.lease.as_ref().is_none_or(|lease| lease.until < now)
            });
        let owner_ok = transition
            .lease_owner
            .as_ref()
            .is_none_or(|owner| step.lease.as_ref().is_some_and(|lease| &lease.owner == owner));
        if !status_ok || !owner_ok {
            return Ok(None);
        }

        let update = transition.update;
        if let Some(status) = update.status {
            step.status = status;
        }
        step.lease = update.lease;
        step.deadline = update.deadline;
        if update.bump_attempt {
            step.attempt += 1;
        }
        step.attempts.extend(update.attempts);
        macro_rules! set_if_some {
            ($($field:ident),*) => {$(
                if let Some(value) = update.$field {
                    step.$field = Some(value);
                }
            )*};
        }
        set_if_some!(job, provider, model, usage, latency_ms, output, error, started_at, finished_at);
        if let Some(cost) = update.cost_usd {
            step.cost_usd = cost;
        }
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
        if !step.released_by.contains(upstream) {
            step.released_by.push(upstream.clone());
            step.pending_deps = step.pending_deps.saturating_sub(1);
            step.blocked |= !upstream_succeeded;
            if step.status == StepStatus::Pending && step.pending_deps == 0 && !step.blocked {
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
        if let Some(last) = transition.events.last() {
            run.updated_at = last.at;
        }
        let after = run.clone();
        entry.events.extend(transition.events);
        Ok(Some(after))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<RunEvent>) -> Result<(), PortError> {
        let mut state = self.lock()?;
        let entry = state.runs.get_mut(run_id).ok_or_else(|| missing("run", run_id))?;
        entry.events.extend(events);
        Ok(())
    }

    async fn list_events(&self, run_id: &RunId) -> Result<Vec<RunEvent>, PortError> {
        Ok(self.lock()?.runs.get(run_id).map(|e| e.events.clone()).unwrap_or_default())
    }

    async fn expired_waits(&self, now: jiff::Timestamp, limit: usize) -> Result<Vec<WaitRef>, PortError> {
        let state = self.lock()?;
        let mut expired: Vec<(jiff::Timestamp, WaitRef)> = state
            .runs
            .values()
            .flat_map(|entry| entry.steps.values().map(move |step| (entry, step)))
            .filter(|(_, step)| step.status.is_waiting())
            .filter_map(|(entry, step)| {
                let deadline = step.deadline.filter(|deadline| *deadline < now)?;
                Some((deadline, WaitRef { run_id: entry.run.id.clone(), step_id: step.step_id.clone() }))
            })
            .collect();
        expired.sort_by_key(|(deadline, _)| *deadline);
        Ok(expired.into_iter().take(limit).map(|(_, wait)| wait).collect())
    }
}

/// [`BlobStore`] in memory.
#[derive(Default)]
pub struct MemoryBlobStore {
    blobs: Mutex<HashMap<String, Bytes>>,
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), PortError> {
        self.blobs.lock().map_err(|_| poisoned("memory blob store"))?.insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        Ok(self.blobs.lock().map_err(|_| poisoned("memory blob store"))?.get(key).cloned())
    }
}

fn poisoned(what: &'static str) -> PortError {
    PortError::Corrupt { what, detail: "a writer panicked while holding the lock".to_owned() }
}

/// [`Queue`] over an unbounded tokio channel; delayed messages are sent from a timer task.
pub struct MemoryQueue<M> {
    sender: mpsc::UnboundedSender<M>,
}

impl<M> Clone for MemoryQueue<M> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

impl<M: Send + 'static> MemoryQueue<M> {
    /// A queue and the receiving end its consumer polls.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<M>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self { sender }, receiver)
    }
}

#[async_trait]
impl<M: Send + Sync + 'static> Queue<M> for MemoryQueue<M> {
    async fn send(&self, messages: Vec<M>, delay: Duration) -> Result<(), PortError> {
        let closed = || PortError::Unavailable { what: "memory queue", source: "the consumer has stopped".into() };
        if delay.is_zero() {
            for message in messages {
                self.sender.send(message).map_err(|_| closed())?;
            }
        } else {
            if self.sender.is_closed() {
                return Err(closed());
            }
            let sender = self.sender.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for message in messages {
                    // The consumer stopping while a delayed message waits is a shutdown: drop it.
                    let _ = sender.send(message);
                }
            });
        }
        Ok(())
    }
}

/// [`TenantDirectory`] from keys given at start-up (`chorus dev --api-key`).
#[derive(Default)]
pub struct MemoryTenants {
    by_key_hash: HashMap<String, TenantId>,
    tenants: HashMap<TenantId, Tenant>,
}

impl MemoryTenants {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tenant (replacing its secret if known) and an API key for it.
    pub fn with_key(mut self, tenant: Tenant, api_key: &SecretString) -> Self {
        self.by_key_hash.insert(hash_api_key(api_key), tenant.id.clone());
        self.tenants.insert(tenant.id.clone(), tenant);
        self
    }
}

#[async_trait]
impl TenantDirectory for MemoryTenants {
    async fn tenant_for_key(&self, api_key: &SecretString) -> Result<Option<Tenant>, PortError> {
        Ok(self.by_key_hash.get(&hash_api_key(api_key)).and_then(|id| self.tenants.get(id)).cloned())
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, PortError> {
        Ok(self.tenants.get(id).cloned())
    }
}

/// [`RateLimiter`](crate::ports::RateLimiter) for one process (`chorus dev`, tests): a
/// bucket per scope under one mutex, with the same arithmetic as the DynamoDB limiter.
pub struct MemoryRateLimiter {
    clock: std::sync::Arc<dyn crate::ports::Clock>,
    buckets: Mutex<HashMap<String, crate::domain::Bucket>>,
}

impl MemoryRateLimiter {
    pub fn new(clock: std::sync::Arc<dyn crate::ports::Clock>) -> Self {
        Self { clock, buckets: Mutex::default() }
    }
}

#[async_trait]
impl crate::ports::RateLimiter for MemoryRateLimiter {
    async fn acquire(&self, scope: &str, limit: crate::domain::RateLimit) -> Result<crate::ports::Acquired, PortError> {
        let now_ms = self.clock.now().as_millisecond();
        let mut buckets = self.buckets.lock().map_err(|_| poisoned("memory rate limiter"))?;
        match crate::domain::rate::take(limit, buckets.get(scope).copied(), now_ms) {
            Ok(bucket) => {
                buckets.insert(scope.to_owned(), bucket);
                Ok(crate::ports::Acquired::Granted)
            }
            Err(wait) => Ok(crate::ports::Acquired::Wait(wait)),
        }
    }
}
