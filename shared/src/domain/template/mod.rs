//! Templates and `when` conditions, both through minijinja: `{{ input.x }}` and
//! `{{ steps.<id>.<field> }}` in prompts, inputs and outputs, plain expressions in `when`.
//! Every render is bounded in work (fuel) and in memory ([`RenderLimits`], see [`bounded`]).

mod bounded;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;

use minijinja::machinery::{CodeGenerator, Instructions, get_compiled_template, make_string_output, parse_expr};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;
use thiserror::Error;

pub use bounded::RenderLimits;

/// The names a template may start from.
const ROOTS: [&str; 4] = ["input", "steps", "item", "index"];

/// Bounds the work one template may do, so a hostile loop cannot pin a worker.
const FUEL: u64 = 200_000;

/// What one template field may render to, and the largest value it may build on the way.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// A template that does not parse, refers to something unknown, or fails while rendering.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct TemplateError {
    message: String,
    too_large: bool,
}

impl TemplateError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), too_large: false }
    }

    /// Whether a [`RenderLimits`] bound stopped the render (rather than a mistake in it).
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }
}

impl From<minijinja::Error> for TemplateError {
    fn from(err: minijinja::Error) -> Self {
        let mut message = err.kind().to_string();
        if let Some(detail) = err.detail() {
            message = format!("{message}: {detail}");
        }
        if let Some(line) = err.line() {
            message = format!("{message} (line {line})");
        }
        Self::new(message)
    }
}

/// The result of a bounded render, its error marked when a limit stopped it.
fn bounded_result<T>((result, exceeded): (Result<T, minijinja::Error>, bool)) -> Result<T, TemplateError> {
    result.map_err(|err| TemplateError { too_large: exceeded, ..err.into() })
}

/// What a template reads: the steps it references by name, whether it reads a map
/// step's `item` or `index`, and whether it reads the run's `input`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub steps: BTreeSet<String>,
    pub item: bool,
    pub input: bool,
}

/// The values templates see: the run's `input`, the outputs of finished steps and, in a
/// map step's item, the item and its position.
#[derive(Debug, Default, Clone)]
pub struct TemplateContext {
    pub input: Value,
    pub steps: BTreeMap<String, Value>,
    pub item: Option<MapItem>,
}

/// One item of a map step, as its templates see it.
#[derive(Debug, Clone)]
pub struct MapItem {
    pub item: Value,
    pub index: u32,
}

impl TemplateContext {
    fn to_value(&self) -> minijinja::Value {
        let base = minijinja::context! {
            input => minijinja::Value::from(Serde(&self.input)),
            steps => minijinja::Value::from(Serde(&self.steps)),
        };
        match &self.item {
            Some(MapItem { item, index }) => minijinja::context! {
                item => minijinja::Value::from(Serde(item)),
                index => *index,
                ..base
            },
            None => base,
        }
    }
}

/// The template engine, configured once: undefined values chain (so `steps.skipped.text`
/// renders empty instead of failing) and every render is bounded by fuel and by
/// [`RenderLimits`].
pub struct Templates {
    env: Environment<'static>,
    limits: RenderLimits,
}

impl Default for Templates {
    fn default() -> Self {
        Self::with_limits(RenderLimits { max_value_bytes: MAX_RENDERED_BYTES, max_output_bytes: MAX_RENDERED_BYTES })
    }
}

