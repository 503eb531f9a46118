//! Running a run again (README "Re-running a run: retry and fork"; the arithmetic is in
//! `domain::rerun`):
//!
//! - **Retry** (`POST /v1/runs/{id}/retry`) reopens a failed or cancelled run in place, like
//!   Step Functions' redrive: the steps that failed or were cancelled, and everything
//!   downstream of them, run again; succeeded outputs are kept and not paid for again. One
//!   conditional write reopens the run in its next `generation` and sets its `due`; then each
//!   re-run step is reset with a conditional write that only applies to a step of an older
//!   generation, dependants first; then the ready steps are sent and the `due` is cleared. A
//!   crash anywhere leaves the `due` set, and whoever comes next (the reconciler, or the
//!   client replaying its `Idempotency-Key`) finishes the resets without repeating one.
//! - **Fork** (`POST /v1/runs/{id}/fork`) creates a new run from an ended one, with step
//!   fields changed, another input, or steps named to run again: those, the steps that did
//!   not succeed, and everything downstream of them run; every other step is created already
//!   succeeded with the source's output, counted as released for its dependants and as a
//!   finished sink for the run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::submit::Submitted;
use super::transitions::{FOLLOW_UP_GRACE, QUEUED_GRACE, ending};
use super::{Engine, EngineError};
use crate::domain::rerun::stored_plan;
use crate::domain::{
    EventKind, ForkedFrom, Problem, RerunPlan, Run, RunEvent, RunId, RunRetry, RunStatus, StepControl, StepDefinition,
    StepId, StepProgress, StepReset, StepState, StepStatus, TenantId,
};
use crate::ports::{CreateOutcome, IdempotencyClaim, ItemOutputs, NewRun, PortError, RetryKeyClaim, StepMessage};

/// How long a retry's resets may take in the request that started them before the reconciler
/// re-drives them (they are idempotent, so a short grace only risks duplicate messages).
const RESET_GRACE: Duration = FOLLOW_UP_GRACE;

/// `POST /v1/runs/{id}/fork`: what to change from the source run. Every member is optional;
/// `{}` runs again what did not succeed in the source, as a new run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// Steps to run again even though they succeeded, with everything downstream of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["summary"]))]
    pub from: Vec<String>,
    /// Changes to the source workflow's steps, by step id: each member replaces that field of
    /// the step (`null` removes it); any field but `id`. A changed step runs again, with
    /// everything downstream of it. The workflow is validated again as on submission.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object, example = json!({"summary": {"model": "local:extractive", "max_tokens": 200}}))]
    pub overrides: BTreeMap<String, Map<String, Value>>,
    /// The new run's input (checked against the workflow's `input_schema`); absent or `null`:
    /// the source's. When it differs, the steps that read `input` run again too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub input: Option<Value>,
}

/// A retry accepted: `replayed` when an earlier request with the same idempotency key did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    pub run_id: RunId,
    pub replayed: bool,
}

