//! Validation over generated workflows: it never panics or hangs; every rejection lists
//! problems that say something and point into the submission; a step of the wrong shape
//! changes no problem found elsewhere; and what it accepts is a DAG over the workflow's own
//! steps, with the dependencies the workflow states, that validates again once stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use super::strategies::{
    SoundWorkflow, input, json_value, mutated, points_into, sound_workflow, workflow, workflow_with,
};
use super::{config, finishes};
use crate::domain::dag::Plan;
use crate::domain::validation::{ValidatedWorkflow, validate_submission};
use crate::domain::{Limits, Problem, StepId, Templates};
use crate::routing::ProviderRouter;
use crate::startup::default_router;

/// The catalog `chorus dev` validates with: the `local` models and the built-in routes.
static CATALOG: LazyLock<ProviderRouter> = LazyLock::new(default_router);
static TEMPLATES: LazyLock<Templates> = LazyLock::new(Templates::default);

fn validate(workflow: &Value, input: &Value) -> Result<ValidatedWorkflow, Vec<Problem>> {
    validate_submission(workflow, input, &*CATALOG, &TEMPLATES, Limits::default())
}

/// Validates on a guarded thread, then checks the verdict whichever it is.
fn check(workflow: Value, input: Value) -> Result<Option<ValidatedWorkflow>, TestCaseError> {
    let submitted = json!({"workflow": workflow, "input": input});
    let verdict = finishes(move || validate(&workflow, &input))?;
    match verdict {
        Ok(validated) => {
            check_accepted(&submitted, &validated)?;
            Ok(Some(validated))
        }
        Err(problems) => {
            check_rejected(&submitted, &problems)?;
            Ok(None)
        }
    }
}

fn check_rejected(submitted: &Value, problems: &[Problem]) -> Result<(), TestCaseError> {
    prop_assert!(!problems.is_empty(), "a rejection without a problem");
    for problem in problems {
        prop_assert!(!problem.detail.trim().is_empty(), "a problem without a detail: {problem:?}");
        prop_assert!(problem.pointer.starts_with("/workflow") || problem.pointer.starts_with("/input"), "{problem:?}");
        prop_assert!(points_into(submitted, &problem.pointer), "{problem:?} points nowhere in {submitted}");
    }
    Ok(())
}

fn check_accepted(submitted: &Value, validated: &ValidatedWorkflow) -> Result<(), TestCaseError> {
    let definition = &validated.definition;
    let plan = &validated.plan;
    let ids: BTreeSet<&StepId> = definition.steps.iter().map(|step| &step.id).collect();
    prop_assert_eq!(ids.len(), definition.steps.len(), "duplicate step ids were accepted");
    prop_assert!((1..=Limits::default().max_steps).contains(&ids.len()));

    for step in &definition.steps {
        for dependency in plan.dependencies(&step.id) {
            prop_assert!(ids.contains(dependency), "`{}` waits for unknown `{dependency}`", step.id);
            prop_assert_ne!(dependency, &step.id, "a step waits for itself");
        }
        prop_assert_eq!(step.task.uses_model(), step.model.is_some(), "model of `{}`", &step.id);
    }
    prop_assert_eq!(schedule(plan, &ids)?.len(), ids.len(), "some steps never become ready: a cycle");

    // The plan is what the definition says, as the engine infers it again later.
    let inferred = Plan::infer(definition, &TEMPLATES);
    prop_assert_eq!(inferred.as_ref(), Ok(plan));
    // A stored definition (serialized, then read back) is accepted again, with the same plan.
    let stored = serde_json::to_value(definition).map_err(|err| TestCaseError::fail(err.to_string()))?;
    match validate(&stored, &submitted["input"]) {
        Ok(again) => prop_assert_eq!(&again.plan, plan),
        Err(problems) => prop_assert!(false, "the stored definition {stored} is refused: {problems:?}"),
    }
    Ok(())
}

/// Runs the plan as the engine does (a step is ready once every dependency has finished)
/// and returns the order the steps finished in.
fn schedule<'a>(plan: &'a Plan, ids: &BTreeSet<&'a StepId>) -> Result<Vec<&'a StepId>, TestCaseError> {
    let mut waiting: BTreeMap<&StepId, usize> = ids.iter().map(|id| (*id, plan.dependency_count(id))).collect();
    let mut ready: Vec<&StepId> = plan.roots().collect();
    let zero: BTreeSet<&StepId> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    prop_assert_eq!(ready.iter().copied().collect::<BTreeSet<_>>(), zero, "roots are the steps that wait for none");
    let mut finished = Vec::new();
    while let Some(step) = ready.pop() {
        finished.push(step);
        for dependant in plan.dependants(step) {
            let Some(count) = waiting.get_mut(dependant) else {
                return Err(TestCaseError::fail(format!("`{step}` has unknown dependant `{dependant}`")));
            };
            *count -= 1;
            if *count == 0 {
                ready.push(dependant);
            }
        }
    }
    Ok(finished)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_workflows_are_refused_with_problems_or_accepted_as_dags(
        workflow in workflow(),
        input in input(),
    ) {
        check(workflow, input)?;
    }

    #[test]
    fn workflows_broken_anywhere_are_refused_with_problems_or_accepted_as_dags(
        workflow in mutated(workflow_with(0.02)),
        input in input(),
    ) {
        check(workflow, input)?;
    }

    #[test]
    fn a_step_of_the_wrong_shape_changes_no_problem_elsewhere(
        workflow in workflow(),
        input in input(),
        which in any::<Index>(),
    ) {
        let Some(steps) = workflow["steps"].as_array().filter(|steps| !steps.is_empty()) else { return Ok(()) };
        let index = which.index(steps.len());
        if !steps[index].is_object() {
            return Ok(());
        }
        let mut broken = workflow.clone();
        broken["steps"][index]["not_a_member"] = json!(true);
        let (original, input_again) = (workflow.clone(), input.clone());
        let before = finishes(move || validate(&original, &input_again))?.err().unwrap_or_default();
        let after = finishes(move || validate(&broken, &input))?.err().unwrap_or_default();

        let at = format!("/workflow/steps/{index}");
        let elsewhere = |problems: &[Problem]| -> Vec<Problem> {
            let here = |pointer: &str| pointer == at || pointer.starts_with(&format!("{at}/"));
            problems.iter().filter(|problem| !here(&problem.pointer)).cloned().collect()
        };
        prop_assert!(after.len() > elsewhere(&after).len(), "the broken step has no problem: {after:?}");
        prop_assert_eq!(elsewhere(&before), elsewhere(&after), "in {}", workflow);
    }

    #[test]
    fn arbitrary_json_is_refused_with_problems_that_point_into_it(
        workflow in json_value(),
        input in json_value(),
    ) {
        check(workflow, input)?;
    }

    #[test]
    fn sound_workflows_are_accepted_with_the_dependencies_they_state(sound in sound_workflow()) {
        let SoundWorkflow { workflow, input, dependencies, .. } = sound;
        let Some(validated) = check(workflow.clone(), input)? else {
            return Err(TestCaseError::fail(format!("a sound workflow was refused: {workflow}")));
        };
        for step in &validated.definition.steps {
            let planned: BTreeSet<String> =
                validated.plan.dependencies(&step.id).map(|id| id.as_str().to_owned()).collect();
            prop_assert_eq!(Some(&planned), dependencies.get(step.id.as_str()), "dependencies of `{}`", &step.id);
        }
    }
}
