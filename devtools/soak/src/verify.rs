//! The verdict, from what a client can see: each run's final status (`GET /v1/runs`), its
//! history (`GET /v1/runs/{id}/events`), the notifications the receiver heard, and what the
//! idempotent re-submissions answered. Pure: `soak.rs` gathers, this judges.
//!
//! A violation is any of: a run not ended by the deadline; a step with more than one terminal
//! status change in its history (its result committed twice), or, in an ended run, none; an
//! ended run notified zero times or under more than one `webhook-id` (redeliveries of one id
//! are allowed: that is how a client de-duplicates); a notification whose status is not the
//! run's; a bad signature; a re-submission with the same Idempotency-Key that got another run
//! (or an error); a submission or history the soak could not get at all.

use std::collections::BTreeMap;
use std::fmt;

use chorus::domain::{EventKind, RunEvent, RunStatus};

use crate::plan::{MAP_ITEMS, Resubmit, STEP_IDS};
use crate::receiver::Heard;

/// What the soak learned about one run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub index: usize,
    pub run_id: String,
    /// Its status when the soak stopped waiting.
    pub status: Option<RunStatus>,
    /// Its history, or why it could not be read.
    pub events: Result<Vec<RunEvent>, String>,
    pub heard: Heard,
    pub resubmission: Option<Resubmission>,
    /// Step id → status, from the run's view, for runs that did not end (what is stuck).
    pub steps: BTreeMap<String, String>,
}

/// How a second submission with the same Idempotency-Key went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubmission {
    pub kind: Resubmit,
    /// The run id it answered, or the error that ended its retries.
    pub answered: Result<String, String>,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    NotEnded {
        run: String,
        status: String,
        steps: String,
    },
    CommittedTwice {
        run: String,
        step: String,
        times: usize,
    },
    NeverCommitted {
        run: String,
        step: String,
    },
    NotNotified {
        run: String,
    },
    NotifiedTwice {
        run: String,
        webhook_ids: Vec<String>,
    },
    WrongNotification {
        run: String,
        status: String,
        notified: Vec<String>,
    },
    BadSignatures {
        count: u64,
    },
    Unreadable {
        count: u64,
    },
    IdempotencyBroken {
        run: String,
        answered: String,
    },
    SubmissionFailed {
        index: usize,
        error: String,
    },
    HistoryUnreadable {
        run: String,
        error: String,
    },
    /// A fault the soak was asked to inject never happened: it proved nothing about it.
    FaultNotInjected {
        fault: String,
        why: String,
    },
}

impl Violation {
    /// The run it is about, if one.
    pub fn run(&self) -> Option<&str> {
        match self {
            Violation::NotEnded { run, .. }
            | Violation::CommittedTwice { run, .. }
            | Violation::NeverCommitted { run, .. }
            | Violation::NotNotified { run }
            | Violation::NotifiedTwice { run, .. }
            | Violation::WrongNotification { run, .. }
            | Violation::IdempotencyBroken { run, .. }
            | Violation::HistoryUnreadable { run, .. } => Some(run),
            Violation::BadSignatures { .. }
            | Violation::Unreadable { .. }
            | Violation::SubmissionFailed { .. }
            | Violation::FaultNotInjected { .. } => None,
        }
    }

