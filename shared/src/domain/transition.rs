//! A conditional change of one step: the condition it needs ([`StepTransition::admits`]) and
//! what it sets ([`StepUpdate`]). What an update means is written here once, as changes to
//! the step's stored attributes ([`StepUpdate::changes`]): the memory adapter applies them
//! with [`StepUpdate::apply`] and the DynamoDB adapter turns the same list into its `SET`
//! clauses, so the two cannot drift.

use serde::Serialize;
use serde_json::{Map, Value};

use super::cost::Cost;
use super::event::RunEvent;
use super::step::{Attempt, JobRef, Lease, MapProgress, StepError, StepState, StepStatus, Usage};

/// A conditional change of one step, applied atomically or not at all.
#[derive(Debug, Clone, Default)]
pub struct StepTransition {
    /// The statuses the step may be in for the change to apply.
    pub from: Vec<StepStatus>,
    /// Also accept a `running` step whose lease ended before this instant (a crashed worker).
    pub or_lease_expired_before: Option<jiff::Timestamp>,
    /// Require the lease to be held by this owner (the worker completing its own claim).
    pub lease_owner: Option<String>,
    pub update: StepUpdate,
    /// History written in the same operation.
    pub events: Vec<RunEvent>,
}

impl StepTransition {
    /// Whether the step, as it is, meets the transition's conditions.
    pub fn admits(&self, state: &StepState) -> bool {
        let lease = state.control.lease.as_ref();
        let status_ok = self.from.contains(&state.status)
            || self
                .or_lease_expired_before
                .is_some_and(|now| state.status == StepStatus::Running && lease.is_none_or(|lease| lease.until < now));
        let owner_ok = self.lease_owner.as_ref().is_none_or(|owner| lease.is_some_and(|lease| &lease.owner == owner));
        status_ok && owner_ok
    }
}

/// What a transition sets. `None` leaves a field as it is, except `lease` and `due`, which
/// every transition replaces: a step holds a lease only while `running`, and when the
/// reconciler should look at it next depends on where the transition leaves it. The serialized form, with the stored step's attribute names, is the
/// list of fields to set (see [`Self::changes`]); counters and lists are changed in place.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StepStatus>,
    pub lease: Option<Lease>,
    /// When the reconciler looks at the step next (see `StepControl::due`).
    pub due: Option<jiff::Timestamp>,
    /// The step's count of hand-backs without a provider call, when it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_requeues: Option<u32>,
    /// Counts one more claim in `attempt`.
    #[serde(skip)]
    pub bump_attempt: bool,
    /// The provider job the step now waits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRef>,
    /// Appended to the step's attempts.
    #[serde(skip)]
    pub attempts: Vec<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// `Some(Cost::Unknown)` sets the cost to `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Cost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<jiff::Timestamp>,
    /// A map step's items, set when it starts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<MapProgress>,
    /// A `workflow` step's child run, set when it starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_run: Option<super::ids::RunId>,
}

