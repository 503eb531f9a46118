//! Port wrappers that fail on demand: a test arms "the next `release_step` fails", and the
//! engine meets what a crash or an outage between two writes looks like from inside.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{
    Reservation, Reserved, Run, RunEvent, RunId, RunRetry, Settled, Settlement, StepError, StepId, StepReset,
    StepState, StepTransition, TenantId,
};
use crate::ports::{
    CreateOutcome, DueRef, IdempotencyClaim, ItemOutputs, NewRun, PortError, Queue, RetryKeyClaim, RunPage, RunStore,
    RunTransition,
};

/// Operations armed to fail, each once, by name (`"release_step"`, `"send steps"`, …), after
/// letting a number of calls through.
#[derive(Default)]
pub(super) struct Faults {
    armed: Mutex<Vec<(&'static str, bool, usize)>>,
}

impl Faults {
    /// The next call of `operation` fails as unavailable.
    pub(super) fn fail_next(&self, operation: &'static str) {
        self.fail_after(operation, 0);
    }

    /// `calls` calls of `operation` go through, then the next one fails as unavailable.
    pub(super) fn fail_after(&self, operation: &'static str, calls: usize) {
        self.armed.lock().unwrap().push((operation, false, calls));
    }

    /// The next call of `operation` finds data it cannot read (a payload gone from S3).
    pub(super) fn corrupt_next(&self, operation: &'static str) {
        self.armed.lock().unwrap().push((operation, true, 0));
    }

    fn check(&self, operation: &'static str) -> Result<(), PortError> {
        let mut armed = self.armed.lock().unwrap();
        let Some(index) = armed.iter().position(|(armed, _, _)| *armed == operation) else { return Ok(()) };
        if armed[index].2 > 0 {
            armed[index].2 -= 1;
            return Ok(());
        }
        let (_, corrupt, _) = armed.remove(index);
        Err(if corrupt {
            PortError::Corrupt { what: "blob store", detail: "payload `tenants/…/input.json` is missing".into() }
        } else {
            PortError::Unavailable { what: "a port under test", source: operation.into() }
        })
    }
}

/// The memory run store behind [`Faults`].
pub(super) struct FaultyStore {
    pub inner: Arc<dyn RunStore>,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl RunStore for FaultyStore {
    async fn create_run(&self, new: NewRun) -> Result<CreateOutcome, PortError> {
        self.faults.check("create_run")?;
        self.inner.create_run(new).await
    }

    async fn get_run(&self, run_id: &RunId) -> Result<Option<Run>, PortError> {
        self.faults.check("get_run")?;
        self.inner.get_run(run_id).await
    }

    async fn get_steps(&self, run_id: &RunId) -> Result<Vec<StepState>, PortError> {
        self.faults.check("get_steps")?;
        self.inner.get_steps(run_id).await
    }

    async fn list_runs(&self, tenant: &TenantId, after: Option<&RunId>, limit: usize) -> Result<RunPage, PortError> {
        self.inner.list_runs(tenant, after, limit).await
    }

    async fn get_step(&self, run_id: &RunId, step_id: &StepId) -> Result<Option<StepState>, PortError> {
        self.faults.check("get_step")?;
        self.inner.get_step(run_id, step_id).await
    }

    async fn create_items(&self, run: &Run, items: Vec<StepState>) -> Result<(), PortError> {
        self.faults.check("create_items")?;
        self.inner.create_items(run, items).await
    }

    async fn count_item(&self, run_id: &RunId, item: &StepId, succeeded: bool) -> Result<StepState, PortError> {
        self.faults.check("count_item")?;
        self.inner.count_item(run_id, item, succeeded).await
    }

    async fn list_items(
        &self,
        run_id: &RunId,
        step: &StepId,
        outputs: ItemOutputs,
    ) -> Result<Option<Vec<StepState>>, PortError> {
        self.faults.check("list_items")?;
        self.inner.list_items(run_id, step, outputs).await
    }

    async fn transition_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        transition: StepTransition,
    ) -> Result<Option<StepState>, PortError> {
        self.faults.check("transition_step")?;
        self.inner.transition_step(run_id, step_id, transition).await
    }

    async fn release_step(
        &self,
        run_id: &RunId,
        dependant: &StepId,
        upstream: &StepId,
        upstream_succeeded: bool,
    ) -> Result<StepState, PortError> {
        self.faults.check("release_step")?;
        self.inner.release_step(run_id, dependant, upstream, upstream_succeeded).await
    }

    async fn release_run(&self, run_id: &RunId, sink: &StepId) -> Result<Run, PortError> {
        self.faults.check("release_run")?;
        self.inner.release_run(run_id, sink).await
    }

    async fn transition_run(&self, run_id: &RunId, transition: RunTransition) -> Result<Option<Run>, PortError> {
        self.faults.check("transition_run")?;
        self.inner.transition_run(run_id, transition).await
    }

    async fn reserve_budget(
        &self,
        run_id: &RunId,
        step: &StepId,
        reservation: Reservation,
    ) -> Result<Reserved, PortError> {
        self.faults.check("reserve_budget")?;
        self.inner.reserve_budget(run_id, step, reservation).await
    }

    async fn settle_budget(&self, run_id: &RunId, step: &StepId, settlement: Settlement) -> Result<Settled, PortError> {
        self.faults.check("settle_budget")?;
        self.inner.settle_budget(run_id, step, settlement).await
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<RunEvent>) -> Result<(), PortError> {
        self.inner.append_events(run_id, events).await
    }

    async fn list_events(&self, run_id: &RunId) -> Result<Vec<RunEvent>, PortError> {
        self.inner.list_events(run_id).await
    }

    async fn retry_run(&self, run_id: &RunId, retry: RunRetry) -> Result<Option<Run>, PortError> {
        self.faults.check("retry_run")?;
        self.inner.retry_run(run_id, retry).await
    }

    async fn finish_retry(&self, run_id: &RunId, generation: u32) -> Result<bool, PortError> {
        self.faults.check("finish_retry")?;
        self.inner.finish_retry(run_id, generation).await
    }

    async fn reset_step(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        reset: StepReset,
    ) -> Result<Option<StepState>, PortError> {
        self.faults.check("reset_step")?;
        self.inner.reset_step(run_id, step_id, reset).await
    }

    async fn claim_retry_key(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
        run_id: &RunId,
        generation: u32,
        now: jiff::Timestamp,
    ) -> Result<RetryKeyClaim, PortError> {
        self.faults.check("claim_retry_key")?;
        self.inner.claim_retry_key(tenant, claim, run_id, generation, now).await
    }

    async fn due(&self, now: jiff::Timestamp, limit: usize) -> Result<Vec<DueRef>, PortError> {
        self.inner.due(now, limit).await
    }

    async fn fail_unreadable_run(
        &self,
        run_id: &RunId,
        error: StepError,
        now: jiff::Timestamp,
    ) -> Result<bool, PortError> {
        self.inner.fail_unreadable_run(run_id, error, now).await
    }
}

/// A queue behind [`Faults`], under the operation name `name`.
pub(super) struct FaultyQueue<M> {
    pub inner: Arc<dyn Queue<M>>,
    pub faults: Arc<Faults>,
    pub name: &'static str,
}

#[async_trait]
impl<M: Send + Sync + 'static> Queue<M> for FaultyQueue<M> {
    async fn send(&self, messages: Vec<M>, delay: Duration) -> Result<(), PortError> {
        self.faults.check(self.name)?;
        self.inner.send(messages, delay).await
    }
}
