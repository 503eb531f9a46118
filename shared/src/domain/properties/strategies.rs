//! Generators for the property tests: JSON values with the awkward corners (huge numbers, odd
//! keys, control characters), template sources from a small grammar of minijinja, workflow
//! submissions that are sound by construction or wrong in any member, and mutations that break
//! a document at a random place. The HTTP properties use them too.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::{btree_map, vec};
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Number, Value, json};

use crate::domain::{Task, TemplateContext};

/// Step ids the generators draw from: few, so that references often name a real step (and
/// duplicates and cycles come up often).
pub const STEP_IDS: [&str; 5] = ["a", "b", "c", "draft", "s_2"];

/// Ids a reference may name: the steps, and one no workflow has.
const REFERABLE: [&str; 6] = ["a", "b", "c", "draft", "s_2", "ghost"];

/// Members of a submission, so that arbitrary objects sometimes hit a real one.
const MEMBERS: [&str; 22] = [
    "workflow",
    "input",
    "notify",
    "url",
    "steps",
    "id",
    "task",
    "model",
    "fallbacks",
    "prompt",
    "needs",
    "when",
    "output",
    "labels",
    "schema",
    "name",
    "input_schema",
    "budget_usd",
    "timeout_ms",
    "type",
    "properties",
    "required",
];

/// Strings that trip parsers: template delimiters, JSON Pointer escapes, control characters,
/// a byte-order mark, non-ASCII.
const AWKWARD: [&str; 16] = [
    "{{",
    "}}",
    "{%",
    "{#",
    "~",
    "/",
    "~1",
    "\u{0}",
    "\u{feff}",
    "💥",
    "\\",
    "\"",
    "null",
    "{{ input.prompt }}",
    "{{ steps.a.text }}",
    "\r\n",
];

/// Text of any kind, mostly short.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z ]{0,12}",
        2 => "\\PC{0,16}",
        1 => any::<String>(),
        1 => select(AWKWARD.to_vec()).prop_map(str::to_owned),
    ]
    .boxed()
}

/// Object keys: the members a submission has, and anything else.
pub fn key() -> BoxedStrategy<String> {
    prop_oneof![2 => select(MEMBERS.to_vec()).prop_map(str::to_owned), 1 => text()].boxed()
}

/// Any JSON value, up to four levels deep.
pub fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Small numbers matter: they index lists and repeat strings.
        select(vec![0, 1, -1, 2, 3, 10]).prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key(), inner), 0..6).prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Templates: a small grammar of minijinja. Repetition factors, ranges and filter arguments
// come small and huge: the huge ones try the render limits (`template::bounded`), which must
// refuse them before building anything large.

const INPUT_PATHS: [&str; 10] = [
    "input",
    "input.prompt",
    "input.n",
    "input.items",
    "input.nested.deep",
    "input['prompt']",
    "input.items[0]",
    "input.items[-1]",
    "input.prompt[1:3]",
    "input.missing.deeper",
];

const FIELDS: [&str; 7] = ["text", "label", "data", "vector", "approved", "scores", "nope"];

const LITERALS: [&str; 26] = [
    "'x'",
    "\"two words\"",
    "''",
    "'{{ input }}'",
    "0",
    "1",
    "-1",
    "3",
    "2.5",
    "9223372036854775807",
    "-9223372036854775808",
    "170141183460469231731687303715884105727",
    "1e308",
    "true",
    "false",
    "none",
    "[]",
    "[1, 'a', none]",
    "{'k': 'v', 'n': 2}",
    "range(3)",
    "range(10)",
    "range(-2)",
    "range(0, 10, 3)",
    "range(100000)",
    "'a,b' ~ 'c'",
    "'ünï' ~ '💥'",
];

/// Names no workflow defines (templates must reject or render them, never trip over them).
const UNKNOWN: [&str; 17] = [
    "foo",
    "foo.bar",
    "loop.index",
    "self",
    "namespace()",
    "range",
    "lipsum(2)",
    "cycler(1, 2)",
    "joiner()",
    "debug()",
    "dict(a=1)",
    "varargs",
    "caller()",
    "steps",
    "steps['a'].text",
    "steps[input.prompt]",
    "input()",
];