impl Templates {
    pub fn with_limits(limits: RenderLimits) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        bounded::install(&mut env);
        Self { env, limits }
    }

    /// Parses a template and lists the steps it references.
    pub fn check(&self, source: &str) -> Result<References, TemplateError> {
        contained(|| {
            bounded::check_repetition(source, false)?;
            let template = self.env.template_from_str(source)?;
            self.references(template.undeclared_variables(true))
        })
    }

    /// Parses a `when` condition and lists the steps it references.
    pub fn check_condition(&self, expression: &str) -> Result<References, TemplateError> {
        contained(|| {
            bounded::check_repetition(expression, true)?;
            let compiled = self.env.compile_expression(expression)?;
            self.references(compiled.undeclared_variables(true))
        })
    }

    /// The steps among a template's free names; the environment's own functions (`range`,
    /// `dict`) are not free names.
    fn references(&self, mut variables: std::collections::HashSet<String>) -> Result<References, TemplateError> {
        for (global, _) in self.env.globals() {
            variables.remove(global);
        }
        references(variables)
    }

    /// Renders a template: at most [`RenderLimits::max_output_bytes`] of text, and no value
    /// over [`RenderLimits::max_value_bytes`] built on the way (an error as soon as it would be).
    pub fn render(&self, source: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
        contained(|| self.render_root(source, &ctx.to_value(), self.limits))
    }

    /// [`render`](Self::render), writing at most `max_output_bytes` (what is left of a
    /// budget several fields share).
    pub fn render_at_most(
        &self,
        source: &str,
        ctx: &TemplateContext,
        max_output_bytes: usize,
    ) -> Result<String, TemplateError> {
        let limits =
            RenderLimits { max_output_bytes: max_output_bytes.min(self.limits.max_output_bytes), ..self.limits };
        contained(|| self.render_root(source, &ctx.to_value(), limits))
    }

    pub fn condition_holds(&self, expression: &str, ctx: &TemplateContext) -> Result<bool, TemplateError> {
        // `is_true` inside: a lazy value (a slice, a filter's result) is computed only there.
        contained(|| Ok(self.eval(expression, &ctx.to_value())?.is_true()))
    }

    fn render_root(
        &self,
        source: &str,
        root: &minijinja::Value,
        limits: RenderLimits,
    ) -> Result<String, TemplateError> {
        bounded::check_repetition(source, false)?;
        let template = self.env.template_from_str(source)?;
        let instructions = bounded::rewrite(&get_compiled_template(&template).instructions);
        let mut text = String::new();
        bounded_result(bounded::within(limits, || self.run(&instructions, root, &mut text)))?;
        Ok(text)
    }

    /// The value of one expression, computed under the same bounds as a render.
    fn eval(&self, expression: &str, root: &minijinja::Value) -> Result<minijinja::Value, TemplateError> {
        bounded::check_repetition(expression, true)?;
        let ast = parse_expr(expression)?;
        let mut generator = CodeGenerator::new("<expression>", expression);
        generator.compile_expr(&ast);
        let instructions = bounded::rewrite(&generator.finish().0);
        let mut discarded = String::new();
        let value = bounded_result(bounded::within(self.limits, || self.run(&instructions, root, &mut discarded)))?;
        Ok(value.unwrap_or_default())
    }

    fn run(
        &self,
        instructions: &Instructions<'_>,
        root: &minijinja::Value,
        text: &mut String,
    ) -> Result<Option<minijinja::Value>, minijinja::Error> {
        let blocks = BTreeMap::new();
        let mut output = make_string_output(text);
        let (value, _) =
            minijinja::machinery::eval(&self.env, instructions, root.clone(), &blocks, &mut output, AutoEscape::None)?;
        Ok(value)
    }

    /// Renders every string inside `value`. A string that is exactly one `{{ expression }}`
    /// becomes the expression's value with its JSON type (numbers, lists, objects survive).
    pub fn render_value(&self, value: &Value, ctx: &TemplateContext) -> Result<Value, TemplateError> {
        contained(|| self.render_value_with(value, &ctx.to_value()))
    }

    /// Checks every string inside a JSON template (such as the workflow `output`).
    pub fn check_value(&self, value: &Value) -> Result<References, TemplateError> {
        let mut all = References::default();
        for source in strings(value) {
            let references = self.check(source)?;
            all.steps.extend(references.steps);
            all.item |= references.item;
            all.input |= references.input;
        }
        Ok(all)
    }

    fn render_value_with(&self, value: &Value, ctx: &minijinja::Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(source) => match sole_expression(source) {
                Some(expression) => {
                    let result = self.eval(expression, ctx)?;
                    if result.is_undefined() {
                        Value::Null
                    } else {
                        serde_json::to_value(&result).map_err(|e| TemplateError::new(e.to_string()))?
                    }
                }
                None => Value::String(self.render_root(source, ctx, self.limits)?),
            },
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.render_value_with(item, ctx)).collect::<Result<_, _>>()?)
            }
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, item)| Ok((key.clone(), self.render_value_with(item, ctx)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// Runs one use of minijinja, turning a panic inside it into a template error. minijinja
/// panics on a few inputs (in 3.0.5: reversing an empty string or list, `''[::-1]`, and
/// `x is divisibleby(0)`); a tenant's template must fail as a template, not unwind through the
/// worker and take other tenants' steps in the same batch with it. Nothing outlives a use
/// that panicked (the environment is only read, and the render budget is restored on unwind),
/// so going on afterwards is safe.
fn contained<T>(work: impl FnOnce() -> Result<T, TemplateError>) -> Result<T, TemplateError> {
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(TemplateError::new("the template engine failed on this template")))
}

/// `"{{ expr }}"` (whitespace allowed around) with nothing else → `Some("expr")`.
fn sole_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner.trim())
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(fields) => fields.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn references(variables: std::collections::HashSet<String>) -> Result<References, TemplateError> {
    let mut refs = References::default();
    // In order, so that a template with several unknown names is refused with the same one
    // every time (a `HashSet` iterates in a different order in each instance).
    for variable in variables.into_iter().collect::<BTreeSet<_>>() {
        let mut parts = variable.split('.');
        let root = parts.next().unwrap_or_default();
        if !ROOTS.contains(&root) {
            return Err(TemplateError::new(format!(
                "unknown variable `{root}`: templates can use `input` and `steps.<id>` (and `item` and `index` in a `for_each` step)"
            )));
        }
        if root == "item" || root == "index" {
            refs.item = true;
        }
        refs.input |= root == "input";
        if root == "steps" {
            match parts.next() {
                Some(step) => {
                    refs.steps.insert(step.to_owned());
                }
                None => {
                    return Err(TemplateError::new("refer to other steps by name, as `steps.<id>.<field>`".to_owned()));
                }
            }
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> TemplateContext {
        TemplateContext {
            input: json!({"prompt": "Write a haiku", "n": 3}),
            steps: BTreeMap::from([("draft".to_owned(), json!({"text": "hello", "scores": [1, 2]}))]),
            item: None,
        }
    }

    #[test]
    fn the_environments_functions_are_not_unknown_variables() {
        assert!(Templates::default().check("{% for i in range(3) %}{{ dict(a=i) }}{% endfor %}").is_ok());
    }

    #[test]
    fn finds_referenced_steps() {
        let refs =
            Templates::default().check("{{ steps.draft.text }} and {{ steps.tone.label }} {{ input.x }}").unwrap();
        assert_eq!(refs.steps, BTreeSet::from(["draft".to_owned(), "tone".to_owned()]));
    }

    #[test]
    fn rejects_unknown_roots_and_syntax_errors() {
        let templates = Templates::default();
        assert!(templates.check("{{ inptu.prompt }}").unwrap_err().to_string().contains("inptu"));
        assert!(templates.check("{{ input.prompt ").is_err());
        assert!(templates.check("{% for s in steps %}{% endfor %}").is_err());
        assert!(templates.check_condition("steps.a.label ==").is_err());
    }

    #[test]
    fn of_several_unknown_names_the_same_one_is_named_every_time() {
        let templates = Templates::default();
        for _ in 0..20 {
            let err = templates.check("{{ zeta }}{{ beta }}{{ alpha }}{{ gamma }}").unwrap_err();
            assert!(err.to_string().contains("`alpha`"), "{err}");
            let err = templates.check_condition("zeta or beta or alpha").unwrap_err();
            assert!(err.to_string().contains("`alpha`"), "{err}");
        }
    }

    #[test]
    fn renders_text_and_conditions() {
        let templates = Templates::default();
        assert_eq!(
            templates.render("{{ input.prompt }}: {{ steps.draft.text | upper }}", &ctx()).unwrap(),
            "Write a haiku: HELLO"
        );
        assert!(templates.condition_holds("steps.draft.text == 'hello' and input.n > 2", &ctx()).unwrap());
        assert!(!templates.condition_holds("steps.missing.label == 'x'", &ctx()).unwrap());
    }

    #[test]
    fn output_templates_keep_json_types() {
        let output = json!({"n": "{{ input.n }}", "scores": "{{ steps.draft.scores }}", "line": "n={{ input.n }}", "gone": "{{ steps.skipped.text }}", "fixed": 7});
        let rendered = Templates::default().render_value(&output, &ctx()).unwrap();
        assert_eq!(rendered, json!({"n": 3, "scores": [1, 2], "line": "n=3", "gone": null, "fixed": 7}));
    }

    fn small() -> Templates {
        Templates::with_limits(RenderLimits { max_value_bytes: 1000, max_output_bytes: 2000 })
    }

    #[test]
    fn the_hostile_submission_from_the_issue_is_refused_before_it_compiles() {
        let source = r#"{% for i in [1,2,3,4,5,6,7,8,9,10,11,12] %}{{ "x" * 50000000 }}{% endfor %}"#;
        let err = Templates::default().check(source).unwrap_err();
        assert!(err.to_string().contains("`*` may only stand between names and numbers"), "{err}");
        for folded in [r#"{{ ("x" ~ "y") * 9 }}"#, r#"{{ 3 * "x" }}"#, "{{ [1] * 9 }}", "{{ x * (2) }}"] {
            assert!(Templates::default().check(folded).is_err(), "{folded} should be refused");
        }
        assert!(Templates::default().check_condition(r#"("x" * 99999999) == "y""#).is_err());
    }

    #[test]
    fn repetition_of_values_is_bounded_while_it_renders() {
        let ctx = TemplateContext { input: json!({"s": "ab", "n": 10_000, "k": 3}), ..TemplateContext::default() };
        let err = small().render("{{ input.s * input.n }}", &ctx).unwrap_err();
        assert!(err.to_string().contains("over the limit of 1000 bytes"), "{err}");
        assert!(err.is_too_large());
        assert!(!small().render("{{ input.s + 1 }}", &ctx).unwrap_err().is_too_large(), "a type error is a mistake");
        assert_eq!(small().render("{{ input.s * input.k }} {{ input.k * 2 }}", &ctx).unwrap(), "ababab 6");
    }

    #[test]
    fn doubling_a_string_stops_at_the_value_limit() {
        let ctx = TemplateContext { input: json!({"s": "0123456789"}), ..TemplateContext::default() };
        let doubling = "{% set a = input.s ~ input.s %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}\
                        {% set e = d ~ d %}{% set f = e ~ e %}{% set g = f ~ f %}{{ g | length }}";
        let err = small().render(doubling, &ctx).unwrap_err();
        assert!(err.to_string().contains("joined string would be over the limit"), "{err}");
        let adding = "{% set a = input.s + input.s %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}\
                      {% set e = d + d %}{% set f = e + e %}{% set g = f + f %}{{ g | length }}";
        assert!(small().render(adding, &ctx).is_err());
        assert_eq!(small().render("{{ input.s ~ '!' }} {{ 1 + 2 }}", &ctx).unwrap(), "0123456789! 3");
    }

    #[test]
    fn a_loop_stops_writing_at_the_output_limit_raw_text_included() {
        let ctx = ctx();
        let raw = format!("{{% for i in range(1000) %}}{}{{% endfor %}}", "y".repeat(100));
        let err = small().render(&raw, &ctx).unwrap_err();
        assert!(err.to_string().contains("rendered text would be over the limit of 2000 bytes"), "{err}");
        let emitted = "{% for i in range(1000) %}{{ steps.draft.text }}{% endfor %}";
        assert!(small().render(emitted, &ctx).is_err());
        assert_eq!(small().render("{% for i in range(3) %}-{{ i }}{% endfor %}", &ctx).unwrap(), "-0-1-2");
    }

    #[test]
    fn growing_filters_check_their_result_first() {
        let ctx =
            TemplateContext { input: json!({"s": "x".repeat(100), "list": vec!["abc"; 50]}), ..Default::default() };
        for hostile in [
            "{{ input.s | replace('x', input.s) }}",
            "{{ input.s | replace('', input.s) }}",
            "{{ input.list | join(input.s) }}",
            "{{ input.s | indent(100000) }}",
            "{{ input.list | tojson }}",
        ] {
            assert!(small().render(hostile, &ctx).is_err(), "{hostile} should be refused");
        }
        assert_eq!(
            small().render("{{ ['a', 'b'] | join(', ') }} {{ 'abc' | replace('b', 'B') }}", &ctx).unwrap(),
            "a, b aBc"
        );
        for unavailable in ["{{ '%s' | format(1) }}", "{{ input | pprint }}", "{{ debug() }}", "{{ namespace() }}"] {
            assert!(small().render(unavailable, &ctx).is_err(), "{unavailable} should not be available");
        }
        assert!(Templates::default().check("{% macro m() %}{% endmacro %}").is_err(), "no macros");
        assert!(Templates::default().check("{% include 'x' %}").is_err(), "no includes");
    }

    #[test]
    fn filters_sized_by_an_argument_are_bounded_by_it() {
        let ctx = ctx();
        for hostile in [
            "{{ [1] | slice(100000000) | length }}",
            "{{ [1] | slice(1000, 'padding') | length }}",
            "{{ [1] | batch(100000000, 'x') | length }}",
            "{{ [[[[[[[[1]]]]]]]] | tojson(100000000) | length }}",
            "{{ [[[[[[[[1]]]]]]]] | tojson(1000) | length }}",
            "{{ range(3) | tojson(100000000) | length }}",
        ] {
            let err = small().render(hostile, &ctx).unwrap_err();
            assert!(err.to_string().contains("would be over the limit"), "{hostile}: {err}");
        }
        assert_eq!(
            small().render("{{ [1, 2, 3] | slice(2) | list }} {{ [1, 2, 3] | batch(2, 0) | list }}", &ctx).unwrap(),
            "[[1, 2], [3]] [[1, 2], [3, 0]]"
        );
        assert_eq!(small().render("{{ {'a': [1]} | tojson(true) }}", &ctx).unwrap(), "{\n  \"a\": [\n    1\n  ]\n}");
    }

    #[test]
    fn conditions_and_sole_expressions_are_bounded_too() {
        let ctx = TemplateContext { input: json!({"s": "ab", "n": 100_000}), ..TemplateContext::default() };
        assert!(small().condition_holds("(input.s * input.n) | length > 1", &ctx).is_err());
        assert!(small().render_value(&json!("{{ input.s * input.n }}"), &ctx).is_err());
        assert_eq!(small().render_value(&json!("{{ input.s ~ input.s }}"), &ctx).unwrap(), json!("abab"));
    }

    #[test]
    fn inputs_minijinja_panics_on_fail_the_template_instead() {
        let ctx = TemplateContext { input: json!({"s": "", "list": []}), ..TemplateContext::default() };
        let templates = Templates::default();
        for source in ["{{ input.s[::-1] }}", "{{ [][::-1] }}", "{{ input.list[::-1] }}", "{{ 4 is divisibleby(0) }}"] {
            let err = templates.render(source, &ctx).unwrap_err();
            assert!(err.to_string().contains("the template engine failed"), "{source}: {err}");
        }
        assert!(templates.condition_holds("input.s[::-1] == ''", &ctx).is_err());
        // A slice is lazy: the condition's value panics only when it is read.
        assert!(templates.condition_holds("input.list[::-9223372036854775808]", &ctx).is_err());
        assert!(templates.render_value(&json!("{{ [][::-1] }}"), &ctx).is_err());
        assert!(templates.render_value(&json!({"x": "{{ 0 is divisibleby(0) }}"}), &ctx).is_err());
        // The same engine goes on rendering afterwards.
        assert_eq!(templates.render("{{ 'ab'[::-1] }}", &ctx).unwrap(), "ba");
        assert!(templates.condition_holds("9 is divisibleby(3)", &ctx).unwrap());
    }

    #[test]
    fn work_inside_filters_is_bounded_by_the_render_deadline() {
        // Each iteration is a few instructions of fuel but 100,000 additions inside `sum`.
        let busy = "{% for i in range(100000) %}{% set x = range(100000) | sum %}{% endfor %}";
        let started = std::time::Instant::now();
        let err = Templates::default().render(busy, &ctx()).unwrap_err();
        assert!(err.is_too_large() && err.to_string().contains("more work than 2 s"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "stopped at the deadline");
    }

    #[test]
    fn keyword_arguments_reach_the_bounded_and_timed_filters() {
        let templates = Templates::default();
        assert_eq!(templates.render("{{ [1] | tojson(indent=2) }}", &ctx()).unwrap(), "[\n  1\n]");
        assert_eq!(templates.render("{{ [3, 1, 2] | sort(reverse=true) | join(',') }}", &ctx()).unwrap(), "3,2,1");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let err = Templates::default()
            .render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &ctx());
        assert!(err.is_err());
    }
}
