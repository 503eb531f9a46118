//! How the router keeps a call within the run's budget: before a call to a priced model it
//! has a [`BudgetHolder`] reserve the call's estimate (the engine's holder writes it on the
//! run record, where every step's reservations meet; see `domain::budget`), and a model whose
//! cost it cannot estimate is refused unless the workflow allows unpriced models.

use std::fmt;

use async_trait::async_trait;

use crate::providers::ProviderError;

/// The run's budget as the router sees it.
#[derive(Clone, Copy)]
pub struct RunBudget<'a> {
    pub holder: &'a dyn BudgetHolder,
    /// The workflow's `allow_unpriced_models`: call models with no price anyway.
    pub allow_unpriced: bool,
}

impl fmt::Debug for RunBudget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunBudget").field("allow_unpriced", &self.allow_unpriced).finish_non_exhaustive()
    }
}

/// Reserves part of a run's budget for one step's calls.
#[async_trait]
pub trait BudgetHolder: Send + Sync {
    /// Reserves `estimate_usd` for the step's next call, to `model` (`provider:model`), in
    /// place of what the step reserved before.
    async fn reserve(&self, model: &str, estimate_usd: f64) -> Result<(), Refusal>;
}

/// Why a call may not be made now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// It does not fit in the budget: the model is skipped like a failed one.
    Refused(ProviderError),
    /// Nothing could be reserved now (the run store is unavailable): the step should run
    /// again later rather than skip a model it may be able to afford.
    Unavailable(String),
}
