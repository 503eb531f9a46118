//! A run's budget through the run store (the ledger's design is in `domain::budget`): the
//! router reserves each priced call's estimate through a [`StepBudget`] while a worker runs
//! a step, and the step's follow-up settles what it held against what it cost. A run without
//! a `budget_usd` writes neither.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{Engine, EngineError};
use crate::domain::{Reservation, Reserved, Run, RunId, Settled, Settlement, StepId, StepState};
use crate::ports::{PortError, RunStore};
use crate::providers::ProviderError;
use crate::routing::{BudgetHolder, Refusal};

/// Writes that find the ledger changed under them before giving up (and leaving the work to
/// a later delivery): each try starts from what the refusal said is stored, so only a write
/// racing it every time could use them all.
const TRIES: usize = 4;

/// One claimed step's reservations on its run's budget.
pub(super) struct StepBudget<'a> {
    store: &'a dyn RunStore,
    run_id: RunId,
    step_id: StepId,
    budget_usd: f64,
    /// What the step holds, as this worker last wrote or saw it: the next reservation
    /// replaces it (a crashed worker's included, read with the run).
    held: Mutex<Option<f64>>,
}

impl<'a> StepBudget<'a> {
    /// The step's budget, when its run has one.
    pub(super) fn new(store: &'a dyn RunStore, run: &Run, step_id: &StepId) -> Option<Self> {
        Some(Self {
            store,
            run_id: run.id.clone(),
            step_id: step_id.clone(),
            budget_usd: run.definition.budget_usd?,
            held: Mutex::new(run.budget.reservations.get(step_id).copied()),
        })
    }

    /// What the step holds now, for the settlement when it ends.
    pub(super) fn held(&self) -> Option<f64> {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_held(&self, usd: Option<f64>) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = usd;
    }
}

#[async_trait]
impl BudgetHolder for StepBudget<'_> {
    async fn reserve(&self, model: &str, estimate_usd: f64) -> Result<(), Refusal> {
        for _ in 0..TRIES {
            let replaces = self.held();
            if replaces == Some(estimate_usd) {
                return Ok(()); // a retry of the same model, or a write that went through unseen
            }
            let reservation = Reservation { budget_usd: self.budget_usd, replaces, usd: estimate_usd };
            let outcome = self.store.reserve_budget(&self.run_id, &self.step_id, reservation).await;
            match outcome.map_err(|error| Refusal::Unavailable(error.to_string()))? {
                Reserved::Held => {
                    self.set_held(Some(estimate_usd));
                    return Ok(());
                }
                Reserved::OverBudget { committed_usd } => {
                    // What the other steps have spent or hold: this step's own reservation
                    // would be replaced.
                    let others = (committed_usd - replaces.unwrap_or(0.0)).max(0.0);
                    let left = (self.budget_usd - others).max(0.0);
                    return Err(Refusal::Refused(ProviderError::BudgetExceeded(format!(
                        "`{model}` may cost up to ${estimate_usd:.6} but only ${left:.6} of the run's ${:.6} budget \
                         is left (spent, or reserved by steps still running)",
                        self.budget_usd
                    ))));
                }
                Reserved::Changed { current } => self.set_held(current),
                Reserved::Settled => {
                    return Err(Refusal::Refused(ProviderError::BudgetExceeded(
                        "the step's spending was already settled: it has ended".to_owned(),
                    )));
                }
            }
        }
        Err(Refusal::Unavailable("the step's reservation kept changing".to_owned()))
    }
}

impl Engine {
    /// Settles a finished step's spending on its run's budget: releases what it holds and
    /// counts its recorded cost (an unknown cost as nothing). Part of the step's follow-up, so
    /// re-driven until done; settling is idempotent per step. `run` may be older than the
    /// step's last reservation: a refusal says what is stored, and the next try uses it.
    pub(super) async fn settle_budget(&self, run: &Run, state: &StepState) -> Result<(), EngineError> {
        if run.definition.budget_usd.is_none() || run.budget.settled.contains(&state.step_id) {
            return Ok(());
        }
        let cost_usd = state.progress.cost_usd.usd().unwrap_or(0.0);
        let mut held = run.budget.reservations.get(&state.step_id).copied();
        if held.is_none() && cost_usd == 0.0 {
            return Ok(()); // nothing to move: saves a write for free and skipped steps
        }
        for _ in 0..TRIES {
            let settlement = Settlement { held, cost_usd };
            match self.store.settle_budget(&run.id, &state.step_id, settlement).await? {
                Settled::Done | Settled::Already => return Ok(()),
                Settled::Changed { current } => held = current,
            }
        }
        Err(EngineError::Port(PortError::Unavailable {
            what: "the run's budget",
            source: format!("step `{}`'s reservation kept changing while it was settled", state.step_id).into(),
        }))
    }
}
