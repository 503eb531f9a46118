//! Templates and `when` conditions, both through minijinja: `{{ input.x }}` and
//! `{{ steps.<id>.<field> }}` in prompts, inputs and outputs, plain expressions in `when`.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use thiserror::Error;

/// The names a template may start from.
const ROOTS: [&str; 2] = ["input", "steps"];

/// Bounds the work one template may do, so a hostile loop cannot pin a worker.
const FUEL: u64 = 200_000;

/// A template that does not parse, refers to something unknown, or fails while rendering.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl From<minijinja::Error> for TemplateError {
    fn from(err: minijinja::Error) -> Self {
        let mut message = err.kind().to_string();
        if let Some(detail) = err.detail() {
            message = format!("{message}: {detail}");
        }
        if let Some(line) = err.line() {
            message = format!("{message} (line {line})");
        }
        Self(message)
    }
}

/// What a template reads: the steps it references by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub steps: BTreeSet<String>,
}

/// The values templates see: the run's `input` and the outputs of finished steps.
#[derive(Debug, Default, Clone)]
pub struct TemplateContext {
    pub input: Value,
    pub steps: BTreeMap<String, Value>,
}

impl TemplateContext {
    fn to_value(&self) -> minijinja::Value {
        minijinja::context! {
            input => minijinja::Value::from(Serde(&self.input)),
            steps => minijinja::Value::from(Serde(&self.steps)),
        }
    }
}

/// The template engine, configured once: undefined values chain (so `steps.skipped.text`
/// renders empty instead of failing) and every render is bounded by fuel.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        Self { env }
    }
}

impl Templates {
    /// Parses a template and lists the steps it references.
    pub fn check(&self, source: &str) -> Result<References, TemplateError> {
        let template = self.env.template_from_str(source)?;
        references(template.undeclared_variables(true))
    }

    /// Parses a `when` condition and lists the steps it references.
    pub fn check_condition(&self, expression: &str) -> Result<References, TemplateError> {
        let compiled = self.env.compile_expression(expression)?;
        references(compiled.undeclared_variables(true))
    }

    pub fn render(&self, source: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
        Ok(self.env.render_str(source, ctx.to_value())?)
    }

    pub fn condition_holds(&self, expression: &str, ctx: &TemplateContext) -> Result<bool, TemplateError> {
        let compiled = self.env.compile_expression(expression)?;
        Ok(compiled.eval(ctx.to_value())?.is_true())
    }

    /// Renders every string inside `value`. A string that is exactly one `{{ expression }}`
    /// becomes the expression's value with its JSON type (numbers, lists, objects survive).
    pub fn render_value(&self, value: &Value, ctx: &TemplateContext) -> Result<Value, TemplateError> {
        let ctx_value = ctx.to_value();
        self.render_value_with(value, &ctx_value)
    }

    /// Checks every string inside a JSON template (such as the workflow `output`).
    pub fn check_value(&self, value: &Value) -> Result<References, TemplateError> {
        let mut all = References::default();
        for source in strings(value) {
            all.steps.extend(self.check(source)?.steps);
        }
        Ok(all)
    }

    fn render_value_with(&self, value: &Value, ctx: &minijinja::Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(source) => match sole_expression(source) {
                Some(expression) => {
                    let result = self.env.compile_expression(expression)?.eval(ctx.clone())?;
                    if result.is_undefined() {
                        Value::Null
                    } else {
                        serde_json::to_value(&result).map_err(|e| TemplateError(e.to_string()))?
                    }
                }
                None => Value::String(self.env.render_str(source, ctx.clone())?),
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
    for variable in variables {
        let mut parts = variable.split('.');
        let root = parts.next().unwrap_or_default();
        if !ROOTS.contains(&root) {
            return Err(TemplateError(format!(
                "unknown variable `{root}`: templates can use `input` and `steps.<id>`"
            )));
        }
        if root == "steps" {
            match parts.next() {
                Some(step) => {
                    refs.steps.insert(step.to_owned());
                }
                None => {
                    return Err(TemplateError("refer to other steps by name, as `steps.<id>.<field>`".to_owned()));
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
        }
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

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let err = Templates::default()
            .render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &ctx());
        assert!(err.is_err());
    }
}