    /// The check it breaks, for grouping.
    pub fn check(&self) -> &'static str {
        match self {
            Violation::NotEnded { .. } => "run not ended by the deadline",
            Violation::CommittedTwice { .. } => "step result committed more than once",
            Violation::NeverCommitted { .. } => "step of an ended run never committed",
            Violation::NotNotified { .. } => "ended run never notified",
            Violation::NotifiedTwice { .. } => "run notified under more than one webhook-id",
            Violation::WrongNotification { .. } => "notification status differs from the run's",
            Violation::BadSignatures { .. } => "notifications with a bad signature",
            Violation::Unreadable { .. } => "signed notifications that are not run.finished",
            Violation::IdempotencyBroken { .. } => "re-submission answered another run",
            Violation::SubmissionFailed { .. } => "submission failed",
            Violation::HistoryUnreadable { .. } => "history unreadable",
            Violation::FaultNotInjected { .. } => "fault asked for but never injected",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotEnded { run, status, steps } => write!(f, "{run} is still {status} ({steps})"),
            Violation::CommittedTwice { run, step, times } => {
                write!(f, "{run} step {step}: {times} terminal status changes")
            }
            Violation::NeverCommitted { run, step } => write!(f, "{run} step {step}: no terminal status change"),
            Violation::NotNotified { run } => write!(f, "{run}: no notification"),
            Violation::NotifiedTwice { run, webhook_ids } => write!(f, "{run}: webhook-ids {}", webhook_ids.join(", ")),
            Violation::WrongNotification { run, status, notified } => {
                write!(f, "{run} ended {status}, notified as {}", notified.join(", "))
            }
            Violation::BadSignatures { count } => write!(f, "{count} deliveries failed signature verification"),
            Violation::Unreadable { count } => write!(f, "{count} signed deliveries were not run.finished for a run"),
            Violation::IdempotencyBroken { run, answered } => write!(f, "{run}: the same key answered {answered}"),
            Violation::SubmissionFailed { index, error } => write!(f, "run #{index}: {error}"),
            Violation::HistoryUnreadable { run, error } => write!(f, "{run}: {error}"),
            Violation::FaultNotInjected { fault, why } => write!(f, "{fault}: {why}"),
        }
    }
}

/// Counts for the report, over every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub by_status: BTreeMap<String, usize>,
    /// `provider_called` events: provider calls the runs' histories recorded.
    pub recorded_calls: u64,
    /// Failed provider calls in the histories, by error kind.
    pub call_errors: BTreeMap<String, u64>,
    /// Steps answered by their fallback model rather than their first.
    pub fallbacks_used: u64,
    pub notifications: u64,
    /// Deliveries beyond the first of the same `webhook-id`.
    pub redeliveries: u64,
    pub resubmissions: usize,
    pub resubmissions_same_run: usize,
}

/// Judges every run; `submit_failures` are the runs that never got an id.
pub fn judge(
    records: &[RunRecord],
    submit_failures: &[(usize, String)],
    bad_signatures: u64,
    unreadable: u64,
) -> (Tally, Vec<Violation>) {
    let mut tally = Tally::default();
    let mut violations = Vec::new();
    for (index, error) in submit_failures {
        violations.push(Violation::SubmissionFailed { index: *index, error: error.clone() });
    }
    for record in records {
        judge_run(record, &mut tally, &mut violations);
    }
    if bad_signatures > 0 {
        violations.push(Violation::BadSignatures { count: bad_signatures });
    }
    if unreadable > 0 {
        violations.push(Violation::Unreadable { count: unreadable });
    }
    (tally, violations)
}

fn judge_run(record: &RunRecord, tally: &mut Tally, violations: &mut Vec<Violation>) {
    let run = record.run_id.clone();
    let status = record.status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
    let ended = record.status.is_some_and(RunStatus::is_terminal);
    *tally.by_status.entry(if ended { status.clone() } else { format!("not ended ({status})") }).or_default() += 1;
    if !ended {
        let steps = record.steps.iter().map(|(id, status)| format!("{id} {status}")).collect::<Vec<_>>().join(", ");
        let steps = if steps.is_empty() { "steps unknown".to_owned() } else { steps };
        violations.push(Violation::NotEnded { run: run.clone(), status: status.clone(), steps });
    }

    match &record.events {
        Ok(events) => judge_history(&run, ended, events, tally, violations),
        Err(error) => violations.push(Violation::HistoryUnreadable { run: run.clone(), error: error.clone() }),
    }

    let heard = &record.heard;
    tally.notifications += u64::from(heard.deliveries);
    tally.redeliveries += u64::from(heard.deliveries).saturating_sub(heard.webhook_ids.len() as u64);
    match heard.webhook_ids.len() {
        0 if ended => violations.push(Violation::NotNotified { run: run.clone() }),
        0 | 1 => {}
        _ => violations.push(Violation::NotifiedTwice {
            run: run.clone(),
            webhook_ids: heard.webhook_ids.iter().cloned().collect(),
        }),
    }
    if ended && !heard.statuses.is_empty() && heard.statuses.iter().any(|notified| *notified != status) {
        violations.push(Violation::WrongNotification {
            run: run.clone(),
            status,
            notified: heard.statuses.iter().cloned().collect(),
        });
    }

    if let Some(resubmission) = &record.resubmission {
        tally.resubmissions += 1;
        match &resubmission.answered {
            Ok(second) if *second == run => tally.resubmissions_same_run += 1,
            Ok(second) => violations.push(Violation::IdempotencyBroken { run, answered: second.clone() }),
            Err(error) => violations.push(Violation::IdempotencyBroken { run, answered: format!("an error: {error}") }),
        }
    }
}

