//! The OpenAPI document against the router it is split from: every route served is documented
//! with its methods and nothing else is; the schema states the limits validation enforces, so
//! the same request gets the same verdict from both; the links lead from a submitted run to
//! its operations.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{RunId, StepId, Task};

use super::*;

/// A run id of the right shape, for paths where the run itself does not matter.
const SOME_RUN: &str = "run_01jd7v1b0m4xk3r0c9z9qz5y7w";

/// The keys of an OpenAPI path item that are operations.
const OPERATIONS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

pub(super) fn document() -> Value {
    serde_json::to_value(openapi_document()).unwrap()
}

/// The documented operations: each path with its methods, upper-case.
fn documented(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = document["paths"].as_object().unwrap();
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().filter(|key| OPERATIONS.contains(&key.as_str()));
            (path.clone(), methods.map(|method| method.to_ascii_uppercase()).collect())
        })
        .collect()
}

/// The paths the router matches, read from its `Debug` form: axum lists them nowhere else.
/// The fallback router, which holds axum's own catch-all, is left out.
fn served_paths(app: &Router) -> BTreeSet<String> {
    let debug = format!("{app:?}");
    let (main, _fallback) = debug.split_once("fallback_router").unwrap();
    let (_routes, node) = main.split_once("node: Node").unwrap();
    node.split("): \"").skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let api = api();
    let document = document();
    let documented = documented(&document);
    assert!(documented.len() > 1, "{documented:?}");
    assert_eq!(served_paths(&api.app), documented.keys().cloned().collect(), "paths served vs documented");

    for (path, methods) in &documented {
        let uri = path.replace("{id}", SOME_RUN).replace("{step}", "review");
        // No route takes an extension method, so this is a 405 whose `Allow` lists every
        // method the router serves at the path.
        let probe = Method::from_bytes(b"PROBE").unwrap();
        let reply = api.send(request(probe, &uri, Some(KEY_A)).body(Body::empty()).unwrap()).await;
        reply.problem(StatusCode::METHOD_NOT_ALLOWED);
        let allowed: BTreeSet<String> = reply
            .header("allow")
            .unwrap_or_default()
            .split(',')
            .map(|method| method.trim().to_owned())
            // axum answers HEAD wherever it answers GET, as HTTP asks; OpenAPI leaves it implied.
            .filter(|method| method != "HEAD")
            .collect();
        assert_eq!(&allowed, methods, "methods served vs documented at {path}");
    }

    let served = api.send(request(Method::GET, "/openapi.json", None).body(Body::empty()).unwrap()).await;
    assert_eq!(served.body, document, "GET /openapi.json serves the document the router was split from");
}

/// Every `$ref` anywhere under `value`.
fn references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(members) => {
            if let Some(Value::String(target)) = members.get("$ref") {
                found.insert(target.clone());
            }
            members.values().for_each(|member| references(member, found));
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let document = document();
    let mut found = BTreeSet::new();
    references(&document, &mut found);
    assert!(found.contains("#/components/schemas/ProblemDetails"), "{found:?}");
    for target in found {
        let pointer = target.strip_prefix('#').unwrap();
        assert!(document.pointer(pointer).is_some(), "{target} names nothing");
    }
}