const FILTERS: [&str; 64] = [
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "length",
    "count",
    "first",
    "last",
    "reverse",
    "sort",
    "sort(reverse=true)",
    "unique",
    "join",
    "join('-')",
    "list",
    "string",
    "int",
    "float",
    "abs",
    "round",
    "round(2)",
    "default('d')",
    "default(none, true)",
    "d",
    "tojson",
    "items",
    "dictsort",
    "escape",
    "safe",
    "replace('a', 'bb')",
    "batch(2)",
    "batch(0)",
    "slice(3)",
    "slice(0)",
    "map('upper')",
    "map(attribute='text')",
    "select('odd')",
    "reject",
    "selectattr('text')",
    "attr('text')",
    "min",
    "max",
    "sum",
    "indent(2)",
    "split",
    "split(',')",
    "lines",
    "bool",
    "pprint",
    "format(1, 2)",
    "urlencode",
    "striptags",
    "groupby('text')",
    "chain",
    "nosuchfilter",
    "upper(1, 2, 3)",
    "slice(100000000)",
    "batch(100000000, 'x')",
    "tojson(100000000)",
    "indent(100000000)",
    "join(input.prompt)",
    "replace('', input.prompt)",
    "round(-400)",
];

const BINARY: [&str; 17] =
    ["+", "-", "/", "//", "%", "**", "==", "!=", "<", ">=", "and", "or", "in", "not in", "~", "+ 0 *", "- -"];

const SUBSCRIPTS: [&str; 16] = [
    "0",
    "-1",
    "1",
    "'text'",
    "'nope'",
    "1:",
    ":-1",
    "::-1",
    "::0",
    "9223372036854775807",
    "-9223372036854775808",
    "::-9223372036854775808",
    "2:0:-1",
    "-1:-5:-2",
    "none",
    "input.n",
];

const TESTS: [&str; 14] = [
    "defined",
    "undefined",
    "none",
    "number",
    "string",
    "sequence",
    "mapping",
    "odd",
    "even",
    "divisibleby(0)",
    "divisibleby(3)",
    "eq(1)",
    "startingwith('a')",
    "nosuchtest",
];

/// Repetition factors for `*`.
const REPEATS: [&str; 8] = ["-1", "0", "1", "2", "3", "input.n", "100000000", "9223372036854775807"];

/// Fragments that are not templates on their own, or use tags that need a loader.
const FRAGMENTS: [&str; 22] = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "{# note #}",
    "{{ }}",
    "{% %}",
    "{{ input.",
    "{% if %}",
    "{% endif %}",
    "{% endfor %}",
    "{% raw %}{{ x }}{% endraw %}",
    "{%- if true -%} x {%- endif -%}",
    "{% include 'other' %}",
    "{% extends 'base' %}",
    "{% import 'm' as m %}",
    "{% break %}",
    "{% call m() %}{% endcall %}",
    "{% autoescape true %}<{% endautoescape %}",
    "{% with a = 1 %}{{ a }}{% endwith %}",
    "{% set ns = namespace(n=0) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}",
];

/// Names a loop or `set` may bind: the two roots (shadowing them is allowed), and `loop`,
/// which is not.
const BINDINGS: [&str; 8] = ["x", "item", "x", "item", "input", "steps", "a", "loop"];

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    select(options).prop_map(str::to_owned)
}

/// An expression: the variables a workflow has, literals, unknown names, and operators,
/// filters, tests and subscripts over them, nested up to three deep.
pub fn expression() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => pick(&INPUT_PATHS),
        3 => (pick(&REFERABLE), pick(&FIELDS)).prop_map(|(step, field)| format!("steps.{step}.{field}")),
        3 => pick(&LITERALS),
        1 => pick(&UNKNOWN),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            3 => (inner.clone(), pick(&FILTERS)).prop_map(|(e, filter)| format!("{e} | {filter}")),
            3 => (inner.clone(), pick(&BINARY), inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            // `*` beside a literal or a parenthesis is refused before it compiles; beside a
            // name it is bounded while it renders: both are tried.
            1 => (inner.clone(), pick(&REPEATS)).prop_map(|(e, n)| format!("({e} * {n})")),
            2 => (pick(&INPUT_PATHS), pick(&REPEATS)).prop_map(|(name, n)| format!("{name} * {n}")),
            3 => (inner.clone(), pick(&SUBSCRIPTS)).prop_map(|(e, s)| format!("{e}[{s}]")),
            2 => (inner.clone(), pick(&TESTS)).prop_map(|(e, test)| format!("({e} is {test})")),
            2 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, c, b)| format!("({a} if {c} else {b})")),
            1 => inner.prop_map(|e| format!("(not {e})")),
        ]
    })
    .boxed()
}