/// One change to a stored step's attribute, named as [`StepState`] serializes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `field = value`; `null` clears an optional field.
    Set { field: String, value: Value },
    /// `field = field + 1`.
    Increment { field: &'static str },
    /// `field = field ++ items` (a list).
    Append { field: &'static str, items: Vec<Value> },
}

/// An update could not be expressed as JSON (it holds a map with non-text keys) or its
/// result is not a step; either is a bug, reported rather than hidden.
#[derive(Debug, thiserror::Error)]
#[error("a step update cannot be applied: {0}")]
pub struct UpdateError(#[from] serde_json::Error);

impl StepUpdate {
    /// The update as changes to the step's stored attributes, in a stable order.
    pub fn changes(&self) -> Result<Vec<Change>, UpdateError> {
        let sets = match serde_json::to_value(self)? {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        let mut changes: Vec<Change> = sets.into_iter().map(|(field, value)| Change::Set { field, value }).collect();
        if self.bump_attempt {
            changes.push(Change::Increment { field: "attempt" });
        }
        if !self.attempts.is_empty() {
            let items = self.attempts.iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
            changes.push(Change::Append { field: "attempts", items });
        }
        Ok(changes)
    }

    /// Applies the update to `state` in place, through the same [`Self::changes`] a
    /// database adapter writes.
    pub fn apply(&self, state: &mut StepState) -> Result<(), UpdateError> {
        let mut fields = match serde_json::to_value(&*state)? {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        for change in self.changes()? {
            match change {
                Change::Set { field, value } => {
                    fields.insert(field, value);
                }
                Change::Increment { field } => {
                    let count = fields.get(field).and_then(Value::as_u64).unwrap_or(0);
                    fields.insert(field.to_owned(), Value::from(count + 1));
                }
                Change::Append { field, items } => {
                    match fields.entry(field).or_insert_with(|| Value::Array(Vec::new())) {
                        Value::Array(list) => list.extend(items),
                        other => *other = Value::Array(items),
                    }
                }
            }
        }
        *state = serde_json::from_value(Value::Object(fields))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ErrorKind, StepId};

    fn step() -> StepState {
        StepState::new(StepId::parse("a").unwrap(), 0, Vec::new())
    }

    #[test]
    fn every_change_names_an_attribute_of_the_stored_step() {
        let update = StepUpdate {
            status: Some(StepStatus::Succeeded),
            lease: None,
            due: Some(jiff::Timestamp::UNIX_EPOCH),
            idle_requeues: Some(2),
            bump_attempt: true,
            job: Some(JobRef { provider: "p".into(), model: "m".into(), id: "j".into(), token_sha256: "h".into() }),
            attempts: vec![Attempt { provider: "p".into(), model: "m".into(), latency_ms: 1, error: None }],
            provider: Some("p".into()),
            model: Some("m".into()),
            usage: Some(Usage::default()),
            cost_usd: Some(Cost::Known(0.5)),
            latency_ms: Some(3),
            output: Some(serde_json::json!({"text": "x"})),
            error: Some(StepError::new(ErrorKind::Timeout, "slow")),
            started_at: Some(jiff::Timestamp::UNIX_EPOCH),
            finished_at: Some(jiff::Timestamp::UNIX_EPOCH),
            map: Some(MapProgress { items: 3, pending: 3, failed: 0 }),
            child_run: Some(crate::domain::RunId::generate(jiff::Timestamp::UNIX_EPOCH)),
        };
        let mut full = step();
        update.apply(&mut full).unwrap();
        let stored = serde_json::to_value(&full).unwrap();
        for change in update.changes().unwrap() {
            let field = match &change {
                Change::Set { field, .. } => field.as_str(),
                Change::Increment { field } | Change::Append { field, .. } => field,
            };
            assert!(stored.get(field).is_some(), "`{field}` is not an attribute of a stored step");
        }
        assert_eq!(full.status, StepStatus::Succeeded);
        assert_eq!(full.control.attempt, 1);
        assert_eq!(full.progress.attempts.len(), 1);
        assert_eq!(full.progress.cost_usd, Cost::Known(0.5));
    }

    #[test]
    fn an_unknown_cost_is_written_as_null_and_read_back_unknown() {
        let update = StepUpdate { cost_usd: Some(Cost::Unknown), ..StepUpdate::default() };
        let set = Change::Set { field: "cost_usd".to_owned(), value: Value::Null };
        assert!(update.changes().unwrap().contains(&set));
        let mut state = step();
        update.apply(&mut state).unwrap();
        assert_eq!(state.progress.cost_usd, Cost::Unknown);
        assert_eq!(step().progress.cost_usd, Cost::ZERO, "no call, no cost");
    }

    #[test]
    fn lease_and_due_are_replaced_while_unset_fields_are_kept() {
        let mut state = step();
        state.control.lease = Some(Lease { owner: "w".into(), until: jiff::Timestamp::UNIX_EPOCH });
        state.control.due = Some(jiff::Timestamp::UNIX_EPOCH);
        state.control.idle_requeues = 3;
        state.progress.provider = Some("kept".into());
        state.progress.attempts.push(Attempt { provider: "p".into(), model: "m".into(), latency_ms: 1, error: None });
        let update = StepUpdate {
            status: Some(StepStatus::Queued),
            attempts: state.progress.attempts.clone(),
            ..StepUpdate::default()
        };
        update.apply(&mut state).unwrap();
        assert_eq!((state.control.lease, state.control.due), (None, None));
        assert_eq!(state.control.idle_requeues, 3, "a count is kept unless set");
        assert_eq!(state.progress.provider.as_deref(), Some("kept"));
        assert_eq!(state.progress.attempts.len(), 2, "attempts are appended");
    }

    #[test]
    fn a_transition_admits_a_listed_status_or_an_expired_lease_and_checks_the_owner() {
        let now = jiff::Timestamp::from_second(100).unwrap();
        let mut running = step();
        running.status = StepStatus::Running;
        running.control.lease = Some(Lease { owner: "w1".into(), until: jiff::Timestamp::from_second(50).unwrap() });
        let claim = StepTransition {
            from: vec![StepStatus::Queued],
            or_lease_expired_before: Some(now),
            ..StepTransition::default()
        };
        assert!(claim.admits(&running), "the lease ended before now");
        assert!(!StepTransition { or_lease_expired_before: None, ..claim.clone() }.admits(&running));
        let own =
            StepTransition { from: vec![StepStatus::Running], lease_owner: Some("w2".into()), ..Default::default() };
        assert!(!own.admits(&running), "another worker's lease");
        assert!(StepTransition { lease_owner: Some("w1".into()), ..own }.admits(&running));
    }
}