#[test]
fn the_document_states_the_limits_validation_enforces() {
    let document = document();
    let schemas = &document["components"]["schemas"];

    let workflow = &schemas["WorkflowDefinition"];
    assert_eq!(workflow["additionalProperties"], false);
    assert_eq!(workflow["properties"]["steps"]["minItems"], 1);
    assert_eq!(workflow["properties"]["steps"]["maxItems"], 100);
    assert_eq!(workflow["properties"]["budget_usd"]["exclusiveMinimum"], 0);
    assert_eq!(workflow["properties"]["input_schema"]["type"], json!(["object", "boolean", "null"]));
    let beyond = workflow["description"].as_str().unwrap();
    for unstated in ["256 KiB", "unique", "no \ncycle", "GET /v1/models", "valid JSON Schemas", "beside a `budget_usd`"]
    {
        assert!(beyond.replace(" \n", " ").contains(&unstated.replace(" \n", " ")), "{unstated}: {beyond}");
    }
    assert_eq!(schemas["Submission"]["additionalProperties"], false);
    assert_eq!(schemas["ApprovalDecision"]["additionalProperties"], false);
    assert_eq!(schemas["NotifyTarget"]["properties"]["url"]["maxLength"], 2048);

    let variants: BTreeMap<&str, &Value> = schemas["StepDefinition"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variant| (variant["properties"]["task"]["enum"][0].as_str().unwrap(), variant))
        .collect();
    let tasks: BTreeSet<&str> = Task::ALL.iter().map(|task| task.as_str()).collect();
    assert_eq!(variants.keys().copied().collect::<BTreeSet<_>>(), tasks);
    for (task, step) in &variants {
        let properties = &step["properties"];
        assert_eq!(step["additionalProperties"], false, "{task}");
        assert_eq!(properties["id"]["pattern"], "^[a-z][a-z0-9_]{0,63}$", "{task}");
        assert_eq!(properties["needs"]["items"]["pattern"], "^[a-z][a-z0-9_]{0,63}$", "{task}");
        assert_eq!(properties["retries"]["maximum"], 10, "{task}");
        assert_eq!(properties["max_tokens"]["minimum"], 1, "{task}");
        assert_eq!(
            (&properties["temperature"]["minimum"], &properties["temperature"]["maximum"]),
            (&json!(0), &json!(2))
        );
        assert_eq!(properties["step_timeout_ms"]["maximum"], 86_400_000, "{task}");
        // A person, or a child run, may take 30 days; a model call 15 minutes.
        let longest = if ["approval", "workflow"].contains(task) { 30 * 24 * 3_600_000_u64 } else { 900_000 };
        assert_eq!(properties["timeout_ms"]["maximum"], longest, "{task}");
    }
    let required = |task: &str| variants[task]["required"].as_array().unwrap().clone();
    assert!(required("generate").contains(&json!("prompt")));
    assert!(required("summarize").contains(&json!("input")));
    assert!(required("extract").contains(&json!("schema")));
    assert!(required("classify").contains(&json!("labels")));
    assert_eq!(variants["classify"]["properties"]["labels"]["minItems"], 2);
    assert_eq!(variants["classify"]["properties"]["labels"]["uniqueItems"], true);
    assert_eq!(variants["approval"]["properties"]["model"]["type"], "null");

    let parameter = |path: &str, method: &str, name: &str| {
        let parameters = document["paths"][path][method]["parameters"].as_array().unwrap();
        parameters.iter().find(|p| p["name"] == name).unwrap()["schema"].clone()
    };
    let idempotency_key = parameter("/v1/runs", "post", "Idempotency-Key");
    assert_eq!((&idempotency_key["minLength"], &idempotency_key["maxLength"]), (&json!(1), &json!(255)));
    let limit = parameter("/v1/runs", "get", "limit");
    assert_eq!((&limit["minimum"], &limit["maximum"]), (&json!(1), &json!(100)));
}

/// Whether `value` matches `pattern` the way a JSON Schema validator reads it.
fn matches(pattern: &Value, value: &str) -> bool {
    jsonschema::is_valid(&json!({ "pattern": pattern }), &json!(value))
}