/// A template: text, `{{ expression }}`, broken delimiters and tags, inside `if`, `for`,
/// `set`, `filter` blocks and a macro that calls itself, nested up to two deep.
pub fn template() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => text(),
        4 => expression().prop_map(|e| format!("{{{{ {e} }}}}")),
        1 => pick(&FRAGMENTS),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        let body = vec(inner, 0..4).prop_map(|parts| parts.concat());
        prop_oneof![
            3 => body.clone(),
            3 => (expression(), body.clone(), body.clone()).prop_map(|(condition, then, otherwise)| format!(
                "{{% if {condition} %}}{then}{{% else %}}{otherwise}{{% endif %}}"
            )),
            3 => (pick(&BINDINGS), expression(), body.clone()).prop_map(|(name, items, each)| format!(
                "{{% for {name} in {items} %}}{each}{{{{ loop.index }}}}{{% else %}}none{{% endfor %}}"
            )),
            2 => (pick(&BINDINGS), expression(), body.clone())
                .prop_map(|(name, value, rest)| format!("{{% set {name} = {value} %}}{rest}")),
            1 => body.clone().prop_map(|inside| format!("{{% filter upper %}}{inside}{{% endfilter %}}")),
            // Unbounded recursion, where macros are offered: the engine's limits must end it,
            // not the stack.
            1 => body.prop_map(|inside| format!("{{% macro m(x) %}}{inside}{{{{ m(x) }}}}{{% endmacro %}}{{{{ m(1) }}}}")),
        ]
    }).boxed()
}

/// A JSON template such as a workflow `output`: any JSON whose strings are mostly templates.
pub fn json_template() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        3 => template().prop_map(Value::String),
        3 => expression().prop_map(|e| Value::String(format!("{{{{ {e} }}}}"))),
        1 => json_value(),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((key(), inner), 0..4).prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
    .boxed()
}

/// What a template sees: an input shaped like a real one (or anything) and the outputs of a
/// few steps.
pub fn context() -> BoxedStrategy<TemplateContext> {
    (input(), btree_map(pick(&STEP_IDS), step_output(), 0..4))
        .prop_map(|(input, steps)| TemplateContext {
            input,
            steps: steps.into_iter().collect::<BTreeMap<_, _>>(),
            item: None,
        })
        .boxed()
}

/// A run input: usually an object with the members the templates read, sometimes anything.
pub fn input() -> BoxedStrategy<Value> {
    let shaped = (text(), prop_oneof![any::<i64>(), -3i64..20], vec(json_value(), 0..4), json_value()).prop_map(
        |(prompt, n, items, deep)| json!({"prompt": prompt, "n": n, "items": items, "nested": {"deep": deep}}),
    );
    prop_oneof![3 => shaped, 1 => json_value()].boxed()
}

