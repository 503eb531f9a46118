//! Registered workflows, the part without I/O: a tenant's named definitions are stored as
//! immutable versions (1, 2, 3…), each with a content hash; a submission names one as `triage`
//! (the latest version) or `triage@3`, and the run records which version and hash it ran. The
//! store is the `WorkflowRegistry` port.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use utoipa::ToSchema;

use super::definition::WorkflowDefinition;
use super::ids::WorkflowName;

/// The registered workflow version a run was started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRef {
    #[schema(value_type = String, example = "triage", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: WorkflowName,
    #[schema(minimum = 1, example = 3)]
    pub version: u32,
    /// SHA-256, in hex, of the version's definition in canonical JSON.
    #[schema(example = "5b0e7b1f6a0b5d1c1d4e3a0c9a7c6d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718")]
    pub hash: String,
}

/// How many versions one workflow, and how many workflows one tenant, may have. Registered
/// workflows never expire, so what a tenant can store is bounded here (the README lists it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    pub max_versions: u32,
    pub max_workflows: u32,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self { max_versions: 1_000, max_workflows: 1_000 }
    }
}

/// A registered workflow as a submission names it: `name` for its latest version, or
/// `name@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSelector {
    pub name: WorkflowName,
    /// `None`: the latest version.
    pub version: Option<u32>,
}

/// Why a string does not name a registered workflow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{0} is not a workflow reference: use a registered workflow's name (a lowercase letter or digit, then up to 63 lowercase letters, digits, `_` or `-`), optionally with `@` and a version number, as in `triage` or `triage@3`"
)]
pub struct InvalidSelector(String);

/// The longest reference quoted back in an error: a submission's `workflow` string may be
/// megabytes long.
const QUOTED_MAX_CHARS: usize = 80;

impl WorkflowSelector {
    pub fn parse(raw: &str) -> Result<Self, InvalidSelector> {
        let invalid = || {
            let quoted = if raw.chars().count() <= QUOTED_MAX_CHARS { format!("`{raw}`") } else { "this".to_owned() };
            InvalidSelector(quoted)
        };
        let (name, version) = match raw.split_once('@') {
            Some((name, version)) => (name, Some(parse_version(version).ok_or_else(invalid)?)),
            None => (raw, None),
        };
        let name = WorkflowName::parse(name).map_err(|_| invalid())?;
        Ok(Self { name, version })
    }
}

impl fmt::Display for WorkflowSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => write!(f, "{}@{version}", self.name),
            None => f.write_str(self.name.as_str()),
        }
    }
}

/// A version number as a reference or a URL path writes it: 1 to 999,999,999, digits only, no
/// leading zero, so that each version has one spelling (and every spelling fits a `u32`).
pub fn parse_version(raw: &str) -> Option<u32> {
    let well_formed =
        (1..=9).contains(&raw.len()) && raw.bytes().all(|byte| byte.is_ascii_digit()) && !raw.starts_with('0');
    if well_formed { raw.parse().ok() } else { None }
}

/// The content hash of a definition: SHA-256, in hex, of its canonical JSON — the parsed
/// definition serialized, so members come in declaration order, defaults are left out and
/// the maps inside (schemas, `output`) have their keys sorted (serde_json's map is ordered,
/// without its `preserve_order` feature). Two registrations that differ only in formatting,
/// member order or spelled-out defaults hash alike.
pub fn definition_hash(definition: &WorkflowDefinition) -> String {
    // A definition has string keys and finite numbers only, so serializing cannot fail.
    let canonical = serde_json::to_vec(definition).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition(value: serde_json::Value) -> WorkflowDefinition {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn references_name_a_workflow_and_maybe_a_version() {
        let latest = WorkflowSelector::parse("triage").unwrap();
        assert_eq!((latest.name.as_str(), latest.version), ("triage", None));
        let third = WorkflowSelector::parse("triage@3").unwrap();
        assert_eq!((third.name.as_str(), third.version), ("triage", Some(3)));
        assert_eq!(third.to_string(), "triage@3");
        assert_eq!(WorkflowSelector::parse("a@999999999").unwrap().version, Some(999_999_999));
        for bad in ["", "Triage", "triage@", "triage@0", "triage@03", "triage@-1", "triage@+1", "triage@1@2", "@3"] {
            assert!(WorkflowSelector::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(WorkflowSelector::parse("a@1000000000").is_err(), "ten digits");
    }

    #[test]
    fn a_long_reference_is_not_quoted_back() {
        let long = "x".repeat(10_000);
        let err = WorkflowSelector::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 400 && err.starts_with("this is not"), "{err}");
        assert!(WorkflowSelector::parse("Bad").unwrap_err().to_string().starts_with("`Bad` is not"));
    }

    #[test]
    fn the_hash_ignores_formatting_member_order_and_written_out_defaults() {
        let step = json!({"id": "a", "task": "generate", "model": "local:echo", "prompt": "hi"});
        let plain = definition(json!({"steps": [step], "input_schema": {"type": "object", "required": ["x"]}}));
        let reordered = definition(json!({
            "input_schema": {"required": ["x"], "type": "object"},
            "steps": [{"prompt": "hi", "model": "local:echo", "task": "generate", "id": "a", "optional": false, "fallbacks": []}]
        }));
        assert_eq!(definition_hash(&plain), definition_hash(&reordered));
        assert_eq!(definition_hash(&plain).len(), 64);
        let changed =
            definition(json!({"steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "ho"}]}));
        assert_ne!(definition_hash(&plain), definition_hash(&changed));
    }
}
