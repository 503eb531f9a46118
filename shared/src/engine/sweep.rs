//! The scheduled sweep: waits (approvals, provider callbacks) that outlived their deadline
//! fail, and the run moves on as it would after any other failure. A provider job is asked
//! once first, in case only its webhook was lost.

use super::transitions::ending;
use super::{Engine, EngineError};
use crate::domain::{ErrorKind, StepError, StepStatus};

/// Expired waits handled per sweep; the next sweep takes the rest.
const SWEEP_BATCH: usize = 100;

impl Engine {
    /// Fails every wait past its deadline; returns how many it failed. Safe to run
    /// concurrently and repeatedly: each failure is a conditional transition.
    pub async fn sweep(&self) -> Result<usize, EngineError> {
        let now = self.clock.now();
        let mut failed = 0;
        for wait in self.store.expired_waits(now, SWEEP_BATCH).await? {
            let Some(run) = self.store.get_run(&wait.run_id).await? else { continue };
            let steps = self.store.get_steps(&wait.run_id).await?;
            let Some(state) = steps.iter().find(|s| s.step_id == wait.step_id) else { continue };
            let reason = match state.status {
                StepStatus::WaitingCallback => {
                    if self.poll_expired_job(&run, state).await?.is_some() {
                        continue; // the job had finished; its webhook was lost
                    }
                    "the provider's job did not finish before the step's deadline".to_owned()
                }
                _ => "no answer arrived before the step's deadline".to_owned(),
            };
            let error = StepError::new(ErrorKind::DeadlineExceeded, reason.clone());
            let waits = vec![StepStatus::WaitingApproval, StepStatus::WaitingCallback];
            let transition = ending(&wait.step_id, waits, StepStatus::Failed, Some(error), reason, now);
            // `None`: decided between the query and now.
            if let Some(state) = self.store.transition_step(&run.id, &wait.step_id, transition).await? {
                failed += 1;
                self.step_finished(&run, state).await?;
            }
        }
        Ok(failed)
    }
}