/// A step's output as the engine records them, or anything.
fn step_output() -> BoxedStrategy<Value> {
    prop_oneof![
        text().prop_map(|text| json!({"text": text})),
        pick(&["POSITIVE", "NEGATIVE"]).prop_map(|label| json!({"label": label})),
        json_value().prop_map(|data| json!({"data": data})),
        vec(-1.0f64..1.0, 0..8).prop_map(|vector| json!({"vector": vector})),
        any::<bool>().prop_map(|approved| json!({"approved": approved, "by": "acme"})),
        json_value(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Workflows.

/// A JSON Schema: valid ones, invalid ones, ones with references that cannot resolve or
/// resolve to themselves, or anything.
pub fn json_schema() -> BoxedStrategy<Value> {
    let known = vec![
        json!({"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}, "required": ["name"]}),
        json!(true),
        json!(false),
        json!({}),
        json!({"type": "nope"}),
        json!({"type": "string", "pattern": "("}),
        json!({"type": "string", "pattern": "^(a+)+$"}),
        json!({"type": "string", "format": "email"}),
        json!({"$ref": "#/definitions/missing"}),
        json!({"$ref": "https://example.com/schema.json"}),
        json!({"$ref": "#"}),
        json!({"properties": {"a": {"$ref": "#"}}}),
        json!({"$defs": {"x": {"$ref": "#/$defs/x"}}, "$ref": "#/$defs/x"}),
        json!({"minLength": u64::MAX}),
        json!({"maxItems": -1}),
        json!({"multipleOf": 0}),
        json!({"multipleOf": 1e-308}),
        json!({"enum": []}),
        json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}),
        json!({"$schema": "https://example.com/unknown-draft"}),
    ];
    prop_oneof![3 => select(known), 1 => json_value()].boxed()
}

/// A model that can do `task` in the test routers (`fast` can generate in both).
fn fitting_model(task: Task) -> Option<&'static str> {
    match task {
        Task::Generate => Some("local:echo"),
        Task::Summarize => Some("local:extractive"),
        Task::Classify => Some("local:lexicon"),
        Task::Extract => Some("local:extract"),
        Task::Embed => Some("local:hash-embed"),
        Task::Approval | Task::Workflow => None,
    }
}

const MODELS: [&str; 11] = [
    "local:echo",
    "local:extractive",
    "local:keywords",
    "local:outage",
    "fast",
    "cheap",
    "nope:x",
    "local:nope",
    "",
    ":",
    "openai:gpt-4o-mini",
];

/// `good`, or with probability `noise`, `bad`.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    noise: f64,
    good: impl Strategy<Value = T>,
    bad: impl Strategy<Value = T>,
) -> impl Strategy<Value = T> {
    (prop::bool::weighted(noise), good, bad).prop_map(|(use_bad, good, bad)| if use_bad { bad } else { good })
}

/// A step's task.
fn task_name(noise: f64) -> BoxedStrategy<String> {
    mostly(
        noise,
        select(Task::ALL.to_vec()).prop_map(|task| task.as_str().to_owned()),
        pick(&["dance", "", "GENERATE"]),
    )
    .boxed()
}

/// A step id: one of [`STEP_IDS`], or one that is not an id at all.
fn step_id(noise: f64) -> BoxedStrategy<Value> {
    let bad = prop_oneof![
        pick(&["", "A", "1a", "a-b", "ü", "steps.a"]).prop_map(Value::String),
        Just(Value::String("x".repeat(65))),
        json_value(),
    ];
    mostly(noise, pick(&STEP_IDS).prop_map(Value::String), bad).boxed()
}

/// Stands for "an earlier step of this workflow" in a generated step; [`workflow`] puts a
/// real id in its place. (Not an id itself: a step id cannot contain `@`.)
const EARLIER: &str = "@";

/// The step a reference names: an earlier one (so the workflow stays a DAG), or any id,
/// which may be the step itself, a later one (a cycle) or none at all.
fn referenced(noise: f64) -> BoxedStrategy<String> {
    mostly(noise, Just(EARLIER.to_owned()), pick(&REFERABLE)).boxed()
}

fn reference(noise: f64) -> BoxedStrategy<Value> {
    mostly(noise / 4.0, referenced(noise).prop_map(Value::String), json_value()).boxed()
}

/// Filters a workflow's templates use.
const PLAIN_FILTERS: [&str; 8] = ["upper", "trim", "default('')", "length", "join(', ')", "tojson", "first", "lower"];

/// A template as workflows write them: text, the input, and other steps' outputs (through a
/// filter, a condition or a loop); or any template of the grammar.
pub fn workflow_template(noise: f64) -> BoxedStrategy<String> {
    let reference = (referenced(noise), pick(&FIELDS));
    let piece = prop_oneof![
        2 => "[A-Za-z0-9 .,:!?\n]{0,24}",
        2 => Just("{{ input.prompt }}".to_owned()),
        3 => (reference.clone(), pick(&PLAIN_FILTERS))
            .prop_map(|((step, field), filter)| format!("{{{{ steps.{step}.{field} | {filter} }}}}")),
        1 => reference.clone().prop_map(|(step, field)| format!(
            "{{% if steps.{step}.{field} == 'POSITIVE' %}}yes{{% else %}}no{{% endif %}}"
        )),
        1 => reference.prop_map(|(step, field)| format!("{{% for x in steps.{step}.{field} %}}{{{{ x }}}},{{% endfor %}}")),
    ];
    mostly(noise, vec(piece, 1..5).prop_map(|pieces| pieces.concat()), template()).boxed()
}

/// A `when` condition: on another step's output or the input, or any expression.
fn condition(noise: f64) -> BoxedStrategy<String> {
    let plain = prop_oneof![
        3 => (referenced(noise), pick(&FIELDS)).prop_map(|(step, field)| format!("steps.{step}.{field} == 'POSITIVE'")),
        1 => Just("input.n > 2 and input.prompt is string".to_owned()),
    ];
    mostly(noise, plain, expression()).boxed()
}

/// The members of a step whose right value depends on its task, as drawn at random.
#[derive(Debug, Clone)]
struct TaskMembers {
    model: Option<String>,
    fallbacks: Vec<String>,
    prompt: Option<String>,
    input: Option<String>,
    labels: Vec<String>,
    schema: Option<Value>,
}

fn task_members(noise: f64) -> BoxedStrategy<TaskMembers> {
    (
        weighted(0.8, pick(&MODELS)),
        vec(pick(&MODELS), 0..3),
        weighted(0.6, workflow_template(noise)),
        weighted(0.6, workflow_template(noise)),
        vec(pick(&["POSITIVE", "NEGATIVE", "NEUTRAL", ""]), 0..4),
        weighted(0.3, json_schema()),
    )
        .prop_map(|(model, fallbacks, prompt, input, labels, schema)| TaskMembers {
            model,
            fallbacks,
            prompt,
            input,
            labels,
            schema,
        })
        .boxed()
}

/// The limits of a step, in range or not.
fn limits(noise: f64) -> BoxedStrategy<Vec<(&'static str, Value)>> {
    let timeout = || {
        mostly(
            noise,
            select(vec![json!(1), json!(30_000), json!(900_000)]),
            select(vec![json!(0), json!(900_001), json!(2_592_000_001_u64), json!(u64::MAX), json!(-1), json!(1.5)]),
        )
    };
    let retries = mostly(noise, (0u32..=10).prop_map(Value::from), select(vec![json!(11), json!(u32::MAX)]));
    let max_tokens =
        mostly(noise, select(vec![json!(1), json!(256)]), select(vec![json!(0), json!(u64::MAX), json!(-5)]));
    let temperature = mostly(
        noise,
        select(vec![json!(0.0), json!(0.7), json!(2.0)]),
        select(vec![json!(-0.5), json!(2.5), json!(1e300)]),
    );
    (
        weighted(0.1, timeout()),
        weighted(0.1, timeout()),
        weighted(0.1, retries),
        weighted(0.1, max_tokens),
        weighted(0.1, temperature),
        weighted(0.2, any::<bool>().prop_map(Value::Bool)),
    )
        .prop_map(|(timeout, step_timeout, retries, max_tokens, temperature, optional)| {
            [
                ("timeout_ms", timeout),
                ("step_timeout_ms", step_timeout),
                ("retries", retries),
                ("max_tokens", max_tokens),
                ("temperature", temperature),
                ("optional", optional),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .collect()
        })
        .boxed()
}

/// A step, wrong with probability about `noise` at each place it can be: usually right for
/// its task (model, prompt or input, labels, schema), else any of those members at random.
pub fn step(noise: f64) -> BoxedStrategy<Value> {
    (
        step_id(noise / 4.0),
        task_name(noise / 4.0),
        prop::bool::weighted(1.0 - noise / 2.0),
        task_members(noise),
        vec(reference(noise), 0..3),
        weighted(0.2, condition(noise)),
        limits(noise),
        weighted(noise / 10.0, (key(), json_value())),
    )
        .prop_map(|(id, task_name, fits, members, needs, when, limits, stray)| {
            let mut step = Map::new();
            step.insert("id".to_owned(), id);
            step.insert("task".to_owned(), Value::String(task_name.clone()));
            let task = Task::ALL.into_iter().find(|task| task.as_str() == task_name);
            let mut optional = |name: &str, value: Option<Value>| {
                if let Some(value) = value {
                    step.insert(name.to_owned(), value);
                }
            };
            match task.filter(|_| fits) {
                Some(task) => {
                    optional("model", fitting_model(task).map(Value::from));
                    let (prompt, input) = match task {
                        Task::Generate => (members.prompt.or(Some(String::new())), None),
                        Task::Approval => (members.prompt, None),
                        _ => (members.prompt, members.input.or(Some(String::new()))),
                    };
                    optional("prompt", prompt.map(Value::String));
                    optional("input", input.map(Value::String));
                    let labels = (task == Task::Classify).then(|| json!(["POSITIVE", "NEGATIVE"]));
                    optional("labels", labels);
                    let schema = (task == Task::Extract)
                        .then(|| json!({"type": "object", "properties": {"name": {"type": "string"}}}));
                    optional("schema", schema);
                }
                None => {
                    optional("model", members.model.map(Value::String));
                    optional("fallbacks", Some(members.fallbacks.into_iter().map(Value::String).collect()));
                    optional("prompt", members.prompt.map(Value::String));
                    optional("input", members.input.map(Value::String));
                    optional("labels", Some(members.labels.into_iter().map(Value::String).collect()));
                    optional("schema", members.schema);
                }
            }
            optional("needs", (!needs.is_empty()).then_some(Value::Array(needs)));
            optional("when", when.map(Value::String));
            for (name, value) in limits {
                optional(name, Some(value));
            }
            if let Some((name, value)) = stray {
                step.insert(name, value);
            }
            Value::Object(step)
        })
        .boxed()
}

/// A workflow of one to five steps, nearly clean, somewhat broken or thoroughly broken
/// (see [`workflow_with`]).
pub fn workflow() -> BoxedStrategy<Value> {
    prop_oneof![workflow_with(0.02), workflow_with(0.1), workflow_with(0.4)].boxed()
}

/// A workflow of [`step`]s with the optional members, wrong with probability about `noise`
/// at each place it can be. Its steps' references mostly name earlier steps.
pub fn workflow_with(noise: f64) -> BoxedStrategy<Value> {
    let name = mostly(
        noise,
        "[a-z][a-z -]{0,20}".prop_map(Value::String),
        prop_oneof![text().prop_map(Value::String), Just(json!("n".repeat(257))), json_value()],
    );
    let budget = mostly(
        noise,
        select(vec![json!(0.01), json!(5), json!(1e308)]),
        select(vec![json!(-1), json!(0), json!("5"), json!(null)]),
    );
    let input_schema = mostly(noise, Just(json!({"type": "object"})), json_schema());
    let output = mostly(
        noise,
        btree_map(pick(&STEP_IDS), workflow_template(noise).prop_map(Value::String), 1..3)
            .prop_map(|members| Value::Object(members.into_iter().collect())),
        json_template(),
    );
    let ids = (Just(STEP_IDS.map(str::to_owned).to_vec()).prop_shuffle(), prop::bool::weighted(1.0 - noise));
    (
        mostly(noise / 4.0, vec(step(noise), 1..6), Just(Vec::new())),
        ids,
        vec(any::<Index>(), 24),
        weighted(0.3, name),
        weighted(0.15, input_schema),
        weighted(0.2, budget),
        weighted(0.4, output),
        weighted(0.1, text()),
    )
        .prop_map(|(mut steps, (ids, distinct), picks, name, input_schema, budget, mut output, description)| {
            let mut picks = picks.into_iter().cycle();
            let mut earlier: Vec<String> = Vec::new();
            for (step, unique) in steps.iter_mut().zip(&ids) {
                // Most workflows give each step an id of its own; the rest keep what was
                // drawn, duplicates included.
                if distinct && step.get("id").and_then(Value::as_str).is_some_and(|id| STEP_IDS.contains(&id)) {
                    step["id"] = json!(unique);
                }
                resolve_earlier(step, &earlier, &mut picks);
                earlier.extend(step.get("id").and_then(Value::as_str).map(str::to_owned));
            }
            if let Some(output) = output.as_mut() {
                resolve_earlier(output, &earlier, &mut picks);
            }
            let mut workflow = Map::new();
            workflow.insert("steps".to_owned(), Value::Array(steps));
            let optional = [
                ("name", name),
                ("input_schema", input_schema),
                ("budget_usd", budget),
                ("output", output),
                ("description", description.map(Value::String)),
            ];
            for (member, value) in optional {
                if let Some(value) = value {
                    workflow.insert(member.to_owned(), value);
                }
            }
            Value::Object(workflow)
        })
        .boxed()
}

/// Puts the id of one of the `earlier` steps wherever `node` says [`EARLIER`]: in its
/// strings' `steps.@.` and as an element of its arrays. With no earlier step, a template reads
/// the input instead and the `needs` entry goes.
fn resolve_earlier(node: &mut Value, earlier: &[String], picks: &mut impl Iterator<Item = Index>) {
    let placeholder = format!("steps.{EARLIER}.");
    match node {
        Value::String(text) => {
            while let Some(at) = text.find(&placeholder) {
                let replacement = match picks.next() {
                    Some(pick) if !earlier.is_empty() => format!("steps.{}.", pick.get(earlier)),
                    _ => "input.".to_owned(),
                };
                text.replace_range(at..at + placeholder.len(), &replacement);
            }
        }
        Value::Array(items) => {
            items.retain(|item| item.as_str() != Some(EARLIER) || !earlier.is_empty());
            for item in items {
                if item.as_str() == Some(EARLIER) {
                    if let Some(pick) = picks.next() {
                        *item = json!(pick.get(earlier));
                    }
                } else {
                    resolve_earlier(item, earlier, picks);
                }
            }
        }
        Value::Object(members) => members.values_mut().for_each(|member| resolve_earlier(member, earlier, picks)),
        _ => {}
    }
}

/// A `notify` target: public, loopback, private, metadata, malformed, overlong.
fn notify() -> BoxedStrategy<Value> {
    let urls = vec![
        "https://example.com/hook".to_owned(),
        "http://127.0.0.1:9/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]:1/".to_owned(),
        "https://user:pw@example.com/".to_owned(),
        "ftp://example.com/".to_owned(),
        "not a url".to_owned(),
        String::new(),
        format!("https://example.com/{}", "a".repeat(3000)),
    ];
    prop_oneof![4 => select(urls).prop_map(|url| json!({"url": url})), 1 => json_value()].boxed()
}

/// A whole `POST /v1/runs` body: a workflow, an [`input`] and maybe a `notify`.
pub fn submission(workflow: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    (workflow, weighted(0.9, input()), weighted(0.2, notify()))
        .prop_map(|(workflow, input, notify)| {
            let mut body = Map::new();
            body.insert("workflow".to_owned(), workflow);
            if let Some(input) = input {
                body.insert("input".to_owned(), input);
            }
            if let Some(notify) = notify {
                body.insert("notify".to_owned(), notify);
            }
            Value::Object(body)
        })
        .boxed()
}

/// A workflow valid by construction, with what each of its steps depends on.
#[derive(Debug, Clone)]
pub struct SoundWorkflow {
    pub workflow: Value,
    pub input: Value,
    /// For each step id, the steps it must wait for.
    pub dependencies: BTreeMap<String, BTreeSet<String>>,
    /// Whether a step waits for a person, so the run stops at `waiting`.
    pub has_approval: bool,
}

/// One step of a [`SoundWorkflow`] before it is written out.
#[derive(Debug, Clone)]
struct SoundStep {
    task: Task,
    /// Bit `j` set: this step depends on step `j` (an earlier one).
    depends: u8,
    /// Bit `j` set: the dependency on step `j` is a `needs`; clear: a template reference.
    as_need: u8,
    text: String,
    guarded: bool,
    optional: bool,
}

/// Sound prose: no template delimiters, never empty (so every task has text to work on).
fn prose() -> BoxedStrategy<String> {
    "[A-Za-z][A-Za-z0-9 .,!?']{0,40}".boxed()
}

/// A sound workflow of one to six steps: unique ids, each step depending only on earlier
/// ones (through `needs`, templates and `when`), a model that can do each task, the labels
/// and schema a task needs, and an output over the last step. No `workflow` step: it needs
/// a registered workflow to name.
pub fn sound_workflow() -> BoxedStrategy<SoundWorkflow> {
    let tasks: Vec<Task> = Task::ALL.into_iter().filter(|task| *task != Task::Workflow).collect();
    let sound_step = (select(tasks), any::<u8>(), any::<u8>(), prose(), any::<bool>(), any::<bool>()).prop_map(
        |(task, depends, as_need, text, guarded, optional)| SoundStep {
            task,
            depends,
            as_need,
            text,
            guarded,
            optional,
        },
    );
    (vec(sound_step, 1..7), prose())
        .prop_map(|(steps, prompt)| {
            let id = |index: usize| format!("s{index}");
            let mut dependencies = BTreeMap::new();
            let written: Vec<Value> = steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let earlier = (0..index).filter(|j| step.depends & (1 << j) != 0);
                let (needs, referenced): (Vec<usize>, Vec<usize>) =
                    earlier.partition(|j| step.as_need & (1 << j) != 0);
                let references: String =
                    referenced.iter().map(|j| format!(" {{{{ steps.{}.text | default('') }}}}", id(*j))).collect();
                let text = format!("{} {{{{ input.prompt }}}}{references}", step.text);
                let mut written = json!({"id": id(index), "task": step.task.as_str()});
                if let Some(model) = fitting_model(step.task) {
                    written["model"] = json!(model);
                }
                match step.task {
                    Task::Generate | Task::Approval => written["prompt"] = json!(text),
                    _ => written["input"] = json!(text),
                }
                if step.task == Task::Classify {
                    written["labels"] = json!(["POSITIVE", "NEGATIVE"]);
                }
                if step.task == Task::Extract {
                    written["schema"] =
                        json!({"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "number"}}});
                }
                if !needs.is_empty() {
                    written["needs"] = needs.iter().map(|j| id(*j)).collect();
                }
                if step.guarded {
                    written["when"] = json!("input.prompt is string");
                }
                if step.optional {
                    written["optional"] = json!(true);
                }
                let all: BTreeSet<String> = needs.iter().chain(&referenced).map(|j| id(*j)).collect();
                dependencies.insert(id(index), all);
                written
            })
            .collect();
            let last = id(steps.len() - 1);
            let workflow = json!({
                "name": "sound",
                "steps": written,
                "output": {"last": format!("{{{{ steps.{last} }}}}"), "prompt": "{{ input.prompt }}"},
            });
            let has_approval = steps.iter().any(|step| step.task == Task::Approval);
            SoundWorkflow { workflow, input: json!({"prompt": prompt}), dependencies, has_approval }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// One change to a document, at a node picked by an [`Index`] over all its nodes.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The node becomes this value.
    Replace(Value),
    /// The node is removed from its parent (the root becomes `null`).
    Remove,
    /// An object gains this member; an array, this element; anything else is replaced.
    Insert(String, Value),
    /// The node becomes its JSON text, as a string.
    Stringify,
    /// The node is repeated in its parent array; in an object, under a second key.
    Duplicate,
}

fn mutation() -> BoxedStrategy<(Index, Mutation)> {
    let kind = prop_oneof![
        json_value().prop_map(Mutation::Replace),
        Just(Mutation::Remove),
        (key(), json_value()).prop_map(|(key, value)| Mutation::Insert(key, value)),
        Just(Mutation::Stringify),
        Just(Mutation::Duplicate),
    ];
    (any::<Index>(), kind).boxed()
}

/// `document` with one to three [`Mutation`]s applied.
pub fn mutated(document: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    (document, vec(mutation(), 1..4))
        .prop_map(|(mut document, mutations)| {
            for (at, mutation) in mutations {
                let mut nodes = Vec::new();
                node_pointers(&document, String::new(), &mut nodes);
                let pointer = at.get(&nodes).clone();
                apply(&mut document, &pointer, mutation);
            }
            document
        })
        .boxed()
}

/// The JSON Pointer of every node of `value`, `value` itself first.
fn node_pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                node_pointers(item, format!("{at}/{index}"), out);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                node_pointers(member, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        _ => {}
    }
}

fn apply(document: &mut Value, pointer: &str, mutation: Mutation) {
    let Some(node) = document.pointer_mut(pointer) else { return };
    match mutation {
        Mutation::Replace(value) => *node = value,
        Mutation::Stringify => *node = Value::String(node.to_string()),
        Mutation::Insert(key, value) => match node {
            Value::Object(members) => {
                members.insert(key, value);
            }
            Value::Array(items) => items.push(value),
            other => *other = value,
        },
        Mutation::Remove | Mutation::Duplicate => {
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                if matches!(mutation, Mutation::Remove) {
                    *node = Value::Null;
                }
                return;
            };
            let key = last.replace("~1", "/").replace("~0", "~");
            let copy = node.clone();
            match (document.pointer_mut(parent), mutation) {
                (Some(Value::Object(members)), Mutation::Remove) => {
                    members.remove(&key);
                }
                (Some(Value::Array(items)), Mutation::Remove) => {
                    if let Ok(index) = key.parse::<usize>() {
                        items.remove(index);
                    }
                }
                (Some(Value::Object(members)), _) => {
                    members.insert(format!("{key}_copy"), copy);
                }
                (Some(Value::Array(items)), _) => items.push(copy),
                _ => {}
            }
        }
    }
}

/// Whether `pointer` or its parent names a node of `document`: a problem may point at a
/// member that is missing, but its parent must be there.
pub fn points_into(document: &Value, pointer: &str) -> bool {
    if document.pointer(pointer).is_some() {
        return true;
    }
    pointer.rsplit_once('/').is_some_and(|(parent, _)| document.pointer(parent).is_some())
}