impl Engine {
    /// Re-runs a failed or cancelled run in place (see the module's notes). With an
    /// idempotency key, the key is claimed for this retry's generation first, so a replay
    /// finds what the first request did: the retry done (answered again), or claimed but
    /// not done (done now).
    pub async fn retry(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
        idempotency_key: Option<&str>,
    ) -> Result<Retried, EngineError> {
        let run = self.owned_run(tenant, run_id).await?;
        let mut generation = run.generation.saturating_add(1);
        let mut replayed = false;
        if let Some(key) = idempotency_key {
            let claim = IdempotencyClaim { key: key.to_owned(), request_hash: retry_hash(run_id) };
            let now = self.clock.now();
            match self.store.claim_retry_key(tenant, &claim, run_id, generation, now).await? {
                RetryKeyClaim::Claimed => {}
                RetryKeyClaim::Taken { run_id: taken, request_hash, generation: Some(claimed) }
                    if &taken == run_id && request_hash == claim.request_hash =>
                {
                    replayed = true;
                    if run.generation >= claimed {
                        // Done before. Should a crash have cut its resets short, finish them.
                        if run.generation == claimed && run.reset_pending() {
                            self.finish_reset(&run).await?;
                        }
                        return Ok(Retried { run_id: run_id.clone(), replayed });
                    }
                    // Claimed by a request that stopped before reopening the run: do it now.
                    generation = claimed;
                }
                RetryKeyClaim::Taken { run_id: taken, .. } => {
                    return Err(EngineError::Conflict(format!(
                        "this Idempotency-Key was already used for another request (on run {taken})"
                    )));
                }
            }
        }

        let (run, steps) = self.at_rest(run).await?;
        let plan = stored_plan(&steps).map_err(|err| corrupt(&run.id, err))?;
        let status: BTreeMap<&StepId, StepStatus> = steps.iter().map(|s| (&s.step_id, s.status)).collect();
        let seeds = steps.iter().filter(|s| matches!(s.status, StepStatus::Failed | StepStatus::Cancelled));
        let rerun = RerunPlan::new(&plan, seeds.map(|s| s.step_id.clone()), |step| {
            status.get(step) == Some(&StepStatus::Succeeded)
        });
        if rerun.is_empty() {
            let why = run.error.as_ref().map_or_else(String::new, |error| format!(" (it failed: {})", error.message));
            return Err(EngineError::Conflict(format!(
                "run {run_id} has no step to run again: none failed or was cancelled{why}; fork it to change it"
            )));
        }
        if let Some(lost) = rerun.order.iter().find(|step| run.definition.find_step(step).is_none()) {
            // Its stored workflow could not be read and was replaced (`payload_missing`).
            return Err(EngineError::Conflict(format!(
                "run {run_id} cannot run step `{lost}` again: its stored workflow is incomplete"
            )));
        }
        let now = self.clock.now();
        let mut steps_rerun = rerun.order.clone();
        steps_rerun.sort();
        let retry = RunRetry {
            generation,
            rerun: rerun.order.clone(),
            pending_sinks: rerun.pending_sinks,
            due: now + RESET_GRACE,
            events: vec![RunEvent::run(now, EventKind::RunRetried { generation, steps: steps_rerun })],
        };
        match self.store.retry_run(run_id, retry).await? {
            Some(reopened) => {
                self.finish_reset(&reopened).await?;
                Ok(Retried { run_id: run_id.clone(), replayed })
            }
            // Another request reopened it first (or it changed under this one).
            None => match self.store.get_run(run_id).await? {
                Some(now) if replayed && now.generation >= generation => {
                    Ok(Retried { run_id: run_id.clone(), replayed })
                }
                Some(now) if now.generation >= generation => Err(EngineError::Conflict(format!(
                    "run {run_id} was retried by another request; it is {}",
                    now.status
                ))),
                _ => Err(EngineError::Conflict(format!("run {run_id} changed while it was being retried; try again"))),
            },
        }
    }