#[test]
fn path_and_header_patterns_agree_with_the_parsers() {
    let document = document();
    let run = RunId::generate(jiff::Timestamp::now());
    let runs = [
        run.as_str().to_owned(),
        run.as_str().to_ascii_uppercase().replacen("RUN_", "run_", 1),
        "run_nope".to_owned(),
        format!("run_{}", "u".repeat(26)),
        format!("xun_{}", &run.as_str()[4..]),
        format!("{run}0"),
    ];
    let steps = ["review", "a", "a_1", "Review", "1a", "a-b", "", &"a".repeat(64), &"a".repeat(65)];
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let pattern = &parameter["schema"]["pattern"];
                match parameter["name"].as_str().unwrap() {
                    "id" => {
                        for id in &runs {
                            assert_eq!(matches(pattern, id), RunId::parse(id).is_ok(), "{method} {path}: {id}");
                        }
                    }
                    "step" => {
                        for id in steps {
                            assert_eq!(matches(pattern, id), StepId::parse(id).is_ok(), "{method} {path}: {id}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    let key = &document["paths"]["/v1/runs"]["post"]["parameters"][0]["schema"]["pattern"];
    for (value, valid) in [("order-42", true), ("a b", true), ("~", true), (" a", false), ("a\t", false), ("ü", false)]
    {
        assert_eq!(matches(key, value), valid, "Idempotency-Key {value:?}");
    }
}

/// One step of each task that validation accepts.
fn sound_step(task: Task) -> Value {
    match task {
        Task::Generate => json!({"id": "a", "task": "generate", "model": "local:echo", "prompt": "hi"}),
        Task::Summarize => json!({"id": "a", "task": "summarize", "model": "local:extractive", "input": "text"}),
        Task::Classify => {
            json!({"id": "a", "task": "classify", "model": "local:lexicon", "input": "text", "labels": ["YES", "NO"]})
        }
        Task::Extract => {
            json!({"id": "a", "task": "extract", "model": "local:extract", "input": "text", "schema": {"type": "object"}})
        }
        Task::Embed => json!({"id": "a", "task": "embed", "model": "local:hash-embed", "input": "text"}),
        Task::Approval => json!({"id": "a", "task": "approval", "prompt": "Ship it?"}),
        // The test server registers `summarizer` (see `stated_limits`).
        Task::Workflow => json!({"id": "a", "task": "workflow", "workflow": "summarizer", "input": "{{ input }}"}),
    }
}

/// `step` with `member` set to `value`, or removed when `value` is `None`.
fn with(task: Task, member: &str, value: Option<Value>) -> Value {
    let mut step = sound_step(task);
    let fields = step.as_object_mut().unwrap();
    match value {
        Some(value) => fields.insert(member.to_owned(), value),
        None => fields.remove(member),
    };
    step
}

fn submission(steps: Vec<Value>) -> Value {
    json!({"workflow": {"steps": steps}, "input": {}})
}

fn generate_steps(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"id": format!("s{i}"), "task": "generate", "model": "local:echo", "prompt": "x"}))
        .collect()
}

/// Submissions, each with whether the server should accept it: every limit the schema states,
/// on both sides of its bound.
fn stated_limits() -> Vec<(String, Value, bool)> {
    use Task::*;
    let step_cases: Vec<(&str, Value, bool)> = vec![
        ("generate", sound_step(Generate), true),
        ("summarize", sound_step(Summarize), true),
        ("classify", sound_step(Classify), true),
        ("extract", sound_step(Extract), true),
        ("embed", sound_step(Embed), true),
        ("approval", sound_step(Approval), true),
        ("workflow", sound_step(Workflow), true),
        ("workflow without its workflow", with(Workflow, "workflow", None), false),
        ("workflow with a prompt", with(Workflow, "prompt", Some(json!("x"))), false),
        ("map over a list", with(Generate, "for_each", Some(json!("input.docs"))), true),
        ("map of approvals", with(Approval, "for_each", Some(json!("input.docs"))), false),
        ("longest id", with(Generate, "id", Some(json!(format!("a{}", "b".repeat(63))))), true),
        ("id too long", with(Generate, "id", Some(json!("a".repeat(65)))), false),
        ("id with capitals", with(Generate, "id", Some(json!("Draft"))), false),
        ("id starting with a digit", with(Generate, "id", Some(json!("2a"))), false),
        ("unknown task", with(Generate, "task", Some(json!("dance"))), false),
        ("unknown member", with(Generate, "modle", Some(json!("local:echo"))), false),
        ("longest model timeout", with(Generate, "timeout_ms", Some(json!(900_000))), true),
        ("model timeout too long", with(Summarize, "timeout_ms", Some(json!(900_001))), false),
        ("zero timeout", with(Generate, "timeout_ms", Some(json!(0))), false),
        ("approval waits 30 days", with(Approval, "timeout_ms", Some(json!(2_592_000_000_u64))), true),
        ("approval waits longer", with(Approval, "timeout_ms", Some(json!(2_592_000_001_u64))), false),
        ("longest step timeout", with(Generate, "step_timeout_ms", Some(json!(86_400_000))), true),
        ("step timeout too long", with(Generate, "step_timeout_ms", Some(json!(86_400_001))), false),
        ("zero step timeout", with(Generate, "step_timeout_ms", Some(json!(0))), false),
        ("10 retries", with(Generate, "retries", Some(json!(10))), true),
        ("11 retries", with(Generate, "retries", Some(json!(11))), false),
        ("negative retries", with(Generate, "retries", Some(json!(-1))), false),
        ("max_tokens 1", with(Generate, "max_tokens", Some(json!(1))), true),
        ("max_tokens 0", with(Generate, "max_tokens", Some(json!(0))), false),
        ("largest max_tokens", with(Generate, "max_tokens", Some(json!(100_000))), true),
        ("max_tokens over the limit", with(Generate, "max_tokens", Some(json!(100_001))), false),
        ("temperature 0", with(Generate, "temperature", Some(json!(0))), true),
        ("temperature 2", with(Generate, "temperature", Some(json!(2.0))), true),
        ("temperature 2.5", with(Generate, "temperature", Some(json!(2.5))), false),
        ("negative temperature", with(Generate, "temperature", Some(json!(-0.5))), false),
        ("null temperature", with(Generate, "temperature", Some(Value::Null)), true),
        ("optional", with(Generate, "optional", Some(json!(true))), true),
        ("null optional", with(Generate, "optional", Some(Value::Null)), false),
        ("generate without prompt", with(Generate, "prompt", None), false),
        ("generate with null prompt", with(Generate, "prompt", Some(Value::Null)), false),
        ("generate with input", with(Generate, "input", Some(json!("text"))), true),
        ("summarize without input", with(Summarize, "input", None), false),
        ("embed without model", with(Embed, "model", None), false),
        ("extract with null model", with(Extract, "model", Some(Value::Null)), false),
        ("approval with a model", with(Approval, "model", Some(json!("local:echo"))), false),
        ("approval with null model", with(Approval, "model", Some(Value::Null)), true),
        ("approval with fallbacks", with(Approval, "fallbacks", Some(json!(["local:echo"]))), false),
        ("approval with no fallbacks", with(Approval, "fallbacks", Some(json!([]))), true),
        ("approval with input", with(Approval, "input", Some(json!("text"))), false),
        ("classify with one label", with(Classify, "labels", Some(json!(["YES"]))), false),
        ("classify with a repeated label", with(Classify, "labels", Some(json!(["YES", "YES"]))), false),
        ("classify without labels", with(Classify, "labels", None), false),
        ("labels on generate", with(Generate, "labels", Some(json!(["YES", "NO"]))), false),
        ("no labels on generate", with(Generate, "labels", Some(json!([]))), true),
        ("extract without schema", with(Extract, "schema", None), false),
        ("extract with a boolean schema", with(Extract, "schema", Some(json!(true))), true),
        ("extract with a number for schema", with(Extract, "schema", Some(json!(5))), false),
        ("schema on summarize", with(Summarize, "schema", Some(json!({"type": "object"}))), false),
        ("null schema on summarize", with(Summarize, "schema", Some(Value::Null)), true),
    ];
    let mut cases: Vec<(String, Value, bool)> =
        step_cases.into_iter().map(|(name, step, ok)| (name.to_owned(), submission(vec![step]), ok)).collect();

    let mut needs = generate_steps(2);
    needs[1]["needs"] = json!(["s0"]);
    cases.push(("needs a step".into(), submission(needs.clone()), true));
    needs[1]["needs"] = json!(["S0"]);
    cases.push(("needs a malformed id".into(), submission(needs), false));
    cases.push(("no steps".into(), submission(vec![]), false));
    cases.push(("100 steps".into(), submission(generate_steps(100)), true));
    cases.push(("101 steps".into(), submission(generate_steps(101)), false));

    let workflow = |member: &str, value: Value| {
        let mut case = submission(vec![sound_step(Generate)]);
        case["workflow"][member] = value;
        case
    };
    cases.extend([
        ("a budget".into(), workflow("budget_usd", json!(0.01)), true),
        ("a zero budget".into(), workflow("budget_usd", json!(0)), false),
        ("a negative budget".into(), workflow("budget_usd", json!(-1)), false),
        (
            "unpriced models allowed beside a budget".into(),
            {
                let mut case = workflow("budget_usd", json!(0.01));
                case["workflow"]["allow_unpriced_models"] = json!(true);
                case
            },
            true,
        ),
        ("unpriced models not allowed".into(), workflow("allow_unpriced_models", json!(false)), true),
        ("a string for allow_unpriced_models".into(), workflow("allow_unpriced_models", json!("yes")), false),
        ("a boolean input schema".into(), workflow("input_schema", json!(true)), true),
        ("a number for input schema".into(), workflow("input_schema", json!(5)), false),
        ("output of any JSON".into(), workflow("output", json!(["{{ steps.a.text }}", 5, null])), true),
        ("a null name".into(), workflow("name", Value::Null), true),
        ("an unknown workflow member".into(), workflow("version", json!(2)), false),
        ("steps not an array".into(), workflow("steps", json!({})), false),
    ]);

    let top = |member: &str, value: Value| {
        let mut case = submission(vec![sound_step(Generate)]);
        case[member] = value;
        case
    };
    cases.extend([
        ("input that is not an object".into(), top("input", json!("hello")), true),
        ("null input".into(), top("input", Value::Null), true),
        ("a notify URL".into(), top("notify", json!({"url": "https://example.com/hook"})), true),
        (
            "a notify URL too long".into(),
            top("notify", json!({"url": format!("https://example.com/{}", "x".repeat(2048))})),
            false,
        ),
        ("an unknown member".into(), top("inputs", json!({})), false),
        ("a null workflow".into(), top("workflow", Value::Null), false),
    ]);
    cases
}

/// Validates a value against the document's schema `name`, as a client would.
pub(super) fn validator(document: &Value, name: &str) -> jsonschema::Validator {
    let root = json!({"$ref": format!("#/components/schemas/{name}"), "components": document["components"]});
    jsonschema::validator_for(&root).unwrap()
}

#[tokio::test]
async fn the_schema_and_validation_agree_on_every_stated_limit() {
    let api = api();
    let summarizer =
        json!({"steps": [{"id": "s", "task": "summarize", "model": "local:extractive", "input": "{{ input.text }}"}]});
    assert!(api.register(KEY_A, "summarizer", &summarizer).await.status.is_success());
    let schema = validator(&document(), "Submission");
    for (name, case, accepted) in stated_limits() {
        assert_eq!(schema.is_valid(&case), accepted, "schema on {name}: {:?}", schema.iter_errors(&case).next());
        let reply = api.submit(KEY_A, &case).await;
        let expected = if accepted { StatusCode::ACCEPTED } else { StatusCode::UNPROCESSABLE_ENTITY };
        assert_eq!(reply.status, expected, "server on {name}: {}", reply.body);
    }
}

/// What the schema cannot state; the descriptions say so instead.
#[tokio::test]
async fn what_the_schema_cannot_state_is_left_to_validation() {
    let api = api();
    let schema = validator(&document(), "Submission");
    let mut duplicate = generate_steps(2);
    duplicate[1]["id"] = json!("s0");
    let mut cycle = generate_steps(2);
    cycle[0]["needs"] = json!(["s1"]);
    cycle[1]["needs"] = json!(["s0"]);
    let unknown_model = with(Task::Generate, "model", Some(json!("nope:model")));
    let bad_template = with(Task::Generate, "prompt", Some(json!("{{ input.x ")));
    let bad_schema = with(Task::Extract, "schema", Some(json!({"type": 5})));
    let mut unpriced_without_budget = submission(vec![sound_step(Task::Generate)]);
    unpriced_without_budget["workflow"]["allow_unpriced_models"] = json!(true);
    assert!(schema.is_valid(&unpriced_without_budget));
    api.submit(KEY_A, &unpriced_without_budget).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    for (name, steps) in [
        ("duplicate ids", duplicate),
        ("a cycle", cycle),
        ("an unknown model", vec![unknown_model]),
        ("a broken template", vec![bad_template]),
        ("an invalid JSON Schema", vec![bad_schema]),
    ] {
        let case = submission(steps);
        assert!(schema.is_valid(&case), "{name}");
        api.submit(KEY_A, &case).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
}

/// Every operation by its id: method and path.
pub(super) fn operations(document: &Value) -> BTreeMap<String, (Method, String)> {
    let mut operations = BTreeMap::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                operations.insert(id.to_owned(), (method, path.clone()));
            }
        }
    }
    operations
}

