//! Running part of a run again, as pure arithmetic over its dependency graph: which steps run
//! again ([`RerunPlan`]: the steps asked for and everything downstream of them), how each of
//! them starts (its dependency count taken from the steps kept), and the conditional resets a
//! retry writes ([`RunRetry`] on the run, [`StepReset`] on each step). The engine's
//! `engine::rerun` has the use cases; the adapters apply these with the same `admits`/`apply`.
//!
//! **Generations.** A retry reopens an ended run in place, one conditional write on the run
//! that bumps its `generation`, then resets each re-run step with one conditional write that
//! applies only to a step of an older generation. Any process may die in between: the run's
//! `due` stays set until every reset is done, the reconciler re-drives the rest, and a step
//! reset before is never reset again (it carries the new generation). Steps are reset
//! dependants first, so a step is only made ready once everything it releases has been reset:
//! a re-run step never counts itself on a dependant that still holds the previous
//! generation's counts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::dag::{Plan, PlanError};
use super::event::RunEvent;
use super::ids::StepId;
use super::run::{Run, RunStatus};
use super::step::{StepControl, StepProgress, StepState, StepStatus};

/// How a re-run step starts: its dependencies that run again are pending, those kept are
/// counted as released already (and block it if one of them did not succeed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Start {
    pub pending_deps: u32,
    pub blocked: bool,
    /// The kept dependencies, counted as released.
    pub released_by: Vec<StepId>,
}

impl Start {
    /// `queued` when nothing is left to wait for, `pending` otherwise (a blocked step with
    /// nothing to wait for is `pending` too: it is to be skipped, as a release would).
    pub fn status(&self) -> StepStatus {
        if self.pending_deps == 0 && !self.blocked { StepStatus::Queued } else { StepStatus::Pending }
    }

    /// A fresh step record starting this way.
    pub fn state(&self, step_id: StepId, dependants: Vec<StepId>) -> StepState {
        StepState {
            step_id,
            status: self.status(),
            progress: StepProgress::default(),
            control: StepControl {
                pending_deps: self.pending_deps,
                blocked: self.blocked,
                released_by: self.released_by.clone(),
                dependants,
                ..StepControl::default()
            },
        }
    }
}

/// The steps that run again and how each starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RerunPlan {
    /// Every re-run step, each after all of its re-run dependants: the order a retry resets
    /// them in (see the module's notes).
    pub order: Vec<StepId>,
    pub starts: BTreeMap<StepId, Start>,
    /// Re-run steps nothing depends on: the run ends when they have.
    pub pending_sinks: u32,
}

