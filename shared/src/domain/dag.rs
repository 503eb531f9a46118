//! The dependency graph of a workflow: edges come from `steps.<id>` references in templates
//! and `when`, plus explicit `needs`. Checked for cycles once, then queried by the engine.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::definition::{StepDefinition, WorkflowDefinition};
use super::ids::StepId;
use super::template::{TemplateError, Templates};

/// Why a set of steps does not form a DAG.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("step `{step}` refers to unknown step `{missing}`")]
    UnknownStep { step: StepId, missing: String },
    #[error("step `{step}`: {source}")]
    Template { step: StepId, source: TemplateError },
    #[error("steps form a cycle: {}", .0.iter().map(StepId::as_str).collect::<Vec<_>>().join(" → "))]
    Cycle(Vec<StepId>),
}

/// Step ids a step depends on: `needs` plus every `steps.<id>` its templates, `when` and
/// `for_each` read.
pub fn step_references(step: &StepDefinition, templates: &Templates) -> Result<BTreeSet<String>, TemplateError> {
    let mut names: BTreeSet<String> = step.needs.iter().map(|id| id.as_str().to_owned()).collect();
    for (_, source) in step.templates() {
        names.extend(templates.check(source)?.steps);
    }
    for condition in [&step.when, &step.for_each].into_iter().flatten() {
        names.extend(templates.check_condition(condition)?.steps);
    }
    Ok(names)
}

/// The checked DAG: for each step, what it waits for and what waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    dependencies: BTreeMap<StepId, BTreeSet<StepId>>,
    dependants: BTreeMap<StepId, BTreeSet<StepId>>,
}

impl Plan {
    /// Infers the graph of an already validated workflow.
    pub fn infer(definition: &WorkflowDefinition, templates: &Templates) -> Result<Self, PlanError> {
        let known: BTreeMap<&str, &StepId> = definition.steps.iter().map(|s| (s.id.as_str(), &s.id)).collect();
        let mut edges = BTreeMap::new();
        for step in &definition.steps {
            let names = step_references(step, templates)
                .map_err(|source| PlanError::Template { step: step.id.clone(), source })?;
            let mut deps = BTreeSet::new();
            for name in names {
                let Some(id) = known.get(name.as_str()) else {
                    return Err(PlanError::UnknownStep { step: step.id.clone(), missing: name });
                };
                deps.insert((*id).clone());
            }
            edges.insert(step.id.clone(), deps);
        }
        Self::from_dependencies(edges)
    }

    /// Builds the graph from each step's dependencies, refusing cycles (self-loops included).
    pub fn from_dependencies(dependencies: BTreeMap<StepId, BTreeSet<StepId>>) -> Result<Self, PlanError> {
        let mut dependants: BTreeMap<StepId, BTreeSet<StepId>> =
            dependencies.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
        for (step, deps) in &dependencies {
            for dep in deps {
                dependants.entry(dep.clone()).or_default().insert(step.clone());
            }
        }
        let plan = Self { dependencies, dependants };
        match plan.find_cycle() {
            Some(cycle) => Err(PlanError::Cycle(cycle)),
            None => Ok(plan),
        }
    }

    pub fn dependencies(&self, step: &StepId) -> impl Iterator<Item = &StepId> {
        self.dependencies.get(step).into_iter().flatten()
    }

    pub fn dependants(&self, step: &StepId) -> impl Iterator<Item = &StepId> {
        self.dependants.get(step).into_iter().flatten()
    }

    /// Whether `step` is a step of the graph.
    pub fn contains(&self, step: &StepId) -> bool {
        self.dependencies.contains_key(step)
    }

    pub fn dependency_count(&self, step: &StepId) -> usize {
        self.dependencies.get(step).map_or(0, BTreeSet::len)
    }

    /// Steps with nothing to wait for: they start the run.
    pub fn roots(&self) -> impl Iterator<Item = &StepId> {
        self.dependencies.iter().filter(|(_, deps)| deps.is_empty()).map(|(id, _)| id)
    }

    /// Steps nothing waits for: the run is over once all of them are.
    pub fn sinks(&self) -> impl Iterator<Item = &StepId> {
        self.dependants.iter().filter(|(_, deps)| deps.is_empty()).map(|(id, _)| id)
    }

    /// Depth-first search with colours; returns the first cycle found, closed (`a → b → a`).
    fn find_cycle(&self) -> Option<Vec<StepId>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            plan: &'a Plan,
            step: &'a StepId,
            marks: &mut BTreeMap<&'a StepId, Mark>,
            path: &mut Vec<&'a StepId>,
        ) -> Option<Vec<StepId>> {
            match marks.get(step) {
                Some(Mark::Done) => return None,
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|s| *s == step).unwrap_or(0);
                    let mut cycle: Vec<StepId> = path[start..].iter().map(|s| (*s).clone()).collect();
                    cycle.push(step.clone());
                    return Some(cycle);
                }
                None => {}
            }
            marks.insert(step, Mark::Visiting);
            path.push(step);
            for dep in plan.dependencies(step) {
                if let Some(cycle) = visit(plan, dep, marks, path) {
                    return Some(cycle);
                }
            }
            path.pop();
            marks.insert(step, Mark::Done);
            None
        }

        let mut marks = BTreeMap::new();
        self.dependencies.keys().find_map(|step| visit(self, step, &mut marks, &mut Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StepId {
        StepId::parse(s).unwrap()
    }

    fn plan(edges: &[(&str, &[&str])]) -> Result<Plan, PlanError> {
        Plan::from_dependencies(
            edges.iter().map(|(step, deps)| (id(step), deps.iter().map(|d| id(d)).collect())).collect(),
        )
    }

    fn ids<'a>(it: impl Iterator<Item = &'a StepId>) -> Vec<&'a str> {
        it.map(StepId::as_str).collect()
    }

    #[test]
    fn chain_has_one_root_and_one_sink() {
        let p = plan(&[("a", &[]), ("b", &["a"]), ("c", &["b"])]).unwrap();
        assert_eq!(ids(p.roots()), ["a"]);
        assert_eq!(ids(p.sinks()), ["c"]);
        assert_eq!(ids(p.dependants(&id("a"))), ["b"]);
    }

    #[test]
    fn diamond_fans_out_and_in() {
        let p = plan(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]).unwrap();
        assert_eq!(ids(p.dependants(&id("a"))), ["b", "c"]);
        assert_eq!(p.dependency_count(&id("d")), 2);
        assert_eq!(ids(p.sinks()), ["d"]);
    }

    #[test]
    fn independent_steps_are_all_roots() {
        let p = plan(&[("a", &[]), ("b", &[]), ("c", &[])]).unwrap();
        assert_eq!(ids(p.roots()), ["a", "b", "c"]);
        assert_eq!(ids(p.sinks()), ["a", "b", "c"]);
    }

    #[test]
    fn cycles_are_named() {
        let err = plan(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]).unwrap_err();
        assert_eq!(err.to_string(), "steps form a cycle: a → c → b → a");
        assert!(matches!(plan(&[("a", &["a"])]), Err(PlanError::Cycle(c)) if c.len() == 2));
    }
}