/// The links of one documented response.
pub(super) fn links<'a>(
    document: &'a Value,
    path: &str,
    method: &str,
    status: &str,
) -> &'a serde_json::Map<String, Value> {
    document["paths"][path][method]["responses"][status]["links"].as_object().unwrap()
}

impl Api {
    /// Follows `link` from a response `body` as a client would: each parameter's
    /// `$response.body#…` expression read from the body, into the path or else the query.
    pub(super) async fn follow(
        &self,
        operations: &BTreeMap<String, (Method, String)>,
        link: &Value,
        body: &Value,
    ) -> Reply {
        let (method, path) = &operations[link["operationId"].as_str().unwrap()];
        let mut uri = path.clone();
        let mut query = Vec::new();
        for (name, expression) in link["parameters"].as_object().unwrap() {
            let pointer = expression.as_str().unwrap().strip_prefix("$response.body#").unwrap();
            // A string as it is; a number (a version) as its digits.
            let value = match body.pointer(pointer).unwrap() {
                Value::Number(number) => number.to_string(),
                other => other.as_str().unwrap().to_owned(),
            };
            let placeholder = format!("{{{name}}}");
            if uri.contains(&placeholder) {
                uri = uri.replace(&placeholder, &value);
            } else {
                query.push(format!("{name}={value}"));
            }
        }
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        self.send(request(method.clone(), &uri, Some(KEY_A)).body(Body::empty()).unwrap()).await
    }
}

