//! Checks a submitted workflow and its input before anything is stored, collecting every
//! problem with a JSON Pointer into the request body (`/workflow/steps/1/model`, `/input/name`).
//! A part that does not deserialize hides nothing else: the steps that parse get every check,
//! and a malformed step still takes part in the checks across steps (ids, references, cycles)
//! with what can be read of it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::dag::Plan;
use super::definition::{MAX_MAX_CONCURRENCY, MAX_MAX_TOKENS, StepDefinition, Task, Tolerance, WorkflowDefinition};
use super::ids::StepId;
use super::registry::WorkflowSelector;
use super::run::MAX_CHILD_STEPS;
use super::template::Templates;

/// One thing wrong with a request, located by a JSON Pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// Where the problem is, e.g. `/workflow/steps/1/model`.
    pub pointer: String,
    pub detail: String,
}

impl Problem {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into() }
    }
}

/// Answers whether a `model` string can serve a task: `provider:model` or a route name.
/// Implemented by the provider registry; the domain only asks.
pub trait ModelCatalog {
    fn check_model(&self, model: &str, task: Task) -> Result<(), String>;
}

/// Size limits of a submission (the README lists them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_steps: usize,
    pub max_definition_bytes: usize,
    pub max_input_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_steps: 100, max_definition_bytes: 256 * 1024, max_input_bytes: 6 * 1024 * 1024 }
    }
}

const MAX_TIMEOUT_MS: u64 = 900_000;
/// Thirty days for a person to decide.
const MAX_APPROVAL_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;
const MAX_RETRIES: u32 = 10;
/// Fallbacks a step may name. With [`MAX_RETRIES`] this bounds the attempts a step records
/// (5 models × 11 attempts), and so the size of its stored item.
pub const MAX_FALLBACKS: usize = 4;
/// The longest workflow `name`, in characters: it is stored on the run item and its list
/// index.
pub const MAX_NAME_CHARS: usize = 256;
/// A day for a step's attempts, retries and delayed retries all together.
const MAX_STEP_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// A workflow that passed validation, with its dependency graph.
#[derive(Debug, Clone)]
pub struct ValidatedWorkflow {
    pub definition: WorkflowDefinition,
    pub plan: Plan,
}

/// Validates the `workflow` and `input` of a submission, reporting every problem found, in
/// the order of the request (see [`sort_by_place`]).
pub fn validate_submission(
    workflow: &Value,
    input: &Value,
    catalog: &dyn ModelCatalog,
    templates: &Templates,
    limits: Limits,
) -> Result<ValidatedWorkflow, Vec<Problem>> {
    validate(workflow, Some(input), catalog, templates, limits)
}

/// Validates a workflow definition alone, exactly as [`validate_submission`] does but with no
/// input to check against its `input_schema`: what registering a workflow needs. Problems
/// point under `/workflow`, as in a submission.
pub fn validate_definition(
    workflow: &Value,
    catalog: &dyn ModelCatalog,
    templates: &Templates,
    limits: Limits,
) -> Result<ValidatedWorkflow, Vec<Problem>> {
    validate(workflow, None, catalog, templates, limits)
}