fn judge_history(run: &str, ended: bool, events: &[RunEvent], tally: &mut Tally, violations: &mut Vec<Violation>) {
    let mut terminal: BTreeMap<&str, usize> = BTreeMap::new();
    let mut answered_by: BTreeMap<&str, &str> = BTreeMap::new();
    let mut first_model: BTreeMap<&str, &str> = BTreeMap::new();
    for event in events {
        let step = event.step_id.as_ref().map(|s| s.as_str());
        match &event.kind {
            EventKind::StepStatusChanged { status, .. } if status.is_terminal() => {
                *terminal.entry(step.unwrap_or("?")).or_default() += 1;
            }
            EventKind::ProviderCalled { model, error, provider, .. } => {
                tally.recorded_calls += 1;
                if let Some(step) = step {
                    first_model.entry(step).or_insert(model.as_str());
                    if error.is_none() {
                        answered_by.insert(step, model.as_str());
                    }
                }
                if let Some(error) = error {
                    *tally.call_errors.entry(format!("{provider} {}", error.kind)).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    tally.fallbacks_used +=
        answered_by.iter().filter(|(step, model)| first_model.get(*step).is_some_and(|first| first != *model)).count()
            as u64;
    for step in STEP_IDS {
        match terminal.get(step).copied().unwrap_or(0) {
            0 if ended => violations.push(Violation::NeverCommitted { run: run.to_owned(), step: step.to_owned() }),
            0 | 1 => {}
            times => violations.push(Violation::CommittedTwice { run: run.to_owned(), step: step.to_owned(), times }),
        }
    }
    for item in MAP_ITEMS {
        if let times @ 2.. = terminal.get(item).copied().unwrap_or(0) {
            violations.push(Violation::CommittedTwice { run: run.to_owned(), step: item.to_owned(), times });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use chorus::domain::{StepId, StepStatus};
    use serde_json::json;

    use super::*;

    fn step_event(step: &str, status: StepStatus) -> RunEvent {
        RunEvent::step_status(jiff::Timestamp::now(), &StepId::parse(step).unwrap(), status, None)
    }

    fn call(step: &str, model: &str, failed: bool) -> RunEvent {
        let error = failed.then(|| json!({"kind": "transient", "message": "500"}));
        let event = json!({"at": jiff::Timestamp::now(), "step_id": step, "type": "provider_called",
            "provider": model.split(':').next().unwrap(), "model": model, "latency_ms": 3, "error": error});
        serde_json::from_value(event).unwrap()
    }

    fn heard(ids: &[&str], status: &str) -> Heard {
        Heard {
            webhook_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            deliveries: u32::try_from(ids.len()).unwrap(),
            statuses: if ids.is_empty() { BTreeSet::new() } else { BTreeSet::from([status.to_owned()]) },
        }
    }

    fn healthy(run: &str) -> RunRecord {
        let mut events = Vec::new();
        for step in STEP_IDS {
            events.push(step_event(step, StepStatus::Running));
            events.push(call(step, "openai:gpt-4o-mini", false));
            events.push(step_event(step, StepStatus::Succeeded));
        }
        RunRecord {
            index: 0,
            run_id: run.to_owned(),
            status: Some(RunStatus::Succeeded),
            events: Ok(events),
            heard: heard(&["msg_1"], "succeeded"),
            resubmission: None,
            steps: BTreeMap::new(),
        }
    }

    #[test]
    fn a_healthy_run_breaks_nothing_and_is_counted() {
        let mut record = healthy("run_a");
        record.resubmission = Some(Resubmission { kind: Resubmit::Racing, answered: Ok("run_a".to_owned()) });
        let (tally, violations) = judge(&[record], &[], 0, 0);
        assert_eq!(violations, []);
        assert_eq!(tally.by_status["succeeded"], 1);
        assert_eq!((tally.recorded_calls, tally.notifications, tally.resubmissions_same_run), (5, 1, 1));
    }

    #[test]
    fn a_map_item_ends_at_most_once_and_need_not_end() {
        let mut record = healthy("run_m");
        if let Ok(events) = &mut record.events {
            events.push(step_event("e[0]", StepStatus::Succeeded));
        }
        let (_, violations) = judge(&[record.clone()], &[], 0, 0);
        assert_eq!(violations, [], "item 1 and 2 never ran: the map failed early, say");
        if let Ok(events) = &mut record.events {
            events.push(step_event("e[0]", StepStatus::Succeeded));
        }
        let (_, violations) = judge(&[record], &[], 0, 0);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].to_string(), "run_m step e[0]: 2 terminal status changes");
    }

    #[test]
    fn each_broken_promise_is_named() {
        let mut stuck = healthy("run_stuck");
        stuck.status = Some(RunStatus::Running);
        stuck.heard = Heard::default();
        stuck.steps = BTreeMap::from([("a".to_owned(), "succeeded".to_owned()), ("b".to_owned(), "queued".to_owned())]);
        let mut twice = healthy("run_twice");
        if let Ok(events) = &mut twice.events {
            events.push(step_event("b", StepStatus::Succeeded));
        }
        twice.heard = heard(&["msg_1", "msg_2"], "succeeded");
        let mut silent = healthy("run_silent");
        silent.heard = Heard::default();
        silent.resubmission = Some(Resubmission { kind: Resubmit::After, answered: Ok("run_other".to_owned()) });
        let mut wrong = healthy("run_wrong");
        wrong.heard = heard(&["msg_9"], "failed");

        let (tally, violations) = judge(&[stuck, twice, silent, wrong], &[(7, "503 five times".to_owned())], 2, 0);

        let checks: Vec<&str> = violations.iter().map(Violation::check).collect();
        assert_eq!(
            checks,
            [
                "submission failed",
                "run not ended by the deadline",
                "step result committed more than once",
                "run notified under more than one webhook-id",
                "ended run never notified",
                "re-submission answered another run",
                "notification status differs from the run's",
                "notifications with a bad signature",
            ]
        );
        assert_eq!(tally.by_status["not ended (running)"], 1);
        assert_eq!(violations[1].to_string(), "run_stuck is still running (a succeeded, b queued)");
        assert_eq!(violations[1].run(), Some("run_stuck"));
        assert_eq!(violations[2].to_string(), "run_twice step b: 2 terminal status changes");
    }

    #[test]
    fn fallbacks_and_failed_calls_are_counted_from_the_history() {
        let mut record = healthy("run_f");
        if let Ok(events) = &mut record.events {
            events.insert(0, call("a", "anthropic:claude-3-5-haiku-latest", true));
        }
        let (tally, violations) = judge(&[record], &[], 0, 0);
        assert_eq!(violations, []);
        assert_eq!(tally.fallbacks_used, 1);
        assert_eq!(tally.call_errors["anthropic transient"], 1);
        assert_eq!(tally.recorded_calls, 6);
    }
}
