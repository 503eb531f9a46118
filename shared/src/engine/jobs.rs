//! Steps answered later: an async provider (Replicate) accepted a job, the step waits in
//! `waiting_callback`, and the provider's webhook (or, past the deadline, one poll by the
//! sweep) completes it. Webhooks arrive at least once and in any order, so completing is a
//! conditional transition from `waiting_callback`: a redelivery finds the step finished and
//! changes nothing.
//!
//! The callback URL carries a token `<run_id>.<step_id>.<secret>`: it names the step without
//! a lookup item, and only the secret's hash is stored, so knowing a run id is not enough to
//! complete its steps. The provider's own signature on the body is checked as well.

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::transitions::{follow_up_due, provider_events};
use super::{Engine, EngineError};
use crate::domain::{
    Attempt, EventKind, JobRef, Run, RunEvent, RunId, StepDefinition, StepError, StepId, StepState, StepStatus,
    StepTransition, StepUpdate,
};
use crate::providers::{Callback, CallbackRejection, Completion, JobReport, JobState, Jobs, TaskRequest};
use crate::routing::SubmittedJob;

/// What a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The job finished and the step with it.
    Completed,
    /// The step had already finished (a redelivered or late webhook): nothing changed.
    AlreadyDone,
    /// The job reported progress, not an end.
    StillRunning,
}

