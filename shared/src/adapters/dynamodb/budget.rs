//! The budget ledger's two writes on the run item (`domain::budget` has the design): a
//! reservation and a settlement, each one conditional `UpdateItem`. Condition expressions
//! cannot add, so "fits the budget" is `budget_committed_usd <= budget - delta`, the limit
//! computed here. When a condition fails, the item as it was tells why, through the same
//! domain arithmetic the memory adapter applies.

use super::expression::{Expression, number};
use super::items::{BUDGET_COMMITTED, BUDGET_RESERVATIONS, BUDGET_SETTLED, LedgerItem};
use crate::domain::{BudgetLedger, Reservation, Reserved, Settled, Settlement, StepId};
use crate::ports::PortError;

/// Names the ledger's attributes and the step's entry in the reservations map, and requires
/// that the run exists, the step is not settled, and the step holds exactly `held`.
struct Paths {
    committed: String,
    /// `#budget_reservations.#<step>`.
    held: String,
}

fn paths(expression: &mut Expression, step: &StepId, held: Option<f64>) -> Result<Paths, PortError> {
    let committed = expression.name(BUDGET_COMMITTED);
    let settled = expression.name(BUDGET_SETTLED);
    // Step ids (`[a-z][a-z0-9_]*`) are valid placeholder names.
    let path = format!("{}.{}", expression.name(BUDGET_RESERVATIONS), expression.name(step.as_str()));
    let step_value = expression.serde_value(step)?;
    expression.require(format!("attribute_exists(pk) AND NOT contains({settled}, {step_value})"));
    let holds = match held {
        None => format!("attribute_not_exists({path})"),
        Some(usd) => format!("{path} = {}", expression.value(number(usd))),
    };
    expression.require(holds);
    Ok(Paths { committed, held: path })
}

/// `SET committed = committed + delta, reservations.step = usd`, if the step holds
/// `replaces` and, when the reservation grows, it fits the budget.
pub(super) fn reserve_expression(step: &StepId, reservation: Reservation) -> Result<Expression, PortError> {
    let mut expression = Expression::default();
    let Paths { committed, held } = paths(&mut expression, step, reservation.replaces)?;
    let delta = reservation.delta();
    if delta > 0.0 {
        let limit = expression.value(number(reservation.limit()));
        expression.require(format!("{committed} <= {limit}"));
    }
    let (delta, usd) = (expression.value(number(delta)), expression.value(number(reservation.usd)));
    expression.set_raw(format!("{committed} = {committed} + {delta}"));
    expression.set_raw(format!("{held} = {usd}"));
    Ok(expression)
}

/// `SET committed = committed + (cost - held), settled = settled ++ [step]` and `REMOVE
/// reservations.step`, if the step holds `held` and is not settled yet.
pub(super) fn settle_expression(step: &StepId, settlement: Settlement) -> Result<Expression, PortError> {
    let mut expression = Expression::default();
    let Paths { committed, held } = paths(&mut expression, step, settlement.held)?;
    let delta = expression.value(number(settlement.cost_usd - settlement.held.unwrap_or(0.0)));
    expression.set_raw(format!("{committed} = {committed} + {delta}"));
    expression.append(BUDGET_SETTLED, &[step])?;
    if settlement.held.is_some() {
        expression.remove_raw(held);
    }
    Ok(expression)
}

/// Why a reservation's condition failed on the run as it was. Only the budget's condition
/// involves arithmetic, where DynamoDB's decimals and our floats may differ in the last
/// digit: a refusal the domain would have taken is that one.
pub(super) fn why_not_reserved(before: LedgerItem, step: &StepId, reservation: Reservation) -> Reserved {
    let mut ledger = BudgetLedger::from(before);
    let committed_usd = ledger.committed_usd;
    match ledger.reserve(step, reservation) {
        Reserved::Held => Reserved::OverBudget { committed_usd },
        refused => refused,
    }
}

