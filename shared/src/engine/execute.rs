//! The worker's use case: run one step for one `{run_id, step_id}` message. Every message
//! may arrive twice or out of order; the conditional claim makes sure the step runs once.

use std::collections::BTreeSet;
use std::time::Duration;

use super::budget::StepBudget;
use super::jobs::CallbackToken;
use super::map::map_of;
use super::progress::context_for;
use super::transitions::{QUEUED_GRACE, ending, follow_up_due, provider_events};
use super::{Engine, EngineError};
use crate::domain::template::MAX_RENDERED_BYTES;
use crate::domain::{
    Attempt, ErrorKind, Lease, MAX_IDLE_REQUEUES, MAX_STEP_CLAIMS, Run, RunEvent, RunStatus, StepDefinition, StepError,
    StepId, StepState, StepStatus, StepTransition, StepUpdate, Task, TemplateContext,
};
use crate::ports::{RunTransition, StepMessage};
use crate::providers::TaskRequest;
use crate::routing::{JobCallback, RouteContext, RouteOutcome, RoutedCompletion, RunBudget};

/// Time a claimed step keeps its lease beyond what its attempts may take: with the
/// invocation budget, longer than the worker function may run, so a live worker never loses
/// its lease (checked against the template in `devtools/local-aws/tests/template_timing.rs`).
pub const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// The longest delay a queue message can have (SQS `DelaySeconds`).
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