impl RerunPlan {
    /// `seeds` and everything downstream of them run again; every other step is kept, and
    /// `succeeded` says whether a kept step succeeded (one that did not blocks what needs it).
    /// Seeds that are not in the plan are ignored.
    pub fn new(plan: &Plan, seeds: impl IntoIterator<Item = StepId>, succeeded: impl Fn(&StepId) -> bool) -> Self {
        let rerun = downstream(plan, seeds);
        let starts: BTreeMap<StepId, Start> = rerun
            .iter()
            .map(|step| {
                let (pending, kept): (Vec<&StepId>, Vec<&StepId>) =
                    plan.dependencies(step).partition(|dep| rerun.contains(*dep));
                let start = Start {
                    pending_deps: u32::try_from(pending.len()).unwrap_or(u32::MAX),
                    blocked: kept.iter().any(|dep| !succeeded(dep)),
                    released_by: kept.into_iter().cloned().collect(),
                };
                (step.clone(), start)
            })
            .collect();
        let pending_sinks = plan.sinks().filter(|sink| rerun.contains(*sink)).count();
        Self {
            order: dependants_first(plan, &rerun),
            starts,
            pending_sinks: u32::try_from(pending_sinks).unwrap_or(u32::MAX),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn contains(&self, step: &StepId) -> bool {
        self.starts.contains_key(step)
    }
}

/// A run's graph as stored: each step's dependants were fixed at submission, so finishing a
/// step never re-reads templates; a retry reads the graph back from them the same way.
pub fn stored_plan(steps: &[StepState]) -> Result<Plan, PlanError> {
    let mut dependencies: BTreeMap<StepId, BTreeSet<StepId>> =
        steps.iter().map(|state| (state.step_id.clone(), BTreeSet::new())).collect();
    for state in steps {
        for dependant in &state.control.dependants {
            dependencies.entry(dependant.clone()).or_default().insert(state.step_id.clone());
        }
    }
    Plan::from_dependencies(dependencies)
}

/// `seeds` (those in the plan) and every step that depends on one of them, transitively.
fn downstream(plan: &Plan, seeds: impl IntoIterator<Item = StepId>) -> BTreeSet<StepId> {
    let mut found = BTreeSet::new();
    let mut next: VecDeque<StepId> = seeds.into_iter().filter(|seed| plan.contains(seed)).collect();
    while let Some(step) = next.pop_front() {
        if found.insert(step.clone()) {
            next.extend(plan.dependants(&step).cloned());
        }
    }
    found
}

/// The steps of `rerun` ordered so that each comes after every one of its dependants in
/// `rerun` (a topological order of the reversed graph; `rerun` is closed downstream).
fn dependants_first(plan: &Plan, rerun: &BTreeSet<StepId>) -> Vec<StepId> {
    let mut waiting: BTreeMap<&StepId, usize> =
        rerun.iter().map(|step| (step, plan.dependants(step).filter(|d| rerun.contains(*d)).count())).collect();
    let mut ready: VecDeque<&StepId> = waiting.iter().filter(|(_, n)| **n == 0).map(|(step, _)| *step).collect();
    let mut order = Vec::with_capacity(rerun.len());
    while let Some(step) = ready.pop_front() {
        order.push(step.clone());
        for dep in plan.dependencies(step).filter(|dep| rerun.contains(*dep)) {
            if let Some(count) = waiting.get_mut(dep) {
                *count -= 1;
                if *count == 0 {
                    ready.push_back(dep);
                }
            }
        }
    }
    order
}

/// A retry's reset of one step: the step starts again as [`Start`] says, in `generation`.
/// Applies only to a finished step of an older generation ([`Self::admits`]), in a run that
/// is running in `generation` (checked by the store in the same write).
#[derive(Debug, Clone, PartialEq)]
pub struct StepReset {
    /// The run's generation after the retry.
    pub generation: u32,
    pub start: Start,
    /// For a step that starts `queued`: when the reconciler sends its message if the one the
    /// retry sends is lost.
    pub due: Option<jiff::Timestamp>,
    pub events: Vec<RunEvent>,
}

impl StepReset {
    /// Whether the step may be reset: it ended in an older generation.
    pub fn admits(&self, state: &StepState) -> bool {
        state.control.generation < self.generation && state.status.is_terminal()
    }

    /// The step as reset: what it did before is gone from its record (its history stays in
    /// the run's events), its claims and hand-backs count from zero, its lease, job, map
    /// progress and output are cleared; its dependants are kept.
    pub fn apply(&self, state: &StepState) -> StepState {
        let mut reset = self.start.state(state.step_id.clone(), state.control.dependants.clone());
        reset.control.generation = self.generation;
        reset.control.due = self.due;
        reset
    }
}

/// A retry's reopening of an ended run: `failed` or `cancelled` in the generation before
/// `generation`, with its follow-up done, back to `running` with its error, output and end
/// cleared, `pending_sinks` counting the re-run sinks, and the re-run steps (and their map
/// items) forgotten where the run remembers who was counted: its released sinks and its
/// settled budget entries (what they spent stays committed).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRetry {
    pub generation: u32,
    pub rerun: Vec<StepId>,
    pub pending_sinks: u32,
    /// Until the reset is done: when the reconciler re-drives it.
    pub due: jiff::Timestamp,
    pub events: Vec<RunEvent>,
}

impl RunRetry {
    pub fn admits(&self, run: &Run) -> bool {
        matches!(run.status, RunStatus::Failed | RunStatus::Cancelled)
            && run.generation.checked_add(1) == Some(self.generation)
            && run.due.is_none()
    }

    /// Whether the run forgets `step` as counted: a re-run step or an item of one.
    pub fn forgets(&self, step: &StepId) -> bool {
        let own = step.map_item().map_or_else(|| step.clone(), |(map, _)| map);
        self.rerun.contains(&own)
    }

