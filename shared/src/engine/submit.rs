//! Submitting a run: validate everything, store the run and its steps in one go, then queue
//! the steps that have nothing to wait for.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::transitions::QUEUED_GRACE;
use super::workflows::in_registered;
use super::{Engine, EngineError};
use crate::domain::validation::{ValidatedWorkflow, validate_submission};
use crate::domain::{
    EventKind, NotifyTarget, ParentRef, Problem, Run, RunEvent, RunId, RunStatus, StepId, StepState, StepStatus,
    TenantId,
};
use crate::ports::{CreateOutcome, IdempotencyClaim, NewRun, StepMessage};

/// `POST /v1/runs`: a workflow, its input and where to send the result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The workflow: a definition (see `WorkflowDefinition`), or the name of a registered
    /// workflow (`PUT /v1/workflows/{name}`), `triage` for its latest version or `triage@3`.
    /// Validated as a whole, so it is taken as raw JSON here.
    #[schema(value_type = WorkflowSpec)]
    pub workflow: Value,
    /// The run's input: any JSON (usually an object), at most 6 MiB, satisfying the workflow's
    /// `input_schema`. Missing or `null` is `{}`.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyTarget>,
}

/// A workflow definition, or the name of a registered workflow.
// For the OpenAPI document only: the submission keeps `workflow` as raw JSON, to validate it
// whole, so this is never built.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum WorkflowSpec {
    Inline(crate::domain::WorkflowDefinition),
    Registered(WorkflowReference),
}

/// A registered workflow's name, for its latest version, or `name@version`.
// For the OpenAPI document only, as `WorkflowSpec`.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^[a-z0-9][a-z0-9_-]{0,63}(@[1-9][0-9]{0,8})?$", example = "triage@3")]
#[allow(dead_code)]
pub struct WorkflowReference(String);

/// The accepted run; `created` is false when an idempotent retry found an existing run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub run_id: RunId,
    pub created: bool,
}

impl Engine {
    /// Validates a submission on the blocking pool: compiling its templates and schemas and
    /// checking the input against `input_schema` is CPU work, bounded but not small.
    pub(super) async fn validate(
        &self,
        workflow: &Value,
        input: &Value,
    ) -> Result<Result<ValidatedWorkflow, Vec<Problem>>, EngineError> {
        let (router, templates, limits) = (self.router.clone(), self.templates.clone(), self.limits);
        let (workflow, input) = (workflow.clone(), input.clone());
        tokio::task::spawn_blocking(move || validate_submission(&workflow, &input, router.as_ref(), &templates, limits))
            .await
            .map_err(EngineError::Interrupted)
    }