fn validate(
    workflow: &Value,
    input: Option<&Value>,
    catalog: &dyn ModelCatalog,
    templates: &Templates,
    limits: Limits,
) -> Result<ValidatedWorkflow, Vec<Problem>> {
    let mut problems = Vec::new();
    check_size(workflow, "/workflow", "workflow definition", limits.max_definition_bytes, &mut problems);
    if let Some(input) = input {
        check_size(input, "/input", "input", limits.max_input_bytes, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let (draft, shape_problems) = read_definition(workflow);
    let mut checker = Checker { templates, catalog, problems: shape_problems };
    let plan = checker.check(&draft, limits);
    // The input can only be checked against a schema that was read.
    if let (Some(top), Some(input)) = (&draft.top, input) {
        checker.check_input(top, input);
    }
    let mut problems = checker.problems;
    match (plan, draft.into_definition()) {
        (Some(plan), Some(definition)) if problems.is_empty() => Ok(ValidatedWorkflow { definition, plan }),
        _ => {
            sort_by_place(&mut problems);
            Err(problems)
        }
    }
}

/// Orders problems as the request reads: the workflow's own, then each step's in step order,
/// then the input's. The sort is stable, so the problems of one step stay in the order they
/// were found (its shape problem first).
fn sort_by_place(problems: &mut [Problem]) {
    problems.sort_by_key(|problem| {
        let pointer = problem.pointer.as_str();
        if pointer == "/input" || pointer.starts_with("/input/") {
            return (2, 0);
        }
        let step = pointer.strip_prefix("/workflow/steps/").and_then(|rest| rest.split('/').next());
        match step.and_then(|index| index.parse::<usize>().ok()) {
            Some(index) => (1, index),
            None => (0, 0),
        }
    });
}

fn check_size(value: &Value, pointer: &str, what: &str, max: usize, problems: &mut Vec<Problem>) {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
    if size > max {
        problems.push(Problem::new(pointer, format!("the {what} is {size} bytes; the limit is {max}")));
    }
}

/// Deserializes the definition, its top level and each step on its own so that one malformed
/// part does not hide problems in the others; lists every shape problem (unknown members,
/// wrong types, malformed ids), the first of each part.
pub fn parse_definition(workflow: &Value) -> Result<WorkflowDefinition, Vec<Problem>> {
    let (draft, problems) = read_definition(workflow);
    match draft.into_definition() {
        Some(definition) if problems.is_empty() => Ok(definition),
        _ => Err(problems),
    }
}

/// A definition read as far as it goes (see [`read_definition`]).
struct Draft<'a> {
    /// The top level, its `steps` left empty; `None` when it does not parse.
    top: Option<WorkflowDefinition>,
    /// `None` when `steps` is missing or not an array.
    steps: Option<Vec<DraftStep<'a>>>,
}

enum DraftStep<'a> {
    Parsed(Box<StepDefinition>),
    /// A step that does not deserialize, as written: its shape problem is reported, and the
    /// checks across steps read what they can of it.
    Malformed(&'a Value),
}

impl Draft<'_> {
    /// The definition, when every part of it parsed.
    fn into_definition(self) -> Option<WorkflowDefinition> {
        let steps = self
            .steps?
            .into_iter()
            .map(|step| match step {
                DraftStep::Parsed(step) => Some(*step),
                DraftStep::Malformed(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        self.top.map(|top| WorkflowDefinition { steps, ..top })
    }
}

/// Reads the definition, its top level and each step on its own so that one malformed part
/// does not hide the others, and lists the shape problems: serde stops at the first of each
/// part.
fn read_definition(workflow: &Value) -> (Draft<'_>, Vec<Problem>) {
    let mut problems = Vec::new();
    let Value::Object(fields) = workflow else {
        problems.push(Problem::new("/workflow", "the workflow must be a JSON object"));
        return (Draft { top: None, steps: None }, problems);
    };
    let mut rest: Map<String, Value> = fields.clone();
    rest.insert("steps".to_owned(), Value::Array(Vec::new()));
    let top = match deserialize::<WorkflowDefinition>(&Value::Object(rest), "/workflow") {
        Ok(top) => Some(top),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let steps = match fields.get("steps") {
        Some(Value::Array(raw_steps)) => Some(
            raw_steps
                .iter()
                .enumerate()
                .map(|(index, raw)| {
                    // serde would also read a step from an array of its fields in order:
                    // refuse anything but the documented object form.
                    let parsed = if raw.is_object() {
                        deserialize::<StepDefinition>(raw, &format!("/workflow/steps/{index}"))
                    } else {
                        Err(Problem::new(format!("/workflow/steps/{index}"), "a step must be a JSON object"))
                    };
                    match parsed {
                        Ok(step) => DraftStep::Parsed(Box::new(step)),
                        Err(problem) => {
                            problems.push(problem);
                            DraftStep::Malformed(raw)
                        }
                    }
                })
                .collect(),
        ),
        Some(_) => {
            problems.push(Problem::new("/workflow/steps", "`steps` must be an array of steps"));
            None
        }
        None => {
            problems.push(Problem::new("/workflow/steps", "a workflow needs `steps`"));
            None
        }
    };
    (Draft { top, steps }, problems)
}

/// What the checks across steps read of a step: its id, the ids in its `needs`, its templates
/// and its `when`.
struct Links<'a> {
    id: Option<StepId>,
    /// Each with its index in `needs`, for the pointer.
    needs: Vec<(usize, StepId)>,
    templates: Vec<(&'static str, &'a str)>,
    when: Option<&'a str>,
    for_each: Option<&'a str>,
}

impl DraftStep<'_> {
    /// The step's task, when it parsed.
    fn task(&self) -> Option<Task> {
        match self {
            Self::Parsed(step) => Some(step.task),
            Self::Malformed(_) => None,
        }
    }

    fn links(&self) -> Links<'_> {
        match self {
            Self::Parsed(step) => Links {
                id: Some(step.id.clone()),
                needs: step.needs.iter().cloned().enumerate().collect(),
                templates: step.templates().collect(),
                when: step.when.as_deref(),
                for_each: step.for_each.as_deref(),
            },
            // Leniently: a member of the wrong type or a malformed id is left out. It is a
            // shape problem, reported now or, as serde stops at the first of a step, once
            // that one is fixed.
            Self::Malformed(raw) => {
                let text = |field: &str| raw.get(field).and_then(Value::as_str);
                let needs = raw.get("needs").and_then(Value::as_array).into_iter().flatten().enumerate();
                Links {
                    id: text("id").and_then(|id| StepId::parse(id).ok()),
                    needs: needs.filter_map(|(i, need)| Some((i, StepId::parse(need.as_str()?).ok()?))).collect(),
                    // The members `StepDefinition::templates` yields: a new template member
                    // belongs in both.
                    templates: ["prompt", "input"]
                        .into_iter()
                        .filter_map(|field| Some((field, text(field)?)))
                        .collect(),
                    when: text("when"),
                    for_each: text("for_each"),
                }
            }
        }
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(value: &Value, base: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut pointer = base.to_owned();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                serde_path_to_error::Segment::Map { key } => pointer.push_str(&format!("/{}", escape_pointer(key))),
                serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
            }
        }
        Problem::new(pointer, err.into_inner().to_string())
    })
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Checker<'a> {
    templates: &'a Templates,
    catalog: &'a dyn ModelCatalog,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Problem::new(pointer, detail));
    }

    /// Checks the draft: its top level when that parsed, each step that parsed on its own,
    /// and all steps together (ids, references, templates, cycles), malformed ones as far as
    /// they can be read. Returns the graph of the dependencies found, which is the workflow's
    /// plan only when no problem was found.
    fn check(&mut self, draft: &Draft<'_>, limits: Limits) -> Option<Plan> {
        if let Some(top) = &draft.top {
            self.check_workflow(top);
        }
        let steps = draft.steps.as_deref().unwrap_or_default();
        if draft.steps.as_ref().is_some_and(Vec::is_empty) {
            self.problem("/workflow/steps", "a workflow needs at least one step");
        }
        if steps.len() > limits.max_steps {
            self.problem(
                "/workflow/steps",
                format!("{} steps is more than the limit of {}", steps.len(), limits.max_steps),
            );
        }
        let children = steps.iter().filter(|step| step.task() == Some(Task::Workflow)).count();
        if children > MAX_CHILD_STEPS {
            self.problem(
                "/workflow/steps",
                format!("{children} `workflow` steps is more than the limit of {MAX_CHILD_STEPS}"),
            );
        }

        let links: Vec<Links<'_>> = steps.iter().map(DraftStep::links).collect();
        let mut first_index: BTreeMap<&StepId, usize> = BTreeMap::new();
        let mut duplicates = false;
        for (index, id) in links.iter().enumerate().filter_map(|(index, links)| Some((index, links.id.as_ref()?))) {
            if let Some(first) = first_index.get(id) {
                self.problem(
                    format!("/workflow/steps/{index}/id"),
                    format!("duplicate step id `{id}` (first used by /workflow/steps/{first})"),
                );
                duplicates = true;
            } else {
                first_index.insert(id, index);
            }
        }

        let mut edges: BTreeMap<StepId, BTreeSet<StepId>> = BTreeMap::new();
        for (index, (step, links)) in steps.iter().zip(&links).enumerate() {
            let at = format!("/workflow/steps/{index}");
            if let DraftStep::Parsed(step) = step {
                self.check_step(step, &at);
            }
            let deps = collect_references(self, links, &at, &first_index);
            if let Some(id) = &links.id {
                edges.entry(id.clone()).or_default().extend(deps);
            }
        }

        if let Some(output) = draft.top.as_ref().and_then(|top| top.output.as_ref()) {
            match self.templates.check_value(output) {
                Ok(refs) => {
                    if refs.item {
                        self.problem("/workflow/output", "`item` and `index` are only defined in a `for_each` step");
                    }
                    for name in refs.steps {
                        if !first_index.keys().any(|id| id.as_str() == name) {
                            self.problem("/workflow/output", format!("refers to unknown step `{name}`"));
                        }
                    }
                }
                Err(err) => self.problem("/workflow/output", format!("template error: {err}")),
            }
        }

        // A reference that could not be resolved only leaves an edge out, so a cycle among
        // the rest is a real one. A reference to a duplicated id names either step, so a
        // cycle through it might not be.
        if duplicates {
            return None;
        }
        match Plan::from_dependencies(edges) {
            Ok(plan) => Some(plan),
            Err(err) => {
                self.problem("/workflow/steps", err.to_string());
                None
            }
        }
    }

    /// The checks of the workflow's own members.
    fn check_workflow(&mut self, definition: &WorkflowDefinition) {
        if definition.budget_usd.is_some_and(|budget| !(budget.is_finite() && budget > 0.0)) {
            self.problem("/workflow/budget_usd", "must be a positive number of US dollars");
        }
        if definition.allow_unpriced_models && definition.budget_usd.is_none() {
            self.problem(
                "/workflow/allow_unpriced_models",
                "only applies with a `budget_usd`: without one, every model may be called already",
            );
        }
        if definition.name.as_ref().is_some_and(|name| name.chars().count() > MAX_NAME_CHARS) {
            self.problem("/workflow/name", format!("a name is at most {MAX_NAME_CHARS} characters"));
        }
        if let Some(schema) = &definition.input_schema
            && let Err(err) = super::schema::compile(schema)
        {
            self.problem("/workflow/input_schema", format!("not a usable JSON Schema: {err}"));
        }
    }

    fn check_step(&mut self, step: &StepDefinition, at: &str) {
        let task = step.task;
        if task.uses_model() {
            match &step.model {
                None => self.problem(format!("{at}/model"), format!("a `{task}` step needs a `model`")),
                Some(model) => {
                    if let Err(detail) = self.catalog.check_model(model, task) {
                        self.problem(format!("{at}/model"), detail);
                    }
                }
            }
            if step.fallbacks.len() > MAX_FALLBACKS {
                self.problem(
                    format!("{at}/fallbacks"),
                    format!("{} fallbacks is more than the limit of {MAX_FALLBACKS}", step.fallbacks.len()),
                );
            }
            for (i, fallback) in step.fallbacks.iter().enumerate() {
                if let Err(detail) = self.catalog.check_model(fallback, task) {
                    self.problem(format!("{at}/fallbacks/{i}"), detail);
                }
            }
            if task == Task::Generate && step.prompt.is_none() {
                self.problem(format!("{at}/prompt"), "a `generate` step needs a `prompt`");
            }
            if task != Task::Generate && step.input.is_none() {
                self.problem(format!("{at}/input"), format!("a `{task}` step needs an `input` template"));
            }
        } else if task == Task::Approval {
            if step.model.is_some() || !step.fallbacks.is_empty() {
                self.problem(format!("{at}/model"), "an `approval` step waits for a person and takes no model");
            }
            if step.input.is_some() {
                self.problem(
                    format!("{at}/input"),
                    "an `approval` step takes no `input`; use `prompt` for the question",
                );
            }
        } else {
            if step.model.is_some() || !step.fallbacks.is_empty() {
                self.problem(format!("{at}/model"), "a `workflow` step runs a registered workflow and takes no model");
            }
            if step.prompt.is_some() {
                self.problem(format!("{at}/prompt"), "a `workflow` step takes no `prompt`; its `input` is the child's");
            }
        }
        match (&step.workflow, task) {
            (None, Task::Workflow) => self.problem(
                format!("{at}/workflow"),
                "a `workflow` step needs `workflow`: a registered workflow's `name` or `name@version`",
            ),
            (Some(reference), Task::Workflow) => {
                if let Err(err) = WorkflowSelector::parse(reference) {
                    self.problem(format!("{at}/workflow"), err.to_string());
                }
            }
            (Some(_), _) => self.problem(format!("{at}/workflow"), "`workflow` only applies to `workflow` steps"),
            (None, _) => {}
        }

        if task == Task::Classify {
            let distinct: BTreeSet<&String> = step.labels.iter().collect();
            if distinct.len() < 2 || distinct.len() != step.labels.len() {
                self.problem(format!("{at}/labels"), "a `classify` step needs at least two distinct `labels`");
            }
        } else if !step.labels.is_empty() {
            self.problem(format!("{at}/labels"), "`labels` only apply to `classify` steps");
        }

        match (&step.schema, task) {
            (None, Task::Extract) => {
                self.problem(format!("{at}/schema"), "an `extract` step needs a JSON Schema in `schema`")
            }
            (Some(schema), Task::Extract) => {
                if let Err(err) = super::schema::compile(schema) {
                    self.problem(format!("{at}/schema"), format!("not a usable JSON Schema: {err}"));
                }
            }
            (Some(_), _) => self.problem(format!("{at}/schema"), "`schema` only applies to `extract` steps"),
            (None, _) => {}
        }

        let max_timeout = if task.uses_model() { MAX_TIMEOUT_MS } else { MAX_APPROVAL_TIMEOUT_MS };
        if let Some(timeout) = step.timeout_ms
            && !(1..=max_timeout).contains(&timeout)
        {
            self.problem(format!("{at}/timeout_ms"), format!("must be between 1 and {max_timeout}"));
        }
        if let Some(timeout) = step.step_timeout_ms
            && !(1..=MAX_STEP_TIMEOUT_MS).contains(&timeout)
        {
            self.problem(format!("{at}/step_timeout_ms"), format!("must be between 1 and {MAX_STEP_TIMEOUT_MS}"));
        }
        if step.retries.is_some_and(|r| r > MAX_RETRIES) {
            self.problem(format!("{at}/retries"), format!("at most {MAX_RETRIES} retries"));
        }
        if step.max_tokens.is_some_and(|max| !(1..=MAX_MAX_TOKENS).contains(&max)) {
            self.problem(format!("{at}/max_tokens"), format!("must be between 1 and {MAX_MAX_TOKENS}"));
        }
        if step.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            self.problem(format!("{at}/temperature"), "must be between 0 and 2");
        }
        if step.id.is_item() {
            self.problem(format!("{at}/id"), "`[` and `]` are not allowed in a step id");
        }
        self.check_map(step, at);
    }

    /// A map step's own fields (`for_each`, `max_concurrency`, `tolerate_failures`); its
    /// expression is checked with the step's other templates.
    fn check_map(&mut self, step: &StepDefinition, at: &str) {
        if step.for_each.is_none() {
            for (field, set) in [
                ("max_concurrency", step.max_concurrency.is_some()),
                ("tolerate_failures", step.tolerate_failures.is_some()),
            ] {
                if set {
                    self.problem(format!("{at}/{field}"), format!("`{field}` only applies to a step with `for_each`"));
                }
            }
            return;
        }
        if !step.task.uses_model() {
            self.problem(format!("{at}/for_each"), format!("a `{}` step cannot map over a list", step.task));
        }
        if step.max_concurrency.is_some_and(|max| !(1..=MAX_MAX_CONCURRENCY).contains(&max)) {
            self.problem(format!("{at}/max_concurrency"), format!("must be between 1 and {MAX_MAX_CONCURRENCY}"));
        }
        if let Some(Tolerance::Share(text)) = &step.tolerate_failures
            && step.tolerate_failures.as_ref().and_then(Tolerance::percent).is_none()
        {
            self.problem(
                format!("{at}/tolerate_failures"),
                format!("`{text}` is neither a count nor a percentage from 0% to 100%"),
            );
        }
    }

    fn check_input(&mut self, definition: &WorkflowDefinition, input: &Value) {
        let Some(schema) = &definition.input_schema else { return };
        let Ok(validator) = super::schema::compile(schema) else { return };
        for error in validator.iter_errors(input) {
            self.problem(format!("/input{}", error.instance_path()), error.to_string());
        }
    }
}