    /// The run's state once nothing moves in it any more: it ended, its follow-up and its
    /// steps' follow-ups are done (re-driven here if not), and every step has ended (those
    /// nobody runs are cancelled here, as a message finding them would). Only then are the
    /// dependency counts a retry writes final. A step still running under a live lease, or a
    /// map item, is a conflict: the client retries once it has stopped.
    async fn at_rest(&self, mut run: Run) -> Result<(Run, Vec<StepState>), EngineError> {
        let run_id = run.id.clone();
        if !matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) {
            let hint = if run.status == RunStatus::Succeeded { "; fork it to run steps again" } else { "" };
            return Err(EngineError::Conflict(format!(
                "run {run_id} is {}: only a failed or cancelled run can be retried{hint}",
                run.status
            )));
        }
        if run.follow_up_pending() {
            self.run_ended(&run).await?;
            run = self.store.get_run(&run_id).await?.ok_or_else(|| EngineError::NotFound(format!("run {run_id}")))?;
        }
        let mut steps = self.store.get_steps(&run_id).await?;
        let unsettled = |s: &StepState| s.follow_up_pending() || !s.status.is_terminal();
        if steps.iter().any(unsettled) {
            for state in steps.iter().filter(|s| unsettled(s)) {
                if state.follow_up_pending() {
                    self.step_finished(&run, state.clone()).await?;
                } else {
                    self.cancel_step(&run, state).await?;
                }
            }
            steps = self.store.get_steps(&run_id).await?;
        }
        if let Some(busy) = steps.iter().find(|s| unsettled(s)) {
            return Err(EngineError::Conflict(format!(
                "step `{}` of run {run_id} is still {}; retry once it has stopped",
                busy.step_id, busy.status
            )));
        }
        let now = self.clock.now();
        for map in steps.iter().filter(|s| s.progress.map.is_some() && s.status != StepStatus::Succeeded) {
            let items = self.store.list_items(&run_id, &map.step_id, ItemOutputs::Skip).await?.unwrap_or_default();
            let live = |item: &StepState| {
                item.status == StepStatus::Running && item.control.lease.as_ref().is_some_and(|l| l.until >= now)
            };
            if let Some(item) = items.iter().find(|item| live(item)) {
                return Err(EngineError::Conflict(format!(
                    "item `{}` of run {run_id} is still running; retry once it has stopped",
                    item.step_id
                )));
            }
        }
        Ok((run, steps))
    }

    /// Finishes a retry's resets for the run's generation: resets every re-run step not reset
    /// yet (dependants first), skips the ones a kept step blocks, sends the ready ones, and
    /// clears the run's `due`. Idempotent: run by the retry, re-driven by the reconciler and
    /// by a replay of the retry's idempotency key.
    pub(super) async fn finish_reset(&self, run: &Run) -> Result<(), EngineError> {
        let generation = run.generation;
        let steps = self.store.get_steps(&run.id).await?;
        let plan = stored_plan(&steps).map_err(|err| corrupt(&run.id, err))?;
        let by_id: BTreeMap<&StepId, &StepState> = steps.iter().map(|s| (&s.step_id, s)).collect();
        // Reset in this generation, or still waiting to be: the same set the retry computed,
        // since the steps it keeps do not change.
        let seeds = steps.iter().filter(|s| {
            s.control.generation == generation
                || (s.control.generation < generation && matches!(s.status, StepStatus::Failed | StepStatus::Cancelled))
        });
        let rerun = RerunPlan::new(&plan, seeds.map(|s| s.step_id.clone()), |step| {
            by_id.get(step).is_some_and(|s| s.status == StepStatus::Succeeded)
        });
        let now = self.clock.now();
        for step_id in &rerun.order {
            let (Some(state), Some(start)) = (by_id.get(step_id), rerun.starts.get(step_id)) else { continue };
            if state.control.generation >= generation {
                continue; // reset before this re-drive
            }
            let status = start.status();
            let reset = StepReset {
                generation,
                start: start.clone(),
                due: (status == StepStatus::Queued).then(|| now + QUEUED_GRACE),
                events: vec![RunEvent::step_status(
                    now,
                    step_id,
                    status,
                    Some(format!("run again by retry {generation}")),
                )],
            };
            if self.store.reset_step(&run.id, step_id, reset).await?.is_none() {
                // Reset by a concurrent re-drive, or the run moved on (it ended again, or was
                // retried again): then whatever is left is no longer this generation's.
                match self.store.get_run(&run.id).await? {
                    Some(now) if now.status == RunStatus::Running && now.generation == generation => {}
                    _ => return Ok(()),
                }
            }
        }

        let steps = self.store.get_steps(&run.id).await?;
        let mut ready = Vec::new();
        let mut blocked = Vec::new();
        for state in steps.into_iter().filter(|s| s.control.generation == generation && rerun.contains(&s.step_id)) {
            match state.status {
                StepStatus::Queued => ready.push(StepMessage { run_id: run.id.clone(), step_id: state.step_id }),
                StepStatus::Pending if state.control.pending_deps == 0 && state.control.blocked => blocked.push(state),
                _ => {}
            }
        }
        for state in blocked {
            // What a release to zero of a blocked step does: skip it, and follow it up.
            let reason = "a step it depends on did not succeed".to_owned();
            let skip = ending(&state.step_id, vec![StepStatus::Pending], StepStatus::Skipped, None, reason, now);
            if let Some(skipped) = self.store.transition_step(&run.id, &state.step_id, skip).await? {
                self.step_finished(run, skipped).await?;
            }
        }
        if !ready.is_empty() {
            self.steps.send(ready, Duration::ZERO).await?;
        }
        self.store.finish_retry(&run.id, generation).await?;
        Ok(())
    }

    /// Creates a new run from an ended one (see the module's notes and [`ForkRequest`]).
    /// Idempotent with a key like a submission: the key is stored with the new run.
    pub async fn fork(
        &self,
        tenant: &TenantId,
        source_id: &RunId,
        request: ForkRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, EngineError> {
        let source = self.owned_run(tenant, source_id).await?;
        if !source.status.is_terminal() {
            return Err(EngineError::Conflict(format!(
                "run {source_id} has not ended (it is {}); a run can be forked once it has",
                source.status
            )));
        }
        let (workflow, from, overridden) = merged_workflow(&source, &request)?;
        let input = request.input.clone().unwrap_or_else(|| source.input.clone());
        let validated = match self.validate(&workflow, &input).await? {
            Ok(validated) => validated,
            Err(problems) => {
                return Err(EngineError::Invalid(problems.into_iter().map(|p| relocate(p, &overridden)).collect()));
            }
        };

        let source_steps = self.store.get_steps(source_id).await?;
        let succeeded: BTreeMap<&StepId, &StepState> = source_steps
            .iter()
            .filter(|s| s.status == StepStatus::Succeeded && s.progress.output.is_some())
            .map(|s| (&s.step_id, s))
            .collect();
        let input_changed = request.input.is_some() && input != source.input;
        let definition = &validated.definition;
        let seeds = definition.steps.iter().filter(|step| {
            !succeeded.contains_key(&step.id)
                || from.contains(&step.id)
                || overridden.values().any(|(id, _)| id == &step.id)
                || (input_changed && self.reads_input(step))
        });
        let plan = &validated.plan;
        let rerun = RerunPlan::new(plan, seeds.map(|step| step.id.clone()), |_| true);
        if rerun.is_empty() {
            return Err(EngineError::Invalid(vec![Problem::new(
                "",
                format!(
                    "every step of run {source_id} would be reused, so nothing would run: name steps in `from`, \
                     change some in `overrides` or give another `input`"
                ),
            )]));
        }

        let now = self.clock.now();
        let run_id = RunId::generate(now);
        let mut reused = Vec::new();
        let mut ready = Vec::new();
        let mut events = Vec::new();
        let mut steps = Vec::with_capacity(definition.steps.len());
        for step in &definition.steps {
            let dependants: Vec<StepId> = plan.dependants(&step.id).cloned().collect();
            // A step that does not run again succeeded in the source (the others are seeds).
            let kept = if rerun.contains(&step.id) { None } else { succeeded.get(&step.id) };
            let state = match kept {
                Some(source_state) => {
                    reused.push(step.id.clone());
                    let reason = format!("reused from run {source_id}");
                    events.push(RunEvent::step_status(now, &step.id, StepStatus::Succeeded, Some(reason)));
                    reused_step(source_state, source_id, dependants)
                }
                None => {
                    let start = rerun.starts.get(&step.id).cloned().unwrap_or_default();
                    let mut state = start.state(step.id.clone(), dependants);
                    if state.status == StepStatus::Queued {
                        // Should its message be lost, the reconciler sends another.
                        state.control.due = Some(now + QUEUED_GRACE);
                        events.push(RunEvent::step_status(now, &step.id, StepStatus::Queued, None));
                        ready.push(step.id.clone());
                    }
                    state
                }
            };
            steps.push(state);
        }
        events.insert(0, RunEvent::run(now, EventKind::RunForked { from: source_id.clone(), reused: reused.clone() }));
        // Still the registered version the source ran, unless overrides changed it.
        let workflow = source.workflow.clone().filter(|_| validated.definition == source.definition);
        let run = Run {
            id: run_id.clone(),
            tenant: tenant.clone(),
            status: RunStatus::Queued,
            definition: validated.definition,
            input,
            notify: source.notify.clone(),
            output: None,
            error: None,
            pending_sinks: rerun.pending_sinks,
            created_at: now,
            updated_at: now,
            finished_at: None,
            due: None,
            budget: Default::default(),
            generation: 0,
            forked_from: Some(ForkedFrom { run_id: source_id.clone(), reused }),
            workflow,
            // A fork is a run of its own, even of a child run.
            parent: None,
            depth: 0,
        };
        let idempotency = idempotency_key
            .map(|key| IdempotencyClaim { key: key.to_owned(), request_hash: fork_hash(source_id, &request) });
        let outcome = self.store.create_run(NewRun { run, steps, idempotency: idempotency.clone(), events }).await?;
        match (outcome, idempotency) {
            (CreateOutcome::Created, _) => {
                // Stored, so accepted even if the first messages cannot be sent now: the
                // reconciler sends them once their grace has passed.
                let messages = ready.into_iter().map(|step_id| StepMessage { run_id: run_id.clone(), step_id });
                if let Err(err) = self.steps.send(messages.collect(), Duration::ZERO).await {
                    tracing::warn!(%run_id, error = %err, "could not queue the fork's first steps; the reconciler will");
                }
                Ok(Submitted { run_id, created: true })
            }
            (CreateOutcome::KeyTaken { run_id, request_hash }, Some(claim)) if request_hash == claim.request_hash => {
                Ok(Submitted { run_id, created: false })
            }
            (CreateOutcome::KeyTaken { run_id, .. }, _) => Err(EngineError::Conflict(format!(
                "this Idempotency-Key was already used for run {run_id} with a different request"
            ))),
        }
    }

    /// Whether the step's templates, `when` or `for_each` read the run's `input`.
    fn reads_input(&self, step: &StepDefinition) -> bool {
        let templates = step.templates().map(|(_, source)| self.templates.check(source).ok());
        let conditions = [&step.when, &step.for_each]
            .into_iter()
            .flatten()
            .map(|expression| self.templates.check_condition(expression).ok());
        // A template that does not parse cannot be in a validated workflow; count it as reading.
        templates.chain(conditions).any(|references| references.is_none_or(|r| r.input))
    }
}

