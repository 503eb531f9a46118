//! `local:extract`: fills a flat JSON Schema from `key: value` lines and values found in the text.

use serde_json::{Map, Value};

use super::text::find_word;
use crate::providers::ProviderError;

/// Fills the top-level `properties` of `schema` from the text. For each property, in order:
/// a `key: value` or `key = value` line whose key matches the property name (any case,
/// `_`/`-` and camelCase read as spaces), coerced to the property's type; then the text at
/// large, by what the property is: an `enum` value appearing in it, an email, URL or ISO date
/// (by `format` or by name), a number or boolean right after the property's name, or the only
/// number in play when the schema has a single numeric property. Properties not found are left
/// out; nested objects are not filled. Validation against the schema is the router's job.
pub(super) fn extract(text: &str, schema: Option<&Value>) -> Result<Value, ProviderError> {
    let properties = schema.and_then(|s| s.get("properties")).and_then(Value::as_object).ok_or_else(|| {
        ProviderError::InvalidRequest(
            "local:extract needs a JSON Schema object with `properties` in the step's `schema`".to_owned(),
        )
    })?;
    let lines = key_values(text);
    let lower = text.to_lowercase();
    let numeric_properties = properties.values().filter(|p| matches!(kind(p), "number" | "integer")).count();

    let mut data = Map::new();
    for (name, property) in properties {
        let key = normalize_key(name);
        let from_line = lines.iter().filter(|(k, _)| *k == key).find_map(|(_, value)| coerce(value, property));
        let found = from_line.or_else(|| search(text, &lower, &key, property, numeric_properties == 1));
        if let Some(value) = found {
            data.insert(name.clone(), value);
        }
    }
    Ok(Value::Object(data))
}

/// The property's JSON type: the first non-null one when `type` is a list; `string` for an
/// untyped property.
fn kind(property: &Value) -> &str {
    match property.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("string"),
        _ => "string",
    }
}

fn format(property: &Value) -> &str {
    property.get("format").and_then(Value::as_str).unwrap_or_default()
}

/// `first_name`, `first-name`, `firstName` and `First Name` all become `first name`.
fn normalize_key(key: &str) -> String {
    let mut spaced = String::with_capacity(key.len() + 4);
    let mut previous_lower = false;
    for c in key.chars() {
        if c.is_uppercase() && previous_lower {
            spaced.push(' ');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        spaced.push(if c == '_' || c == '-' { ' ' } else { c });
    }
    spaced.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `key: value` and `key = value` lines (bullets allowed), keys normalized.
fn key_values(text: &str) -> Vec<(String, &str)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches(['-', '*', '•']).trim_start();
            let split = line.find([':', '='])?;
            let (key, value) = (&line[..split], line[split + 1..].trim());
            let key = normalize_key(key);
            // A long "key" is a sentence that happens to contain a colon.
            (!key.is_empty() && key.len() <= 40 && !value.is_empty()).then_some((key, value))
        })
        .collect()
}

/// A `key: value` line's value as the property's type, or `None` when it is not one.
fn coerce(value: &str, property: &Value) -> Option<Value> {
    if let Some(options) = property.get("enum").and_then(Value::as_array) {
        return enum_value(&value.to_lowercase(), options);
    }
    match kind(property) {
        "number" | "integer" => number_value(numbers(value).next()?, kind(property)),
        "boolean" => boolean(value.split_whitespace().next()?).map(Value::Bool),
        "array" => {
            let items = property.get("items").cloned().unwrap_or(Value::Null);
            let values: Vec<Value> = value.split([',', ';']).filter_map(|item| coerce(item.trim(), &items)).collect();
            (!values.is_empty()).then_some(Value::Array(values))
        }
        "string" => match format(property) {
            "email" | "idn-email" => email(value).map(Value::from),
            "uri" | "url" | "iri" => url(value).map(Value::from),
            "date" => date(value).map(Value::from),
            "date-time" => date_time(value).map(Value::from),
            _ => {
                let unquoted = value.trim_matches(|c| c == '"' || c == '\'' || c == '`').trim();
                (!unquoted.is_empty()).then(|| Value::from(unquoted))
            }
        },
        // Objects and nulls are not filled from a line of text.
        _ => None,
    }
}

