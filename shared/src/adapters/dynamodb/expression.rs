//! Builds DynamoDB update and condition expressions with their placeholder maps, so the
//! store's methods read as "set this, on that condition" instead of string plumbing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

use crate::ports::PortError;

/// An `UpdateExpression` (`SET …` / `REMOVE …`) plus a `ConditionExpression`, sharing one
/// set of `#name` and `:value` placeholders.
#[derive(Debug, Default)]
pub(super) struct Expression {
    sets: Vec<String>,
    removes: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expression {
    /// `#attribute`, declared once. Every attribute goes through a name placeholder, so
    /// reserved words (`status`, `output`, `error`…) need no special care. A name that is not
    /// a valid placeholder (a map item's id as a map key: `summarize[3]`) gets a numbered one.
    pub(super) fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, name)| name.as_str() == attribute) {
            return placeholder.clone();
        }
        let plain = attribute.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let placeholder = if plain { format!("#{attribute}") } else { format!("#n{}", self.names.len()) };
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// A fresh `:vN` placeholder bound to `value`.
    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// A fresh placeholder for any serializable value.
    pub(super) fn serde_value(&mut self, value: &impl Serialize) -> Result<String, PortError> {
        Ok(self.value(to_attribute(value)?))
    }

    /// `SET #attribute = value`.
    pub(super) fn set(&mut self, attribute: &str, value: &impl Serialize) -> Result<(), PortError> {
        let name = self.name(attribute);
        let value = self.serde_value(value)?;
        self.sets.push(format!("{name} = {value}"));
        Ok(())
    }

    /// `SET …` with a right-hand side written by the caller (arithmetic, `list_append`).
    pub(super) fn set_raw(&mut self, clause: String) {
        self.sets.push(clause);
    }

    /// `SET #attribute = list_append(#attribute, items)` (the list exists from creation).
    pub(super) fn append(&mut self, attribute: &str, items: &impl Serialize) -> Result<(), PortError> {
        let name = self.name(attribute);
        let items = self.serde_value(items)?;
        self.sets.push(format!("{name} = list_append({name}, {items})"));
        Ok(())
    }

    pub(super) fn remove(&mut self, attribute: &str) {
        let name = self.name(attribute);
        self.removes.push(name);
    }

    /// `REMOVE path`, for a path written by the caller (a map entry: `#map.#key`).
    pub(super) fn remove_raw(&mut self, path: String) {
        self.removes.push(path);
    }

    /// Adds a clause that must hold (clauses are joined with AND). DynamoDB rejects
    /// redundant parentheses, so only a clause with an OR gets them.
    pub(super) fn require(&mut self, condition: String) {
        self.conditions.push(if condition.contains(" OR ") { format!("({condition})") } else { condition });
    }

    pub(super) fn update_expression(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.sets.is_empty() {
            parts.push(format!("SET {}", self.sets.join(", ")));
        }
        if !self.removes.is_empty() {
            parts.push(format!("REMOVE {}", self.removes.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    pub(super) fn condition_expression(&self) -> Option<String> {
        (!self.conditions.is_empty()).then(|| self.conditions.join(" AND "))
    }

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

pub(super) fn to_attribute(value: &impl Serialize) -> Result<AttributeValue, PortError> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|err| PortError::Corrupt { what: "DynamoDB item", detail: format!("cannot be written: {err}") })
}

pub(super) fn string(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn number(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