    /// The run reopened (the released sinks are the store's to forget, with [`Self::forgets`]).
    pub fn apply(&self, run: &mut Run) {
        run.status = RunStatus::Running;
        run.generation = self.generation;
        run.pending_sinks = self.pending_sinks;
        run.output = None;
        run.error = None;
        run.finished_at = None;
        run.due = Some(self.due);
        if let Some(last) = self.events.last() {
            run.updated_at = last.at;
        }
        run.budget.settled.retain(|step| !self.forgets(step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(step: &str) -> StepId {
        StepId::parse(step).unwrap()
    }

    fn plan(edges: &[(&str, &[&str])]) -> Plan {
        Plan::from_dependencies(
            edges.iter().map(|(step, deps)| (id(step), deps.iter().map(|d| id(d)).collect())).collect(),
        )
        .unwrap()
    }

    fn ids(steps: &[StepId]) -> Vec<&str> {
        steps.iter().map(StepId::as_str).collect()
    }

    #[test]
    fn a_seed_reruns_with_everything_downstream_and_counts_only_rerun_dependencies() {
        // a → b → d, a → c → d, e alone.
        let graph = plan(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"]), ("e", &[])]);
        let rerun = RerunPlan::new(&graph, [id("b")], |_| true);
        assert_eq!(rerun.order, [id("d"), id("b")], "dependants first");
        assert_eq!(rerun.starts[&id("b")], Start { pending_deps: 0, blocked: false, released_by: vec![id("a")] });
        assert_eq!(rerun.starts[&id("d")], Start { pending_deps: 1, blocked: false, released_by: vec![id("c")] });
        assert_eq!(rerun.pending_sinks, 1);
        assert_eq!(rerun.starts[&id("b")].status(), StepStatus::Queued);
        assert_eq!(rerun.starts[&id("d")].status(), StepStatus::Pending);
    }

    #[test]
    fn a_kept_step_that_did_not_succeed_blocks_what_needs_it() {
        let graph = plan(&[("a", &[]), ("skipped", &[]), ("b", &["a", "skipped"])]);
        let rerun = RerunPlan::new(&graph, [id("b")], |step| step.as_str() != "skipped");
        let start = &rerun.starts[&id("b")];
        assert_eq!((start.pending_deps, start.blocked), (0, true));
        assert_eq!(start.status(), StepStatus::Pending, "to be skipped, not run");
    }

    #[test]
    fn the_reset_order_puts_every_dependant_first_in_any_graph() {
        let graph =
            plan(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"]), ("d", &["c"]), ("e", &["b", "d"]), ("f", &[])]);
        let rerun = RerunPlan::new(&graph, [id("a"), id("f"), id("nope")], |_| true);
        assert_eq!(rerun.order.len(), 6, "{:?}", ids(&rerun.order));
        for (position, step) in rerun.order.iter().enumerate() {
            for dependant in graph.dependants(step) {
                let at = rerun.order.iter().position(|s| s == dependant).unwrap();
                assert!(at < position, "{dependant} after {step}: {:?}", ids(&rerun.order));
            }
        }
        assert_eq!(rerun.pending_sinks, 2);
    }

    #[test]
    fn the_stored_graph_is_read_back_from_each_steps_dependants() {
        let steps = vec![
            StepState::new(id("a"), 0, vec![id("b"), id("c")]),
            StepState::new(id("b"), 1, vec![id("c")]),
            StepState::new(id("c"), 2, Vec::new()),
        ];
        let graph = stored_plan(&steps).unwrap();
        assert_eq!(graph.dependencies(&id("c")).collect::<Vec<_>>(), [&id("a"), &id("b")]);
        assert_eq!(graph.sinks().collect::<Vec<_>>(), [&id("c")]);
    }

    #[test]
    fn a_reset_applies_once_per_generation_to_a_finished_step() {
        let mut state = StepState::new(id("a"), 0, vec![id("b")]);
        state.status = StepStatus::Failed;
        state.progress.attempts.push(crate::domain::Attempt {
            provider: "p".into(),
            model: "m".into(),
            latency_ms: 1,
            error: None,
        });
        state.control.attempt = 3;
        let reset = StepReset { generation: 1, start: Start::default(), due: None, events: Vec::new() };
        assert!(reset.admits(&state));
        let after = reset.apply(&state);
        assert_eq!((after.status, after.control.generation, after.control.attempt), (StepStatus::Queued, 1, 0));
        assert!(after.progress.attempts.is_empty());
        assert_eq!(after.control.dependants, [id("b")]);
        assert!(!reset.admits(&after), "reset once");
        let running = StepState { status: StepStatus::Running, ..state };
        assert!(!reset.admits(&running), "only a finished step");
    }

    #[test]
    fn a_retry_forgets_its_steps_and_their_items_as_counted() {
        let retry = RunRetry {
            generation: 1,
            rerun: vec![id("m")],
            pending_sinks: 1,
            due: jiff::Timestamp::UNIX_EPOCH,
            events: Vec::new(),
        };
        assert!(retry.forgets(&id("m")) && retry.forgets(&id("m").item(4)));
        assert!(!retry.forgets(&id("a")) && !retry.forgets(&id("a").item(0)));
    }
}