/// Looks for the property's value in the whole text, by its type, format and name.
fn search(text: &str, lower: &str, key: &str, property: &Value, only_number: bool) -> Option<Value> {
    if let Some(options) = property.get("enum").and_then(Value::as_array) {
        return enum_value(lower, options);
    }
    let named = |hints: &[&str]| hints.iter().any(|hint| key.split(' ').any(|part| part == *hint));
    match kind(property) {
        "string" => {
            let format = format(property);
            if matches!(format, "email" | "idn-email") || named(&["email", "mail"]) {
                email(text).map(Value::from)
            } else if matches!(format, "uri" | "url" | "iri") || named(&["url", "website", "link", "homepage"]) {
                url(text).map(Value::from)
            } else if format == "date-time" {
                date_time(text).map(Value::from)
            } else if format == "date" || named(&["date"]) {
                date(text).map(Value::from)
            } else {
                None
            }
        }
        kind @ ("number" | "integer") => {
            let after_name = after_word(text, lower, key).and_then(|rest| numbers(first_line(rest)).next());
            let value = after_name.or_else(|| if only_number { numbers(text).next() } else { None })?;
            number_value(value, kind)
        }
        "boolean" => {
            let rest = after_word(text, lower, key)?;
            first_line(rest)
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .take(3)
                .find_map(boolean)
                .map(Value::Bool)
        }
        _ => None,
    }
}

/// The text after the first whole-word occurrence of `key`.
fn after_word<'t>(text: &'t str, lower: &str, key: &str) -> Option<&'t str> {
    let at = find_word(lower, key)?;
    // Lowercasing can change byte lengths (rarely); only slice when the offsets still agree.
    (lower.len() == text.len()).then(|| &text[at + key.len()..])
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The enum option that appears earliest in `lower` as a whole word (string options), or that
/// `lower` is, read as JSON (numbers, booleans: only a `key: value` line is that short).
fn enum_value(lower: &str, options: &[Value]) -> Option<Value> {
    let parsed: Option<Value> = serde_json::from_str(lower.trim()).ok();
    let equals = |option: &Value| match (&parsed, option) {
        // `3` and `3.0` are the same enum value.
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(value), option) => value == option,
        (None, _) => false,
    };
    options
        .iter()
        .filter_map(|option| match option {
            Value::String(s) => find_word(lower, &s.to_lowercase()).map(|at| (at, option)),
            other => equals(other).then_some((0, option)),
        })
        .min_by_key(|(at, _)| *at)
        .map(|(_, option)| option.clone())
}

fn number_value(value: f64, kind: &str) -> Option<Value> {
    let integral = value.fract() == 0.0 && value.abs() < 9.0e15;
    if integral {
        // Whole numbers print as `3`, not `3.0`, whatever the declared type.
        return Some(Value::from(value as i64));
    }
    if kind == "integer" { None } else { serde_json::Number::from_f64(value).map(Value::Number) }
}

/// Plain numbers among whitespace-separated words: `42`, `-3.5`, `1,234.50`, `$19.99`, `15%`.
/// Dates, phone numbers and versions are not numbers here.
fn numbers(text: &str) -> impl Iterator<Item = f64> + '_ {
    text.split_whitespace().filter_map(|word| {
        let word = word
            .trim_start_matches(['$', '€', '£', '(', '"', '\''])
            .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '%', '"', '\'']);
        let digits = word.replace(',', "");
        let plain = digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
            && digits.chars().any(|c| c.is_ascii_digit());
        if plain { digits.parse().ok() } else { None }
    })
}

fn boolean(word: &str) -> Option<bool> {
    match word.to_lowercase().trim_matches(|c: char| !c.is_alphanumeric()) {
        "yes" | "true" | "y" => Some(true),
        "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// Whitespace-separated words with surrounding punctuation trimmed.
fn bare_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | '"' | ',' | ';'))
        .map(|word| word.trim_end_matches(['.', ':', '!', '?', '\'']))
        .filter(|word| !word.is_empty())
}