    /// Validates and stores a run, then queues its root steps.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        submission: Submission,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, EngineError> {
        self.submit_run(tenant, submission, idempotency_key, None).await
    }

    /// [`submit`](Self::submit), for a client's run (`parent: None`) or a `workflow` step's
    /// child run (its parent, and how deep it sits).
    pub(super) async fn submit_run(
        &self,
        tenant: &TenantId,
        mut submission: Submission,
        idempotency_key: Option<&str>,
        parent: Option<(ParentRef, u32)>,
    ) -> Result<Submitted, EngineError> {
        // A missing input is an empty one, before hashing, so retries that omit it match.
        if submission.input.is_null() {
            submission.input = Value::Object(Default::default());
        }
        let mut problems = Vec::new();
        if let Some(target) = &submission.notify
            && let Err(err) = self.destinations.check_url(&target.url)
        {
            problems.push(Problem::new("/notify/url", err.to_string()));
        }
        // A registered workflow is validated again, with the input: the models it names may
        // have changed since it was registered.
        let registered = match &submission.workflow {
            Value::String(reference) => match self.resolve_workflow(tenant, reference).await? {
                Ok(found) => Some(found),
                Err(problem) => {
                    problems.insert(0, problem);
                    return Err(EngineError::Invalid(problems));
                }
            },
            _ => None,
        };
        let workflow = registered.as_ref().map_or(&submission.workflow, |(_, definition)| definition);
        let workflow_ref = registered.as_ref().map(|(reference, _)| reference.clone());
        let input = submission.input.clone();
        let validated = self.validate(workflow, &input).await?;
        let mut validated = match validated {
            Ok(validated) if problems.is_empty() => validated,
            Ok(_) => return Err(EngineError::Invalid(problems)),
            Err(mut more) => {
                if let Some(reference) = &workflow_ref {
                    more = more.into_iter().map(|problem| in_registered(problem, reference)).collect();
                }
                more.extend(problems);
                return Err(EngineError::Invalid(more));
            }
        };
        // The sub-workflows a run starts are the versions registered now.
        if let Err(mut more) = self.pin_children(tenant, &mut validated.definition).await? {
            if let Some(reference) = &workflow_ref {
                more = more.into_iter().map(|problem| in_registered(problem, reference)).collect();
            }
            return Err(EngineError::Invalid(more));
        }
        let (parent, depth) = parent.map_or((None, 0), |(parent, depth)| (Some(parent), depth));

        let now = self.clock.now();
        let plan = &validated.plan;
        let run = Run {
            id: RunId::generate(now),
            tenant: tenant.clone(),
            status: RunStatus::Queued,
            input,
            notify: submission.notify.clone(),
            output: None,
            error: None,
            pending_sinks: count(plan.sinks()),
            created_at: now,
            updated_at: now,
            finished_at: None,
            due: None,
            definition: validated.definition,
            budget: Default::default(),
            workflow: workflow_ref,
            generation: 0,
            forked_from: None,
            parent,
            depth,
        };
        let steps: Vec<StepState> = run
            .definition
            .steps
            .iter()
            .map(|step| {
                let dependants = plan.dependants(&step.id).cloned().collect();
                let mut state = StepState::new(step.id.clone(), count(plan.dependencies(&step.id)), dependants);
                // Should its message be lost, the reconciler sends another.
                if state.status == StepStatus::Queued {
                    state.control.due = Some(now + QUEUED_GRACE);
                }
                state
            })
            .collect();
        let mut events = vec![RunEvent::run(now, EventKind::RunSubmitted)];
        events.extend(plan.roots().map(|id| RunEvent::step_status(now, id, StepStatus::Queued, None)));
        let idempotency = idempotency_key
            .map(|key| IdempotencyClaim { key: key.to_owned(), request_hash: request_hash(&submission) });

        let run_id = run.id.clone();
        let roots: Vec<StepId> = plan.roots().cloned().collect();
        let outcome = self.store.create_run(NewRun { run, steps, idempotency: idempotency.clone(), events }).await?;
        match (outcome, idempotency) {
            (CreateOutcome::Created, _) => {
                // The run is stored: it is accepted even if its first messages cannot be sent
                // now, since the reconciler sends them once their grace has passed.
                if let Err(err) = self.queue(&run_id, roots).await {
                    tracing::warn!(%run_id, error = %err, "could not queue the run's first steps; the reconciler will");
                }
                Ok(Submitted { run_id, created: true })
            }
            (CreateOutcome::KeyTaken { run_id, request_hash }, Some(claim)) if request_hash == claim.request_hash => {
                // The first attempt may have stored the run but failed before queueing its
                // roots; queueing again is harmless because workers claim steps conditionally.
                if let Some(existing) = self.store.get_run(&run_id).await?
                    && existing.status == RunStatus::Queued
                {
                    let steps = self.store.get_steps(&run_id).await?;
                    let queued = steps.into_iter().filter(|s| s.status == StepStatus::Queued).map(|s| s.step_id);
                    self.queue(&run_id, queued.collect()).await?;
                }
                Ok(Submitted { run_id, created: false })
            }
            (CreateOutcome::KeyTaken { run_id, .. }, _) => Err(EngineError::Conflict(format!(
                "this Idempotency-Key was already used for run {run_id} with a different request body"
            ))),
        }
    }

    /// Sends the steps to the workers.
    async fn queue(&self, run_id: &RunId, steps: Vec<StepId>) -> Result<(), EngineError> {
        let messages = steps.into_iter().map(|step_id| StepMessage { run_id: run_id.clone(), step_id }).collect();
        self.steps.send(messages, Duration::ZERO).await?;
        Ok(())
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// A stable hash of the request as sent (a registered workflow's name, not the definition it
/// resolved to): serde_json maps are sorted, so equal JSON hashes equally.
fn request_hash(submission: &Submission) -> String {
    let canonical = serde_json::to_vec(submission).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}
