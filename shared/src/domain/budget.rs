//! A run's spending against its `budget_usd`, kept on the run record so that steps running
//! in parallel cannot overshoot the budget together. Pure arithmetic, like `rate`: the
//! memory adapter applies it as is, the DynamoDB adapter states the same conditions in one
//! `UpdateItem`, and both report a refusal through [`BudgetLedger::reserve`] and
//! [`BudgetLedger::settle`] run on the record as it was.
//!
//! **Reserve, then settle.** Before a priced call a step reserves the call's estimated cost:
//! one conditional write on the run, taken only if everything the run has settled and
//! reserved, with this reservation, stays within the budget. Conditions cannot add, so the
//! ledger keeps that sum as one number, `committed_usd`, and reserving `delta` more is
//! conditional on `committed_usd <= budget - delta`. When the step ends, its follow-up
//! settles it: the reservation is released and the step's recorded cost counted in its
//! place, once per step.
//!
//! **One reservation per step.** Only the worker holding a step's lease calls models for it,
//! so a step needs one reservation at a time: the estimate of the call it is making (or of
//! the job it waits on). A new reservation names the one it replaces, and the write applies
//! only if that is still what the step holds, so every write moves `committed_usd` by
//! exactly what it changes and the sum stays true whatever interleaves.
//!
//! **Crashes.** A process may die between any two writes; a reservation it leaves must not
//! hold the budget forever:
//! - Dead after reserving (before, during or after its call, before recording the result):
//!   the step's lease ends and the reconciler sends it again. The next claim's first
//!   reservation replaces the dead worker's in the same write; if the step ends without
//!   another call (it fails, is dead-lettered, gives up after too many claims), its end's
//!   follow-up settles the reservation away.
//! - Dead after the step ended, before settling: the step's follow-up is due and re-driven
//!   until done, and settling twice is a no-op.
//!
//! Until then the reservation counts against the budget: a crash can make a run more careful
//! for a while, never let it overspend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::StepId;

/// What a run has spent and reserved, on the run record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetLedger {
    /// Settled costs plus every reservation: what a new reservation must fit beside.
    #[serde(default)]
    pub committed_usd: f64,
    /// What each step holds for the call it is making or the job it waits on.
    #[serde(default)]
    pub reservations: BTreeMap<StepId, f64>,
    /// Steps whose spending is settled: each counts once, and reserves nothing after.
    #[serde(default)]
    pub settled: Vec<StepId>,
}

/// A step's request for part of the run's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    /// The run's `budget_usd`.
    pub budget_usd: f64,
    /// What the step holds now, as the caller last saw it: the reservation replaces it.
    pub replaces: Option<f64>,
    /// The estimate to hold from now on.
    pub usd: f64,
}

impl Reservation {
    /// How much more the run commits with it; negative when it lowers what the step holds.
    pub fn delta(&self) -> f64 {
        self.usd - self.replaces.unwrap_or(0.0)
    }

    /// The most the run may have committed for the reservation to fit.
    pub fn limit(&self) -> f64 {
        self.budget_usd - self.delta()
    }
}

/// How a [`Reservation`] went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserved {
    Held,
    /// It does not fit beside what the run has committed (settled, and reserved by every
    /// step, this one included); nothing changed.
    OverBudget {
        committed_usd: f64,
    },
    /// The step holds something other than what the reservation replaces (a write the caller
    /// did not see); nothing changed.
    Changed {
        current: Option<f64>,
    },
    /// The step's spending is settled: it has ended and reserves nothing more.
    Settled,
}

/// A step's spending, counted once when it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settlement {
    /// What the step holds, as the caller last saw it: released.
    pub held: Option<f64>,
    /// The step's recorded cost, counted instead (an unknown cost counts as nothing).
    pub cost_usd: f64,
}

/// How a [`Settlement`] went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Settled {
    Done,
    /// Settled before; nothing changed.
    Already,
    /// The step holds something other than `held`; nothing changed.
    Changed {
        current: Option<f64>,
    },
}

impl BudgetLedger {
    /// Applies `reservation` for `step` if it fits (see the module's notes).
    pub fn reserve(&mut self, step: &StepId, reservation: Reservation) -> Reserved {
        if self.settled.contains(step) {
            return Reserved::Settled;
        }
        let current = self.reservations.get(step).copied();
        if current != reservation.replaces {
            return Reserved::Changed { current };
        }
        let delta = reservation.delta();
        // Lowering a reservation always fits: it only gives budget back.
        if delta > 0.0 && self.committed_usd > reservation.limit() {
            return Reserved::OverBudget { committed_usd: self.committed_usd };
        }
        self.committed_usd += delta;
        self.reservations.insert(step.clone(), reservation.usd);
        Reserved::Held
    }

    /// Releases what `step` holds and counts its cost, once.
    pub fn settle(&mut self, step: &StepId, settlement: Settlement) -> Settled {
        if self.settled.contains(step) {
            return Settled::Already;
        }
        let current = self.reservations.get(step).copied();
        if current != settlement.held {
            return Settled::Changed { current };
        }
        self.committed_usd += settlement.cost_usd - settlement.held.unwrap_or(0.0);
        self.reservations.remove(step);
        self.settled.push(step.clone());
        Settled::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(step: &str) -> StepId {
        StepId::parse(step).unwrap()
    }

    fn reserve(usd: f64, replaces: Option<f64>) -> Reservation {
        Reservation { budget_usd: 1.0, replaces, usd }
    }

    #[test]
    fn reservations_fit_beside_what_is_committed_and_replace_the_steps_own() {
        let mut ledger = BudgetLedger::default();
        assert_eq!(ledger.reserve(&id("a"), reserve(0.5, None)), Reserved::Held);
        assert_eq!(ledger.reserve(&id("b"), reserve(0.5, None)), Reserved::Held, "exactly the budget fits");
        assert_eq!(ledger.reserve(&id("c"), reserve(0.25, None)), Reserved::OverBudget { committed_usd: 1.0 });
        assert_eq!(ledger.reserve(&id("a"), reserve(0.25, None)), Reserved::Changed { current: Some(0.5) });
        assert_eq!(ledger.reserve(&id("a"), reserve(0.25, Some(0.5))), Reserved::Held, "lowering always fits");
        assert_eq!(ledger.reserve(&id("c"), reserve(0.25, None)), Reserved::Held);
        assert_eq!(ledger.committed_usd, 1.0);
    }

    #[test]
    fn settling_trades_the_reservation_for_the_cost_once() {
        let mut ledger = BudgetLedger::default();
        ledger.reserve(&id("a"), reserve(0.5, None));
        let settle = |held| Settlement { held, cost_usd: 0.125 };
        assert_eq!(ledger.settle(&id("a"), settle(None)), Settled::Changed { current: Some(0.5) });
        assert_eq!(ledger.settle(&id("a"), settle(Some(0.5))), Settled::Done);
        assert_eq!(ledger.settle(&id("a"), settle(Some(0.5))), Settled::Already);
        assert_eq!((ledger.committed_usd, ledger.reservations.len()), (0.125, 0));
        assert_eq!(ledger.reserve(&id("a"), reserve(0.5, None)), Reserved::Settled, "an ended step reserves nothing");
    }
}