/// A run whose first step waits for a person.
fn approval_first() -> Value {
    json!({"workflow": {"steps": [
        {"id": "review", "task": "approval", "prompt": "Ship it?"},
        {"id": "ship", "task": "generate", "model": "local:echo", "prompt": "shipped", "needs": ["review"]}
    ]}})
}

#[tokio::test]
async fn links_lead_from_a_run_to_its_operations() {
    let mut api = api();
    let document = document();
    let operations = operations(&document);

    let accepted = api.submit(KEY_A, &approval_first()).await;
    let submitted = links(&document, "/v1/runs", "post", "202");
    assert_eq!(submitted.keys().map(String::as_str).collect::<Vec<_>>(), ["CancelRun", "GetRun", "GetRunEvents"]);
    for (name, link) in submitted {
        let reply = api.follow(&operations, link, &accepted.body).await;
        assert!(reply.status.is_success(), "{name}: {}", reply.body);
    }

    // A run's first step, once it waits, is decided through the run's links.
    let from_run = links(&document, "/v1/runs/{id}", "get", "200");
    for decision in ["ApproveFirstStep", "RejectFirstStep"] {
        let id = api.start(KEY_A, &approval_first()).await;
        api.drive().await;
        let run = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
        let reply = api.follow(&operations, &from_run[decision], &run.body).await;
        assert_eq!(reply.status, StatusCode::OK, "{decision}: {}", reply.body);
        let events = api.follow(&operations, &from_run["GetRunEvents"], &run.body).await;
        assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    }

    let page = api.get("/v1/runs?limit=1", KEY_A).await;
    let from_page = links(&document, "/v1/runs", "get", "200");
    assert_eq!(from_page.keys().map(String::as_str).collect::<Vec<_>>(), ["GetFirstRun", "GetNextPage"]);
    for (name, link) in from_page {
        let reply = api.follow(&operations, link, &page.body).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
    }
}