/// Why a callback was not taken.
#[derive(Debug, Error)]
pub enum CallbackError {
    /// No job waits behind this URL (or the token's secret is wrong); answered as a 404.
    #[error("no pending job has this callback URL")]
    UnknownJob,
    #[error(transparent)]
    Rejected(#[from] CallbackRejection),
    /// The step has not recorded its job yet (the webhook beat the worker); retry.
    #[error("the job's step is not waiting for it yet")]
    NotReady,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The capability in a job's callback URL.
pub(super) struct CallbackToken {
    run_id: String,
    step_id: String,
    secret: String,
}

impl CallbackToken {
    pub(super) fn generate(run_id: &RunId, step_id: &StepId) -> Self {
        let mut secret = [0_u8; 16];
        rand::fill(&mut secret[..]);
        Self { run_id: run_id.to_string(), step_id: step_id.to_string(), secret: hex::encode(secret) }
    }

    /// `<run_id>.<step_id>.<secret>`: run and step ids never contain dots.
    pub(super) fn as_str(&self) -> String {
        format!("{}.{}.{}", self.run_id, self.step_id, self.secret)
    }

    fn parse(token: &str) -> Option<(RunId, StepId, String)> {
        let mut parts = token.split('.');
        let (run, step, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || secret.is_empty() {
            return None;
        }
        Some((RunId::parse(run).ok()?, StepId::parse(step).ok()?, secret.to_owned()))
    }

    pub(super) fn secret_sha256(&self) -> String {
        sha256_hex(&self.secret)
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The parts of a step's request that shape its output (task, labels, schema): what a job's
/// result is normalized with, long after the prompt was rendered.
fn request_shape(step: &StepDefinition) -> TaskRequest {
    TaskRequest::for_step(step, None, None)
}

impl Engine {
    /// Records that `job` was accepted: the claimed step now waits for its webhook until the
    /// step's job timeout.
    pub(super) async fn await_job(
        &self,
        run: &Run,
        step: &StepDefinition,
        attempts: Vec<Attempt>,
        job: SubmittedJob,
        token: &CallbackToken,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let mut events = provider_events(now, &step.id, &attempts);
        events.push(RunEvent::step(
            now,
            &step.id,
            EventKind::JobSubmitted {
                provider: job.provider.clone(),
                model: job.model.clone(),
                job_id: job.job_id.clone(),
            },
        ));
        events.push(RunEvent::step_status(now, &step.id, StepStatus::WaitingCallback, None));
        let waiting = StepTransition {
            from: vec![StepStatus::Running],
            lease_owner: Some(self.worker_id.clone()),
            update: StepUpdate {
                status: Some(StepStatus::WaitingCallback),
                due: Some(now + step.job_timeout()),
                job: Some(JobRef {
                    provider: job.provider,
                    model: job.model,
                    id: job.job_id,
                    token_sha256: token.secret_sha256(),
                }),
                attempts,
                ..StepUpdate::default()
            },
            events,
            ..StepTransition::default()
        };
        if self.store.transition_step(&run.id, &step.id, waiting).await?.is_none() {
            tracing::warn!(run_id = %run.id, step_id = %step.id, "lost the step's lease before recording its job");
        }
        Ok(())
    }

    /// Takes a provider's webhook for the job behind `token`: verifies it, and when the job
    /// finished, archives the raw output, completes the step and moves the run on.
    pub async fn receive_callback(
        &self,
        provider: &str,
        token: &str,
        callback: &Callback<'_>,
    ) -> Result<CallbackOutcome, CallbackError> {
        let (run_id, step_id, secret) = CallbackToken::parse(token).ok_or(CallbackError::UnknownJob)?;
        let run = self.store.get_run(&run_id).await.map_err(EngineError::from)?.ok_or(CallbackError::UnknownJob)?;
        let state = self
            .store
            .get_step(&run_id, &step_id)
            .await
            .map_err(EngineError::from)?
            .ok_or(CallbackError::UnknownJob)?;
        let step = run.definition.find_step(&step_id).ok_or(CallbackError::UnknownJob)?;
        let step = &step;
        let Some(job) = state.control.job.clone() else {
            return Err(if state.status == StepStatus::Running {
                CallbackError::NotReady
            } else {
                CallbackError::UnknownJob
            });
        };
        // Constant-time comparison is not needed: both sides are hashes of a random secret.
        if job.provider != provider || job.token_sha256 != sha256_hex(&secret) {
            return Err(CallbackError::UnknownJob);
        }
        let jobs = self.jobs_of(provider).ok_or(CallbackError::UnknownJob)?;
        let report = jobs.receive(callback, &request_shape(step)).await?;
        if report.job_id != job.id {
            return Err(CallbackRejection::Malformed("the job id does not match the callback URL".to_owned()).into());
        }
        if state.status.is_terminal() {
            // A redelivered webhook: if the delivery that ended the step died before what
            // follows was done, this one finishes it.
            if state.follow_up_pending() {
                self.step_finished(&run, state).await?;
            }
            return Ok(CallbackOutcome::AlreadyDone);
        }
        if state.status != StepStatus::WaitingCallback {
            return Err(CallbackError::NotReady);
        }
        Ok(self.settle_job(&run, step, &job, report).await?)
    }

    /// The sweep's last look at a job past its deadline: one poll, and the step completes if
    /// the job finished (its webhook was lost). `None` when it still runs or cannot be asked.
    pub(super) async fn poll_expired_job(&self, run: &Run, state: &StepState) -> Result<Option<()>, EngineError> {
        let (Some(job), Some(step)) = (&state.control.job, run.definition.find_step(&state.step_id)) else {
            return Ok(None);
        };
        let Some(jobs) = self.jobs_of(&job.provider) else { return Ok(None) };
        match jobs.poll(&job.id, &request_shape(&step)).await {
            Ok(report @ JobReport { state: JobState::Finished { .. }, .. }) => {
                self.settle_job(run, &step, job, report).await?;
                Ok(Some(()))
            }
            Ok(_) => Ok(None),
            Err(error) => {
                tracing::warn!(run_id = %run.id, step_id = %state.step_id, kind = %error.kind(), "could not poll an expired job");
                Ok(None)
            }
        }
    }

    fn jobs_of(&self, provider: &str) -> Option<&dyn Jobs> {
        self.router.provider(provider).and_then(|p| p.jobs())
    }

    /// Completes the waiting step from a job report: archives a finished job's raw output
    /// (providers delete it soon), then stores the normalized result.
    async fn settle_job(
        &self,
        run: &Run,
        step: &StepDefinition,
        job: &JobRef,
        report: JobReport,
    ) -> Result<CallbackOutcome, EngineError> {
        let JobState::Finished { result, raw_output } = report.state else {
            return Ok(CallbackOutcome::StillRunning);
        };
        let archive =
            format!("tenants/{}/runs/{}/steps/{}/jobs/{}-{}.json", run.tenant, run.id, step.id, job.provider, job.id);
        let body = serde_json::to_vec(&raw_output).unwrap_or_default();
        self.blobs.put(&archive, body.into()).await?;

        let now = self.clock.now();
        let result = match result {
            Ok(completion) => completion.checked(&request_shape(step)).await,
            Err(error) => Err(error),
        };
        let mut update = StepUpdate {
            finished_at: Some(now),
            due: follow_up_due(now),
            provider: Some(job.provider.clone()),
            model: Some(job.model.clone()),
            ..StepUpdate::default()
        };
        let status = match result {
            Ok(Completion { output, usage }) => {
                update.output = Some(output.to_json());
                update.cost_usd = Some(self.router.cost(&job.provider, &job.model, &usage));
                update.usage = Some(usage);
                StepStatus::Succeeded
            }
            Err(error) => {
                update.error = Some(StepError::from(error));
                StepStatus::Failed
            }
        };
        update.status = Some(status);
        let events = vec![
            RunEvent::step(
                now,
                &step.id,
                EventKind::JobFinished {
                    provider: job.provider.clone(),
                    job_id: job.id.clone(),
                    delivery_id: report.delivery_id,
                    archived_at: Some(archive),
                },
            ),
            RunEvent::step_status(now, &step.id, status, update.error.as_ref().map(|e| e.message.clone())),
        ];
        let finish =
            StepTransition { from: vec![StepStatus::WaitingCallback], update, events, ..StepTransition::default() };
        match self.store.transition_step(&run.id, &step.id, finish).await? {
            Some(state) => {
                self.step_finished(run, state).await?;
                Ok(CallbackOutcome::Completed)
            }
            // Another delivery (or the sweep) finished it first.
            None => Ok(CallbackOutcome::AlreadyDone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_token_when_parsed_back_then_it_names_the_step_and_only_its_secret_matches() {
        let run_id = RunId::generate(jiff::Timestamp::now());
        let step_id = StepId::parse("draft").unwrap_or_else(|_| unreachable!());
        let token = CallbackToken::generate(&run_id, &step_id);
        let (run, step, secret) = CallbackToken::parse(&token.as_str()).unwrap_or_else(|| unreachable!());
        assert_eq!((run, step), (run_id.clone(), step_id));
        assert_eq!(sha256_hex(&secret), token.secret_sha256());
        for bad in ["", "run.draft", &format!("{run_id}.draft."), &format!("{run_id}.Draft.abc"), "x.y.z.w"] {
            assert!(CallbackToken::parse(bad).is_none(), "{bad}");
        }
    }
}
