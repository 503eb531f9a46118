//! What the derived schemas cannot say by attribute: the rules of a workflow step that depend
//! on its `task`, the JSON values that may also be booleans, and the checks no JSON Schema can
//! state, written into the descriptions. Each rule mirrors `crate::domain::validation`; the
//! tests in `super::tests` hold the two together by submitting the same cases to both.

use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{OpenApi, RefOr};

use crate::domain::Task;

/// The longest `timeout_ms` of a step that calls a model; an `approval` step may wait up to
/// the maximum its derived schema states.
const MAX_MODEL_TIMEOUT_MS: u64 = 900_000;
/// The longest `notify.url`, in bytes, that the webhook destination policy accepts.
const MAX_NOTIFY_URL_LEN: usize = 2048;

const WORKFLOW_CHECKS: &str = "\n\nChecked on submission beyond what this schema states: \
the definition is at most 256 KiB as JSON; step ids are unique; `needs` and the templates in \
`prompt`, `input`, `when` and `output` parse and name only other steps of this workflow, with no \
cycle; `model` and `fallbacks` name a model or route (see `GET /v1/models`) that can do the \
step's task; `input_schema` and an `extract` step's `schema` are valid JSON Schemas; \
`allow_unpriced_models` is true only beside a `budget_usd`. Each failure is a 422 whose \
`errors` point at the member.";

const STEP_CHECKS: &str = " The variant is chosen by `task`; the rules that depend on anything \
but `task` (templates, references to other steps, the model catalog) are listed on \
`WorkflowDefinition`.";

const NOTIFY_CHECKS: &str = " At most 2048 bytes; `https` (or `http` where the deployment \
allows it), without credentials, naming a public host.";

/// Applies every refinement to the document the route list produced.
pub fn refine(document: &mut OpenApi) {
    let Some(components) = document.components.as_mut() else { return };
    let schemas = &mut components.schemas;
    if let Some(RefOr::T(Schema::Object(step))) = schemas.get("StepDefinition") {
        let by_task = step_by_task(step);
        schemas.insert("StepDefinition".to_owned(), RefOr::T(by_task));
    }
    if let Some(RefOr::T(Schema::Object(workflow))) = schemas.get_mut("WorkflowDefinition") {
        append_description(workflow, WORKFLOW_CHECKS);
        // A JSON Schema may be a boolean as well as an object.
        retype(workflow, "input_schema", &[Type::Object, Type::Boolean, Type::Null]);
    }
    if let Some(RefOr::T(Schema::Object(notify))) = schemas.get_mut("NotifyTarget")
        && let Some(RefOr::T(Schema::Object(url))) = notify.properties.get_mut("url")
    {
        url.max_length = Some(MAX_NOTIFY_URL_LEN);
        append_description(url, NOTIFY_CHECKS);
    }
}

/// `StepDefinition` as one variant per task, each the derived object with that task's rules.
fn step_by_task(derived: &Object) -> Schema {
    let mut description = derived.description.clone().unwrap_or_default();
    description.push_str(STEP_CHECKS);
    let variants = Task::ALL.into_iter().map(|task| step_for(derived, task));
    let one_of = variants.fold(OneOfBuilder::new(), |one_of, variant| one_of.item(Schema::Object(variant)));
    Schema::OneOf(one_of.description(Some(description)).build())
}

fn step_for(derived: &Object, task: Task) -> Object {
    let mut step = derived.clone();
    step.title = Some(format!("{task} step"));
    step.description = None;
    let only_this_task = ObjectBuilder::new().schema_type(Type::String).enum_values(Some([task.as_str()])).build();
    step.properties.insert("task".to_owned(), RefOr::T(Schema::Object(only_this_task)));
    let mut required = vec!["id", "task"];

    if task.uses_model() {
        retype(&mut step, "model", &[Type::String]);
        required.push("model");
        // `generate` writes from its prompt; every other model task works on an input.
        let text = if task == Task::Generate { "prompt" } else { "input" };
        retype(&mut step, text, &[Type::String]);
        required.push(text);
        if let Some(RefOr::T(Schema::Object(timeout))) = step.properties.get_mut("timeout_ms") {
            timeout.maximum = Some(MAX_MODEL_TIMEOUT_MS.into());
        }
    } else {
        // A person or a child run does the work: no model, no fallbacks.
        retype(&mut step, "model", &[Type::Null]);
        limit_items(&mut step, "fallbacks", None, Some(0), false);
        // An approval's question is its prompt; a child run's input is the step's input.
        let unused = if task == Task::Approval { "input" } else { "prompt" };
        retype(&mut step, unused, &[Type::Null]);
    }
    if task == Task::Workflow {
        retype(&mut step, "workflow", &[Type::String]);
        required.push("workflow");
    } else {
        retype(&mut step, "workflow", &[Type::Null]);
    }
    if !task.uses_model() {
        // A map runs a model task per item.
        for member in ["for_each", "max_concurrency", "tolerate_failures"] {
            retype(&mut step, member, &[Type::Null]);
        }
    }

    if task == Task::Classify {
        limit_items(&mut step, "labels", Some(2), None, true);
        required.push("labels");
    } else {
        limit_items(&mut step, "labels", None, Some(0), false);
    }

    if task == Task::Extract {
        retype(&mut step, "schema", &[Type::Object, Type::Boolean]);
        required.push("schema");
    } else {
        retype(&mut step, "schema", &[Type::Null]);
    }

    step.required = required.into_iter().map(str::to_owned).collect();
    step
}

/// Gives the property `name` of `object` another type, keeping its description and limits.
fn retype(object: &mut Object, name: &str, types: &[Type]) {
    if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(name) {
        property.schema_type = match types {
            [one] => SchemaType::Type(one.clone()),
            several => SchemaType::Array(several.to_vec()),
        };
    }
}

/// Bounds the length of the array property `name` of `object`.
fn limit_items(object: &mut Object, name: &str, min: Option<usize>, max: Option<usize>, unique: bool) {
    if let Some(RefOr::T(Schema::Array(array))) = object.properties.get_mut(name) {
        array.min_items = min;
        array.max_items = max;
        array.unique_items = unique;
    }
}

fn append_description(object: &mut Object, more: &str) {
    object.description.get_or_insert_with(String::new).push_str(more);
}