#[tokio::test]
async fn responses_match_their_documented_schemas() {
    let mut api = api();
    let document = document();
    let conforms = |name: &str, body: &Value| {
        let schema = validator(&document, name);
        let errors: Vec<String> = schema.iter_errors(body).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name} {body}: {errors:?}");
    };

    // Input that is not an object and an output that is an array are both allowed in, so
    // they must be allowed out.
    let submission = json!({
        "workflow": {
            "steps": [
                {"id": "draft", "task": "generate", "model": "local:echo", "prompt": "{{ input }}"},
                {"id": "label", "task": "classify", "model": "local:lexicon", "input": "{{ steps.draft.text }}",
                 "labels": ["POSITIVE", "NEGATIVE"]},
                {"id": "review", "task": "approval", "prompt": "ok?", "needs": ["label"]}
            ],
            "output": ["{{ steps.draft.text }}", "{{ steps.label.label }}"]
        },
        "input": "great news"
    });
    let accepted = api.submit(KEY_A, &submission).await;
    conforms("RunAccepted", &accepted.body);
    let id = accepted.body["id"].as_str().unwrap().to_owned();
    api.drive().await;
    conforms("RunView", &api.get(&format!("/v1/runs/{id}"), KEY_A).await.body);
    let decided = api.post_empty(&format!("/v1/runs/{id}/steps/review/approve"), KEY_A).await;
    conforms("RunView", &decided.body);
    api.drive().await;
    let done = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.body);
    conforms("RunView", &done.body);
    conforms("EventList", &api.get(&format!("/v1/runs/{id}/events"), KEY_A).await.body);

    let cancelled = api.start(KEY_A, &approval_first()).await;
    conforms("RunView", &api.post_empty(&format!("/v1/runs/{cancelled}/cancel"), KEY_A).await.body);
    conforms("RunList", &api.get("/v1/runs?limit=1", KEY_A).await.body);
    conforms("ModelList", &api.get("/v1/models", KEY_A).await.body);
    conforms("ProblemDetails", &api.get("/v1/runs?limit=0", KEY_A).await.body);
    conforms("ProblemDetails", &api.submit(KEY_A, &json!({"workflow": {"steps": []}})).await.body);
}

#[test]
fn a_cost_is_a_number_or_null_and_totals_say_whether_every_cost_is_known() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    let progress = &schemas["StepProgress"];
    assert_eq!(progress["properties"]["cost_usd"]["type"], json!(["number", "null"]));
    assert!(progress["required"].as_array().unwrap().contains(&json!("cost_usd")), "always sent: {progress}");
    let view = &schemas["StepView"]["allOf"][1];
    assert_eq!(view["properties"]["cost_known"]["type"], "boolean");
    let totals = &schemas["Totals"];
    assert_eq!(totals["properties"]["cost_usd"]["type"], "number");
    for required in ["cost_usd", "cost_known"] {
        assert!(totals["required"].as_array().unwrap().contains(&json!(required)), "{required}");
    }
}