/// The steps overridden by a fork, by their index in the workflow: id and the fields changed.
type Overridden = BTreeMap<usize, (StepId, BTreeSet<String>)>;

/// The source's workflow as JSON with the fork's overrides merged into its steps, the steps
/// named in `from`, and the steps overridden; or the problems with `from` and `overrides`.
fn merged_workflow(source: &Run, request: &ForkRequest) -> Result<(Value, Vec<StepId>, Overridden), EngineError> {
    let steps = &source.definition.steps;
    let position = |raw: &str| steps.iter().position(|step| step.id.as_str() == raw);
    let unknown = |raw: &str| format!("run {}'s workflow has no step `{raw}`", source.id);
    let mut problems = Vec::new();
    let mut from = Vec::new();
    for (index, raw) in request.from.iter().enumerate() {
        match position(raw) {
            Some(at) => from.push(steps[at].id.clone()),
            None => problems.push(Problem::new(format!("/from/{index}"), unknown(raw))),
        }
    }
    let mut workflow = serde_json::to_value(&source.definition).map_err(|err| {
        EngineError::Port(PortError::Corrupt { what: "stored workflow definition", detail: err.to_string() })
    })?;
    let mut overridden = Overridden::new();
    for (raw, fields) in &request.overrides {
        let pointer = format!("/overrides/{}", escape_pointer(raw));
        let Some(at) = position(raw) else {
            problems.push(Problem::new(pointer, unknown(raw)));
            continue;
        };
        if fields.contains_key("id") {
            problems.push(Problem::new(format!("{pointer}/id"), "a step's `id` cannot be changed"));
            continue;
        }
        let Some(step) = workflow.pointer_mut(&format!("/steps/{at}")).and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, value) in fields {
            match value {
                Value::Null => step.remove(field),
                value => step.insert(field.clone(), value.clone()),
            };
        }
        overridden.insert(at, (steps[at].id.clone(), fields.keys().cloned().collect()));
    }
    if problems.is_empty() { Ok((workflow, from, overridden)) } else { Err(EngineError::Invalid(problems)) }
}

