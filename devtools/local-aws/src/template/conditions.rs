//! The template's `Conditions`, evaluated locally with the parameters' defaults: what a
//! function's `!If [Condition, a, b]` environment value means on the local stack. The
//! functions' environment uses them to give a function a credential, or only word that the
//! provider is on (`withheld`), depending on which parameters are set.

use serde_norway::Value;

use super::Template;
use super::intrinsics::{Expr, LocalResources};

/// Conditions naming conditions this deep are taken for a cycle.
const MAX_DEPTH: usize = 16;

impl Template {
    /// Whether the condition `name` holds locally.
    pub(super) fn condition(&self, name: &str, resources: &LocalResources) -> Result<bool, String> {
        self.named(name, resources, 0)
    }

    fn named(&self, name: &str, resources: &LocalResources, depth: usize) -> Result<bool, String> {
        if depth > MAX_DEPTH {
            return Err(format!("condition {name} refers to itself"));
        }
        let value = self.conditions.get(name).ok_or_else(|| format!("there is no condition {name}"))?;
        self.evaluate(value, resources, depth + 1).map_err(|message| format!("condition {name}: {message}"))
    }

    /// `!Equals [a, b]`, `!Not [c]`, `!And [...]`, `!Or [...]` and `!Condition name`, in short
    /// or long (`Fn::Equals`) form.
    fn evaluate(&self, value: &Value, resources: &LocalResources, depth: usize) -> Result<bool, String> {
        let (function, argument) = match value {
            Value::Tagged(tagged) => (tagged.tag.to_string().trim_start_matches('!').to_owned(), &tagged.value),
            Value::Mapping(mapping) if mapping.len() == 1 => match mapping.iter().next() {
                Some((Value::String(key), argument)) => (key.strip_prefix("Fn::").unwrap_or(key).to_owned(), argument),
                _ => return Err("a one-key mapping that is not a condition function".to_owned()),
            },
            other => return Err(format!("unsupported condition {other:?}")),
        };
        match (function.as_str(), argument) {
            ("Condition", Value::String(name)) => self.named(name, resources, depth),
            ("Equals", Value::Sequence(sides)) if sides.len() == 2 => {
                let side = |value: &Value| Expr::parse(value).and_then(|expr| self.resolve(&expr, resources));
                Ok(side(&sides[0])? == side(&sides[1])?)
            }
            ("Not", Value::Sequence(inner)) if inner.len() == 1 => Ok(!self.evaluate(&inner[0], resources, depth)?),
            ("And", Value::Sequence(all)) => {
                all.iter().try_fold(true, |held, one| Ok(held && self.evaluate(one, resources, depth)?))
            }
            ("Or", Value::Sequence(any)) => {
                any.iter().try_fold(false, |held, one| Ok(held || self.evaluate(one, resources, depth)?))
            }
            _ => Err(format!("!{function} in this form is not supported by the local stack")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const YAML: &str = r#"
Parameters:
  Key: {Type: String, Default: ""}
  Region: {Type: String, Default: eu-west-1}
Conditions:
  HasKey: !Not [!Equals [!Ref Key, ""]]
  NoKey: {"Fn::Equals": [{Ref: Key}, ""]}
  Both: !And [!Condition NoKey, !Equals [!Ref Region, eu-west-1]]
  Either: !Or [!Condition HasKey, !Condition Both]
  Loop: !Condition Loop
  Odd: !Join ["", []]
Resources:
  Table: {Type: AWS::DynamoDB::Table, Properties: {AttributeDefinitions: [], KeySchema: []}}
  Bucket: {Type: AWS::S3::Bucket}
"#;

    #[test]
    fn conditions_evaluate_against_the_parameters_defaults() {
        let template = Template::parse(YAML).unwrap();
        let resources = LocalResources::default();
        assert!(!template.condition("HasKey", &resources).unwrap());
        assert!(template.condition("NoKey", &resources).unwrap());
        assert!(template.condition("Both", &resources).unwrap());
        assert!(template.condition("Either", &resources).unwrap());
        assert!(template.condition("Loop", &resources).unwrap_err().contains("refers to itself"));
        assert!(template.condition("Odd", &resources).unwrap_err().contains("!Join"));
        assert!(template.condition("Nope", &resources).unwrap_err().contains("no condition Nope"));
    }
}