/// Checks the step's templates and returns its dependencies among the `known` steps; reports
/// template errors, unknown references and references to the step itself.
fn collect_references(
    checker: &mut Checker<'_>,
    step: &Links<'_>,
    at: &str,
    known: &BTreeMap<&StepId, usize>,
) -> BTreeSet<StepId> {
    let mut deps = BTreeSet::new();
    let mut named: Vec<(String, String)> =
        step.needs.iter().map(|(i, id)| (format!("{at}/needs/{i}"), id.as_str().to_owned())).collect();
    let sources = step.templates.iter().map(|&(field, source)| (field, source, false));
    let conditions = [("when", step.when), ("for_each", step.for_each)]
        .into_iter()
        .filter_map(|(field, source)| Some((field, source?, true)));
    for (field, source, is_condition) in sources.chain(conditions) {
        let parsed =
            if is_condition { checker.templates.check_condition(source) } else { checker.templates.check(source) };
        match parsed {
            // `item` and `index` exist in a map step's templates; its `when` and `for_each`
            // are evaluated once for the whole step.
            Ok(refs) if refs.item && (is_condition || step.for_each.is_none()) => {
                let detail = match is_condition {
                    true => {
                        format!("`item` and `index` are not defined in `{field}`: it is evaluated once for the step")
                    }
                    false => "`item` and `index` are only defined in a step with `for_each`".to_owned(),
                };
                checker.problem(format!("{at}/{field}"), detail);
            }
            Ok(refs) => named.extend(refs.steps.into_iter().map(|name| (format!("{at}/{field}"), name))),
            Err(err) => checker.problem(format!("{at}/{field}"), format!("template error: {err}")),
        }
    }
    for (pointer, name) in named {
        match known.keys().find(|id| id.as_str() == name) {
            Some(id) if step.id.as_ref() == Some(*id) => {
                checker.problem(pointer, format!("step `{name}` cannot depend on itself"));
            }
            Some(id) => {
                deps.insert((*id).clone());
            }
            None => checker.problem(pointer, format!("refers to unknown step `{name}`")),
        }
    }
    deps
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Catalog;
    impl ModelCatalog for Catalog {
        fn check_model(&self, model: &str, _task: Task) -> Result<(), String> {
            match model {
                "local:echo" | "local:lexicon" | "fast" => Ok(()),
                other => Err(format!("unknown model `{other}`")),
            }
        }
    }

    fn validate(workflow: Value, input: Value) -> Result<ValidatedWorkflow, Vec<Problem>> {
        validate_submission(&workflow, &input, &Catalog, &Templates::default(), Limits::default())
    }

    fn pointers(result: Result<ValidatedWorkflow, Vec<Problem>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|p| p.pointer).collect()
    }

    fn problems(result: Result<ValidatedWorkflow, Vec<Problem>>) -> String {
        format!("{:?}", result.unwrap_err())
    }

    #[test]
    fn a_sound_chain_validates() {
        let ok = validate(
            json!({"steps": [
                {"id": "draft", "task": "generate", "model": "local:echo", "prompt": "{{ input.prompt }}"},
                {"id": "tone", "task": "classify", "model": "fast", "input": "{{ steps.draft.text }}", "labels": ["POSITIVE", "NEGATIVE"]}
            ]}),
            json!({"prompt": "hi"}),
        )
        .unwrap();
        assert_eq!(ok.plan.roots().map(StepId::as_str).collect::<Vec<_>>(), ["draft"]);
    }

    #[test]
    fn every_structural_problem_is_reported_with_its_path() {
        let result = validate(
            json!({"steps": [
                {"id": "Bad Id", "task": "generate", "model": "local:echo", "prompt": "x"},
                {"id": "ok", "task": "dance", "model": "local:echo"},
                {"id": "fine", "task": "generate", "model": "local:echo", "prompt": "x", "modle": "typo"}
            ], "extra": 1}),
            json!({}),
        );
        assert_eq!(
            pointers(result),
            ["/workflow/extra", "/workflow/steps/0/id", "/workflow/steps/1/task", "/workflow/steps/2/modle"]
        );
    }

    #[test]
    fn unknown_models_tasks_and_missing_fields_are_all_reported() {
        let result = validate(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "nope:x"},
                {"id": "b", "task": "summarize", "model": "local:echo", "fallbacks": ["zzz"]},
                {"id": "c", "task": "classify", "model": "local:lexicon", "input": "x", "labels": ["ONLY"]},
                {"id": "d", "task": "approval", "model": "local:echo"},
                {"id": "e", "task": "extract", "model": "local:echo", "input": "x"}
            ]}),
            json!({}),
        );
        assert_eq!(
            pointers(result),
            [
                "/workflow/steps/0/model",
                "/workflow/steps/0/prompt",
                "/workflow/steps/1/fallbacks/0",
                "/workflow/steps/1/input",
                "/workflow/steps/2/labels",
                "/workflow/steps/3/model",
                "/workflow/steps/4/schema"
            ]
        );
    }

    #[test]
    fn duplicate_ids_unknown_references_and_self_references() {
        let result = validate(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ steps.ghost.text }}"},
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "x"},
                {"id": "b", "task": "generate", "model": "local:echo", "prompt": "{{ steps.b.text }}", "needs": ["nobody"]}
            ], "output": {"x": "{{ steps.phantom.text }}"}}),
            json!({}),
        );
        let text = problems(result);
        assert!(text.contains("duplicate step id `a`"), "{text}");
        assert!(text.contains("unknown step `ghost`"), "{text}");
        assert!(text.contains("cannot depend on itself"), "{text}");
        assert!(text.contains("unknown step `nobody`"), "{text}");
        assert!(text.contains("unknown step `phantom`"), "{text}");
    }

    #[test]
    fn unpriced_models_are_allowed_only_beside_a_budget() {
        let step = json!({"id": "a", "task": "generate", "model": "local:echo", "prompt": "x"});
        let alone = validate(json!({"allow_unpriced_models": true, "steps": [step]}), json!({}));
        assert_eq!(pointers(alone), ["/workflow/allow_unpriced_models"]);
        let with_budget = json!({"budget_usd": 0.5, "allow_unpriced_models": true, "steps": [step]});
        assert!(validate(with_budget, json!({})).unwrap().definition.allow_unpriced_models);
        let not_a_flag =
            validate(json!({"budget_usd": 0.5, "allow_unpriced_models": "yes", "steps": [step]}), json!({}));
        assert_eq!(pointers(not_a_flag), ["/workflow/allow_unpriced_models"]);
    }

    #[test]
    fn cycles_are_named() {
        let result = validate(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ steps.b.text }}"},
                {"id": "b", "task": "generate", "model": "local:echo", "prompt": "{{ steps.a.text }}"}
            ]}),
            json!({}),
        );
        assert!(problems(result).contains("cycle: a → b → a"));
    }

    #[test]
    fn a_malformed_step_hides_no_problem_elsewhere() {
        let result = validate(
            json!({"steps": [
                {"id": "intro", "task": "dance", "model": "local:echo", "prompt": "x"},
                {"id": "b", "task": "generate", "model": "local:echo", "prompt": "{{ steps.c.text }}"},
                {"id": "c", "task": "generate", "model": "local:echo", "prompt": "{{ steps.b.text }}"},
                {"id": "d", "task": "generate", "model": "local:echo", "prompt": "{{ steps.nope.text }}"},
                {"id": "e", "task": "generate", "model": "nope:x", "prompt": "x"}
            ]}),
            json!({}),
        );
        let problems = result.unwrap_err();
        let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/workflow/steps", "/workflow/steps/0/task", "/workflow/steps/3/prompt", "/workflow/steps/4/model"]
        );
        assert!(problems[0].detail.contains("cycle: b → c → b"), "{problems:?}");
        assert!(problems[2].detail.contains("unknown step `nope`"), "{problems:?}");
    }

    #[test]
    fn a_step_of_the_wrong_shape_still_counts_for_duplicate_ids() {
        let step = |id: &str| json!({"id": id, "task": "generate", "model": "local:echo", "prompt": "x"});
        let mut wrong_type = step("a");
        wrong_type["retries"] = json!("three");
        let first = validate(json!({"steps": [wrong_type, step("b"), step("a")]}), json!({}));
        assert_eq!(pointers(first), ["/workflow/steps/0/retries", "/workflow/steps/2/id"]);
        let second = validate(json!({"steps": [step("a"), step("b"), wrong_type]}), json!({}));
        assert_eq!(pointers(second), ["/workflow/steps/2/retries", "/workflow/steps/2/id"]);
    }

    #[test]
    fn a_malformed_workflow_member_hides_no_step_problem() {
        let result = validate(
            json!({"extra": 1, "steps": [
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ input.x "}
            ]}),
            json!({}),
        );
        assert_eq!(pointers(result), ["/workflow/extra", "/workflow/steps/0/prompt"]);
        let result = validate(
            json!({"budget_usd": "5", "steps": [{"id": "a", "task": "generate", "model": "nope:x", "prompt": "x"}]}),
            json!({}),
        );
        assert_eq!(pointers(result), ["/workflow/budget_usd", "/workflow/steps/0/model"]);
    }

    #[test]
    fn a_malformed_step_takes_part_in_the_checks_across_steps_with_what_can_be_read() {
        let result = validate(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ steps.b.text }}"},
                {"id": "b", "task": "generate", "model": "local:echo", "modle": "typo",
                 "prompt": "{{ steps.ghost.text }}", "input": "{{ oops ", "when": "steps.a.text",
                 "needs": ["Not An Id", "nobody", 3]}
            ]}),
            json!({}),
        );
        let problems = result.unwrap_err();
        let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/workflow/steps",
                "/workflow/steps/1/modle",
                "/workflow/steps/1/input",
                "/workflow/steps/1/needs/1",
                "/workflow/steps/1/prompt"
            ],
            "{problems:?}"
        );
        // Each template error once, whichever path found it.
        assert_eq!(problems.iter().filter(|p| p.detail.starts_with("template error")).count(), 1, "{problems:?}");
        assert!(problems[0].detail.contains("cycle: a → b → a"), "{problems:?}");
    }

    #[test]
    fn the_input_is_checked_when_the_workflow_members_parse_whatever_the_steps() {
        let schema = json!({"type": "object", "required": ["prompt"]});
        let malformed_step = json!({"id": "a", "task": "dance"});
        let result = validate(json!({"input_schema": schema, "steps": [malformed_step]}), json!({}));
        assert_eq!(pointers(result), ["/workflow/steps/0/task", "/input"]);
        // Without the workflow's members, there is no schema to check the input against.
        let result = validate(json!({"input_schema": schema, "extra": 1, "steps": [malformed_step]}), json!({}));
        assert_eq!(pointers(result), ["/workflow/extra", "/workflow/steps/0/task"]);
    }

    #[test]
    fn problems_are_in_the_order_of_the_request() {
        let result = validate(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ steps.nope.text }}"},
                {"id": "b", "task": "dance"},
                {"id": "c", "task": "generate", "model": "local:echo", "prompt": "x", "temperature": 3}
            ], "output": {"x": "{{ steps.phantom.text }}"}, "name": "n".repeat(300)}),
            json!({}),
        );
        assert_eq!(
            pointers(result),
            [
                "/workflow/name",
                "/workflow/output",
                "/workflow/steps/0/prompt",
                "/workflow/steps/1/task",
                "/workflow/steps/2/temperature"
            ]
        );
    }

    #[test]
    fn a_step_written_as_an_array_of_its_fields_is_refused() {
        let workflow = json!({"steps": [["a", "generate", "local:echo", [], "hello"]]});
        let problems = parse_definition(&workflow).unwrap_err();
        assert_eq!(problems, [Problem::new("/workflow/steps/0", "a step must be a JSON object")]);
    }

    #[test]
    fn template_syntax_errors_point_at_the_field() {
        let result = validate(
            json!({"steps": [
                {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ input.x ", "when": "input.x =="}
            ]}),
            json!({}),
        );
        assert_eq!(pointers(result), ["/workflow/steps/0/prompt", "/workflow/steps/0/when"]);
    }

    #[test]
    fn input_must_match_the_input_schema() {
        let result = validate(
            json!({"input_schema": {"type": "object", "required": ["prompt"], "properties": {"n": {"type": "integer"}}},
                   "steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "x"}]}),
            json!({"n": "three"}),
        );
        assert_eq!(pointers(result), ["/input", "/input/n"]);
    }

    #[test]
    fn a_definition_alone_is_checked_as_in_a_submission_but_for_the_input() {
        let workflow = json!({"input_schema": {"type": "object", "required": ["prompt"]},
                              "steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "x"}]});
        let check =
            |workflow: &Value| validate_definition(workflow, &Catalog, &Templates::default(), Limits::default());
        assert!(check(&workflow).is_ok(), "no input to hold against the schema");
        assert_eq!(pointers(validate(workflow, json!({}))), ["/input"]);
        let broken = json!({"steps": [{"id": "a", "task": "generate", "model": "nope:x"}], "extra": 1});
        // Every problem at once, the workflow's own first.
        assert_eq!(
            pointers(check(&broken)),
            ["/workflow/extra", "/workflow/steps/0/model", "/workflow/steps/0/prompt"]
        );
        let unknown_model = json!({"steps": [{"id": "a", "task": "generate", "model": "nope:x"}]});
        assert_eq!(pointers(check(&unknown_model)), ["/workflow/steps/0/model", "/workflow/steps/0/prompt"]);
    }

    #[test]
    fn size_limits_are_enforced() {
        let steps: Vec<Value> = (0..101)
            .map(|i| json!({"id": format!("s{i}"), "task": "generate", "model": "local:echo", "prompt": "x"}))
            .collect();
        assert!(problems(validate(json!({"steps": steps}), json!({}))).contains("limit of 100"));
        let huge = "x".repeat(300 * 1024);
        let result = validate(
            json!({"steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": huge}]}),
            json!({}),
        );
        assert_eq!(pointers(result), ["/workflow"]);
    }
}