/// A validation problem of the merged workflow, pointed into the fork request: a field of an
/// overridden step at `/overrides/<step>/<field>`, anything else about an overridden step at
/// `/overrides/<step>`, the input where it was given, and what the overrides caused elsewhere
/// (a cycle, another step) at `/overrides`.
fn relocate(problem: Problem, overridden: &Overridden) -> Problem {
    let Problem { pointer, detail } = problem;
    if pointer.starts_with("/input") {
        return Problem { pointer, detail };
    }
    let mut segments = pointer.strip_prefix("/workflow/steps/").map(|rest| rest.splitn(2, '/'));
    let index = segments.as_mut().and_then(|s| s.next()).and_then(|index| index.parse::<usize>().ok());
    let rest = segments.and_then(|mut s| s.next()).unwrap_or_default();
    let pointer = match index.and_then(|index| overridden.get(&index)) {
        Some((id, fields)) => {
            let field = rest.split('/').next().unwrap_or_default();
            if fields.contains(field) { format!("/overrides/{id}/{rest}") } else { format!("/overrides/{id}") }
        }
        None if overridden.is_empty() => String::new(),
        None => "/overrides".to_owned(),
    };
    Problem { pointer, detail }
}

/// A source step reused by a fork: succeeded, with the source's output, model, usage and cost
/// (shown, not counted in the new run's totals), released for its dependants from the start.
fn reused_step(source: &StepState, source_id: &RunId, dependants: Vec<StepId>) -> StepState {
    let done = &source.progress;
    StepState {
        step_id: source.step_id.clone(),
        status: StepStatus::Succeeded,
        progress: StepProgress {
            provider: done.provider.clone(),
            model: done.model.clone(),
            usage: done.usage,
            cost_usd: done.cost_usd,
            latency_ms: done.latency_ms,
            output: done.output.clone(),
            started_at: done.started_at,
            finished_at: done.finished_at,
            map: done.map,
            reused_from: Some(source_id.clone()),
            ..StepProgress::default()
        },
        control: StepControl { dependants, ..StepControl::default() },
    }
}

fn corrupt(run_id: &RunId, err: impl std::fmt::Display) -> EngineError {
    EngineError::Port(PortError::Corrupt { what: "stored steps", detail: format!("run {run_id}: {err}") })
}

/// Escapes a member name for use in a JSON Pointer (RFC 6901 §3).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A retry's request: the run it retries (it has no body).
fn retry_hash(run_id: &RunId) -> String {
    hex::encode(Sha256::digest(format!("retry {run_id}").as_bytes()))
}

/// A fork's request: its source and body (serde_json maps are sorted, so equal JSON hashes
/// equally; a missing `input` and a `null` one are the same request).
fn fork_hash(source_id: &RunId, request: &ForkRequest) -> String {
    let canonical = serde_json::to_string(request).unwrap_or_default();
    hex::encode(Sha256::digest(format!("fork {source_id} {canonical}").as_bytes()))
}
