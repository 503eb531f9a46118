//! Identifier newtypes that validate on construction, so the rest of the code never
//! re-checks a run id, step id, tenant or workflow name.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidId(String);

/// A run's id: `run_` followed by a ULID, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    const PREFIX: &'static str = "run_";

    /// A fresh id for a run created at `at`. Its 80 random bits come from the OS-seeded
    /// CSPRNG (rand's thread RNG): ids appear in URLs and blob keys, so knowing one run's id
    /// must not help guess another's.
    pub fn generate(at: jiff::Timestamp) -> Self {
        let millis = u64::try_from(at.as_millisecond()).unwrap_or_default();
        let ulid = ulid::Ulid::from_parts(millis, rand::random::<u128>());
        Self(format!("{}{}", Self::PREFIX, ulid.to_string().to_ascii_lowercase()))
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let valid = raw
            .strip_prefix(Self::PREFIX)
            .is_some_and(|rest| rest.len() == 26 && ulid::Ulid::from_string(rest).is_ok());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidId(format!("`{raw}` is not a run id (expected `run_` and 26 base32 characters)")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A step's id inside one workflow: `[a-z][a-z0-9_]{0,63}` so it can be used in templates
/// as `steps.<id>` without quoting. The engine also names each item of a map step with it:
/// `summarize[3]` is item 3 of step `summarize` (never an id a workflow may define), so an
/// item is stored, claimed, queued and followed up like any step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepId(String);

impl StepId {
    pub const MAX_LEN: usize = 64;

    /// A step id as a workflow writes it, or a map item's id (`summarize[3]`).
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        match raw.strip_suffix(']').and_then(|rest| rest.split_once('[')) {
            Some((step, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                index.parse::<u32>().map_err(|_| InvalidId(format!("`{raw}` is not a valid map item id")))?;
                Self::parse_defined(step).map(|_| Self(raw.to_owned()))
            }
            _ => Self::parse_defined(raw),
        }
    }

    /// A step id as a workflow writes it (no item suffix).
    fn parse_defined(raw: &str) -> Result<Self, InvalidId> {
        let mut chars = raw.chars();
        let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if starts_well && rest_ok && raw.len() <= Self::MAX_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidId(format!(
                "`{raw}` is not a valid step id: use a lowercase letter followed by up to 63 lowercase letters, digits or underscores"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of item `index` of this map step.
    pub fn item(&self, index: u32) -> StepId {
        Self(format!("{}[{index}]", self.0))
    }

    /// For a map item's id, its map step and index; `None` for a step's own id.
    pub fn map_item(&self) -> Option<(StepId, u32)> {
        let (step, index) = self.0.strip_suffix(']')?.split_once('[')?;
        Some((Self(step.to_owned()), index.parse().ok()?))
    }

    /// Whether this names an item of a map step rather than a step of a workflow.
    pub fn is_item(&self) -> bool {
        self.0.ends_with(']')
    }
}

/// The tenant a run belongs to; every read and write is scoped by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidId(format!("`{raw}` is not a valid tenant name: use 1 to 64 letters, digits, `-` or `_`")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registered workflow's name, unique per tenant: `[a-z0-9][a-z0-9_-]{0,63}`, so it sits in
/// a URL path (`/v1/workflows/{name}`) and a reference (`triage@3`) without escaping, and
/// cannot hold the `#` that separates parts of the table's keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkflowName(String);

impl WorkflowName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let mut chars = raw.chars();
        let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if starts_well && rest_ok && raw.len() <= Self::MAX_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidId(format!(
                "`{raw}` is not a valid workflow name: use a lowercase letter or digit followed by up to 63 lowercase letters, digits, `_` or `-`"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_conversions {
    ($($ty:ident),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = InvalidId;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }
        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
string_newtype_conversions!(RunId, StepId, TenantId, WorkflowName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_round_trip_and_sort_by_time() {
        let early = RunId::generate(jiff::Timestamp::from_millisecond(1_000).unwrap());
        let late = RunId::generate(jiff::Timestamp::from_millisecond(2_000).unwrap());
        assert!(early < late);
        assert_eq!(RunId::parse(early.as_str()).unwrap(), early);
        assert!(RunId::parse("run_nope").is_err());
        assert!(RunId::parse("xyz").is_err());
    }

    #[test]
    fn step_ids_are_template_friendly() {
        assert!(StepId::parse("draft_2").is_ok());
        for bad in
            ["", "Draft", "2draft", "dra-ft", "a.b", &"a".repeat(65), "a[]", "a[x]", "[1]", "a[1]b", "a[99999999999]"]
        {
            assert!(StepId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn map_items_are_named_after_their_step_and_index() {
        let step = StepId::parse("summarize").unwrap();
        let item = step.item(42);
        assert_eq!(item.as_str(), "summarize[42]");
        assert_eq!(StepId::parse("summarize[42]").unwrap(), item);
        assert_eq!(item.map_item(), Some((step.clone(), 42)));
        assert!(item.is_item() && !step.is_item());
        assert_eq!(step.map_item(), None);
    }

    #[test]
    fn workflow_names_fit_a_path_and_a_key() {
        for good in ["triage", "2fa-check", "a", "a_b-c", &"a".repeat(64)] {
            assert!(WorkflowName::parse(good).is_ok(), "{good} should be accepted");
        }
        for bad in ["", "Triage", "-a", "_a", "a.b", "a#b", "a@3", "a b", "é", &"a".repeat(65)] {
            assert!(WorkflowName::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
