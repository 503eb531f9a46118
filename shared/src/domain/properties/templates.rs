//! Templates from the grammar in `strategies`, rendered against generated contexts: checking,
//! rendering, conditions and JSON templates never panic and always finish (fuel ends every
//! loop), a render is the same every time, and a JSON template keeps its shape.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::Value;

use super::strategies::{context, expression, json_template, template};
use super::{config, finishes};
use crate::domain::template::TemplateError;
use crate::domain::{TemplateContext, Templates};

static TEMPLATES: LazyLock<Templates> = LazyLock::new(Templates::default);

/// Whether `rendered` has the shape of `template`: the same arrays and objects, with the
/// same lengths and keys, and every non-string leaf unchanged.
fn same_shape(template: &Value, rendered: &Value) -> bool {
    match (template, rendered) {
        (Value::String(_), _) => true,
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_shape(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(key, a)| b.get(key).is_some_and(|b| same_shape(a, b)))
        }
        (a, b) => a == b,
    }
}

type Rendered = (Result<String, TemplateError>, Result<String, TemplateError>);

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn templates_check_and_render_without_panicking_and_always_finish(
        source in template(),
        ctx in context(),
    ) {
        let (checked, (first, second)) = finishes(move || -> (_, Rendered) {
            let checked = TEMPLATES.check(&source);
            (checked, (TEMPLATES.render(&source, &ctx), TEMPLATES.render(&source, &ctx)))
        })?;
        // Rendering is deterministic: a step retried, or a run resumed, renders the same text.
        prop_assert_eq!(first, second);
        // A refusal says why (it becomes a 422's detail at intake).
        if let Err(error) = checked {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn conditions_evaluate_without_panicking_and_always_finish(
        condition in expression(),
        ctx in context(),
    ) {
        let (checked, first, second) = finishes(move || {
            let checked = TEMPLATES.check_condition(&condition);
            (checked, TEMPLATES.condition_holds(&condition, &ctx), TEMPLATES.condition_holds(&condition, &ctx))
        })?;
        prop_assert_eq!(first, second);
        if let Err(error) = checked {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn json_templates_render_to_their_own_shape(output in json_template(), ctx in context()) {
        let template = output.clone();
        let (checked, rendered) = finishes(move || {
            (TEMPLATES.check_value(&output), TEMPLATES.render_value(&output, &ctx))
        })?;
        if let Ok(rendered) = rendered {
            prop_assert!(same_shape(&template, &rendered), "{template} rendered as {rendered}");
        }
        if let Err(error) = checked {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn an_empty_context_renders_like_any_other(source in template()) {
        // Before any step has run, every `steps.<id>` is undefined: the first steps of a run
        // render against exactly this.
        let ctx = TemplateContext::default();
        let (first, second) = finishes(move || (TEMPLATES.render(&source, &ctx), TEMPLATES.render(&source, &ctx)))?;
        prop_assert_eq!(first, second);
    }
}
