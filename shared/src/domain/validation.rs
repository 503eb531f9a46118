//! Checks a submitted workflow and its input before anything is stored, collecting every
//! problem with a JSON Pointer into the request body (`/workflow/steps/1/model`, `/input/name`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::dag::{Plan, PlanError};
use super::definition::{MAX_MAX_TOKENS, StepDefinition, Task, WorkflowDefinition};
use super::ids::StepId;
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

/// Validates the `workflow` and `input` of a submission, reporting every problem found.
pub fn validate_submission(
    workflow: &Value,
    input: &Value,
    catalog: &dyn ModelCatalog,
    templates: &Templates,
    limits: Limits,
) -> Result<ValidatedWorkflow, Vec<Problem>> {
    let mut problems = Vec::new();
    check_size(workflow, "/workflow", "workflow definition", limits.max_definition_bytes, &mut problems);
    check_size(input, "/input", "input", limits.max_input_bytes, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }

    let definition = parse_definition(workflow)?;
    let mut checker = Checker { templates, catalog, problems: Vec::new() };
    let plan = checker.check(&definition, limits);
    checker.check_input(&definition, input);
    match plan {
        Some(plan) if checker.problems.is_empty() => Ok(ValidatedWorkflow { definition, plan }),
        _ => Err(checker.problems),
    }
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
    let mut problems = Vec::new();
    check_size(workflow, "/workflow", "workflow definition", limits.max_definition_bytes, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let definition = parse_definition(workflow)?;
    let mut checker = Checker { templates, catalog, problems: Vec::new() };
    match checker.check(&definition, limits) {
        Some(plan) if checker.problems.is_empty() => Ok(ValidatedWorkflow { definition, plan }),
        _ => Err(checker.problems),
    }
}

fn check_size(value: &Value, pointer: &str, what: &str, max: usize, problems: &mut Vec<Problem>) {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
    if size > max {
        problems.push(Problem::new(pointer, format!("the {what} is {size} bytes; the limit is {max}")));
    }
}

/// Deserializes the definition, each step on its own so that one malformed step does not
/// hide problems in the others.
pub fn parse_definition(workflow: &Value) -> Result<WorkflowDefinition, Vec<Problem>> {
    let Value::Object(fields) = workflow else {
        return Err(vec![Problem::new("/workflow", "the workflow must be a JSON object")]);
    };
    let mut problems = Vec::new();
    let mut steps = Vec::new();
    match fields.get("steps") {
        Some(Value::Array(raw_steps)) => {
            for (index, raw) in raw_steps.iter().enumerate() {
                // serde would also read a step from an array of its fields in order: refuse
                // anything but the documented object form.
                if !raw.is_object() {
                    problems.push(Problem::new(format!("/workflow/steps/{index}"), "a step must be a JSON object"));
                    continue;
                }
                match deserialize::<StepDefinition>(raw, &format!("/workflow/steps/{index}")) {
                    Ok(step) => steps.push(step),
                    Err(problem) => problems.push(problem),
                }
            }
        }
        Some(_) => problems.push(Problem::new("/workflow/steps", "`steps` must be an array of steps")),
        None => problems.push(Problem::new("/workflow/steps", "a workflow needs `steps`")),
    }
    let mut rest: Map<String, Value> = fields.clone();
    rest.insert("steps".to_owned(), Value::Array(Vec::new()));
    let top = deserialize::<WorkflowDefinition>(&Value::Object(rest), "/workflow");
    match top {
        Ok(definition) if problems.is_empty() => Ok(WorkflowDefinition { steps, ..definition }),
        Ok(_) => Err(problems),
        Err(problem) => {
            problems.insert(0, problem);
            Err(problems)
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

    /// Checks the definition; returns the plan when the graph itself is sound.
    fn check(&mut self, definition: &WorkflowDefinition, limits: Limits) -> Option<Plan> {
        if definition.steps.is_empty() {
            self.problem("/workflow/steps", "a workflow needs at least one step");
        }
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
        if definition.steps.len() > limits.max_steps {
            self.problem(
                "/workflow/steps",
                format!("{} steps is more than the limit of {}", definition.steps.len(), limits.max_steps),
            );
        }
        if let Some(schema) = &definition.input_schema
            && let Err(err) = super::schema::compile(schema)
        {
            self.problem("/workflow/input_schema", format!("not a usable JSON Schema: {err}"));
        }

        let mut first_index: BTreeMap<&StepId, usize> = BTreeMap::new();
        for (index, step) in definition.steps.iter().enumerate() {
            if let Some(first) = first_index.get(&step.id) {
                self.problem(
                    format!("/workflow/steps/{index}/id"),
                    format!("duplicate step id `{}` (first used by /workflow/steps/{first})", step.id),
                );
            } else {
                first_index.insert(&step.id, index);
            }
        }

        let mut edges: BTreeMap<StepId, BTreeSet<StepId>> = BTreeMap::new();
        let mut graph_ok = true;
        for (index, step) in definition.steps.iter().enumerate() {
            let at = format!("/workflow/steps/{index}");
            self.check_step(step, &at);
            let deps = edges.entry(step.id.clone()).or_default();
            graph_ok &= collect_references(self, step, &at, &first_index, deps);
        }

        if let Some(output) = &definition.output {
            match self.templates.check_value(output) {
                Ok(refs) => {
                    for name in refs.steps {
                        if !first_index.keys().any(|id| id.as_str() == name) {
                            self.problem("/workflow/output", format!("refers to unknown step `{name}`"));
                        }
                    }
                }
                Err(err) => self.problem("/workflow/output", format!("template error: {err}")),
            }
        }

        if !graph_ok || first_index.len() != definition.steps.len() {
            return None;
        }
        match Plan::from_dependencies(edges) {
            Ok(plan) => Some(plan),
            Err(err @ PlanError::Cycle(_)) => {
                self.problem("/workflow/steps", err.to_string());
                None
            }
            Err(err) => {
                self.problem("/workflow/steps", err.to_string());
                None
            }
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
        } else {
            if step.model.is_some() || !step.fallbacks.is_empty() {
                self.problem(format!("{at}/model"), "an `approval` step waits for a person and takes no model");
            }
            if step.input.is_some() {
                self.problem(
                    format!("{at}/input"),
                    "an `approval` step takes no `input`; use `prompt` for the question",
                );
            }
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
    }

    fn check_input(&mut self, definition: &WorkflowDefinition, input: &Value) {
        let Some(schema) = &definition.input_schema else { return };
        let Ok(validator) = super::schema::compile(schema) else { return };
        for error in validator.iter_errors(input) {
            self.problem(format!("/input{}", error.instance_path()), error.to_string());
        }
    }
}

/// Records the step's dependencies into `deps`; reports unknown and self references.
/// Returns false when the step's references could not all be resolved.
fn collect_references(
    checker: &mut Checker<'_>,
    step: &StepDefinition,
    at: &str,
    known: &BTreeMap<&StepId, usize>,
    deps: &mut BTreeSet<StepId>,
) -> bool {
    let mut ok = true;
    let mut named: Vec<(String, String)> =
        step.needs.iter().enumerate().map(|(i, id)| (format!("{at}/needs/{i}"), id.as_str().to_owned())).collect();
    let sources = step.templates().map(|(field, source)| (field, source, false));
    let condition = step.when.as_deref().map(|source| ("when", source, true));
    for (field, source, is_condition) in sources.chain(condition) {
        let parsed =
            if is_condition { checker.templates.check_condition(source) } else { checker.templates.check(source) };
        match parsed {
            Ok(refs) => named.extend(refs.steps.into_iter().map(|name| (format!("{at}/{field}"), name))),
            Err(err) => {
                checker.problem(format!("{at}/{field}"), format!("template error: {err}"));
                ok = false;
            }
        }
    }
    for (pointer, name) in named {
        match known.keys().find(|id| id.as_str() == name) {
            Some(id) if *id == &step.id => {
                checker.problem(pointer, format!("step `{name}` cannot depend on itself"));
                ok = false;
            }
            Some(id) => {
                deps.insert((*id).clone());
            }
            None => {
                checker.problem(pointer, format!("refers to unknown step `{name}`"));
                ok = false;
            }
        }
    }
    ok
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
        assert_eq!(pointers(check(&broken)), ["/workflow/extra"]);
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
