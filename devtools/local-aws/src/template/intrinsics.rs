//! CloudFormation values as the template writes them: YAML scalars and the intrinsic functions
//! the local stack understands (`!Ref`, `!GetAtt`, one-argument `!Sub`, `!If` on a condition
//! of the template, in short and long form), and what they resolve to against the resources
//! created locally.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::Template;

/// A value that may be a CloudFormation intrinsic: what the functions' environment is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Literal(String),
    /// `!Ref X` / `{Ref: X}`.
    Ref(String),
    /// `!GetAtt X.Attr` / `!GetAtt [X, Attr]` / `{Fn::GetAtt: ...}`.
    GetAtt {
        resource: String,
        attribute: String,
    },
    /// `!Sub "...${X}...${X.Attr}..."` (the one-argument form).
    Sub(String),
    /// `!If [Condition, then, otherwise]`.
    If {
        condition: String,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
}

/// What the template's references mean locally: `!Ref X` and `!GetAtt X.Attr` for each
/// resource created, plus pseudo parameters such as `AWS::Region`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalResources {
    refs: BTreeMap<String, String>,
    /// Keyed `Logical.Attribute`, as `!GetAtt` writes it.
    attributes: BTreeMap<String, String>,
}

impl LocalResources {
    pub fn insert_ref(&mut self, logical_id: &str, value: impl Into<String>) {
        self.refs.insert(logical_id.to_owned(), value.into());
    }

    pub fn insert_attribute(&mut self, logical_id: &str, attribute: &str, value: impl Into<String>) {
        self.attributes.insert(format!("{logical_id}.{attribute}"), value.into());
    }

    /// What `!Ref logical_id` is locally.
    pub fn reference(&self, logical_id: &str) -> Option<&str> {
        self.refs.get(logical_id).map(String::as_str)
    }

    /// What `!GetAtt logical_id.attribute` is locally.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> Option<&str> {
        self.attributes.get(&format!("{logical_id}.{attribute}")).map(String::as_str)
    }
}

impl Template {
    pub(super) fn resolve(&self, expr: &Expr, resources: &LocalResources) -> Result<String, String> {
        match expr {
            Expr::Literal(text) => Ok(text.clone()),
            Expr::Ref(name) => self.reference(name, resources),
            Expr::GetAtt { resource, attribute } => resources
                .attribute(resource, attribute)
                .map(str::to_owned)
                .ok_or_else(|| format!("!GetAtt {resource}.{attribute} has no local value")),
            Expr::Sub(text) => self.substitute(text, resources),
            Expr::If { condition, then, otherwise } => {
                let branch = if self.condition(condition, resources)? { then } else { otherwise };
                self.resolve(branch, resources)
            }
        }
    }

    fn reference(&self, name: &str, resources: &LocalResources) -> Result<String, String> {
        self.parameters
            .get(name)
            .map(String::as_str)
            .or_else(|| resources.reference(name))
            .map(str::to_owned)
            .ok_or_else(|| format!("!Ref {name} has no local value"))
    }

    /// `${Name}` is a `!Ref`, `${Name.Attr}` a `!GetAtt`, `${!Literal}` stays `${Literal}`.
    fn substitute(&self, text: &str, resources: &LocalResources) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in !Sub {text:?}"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some((resource, attribute)) = name.split_once('.') {
                let value = resources
                    .attribute(resource, attribute)
                    .ok_or_else(|| format!("${{{name}}} in !Sub has no local value"))?;
                out.push_str(value);
            } else {
                out.push_str(&self.reference(name, resources)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Expr {
    /// Reads a scalar or an intrinsic, in short (`!Ref X`) or long (`{Ref: X}`) form.
    pub(super) fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                Self::intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(mapping) if mapping.len() == 1 => {
                let Some((Value::String(key), argument)) = mapping.iter().next() else {
                    return Err("a one-key mapping that is not an intrinsic function".to_owned());
                };
                let name = if key == "Ref" { key.as_str() } else { key.strip_prefix("Fn::").unwrap_or(key) };
                Self::intrinsic(name, argument)
            }
            other => scalar_text(other).map(Expr::Literal).ok_or_else(|| format!("unsupported value {other:?}")),
        }
    }

    fn intrinsic(name: &str, argument: &Value) -> Result<Self, String> {
        match (name, argument) {
            ("Ref", Value::String(target)) => Ok(Expr::Ref(target.clone())),
            ("GetAtt", Value::String(path)) => match path.split_once('.') {
                Some((resource, attribute)) => {
                    Ok(Expr::GetAtt { resource: resource.to_owned(), attribute: attribute.to_owned() })
                }
                None => Err(format!("!GetAtt {path} names no attribute")),
            },
            ("GetAtt", Value::Sequence(items)) => match items.as_slice() {
                [Value::String(resource), Value::String(attribute)] => {
                    Ok(Expr::GetAtt { resource: resource.clone(), attribute: attribute.clone() })
                }
                _ => Err("!GetAtt takes [resource, attribute]".to_owned()),
            },
            ("Sub", Value::String(text)) => Ok(Expr::Sub(text.clone())),
            ("If", Value::Sequence(items)) => match items.as_slice() {
                [Value::String(condition), then, otherwise] => Ok(Expr::If {
                    condition: condition.clone(),
                    then: Box::new(Self::parse(then)?),
                    otherwise: Box::new(Self::parse(otherwise)?),
                }),
                _ => Err("!If takes [condition, value if true, value if false]".to_owned()),
            },
            _ => Err(format!("!{name} in this form is not supported by the local stack")),
        }
    }
}

/// A YAML scalar as the string CloudFormation would pass on (`30` → "30").
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::template::tests::{fake_resources, real_template};

    #[test]
    fn intrinsics_parse_in_short_and_long_form() {
        let yaml = r#"
            a: !Ref Table
            b: {Ref: Table}
            c: !GetAtt Queue.Arn
            d: !GetAtt [Queue, Arn]
            e: {"Fn::GetAtt": [Queue, Arn]}
            f: !Sub "${Bucket.Arn}/x/${Table}/${!Literal}"
            g: 42
            h: !If [HasAlarmTopic, !Ref AlarmTopicArn, none]
            i: !Join ["", [a, b]]
        "#;
        let values: BTreeMap<String, Value> = serde_norway::from_str(yaml).unwrap();
        let parse = |key: &str| Expr::parse(&values[key]);
        let get_att = Expr::GetAtt { resource: "Queue".to_owned(), attribute: "Arn".to_owned() };
        assert_eq!(parse("a").unwrap(), Expr::Ref("Table".to_owned()));
        assert_eq!(parse("b").unwrap(), Expr::Ref("Table".to_owned()));
        assert_eq!(parse("c").unwrap(), get_att);
        assert_eq!(parse("d").unwrap(), get_att);
        assert_eq!(parse("e").unwrap(), get_att);
        assert_eq!(parse("g").unwrap(), Expr::Literal("42".to_owned()));
        assert!(parse("i").unwrap_err().contains("!Join"));

        let template = real_template();
        let resources = fake_resources(&template);
        assert_eq!(
            template.resolve(&parse("f").unwrap(), &resources).unwrap(),
            "arn:aws:s3:::chorus-bucket/x/chorus-table/${Literal}"
        );
        // The real template's HasAlarmTopic is false with the parameter's empty default.
        assert_eq!(template.resolve(&parse("h").unwrap(), &resources).unwrap(), "none");
        let unknown = Expr::Ref("Nope".to_owned());
        assert!(template.resolve(&unknown, &resources).unwrap_err().contains("Nope"));
    }
}