/// Why a settlement's condition failed on the run as it was.
pub(super) fn why_not_settled(before: LedgerItem, step: &StepId, settlement: Settlement) -> Settled {
    let mut ledger = BudgetLedger::from(before);
    let current = ledger.reservations.get(step).copied();
    match ledger.settle(step, settlement) {
        // Nothing else can refuse it; should the two ever disagree, the caller reads again.
        Settled::Done => Settled::Changed { current },
        refused => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(step: &str) -> StepId {
        StepId::parse(step).unwrap()
    }

    #[test]
    fn a_growing_reservation_is_conditional_on_the_budget_and_on_what_the_step_holds() {
        let reservation = Reservation { budget_usd: 1.0, replaces: Some(0.25), usd: 0.5 };
        let expression = reserve_expression(&id("draft"), reservation).unwrap();
        let condition = expression.condition_expression().unwrap();
        assert!(condition.contains("NOT contains(#budget_settled, "), "{condition}");
        assert!(condition.contains("#budget_reservations.#draft = "), "{condition}");
        assert!(condition.contains("#budget_committed_usd <= "), "{condition}");
        let values = expression.values().unwrap();
        assert!(
            values.values().any(|v| v.as_n().is_ok_and(|n| n == "0.75")),
            "the limit is budget - delta: {values:?}"
        );
        let update = expression.update_expression().unwrap();
        assert!(update.starts_with("SET #budget_committed_usd = #budget_committed_usd + :v"), "{update}");
        assert!(update.contains("#budget_reservations.#draft = :v"), "{update}");

        let lowering = Reservation { budget_usd: 1.0, replaces: Some(0.5), usd: 0.25 };
        let condition = reserve_expression(&id("draft"), lowering).unwrap().condition_expression().unwrap();
        assert!(!condition.contains("<="), "lowering needs no room: {condition}");
        let first = Reservation { budget_usd: 1.0, replaces: None, usd: 0.25 };
        let condition = reserve_expression(&id("draft"), first).unwrap().condition_expression().unwrap();
        assert!(condition.contains("attribute_not_exists(#budget_reservations.#draft)"), "{condition}");
    }

    #[test]
    fn a_settlement_releases_the_reservation_and_marks_the_step() {
        let expression = settle_expression(&id("draft"), Settlement { held: Some(0.5), cost_usd: 0.125 }).unwrap();
        let update = expression.update_expression().unwrap();
        assert!(update.contains("#budget_settled = list_append(#budget_settled, :v"), "{update}");
        assert!(update.ends_with("REMOVE #budget_reservations.#draft"), "{update}");
        let values = expression.values().unwrap();
        assert!(values.values().any(|v| v.as_n().is_ok_and(|n| n == "-0.375")), "cost - held: {values:?}");
        let nothing_held = settle_expression(&id("draft"), Settlement { held: None, cost_usd: 0.0 }).unwrap();
        assert!(!nothing_held.update_expression().unwrap().contains("REMOVE"));
    }

    #[test]
    fn a_refusal_is_explained_by_the_run_as_it_was() {
        let before = || LedgerItem {
            budget_committed_usd: 0.9,
            budget_reservations: [(id("a"), 0.5)].into(),
            ..LedgerItem::default()
        };
        let grow = Reservation { budget_usd: 1.0, replaces: None, usd: 0.5 };
        assert_eq!(why_not_reserved(before(), &id("b"), grow), Reserved::OverBudget { committed_usd: 0.9 });
        assert_eq!(why_not_reserved(before(), &id("a"), grow), Reserved::Changed { current: Some(0.5) });
        let settle = Settlement { held: None, cost_usd: 0.1 };
        assert_eq!(why_not_settled(before(), &id("a"), settle), Settled::Changed { current: Some(0.5) });
        let settled = LedgerItem { budget_settled: vec![id("a")], ..before() };
        assert_eq!(why_not_settled(settled, &id("a"), settle), Settled::Already);
    }
}
