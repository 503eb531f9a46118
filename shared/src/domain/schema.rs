//! The JSON Schemas users send (a workflow's `input_schema`, an `extract` step's `schema`),
//! compiled with bounds: a schema is at most [`MAX_SCHEMA_BYTES`] and [`MAX_SCHEMA_DEPTH`]
//! deep, a `pattern` may backtrack at most [`REGEX_BACKTRACK_LIMIT`] steps per match and
//! compile to at most [`REGEX_SIZE_LIMIT`] bytes, and nothing is fetched (no remote `$ref`:
//! the crate's resolvers are compiled out). Compiling and validating are CPU work: callers on
//! the async runtime run them on its blocking pool.

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

/// The largest schema, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The deepest nesting of objects and arrays in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Backtracking steps one `pattern` match may take before it fails.
pub const REGEX_BACKTRACK_LIMIT: usize = 100_000;
/// The compiled size of one `pattern` (and of its lazy DFA cache).
pub const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// Compiles `schema` within the bounds above; the error says what is wrong, for a client.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |text| text.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(format!("the schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES}"));
    }
    if depth(schema) > MAX_SCHEMA_DEPTH {
        return Err(format!("the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"));
    }
    let patterns = PatternOptions::fancy_regex()
        .backtrack_limit(REGEX_BACKTRACK_LIMIT)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT);
    jsonschema::options().with_pattern_options(patterns).build(schema).map_err(|err| err.to_string())
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_schema_too_large_or_too_deep_is_refused_with_its_limit() {
        let large = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(compile(&large).unwrap_err().contains("the limit is 65536"));
        let mut deep = json!({"type": "object"});
        for _ in 0..MAX_SCHEMA_DEPTH {
            deep = json!({"properties": {"a": deep}});
        }
        assert!(compile(&deep).unwrap_err().contains("nests deeper than 32"));
    }

    #[test]
    fn a_catastrophic_pattern_fails_its_match_instead_of_burning_cpu() {
        let validator = compile(&json!({"type": "string", "pattern": "^(a+)+\\1$"})).unwrap();
        let started = std::time::Instant::now();
        let hostile = json!(format!("{}b", "a".repeat(64)));
        // Over the backtrack limit the match errors, and the value is reported invalid.
        assert!(!validator.is_valid(&hostile));
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the match was cut short");
    }

    #[test]
    fn an_ordinary_schema_compiles_and_validates() {
        let validator =
            compile(&json!({"type": "object", "required": ["a"], "properties": {"a": {"pattern": "^x+$"}}})).unwrap();
        assert!(validator.is_valid(&json!({"a": "xxx"})));
        assert!(!validator.is_valid(&json!({"a": "y"})));
    }
}