impl Engine {
    /// Executes the step named by `message`. An `Err` means "not done, deliver again".
    pub async fn execute_step(&self, message: &StepMessage) -> Result<(), EngineError> {
        let StepMessage { run_id, step_id } = message;
        let Some(mut run) = self.store.get_run(run_id).await? else {
            tracing::warn!(%run_id, "step message for an unknown run; dropping it");
            return Ok(());
        };
        let Some(step) = run.definition.find_step(step_id) else {
            tracing::warn!(%run_id, %step_id, "step message for an unknown step; dropping it");
            return Ok(());
        };
        let step = &step;
        let steps = self.store.get_steps_reading(run_id, &self.reads(step)).await?;
        // A map item is not among the run's steps: it is read on its own.
        let item_state = match step_id.is_item() {
            true => self.store.get_step(run_id, step_id).await?,
            false => None,
        };
        let Some(state) = item_state.as_ref().or_else(|| steps.iter().find(|s| &s.step_id == step_id)) else {
            tracing::warn!(%run_id, %step_id, "step message for a step without state; dropping it");
            return Ok(());
        };

        if state.status.is_terminal() {
            // A redelivery after a crash between ending the step and finishing what follows:
            // the follow-up is idempotent, so running it again finishes the job.
            if state.follow_up_pending() {
                return self.step_finished(&run, state.clone()).await;
            }
            return Ok(());
        }
        let map = map_of(step_id, &steps);
        // An item beyond those its map step's start made is left over from a start before
        // a retry: it is cancelled like the items of a map that ended.
        let beyond = |map: &StepState| {
            step_id.map_item().zip(map.progress.map).is_some_and(|((_, index), started)| index >= started.items)
        };
        if run.status.is_terminal() || map.is_some_and(|map| map.status.is_terminal() || beyond(map)) {
            self.cancel_step(&run, state).await?;
            return Ok(());
        }
        if map.is_some_and(|map| map.progress.map.is_none()) {
            // An item of a map step that has not recorded its start: one whose worker died
            // before it did, or one a retry reset (the item is left over from before). The
            // start that follows stores the items anew and sends the first; until then none
            // may run, nor be written to.
            return Ok(());
        }
        let now = self.clock.now();
        if let (StepStatus::Running, Some(lease)) = (state.status, &state.control.lease)
            && lease.until >= now
        {
            // Someone else's live lease. If that worker dies, this message is what brings the
            // step back: send it again for when the lease ends instead of dropping it.
            let left = Duration::try_from(lease.until.duration_since(now)).unwrap_or_default();
            let delay = (left + Duration::from_secs(1)).min(MAX_QUEUE_DELAY);
            self.steps.send(vec![message.clone()], delay).await?;
            return Ok(());
        }
        if !matches!(state.status, StepStatus::Queued | StepStatus::Running) || state.progress.map.is_some() {
            // Pending (its release sends it), waiting (its answer or the sweep ends it), or a
            // map step whose items run it now (their follow-ups end it).
            return Ok(());
        }
        if state.control.attempt >= MAX_STEP_CLAIMS {
            // Every worker that took it died (or it was handed back without end): stop.
            let reason = format!("the step was started {MAX_STEP_CLAIMS} times without finishing");
            let error = StepError::new(ErrorKind::Undeliverable, reason.clone());
            let give_up = StepTransition {
                or_lease_expired_before: Some(now),
                ..ending(step_id, vec![StepStatus::Queued], StepStatus::Failed, Some(error), reason, now)
            };
            if let Some(failed) = self.store.transition_step(run_id, step_id, give_up).await? {
                return self.step_finished(&run, failed).await;
            }
            return Ok(());
        }

        if let Some(quota) = &self.quota
            && let Err(throttled) = quota.admit_step(&run.tenant).await
        {
            // Over the tenant's share: back on the queue unclaimed, for when a token is due.
            let delay = throttled.retry_after.clamp(Duration::from_secs(1), MAX_QUEUE_DELAY);
            self.steps.send(vec![message.clone()], delay).await?;
            return Ok(());
        }

        let context = context_for(&run, &steps);
        // An item's `when` is its map step's, already evaluated.
        if let Some(condition) = step.when.as_ref().filter(|_| !step_id.is_item()) {
            match self.templates.condition_holds(condition, &context) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("`when` is false: {condition}");
                    return self.settle_unclaimed(&run, step, StepStatus::Skipped, None, reason).await;
                }
                Err(err) => {
                    let error = StepError::new(ErrorKind::Template, format!("`when` could not be evaluated: {err}"));
                    let reason = error.message.clone();
                    return self.settle_unclaimed(&run, step, StepStatus::Failed, Some(error), reason).await;
                }
            }
        }

        if step.task == Task::Workflow {
            return self.start_child(&run, step, &context).await;
        }
        if step.task == Task::Approval {
            // Until decided, the step's output is the rendered question for the approver.
            let question = step
                .prompt
                .as_ref()
                .map(|prompt| self.templates.render(prompt, &context).unwrap_or_else(|_| prompt.clone()));
            let waiting = StepTransition {
                from: vec![StepStatus::Queued],
                update: StepUpdate {
                    status: Some(StepStatus::WaitingApproval),
                    due: Some(now + step.wait_timeout()),
                    output: question.map(|question| serde_json::json!({ "question": question })),
                    started_at: Some(now),
                    ..StepUpdate::default()
                },
                events: vec![RunEvent::step_status(now, step_id, StepStatus::WaitingApproval, None)],
                ..StepTransition::default()
            };
            self.store.transition_step(run_id, step_id, waiting).await?;
            return self.mark_run_started(&run).await;
        }

        let lease = Lease { owner: self.worker_id.clone(), until: now + self.lease_length(step) };
        let claim = StepTransition {
            from: vec![StepStatus::Queued],
            or_lease_expired_before: Some(now),
            update: StepUpdate {
                status: Some(StepStatus::Running),
                // Should this worker die, the reconciler finds the step when its lease ends.
                due: Some(lease.until),
                lease: Some(lease),
                bump_attempt: true,
                // The first claim starts the clock of the step's `step_timeout_ms`.
                started_at: state.progress.started_at.is_none().then_some(now),
                ..StepUpdate::default()
            },
            events: vec![RunEvent::step_status(now, step_id, StepStatus::Running, None)],
            ..StepTransition::default()
        };
        if self.store.transition_step(run_id, step_id, claim).await?.is_none() {
            return Ok(()); // another delivery claimed it first
        }
        self.mark_run_started(&run).await?;

        if step.for_each.is_some() && !step_id.is_item() {
            return self.start_map(&run, step, &steps).await;
        }
        let context = match step_id.map_item() {
            Some((_, index)) => match self.item_context(step, index, context) {
                Ok(context) => context,
                Err(error) => return self.complete_claimed(&run, step, Vec::new(), Err(error)).await,
            },
            None => context,
        };
        let fields = match self.render_fields(step, &context) {
            Ok(fields) => fields,
            Err(error) => return self.complete_claimed(&run, step, Vec::new(), Err(error)).await,
        };
        let take = |name: &str| fields.iter().find(|(field, _)| *field == name).map(|(_, text)| text.clone());
        let request = TaskRequest::for_step(step, take("prompt"), take("input"));
        let token = CallbackToken::generate(run_id, step_id);
        let token_text = token.as_str();
        let callback_base = self.public_url.as_ref().map(|url| format!("{url}/v1/callbacks"));
        let started_at = state.progress.started_at.unwrap_or(now);
        let used = Duration::try_from(now.duration_since(started_at)).unwrap_or_default();
        let budget = StepBudget::new(self.store.as_ref(), &run, step_id);
        let context = RouteContext {
            prior: &state.progress.attempts,
            budget: budget
                .as_ref()
                .map(|holder| RunBudget { holder, allow_unpriced: run.definition.allow_unpriced_models }),
            job_callback: callback_base.as_deref().map(|base| JobCallback { base, token: &token_text }),
            step_time_left: Some(step.step_timeout().saturating_sub(used)),
            invocation_budget: self.invocation_budget,
        };
        let routed = self.router.run(step, &request, &context).await;
        if let Some(budget) = &budget {
            // What the step holds now, for the settlement that follows its end.
            match budget.held() {
                Some(usd) => run.budget.reservations.insert(step_id.clone(), usd),
                None => run.budget.reservations.remove(step_id),
            };
        }
        match routed.outcome {
            RouteOutcome::Completed(done) => self.complete_claimed(&run, step, routed.attempts, Ok(done)).await,
            RouteOutcome::Failed(error) => self.complete_claimed(&run, step, routed.attempts, Err(error.into())).await,
            RouteOutcome::Submitted(job) => self.await_job(&run, step, routed.attempts, job, &token).await,
            RouteOutcome::RetryLater(wait) => self.retry_later(&run, step, state, routed.attempts, wait).await,
        }
    }

    /// The steps whose outputs `step`'s templates, `when` and `for_each` read (a template that
    /// does not parse reads nothing here; rendering it reports the error).
    fn reads(&self, step: &StepDefinition) -> BTreeSet<StepId> {
        let templates = step.templates().filter_map(|(_, source)| self.templates.check(source).ok());
        let conditions = [&step.when, &step.for_each]
            .into_iter()
            .filter_map(|expression| self.templates.check_condition(expression.as_deref()?).ok());
        templates
            .chain(conditions)
            .flat_map(|references| references.steps)
            .filter_map(|id| StepId::parse(&id).ok())
            .collect()
    }

    /// The step's templates rendered, all of them together within [`MAX_RENDERED_BYTES`].
    fn render_fields(
        &self,
        step: &StepDefinition,
        context: &TemplateContext,
    ) -> Result<Vec<(&'static str, String)>, StepError> {
        let mut left = MAX_RENDERED_BYTES;
        let mut fields = Vec::new();
        for (field, source) in step.templates() {
            let text = self.templates.render_at_most(source, context, left).map_err(|err| {
                let kind = if err.is_too_large() { ErrorKind::TemplateTooLarge } else { ErrorKind::Template };
                StepError::new(kind, format!("`{field}` could not be rendered: {err}"))
            })?;
            left -= text.len();
            fields.push((field, text));
        }
        Ok(fields)
    }

    /// Hands a claimed step back to the queue, to run again after `wait` (a provider's long
    /// `Retry-After`, a long backoff or rate-limit wait, or this invocation's time being up).
    /// The attempts made so far are kept, so the next run resumes where this one stopped. A
    /// hand-back without a provider call writes no history and is counted: past
    /// [`MAX_IDLE_REQUEUES`] the step fails instead of spinning.
    async fn retry_later(
        &self,
        run: &Run,
        step: &StepDefinition,
        state: &StepState,
        attempts: Vec<Attempt>,
        wait: Duration,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let wait = wait.min(MAX_QUEUE_DELAY);
        let mut update = StepUpdate {
            status: Some(StepStatus::Queued),
            // The delayed message should come back by then; if not, the reconciler sends one.
            due: Some(now + wait + QUEUED_GRACE),
            ..StepUpdate::default()
        };
        let events = if attempts.is_empty() {
            let idle = state.control.idle_requeues.saturating_add(1);
            if idle > MAX_IDLE_REQUEUES {
                let error = StepError::new(
                    ErrorKind::DeadlineExceeded,
                    format!("the step was handed back {MAX_IDLE_REQUEUES} times without calling a model"),
                );
                return self.complete_claimed(run, step, attempts, Err(error)).await;
            }
            update.idle_requeues = Some(idle);
            Vec::new()
        } else {
            let reason = format!("trying again in {} s", wait.as_secs());
            let mut events = provider_events(now, &step.id, &attempts);
            events.push(RunEvent::step_status(now, &step.id, StepStatus::Queued, Some(reason)));
            update.attempts = attempts;
            events
        };
        // No lease: the step is free for whichever worker gets the delayed message.
        let requeue = StepTransition {
            from: vec![StepStatus::Running],
            lease_owner: Some(self.worker_id.clone()),
            update,
            events,
            ..StepTransition::default()
        };
        if self.store.transition_step(&run.id, &step.id, requeue).await?.is_none() {
            tracing::warn!(run_id = %run.id, step_id = %step.id, "lost the step's lease before re-enqueueing it");
            return Ok(());
        }
        // After the transition, so the message can only find the step queued. Should the
        // send fail, the error redelivers this message, which finds it queued too.
        let message = StepMessage { run_id: run.id.clone(), step_id: step.id.clone() };
        self.steps.send(vec![message], wait).await?;
        Ok(())
    }

    /// A step message kept failing until the queue gave up on it (the steps dead-letter
    /// queue): fail the step, and with it the run unless the step is optional. Only a step
    /// that nobody is running can be failed so: `pending` or `queued` (its deliveries kept
    /// failing, e.g. on an item that cannot be read), or `running` under a lease that ended.
    /// A step waiting for a person or a provider job, one under a live lease, or one that
    /// ended is left alone (a finished one has its follow-up re-driven if it is due).
    pub async fn fail_undeliverable(&self, message: &StepMessage) -> Result<(), EngineError> {
        let Some(run) = self.store.get_run(&message.run_id).await? else { return Ok(()) };
        let now = self.clock.now();
        let reason = "the step could not be processed after repeated deliveries".to_owned();
        let error = StepError::new(ErrorKind::Undeliverable, reason.clone());
        let transition = StepTransition {
            or_lease_expired_before: Some(now),
            ..ending(
                &message.step_id,
                vec![StepStatus::Pending, StepStatus::Queued],
                StepStatus::Failed,
                Some(error),
                reason,
                now,
            )
        };
        if let Some(state) = self.store.transition_step(&run.id, &message.step_id, transition).await? {
            return self.step_finished(&run, state).await;
        }
        let steps = self.store.get_steps(&run.id).await?;
        match steps.into_iter().find(|s| s.step_id == message.step_id) {
            Some(state) if state.follow_up_pending() => self.step_finished(&run, state).await,
            _ => Ok(()),
        }
    }

    /// Stores a provider outcome, if this worker still holds the lease, then moves on.
    async fn complete_claimed(
        &self,
        run: &Run,
        step: &StepDefinition,
        attempts: Vec<Attempt>,
        result: Result<RoutedCompletion, StepError>,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let mut events = provider_events(now, &step.id, &attempts);
        let mut update =
            StepUpdate { attempts, finished_at: Some(now), due: follow_up_due(now), ..StepUpdate::default() };
        match result {
            Ok(done) => {
                update.status = Some(StepStatus::Succeeded);
                update.output = Some(done.completion.output.to_json());
                update.usage = Some(done.completion.usage);
                update.cost_usd = Some(done.cost_usd);
                update.latency_ms = Some(done.latency_ms);
                update.provider = Some(done.provider);
                update.model = Some(done.model);
                events.push(RunEvent::step_status(now, &step.id, StepStatus::Succeeded, None));
            }
            Err(error) => {
                events.push(RunEvent::step_status(now, &step.id, StepStatus::Failed, Some(error.message.clone())));
                update.status = Some(StepStatus::Failed);
                update.error = Some(error);
            }
        }
        let completion = StepTransition {
            from: vec![StepStatus::Running],
            lease_owner: Some(self.worker_id.clone()),
            update,
            events,
            ..StepTransition::default()
        };
        match self.store.transition_step(&run.id, &step.id, completion).await? {
            Some(state) => self.step_finished(run, state).await,
            None => {
                tracing::warn!(run_id = %run.id, step_id = %step.id, "lost the step's lease before completing it");
                Ok(())
            }
        }
    }

    /// Ends a queued step without running it (its `when` was false, or could not be evaluated).
    pub(super) async fn settle_unclaimed(
        &self,
        run: &Run,
        step: &StepDefinition,
        status: StepStatus,
        error: Option<StepError>,
        reason: String,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let transition = ending(&step.id, vec![StepStatus::Queued], status, error, reason, now);
        match self.store.transition_step(&run.id, &step.id, transition).await? {
            Some(state) => self.step_finished(run, state).await,
            None => Ok(()),
        }
    }

    /// Cancels a step of an ended run that a message found unfinished: one nobody runs
    /// (pending, queued, waiting, or running under a lease that ended). A step under a live
    /// lease is left to its worker, whose completion the ended run then ignores.
    pub(super) async fn cancel_step(&self, run: &Run, state: &StepState) -> Result<(), EngineError> {
        let now = self.clock.now();
        let reason = format!("the run is {}", run.status);
        let idle =
            vec![StepStatus::Pending, StepStatus::Queued, StepStatus::WaitingApproval, StepStatus::WaitingCallback];
        let transition = StepTransition {
            or_lease_expired_before: Some(now),
            ..ending(&state.step_id, idle, StepStatus::Cancelled, None, reason, now)
        };
        self.store.transition_step(&run.id, &state.step_id, transition).await?;
        Ok(())
    }

    /// The first step to start moves the run from `queued` to `running`.
    pub(super) async fn mark_run_started(&self, run: &Run) -> Result<(), EngineError> {
        if run.status == RunStatus::Queued {
            let started = RunTransition::status(vec![RunStatus::Queued], RunStatus::Running);
            self.store.transition_run(&run.id, started).await?;
        }
        Ok(())
    }
}

impl Engine {
    /// Long enough for what one invocation may spend on the step, plus a margin: every
    /// attempt on every candidate, bounded by the step's and the invocation's time.
    fn lease_length(&self, step: &StepDefinition) -> Duration {
        let candidates = u32::try_from(step.candidates().count()).unwrap_or(u32::MAX).max(1);
        let attempts = candidates.saturating_mul(step.retries().saturating_add(1));
        let mut busy = step.timeout().saturating_mul(attempts).min(step.step_timeout());
        if let Some(budget) = self.invocation_budget {
            busy = busy.min(budget);
        }
        busy + LEASE_MARGIN
    }
}