fn email(text: &str) -> Option<&str> {
    bare_words(text).map(|w| w.trim_start_matches("mailto:")).find(|word| {
        let Some((local, domain)) = word.split_once('@') else {
            return false;
        };
        let local_ok = !local.is_empty() && local.chars().all(|c| c.is_alphanumeric() || "._%+-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        local_ok && domain_ok
    })
}

fn url(text: &str) -> Option<&str> {
    bare_words(text)
        .filter(|word| word.starts_with("http://") || word.starts_with("https://"))
        .find(|word| url::Url::parse(word).is_ok_and(|u| u.host().is_some()))
}

/// The first valid `YYYY-MM-DD` date not glued to other digits.
fn date(text: &str) -> Option<&str> {
    date_starts(text).map(|at| &text[at..at + 10]).find(|date| date.parse::<jiff::civil::Date>().is_ok())
}

/// An RFC 3339 timestamp (with its offset) starting where a date does.
fn date_time(text: &str) -> Option<&str> {
    date_starts(text).find_map(|at| {
        let word = text[at..].split_whitespace().next()?.trim_end_matches(['.', ',', ';', ')', '"', '\'']);
        word.parse::<jiff::Timestamp>().is_ok().then_some(word)
    })
}

/// Byte offsets of `dddd-dd-dd` not glued to other digits. The ten bytes are ASCII, so both
/// ends are char boundaries.
fn date_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(9)).filter(move |&i| {
        let shape = bytes[i..i + 10]
            .iter()
            .enumerate()
            .all(|(j, b)| if j == 4 || j == 7 { *b == b'-' } else { b.is_ascii_digit() });
        let glued_before = i > 0 && bytes[i - 1].is_ascii_digit();
        let glued_after = bytes.get(i + 10).is_some_and(u8::is_ascii_digit);
        shape && !glued_before && !glued_after
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{Task, TaskOutput};
    use crate::providers::TaskRequest;
    use crate::providers::local::tests::{call, with_input};

    fn extract_with(schema: Value, text: &str) -> Value {
        extract(text, Some(&schema)).unwrap()
    }

    #[tokio::test]
    async fn given_a_schema_when_extracting_then_found_values_are_filled_and_missing_ones_omitted() {
        let schema = json!({
            "type": "object",
            "properties": {
                "customer_name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
                "amount": {"type": "number"},
                "priority": {"type": "string", "enum": ["low", "medium", "high"]},
                "phone": {"type": "string"}
            }
        });
        let text = "Customer Name: Ada Lovelace\nPlease reply to ada@example.com. \
                    It is HIGH priority; the amount is $1,250.50 in total.";
        let request = TaskRequest { schema: Some(schema), ..with_input(Task::Extract, text) };
        let output = call("extract", &request).await.unwrap().output;
        assert_eq!(
            output,
            TaskOutput::Extract {
                data: json!({
                    "customer_name": "Ada Lovelace",
                    "email": "ada@example.com",
                    "amount": 1250.5,
                    "priority": "high"
                })
            }
        );
    }

    #[test]
    fn given_key_value_lines_when_extracting_then_values_are_coerced_to_the_property_types() {
        let schema = json!({"properties": {
            "orderId": {"type": "integer"},
            "express": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "due": {"type": "string", "format": "date"},
            "site": {"type": "string", "format": "uri"}
        }});
        let text = "- Order ID = 42\n* express: yes\ntags: red, green\n\
                    due: by 2024-03-05 latest\nsite: <https://example.com/x>.";
        assert_eq!(
            extract_with(schema, text),
            json!({"orderId": 42, "express": true, "tags": ["red", "green"], "due": "2024-03-05",
                   "site": "https://example.com/x"})
        );
    }

    #[test]
    fn given_free_text_when_extracting_then_numbers_follow_their_names_and_dates_urls_are_found() {
        let schema = json!({"properties": {
            "age": {"type": "integer"},
            "height": {"type": "number"},
            "signup_date": {"type": "string"},
            "website": {"type": "string"},
            "created": {"type": "string", "format": "date-time"},
            "verified": {"type": "boolean"}
        }});
        let text = "Height 1.82 m and age 37. Signed up 2023-11-02, see https://ada.dev. \
                    Created 2023-11-02T10:00:00Z. Verified: no";
        assert_eq!(
            extract_with(schema, text),
            json!({"age": 37, "height": 1.82, "signup_date": "2023-11-02", "website": "https://ada.dev",
                   "created": "2023-11-02T10:00:00Z", "verified": false})
        );
    }

    #[test]
    fn given_non_string_enums_when_extracting_then_only_an_exact_value_line_fills_them() {
        let schema = json!({"properties": {"stars": {"enum": [1, 2, 3]}, "tier": {"enum": ["gold", 0]}}});
        assert_eq!(extract_with(schema.clone(), "stars: 3.0\ntier: Gold member"), json!({"stars": 3, "tier": "gold"}));
        assert_eq!(extract_with(schema, "I give it 3 stars"), json!({}));
    }

    #[test]
    fn given_an_unlabelled_number_when_several_numeric_properties_exist_then_none_is_guessed() {
        let schema = json!({"properties": {"a": {"type": "number"}, "b": {"type": "number"}}});
        assert_eq!(extract_with(schema, "The total came to 12."), json!({}));
        let schema = json!({"properties": {"total": {"type": "number"}}});
        assert_eq!(extract_with(schema, "It came to 12."), json!({"total": 12}));
    }

    #[tokio::test]
    async fn given_no_schema_properties_when_extracting_then_the_request_is_invalid() {
        let request = TaskRequest { schema: Some(json!({"type": "string"})), ..with_input(Task::Extract, "x") };
        let err = call("extract", &request).await.unwrap_err();
        assert!(matches!(err, ProviderError::InvalidRequest(_)), "{err:?}");
    }
}
