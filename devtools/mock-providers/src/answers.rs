//! The deterministic answers every mock provider gives, whatever its wire format: the same
//! input always gets the same output, so tests can assert on it. Chat answers read the task
//! from the system prompts `chorus::providers::chat` writes.

use serde_json::{Map, Value, json};

/// Words that make the mock sentiment models answer NEGATIVE.
const NEGATIVE_WORDS: [&str; 12] =
    ["bad", "terrible", "awful", "broken", "hate", "poor", "worst", "angry", "refund", "slow", "disappointed", "not"];

/// Token count the mocks report: about four characters a token, at least one.
pub fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// A chat model's answer to `user` under `system`, shaped like what the task asks for.
pub fn chat(model: &str, system: Option<&str>, user: &str) -> String {
    let system = system.unwrap_or_default();
    if system.starts_with("Summarize") {
        return summary(user);
    }
    if let Some(rest) = system.strip_prefix("Classify the user's text with exactly one of these labels: ") {
        let labels: Vec<&str> = rest.split(". Answer").next().unwrap_or_default().split(", ").collect();
        let (label, confidence) = choose_label(&labels, user);
        return json!({"label": label, "confidence": confidence}).to_string();
    }
    if system.starts_with("Extract data") {
        let schema = system.split_once('\n').and_then(|(_, schema)| serde_json::from_str(schema).ok());
        return extraction(schema.as_ref(), user).to_string();
    }
    let excerpt: String = user.chars().take(80).collect();
    format!("[{model}] {excerpt}")
}

/// The first sentence of `text` (at most 200 characters).
pub fn summary(text: &str) -> String {
    let text = text.trim();
    let end = text.find(". ").map_or(text.len(), |i| i + 1);
    text[..end].chars().take(200).collect()
}

/// SST-2 style sentiment: NEGATIVE when the text has a negative word, else POSITIVE.
pub fn sentiment(text: &str) -> (&'static str, f64) {
    let lower = text.to_lowercase();
    let negative = lower.split(|c: char| !c.is_alphanumeric()).any(|word| NEGATIVE_WORDS.contains(&word));
    if negative { ("NEGATIVE", 0.97) } else { ("POSITIVE", 0.98) }
}

/// One of `labels`: by sentiment when they are POSITIVE/NEGATIVE, else the first label the
/// text mentions, else the first.
pub fn choose_label<'a>(labels: &[&'a str], text: &str) -> (&'a str, f64) {
    let (mood, confidence) = sentiment(text);
    if let Some(label) = labels.iter().find(|l| l.eq_ignore_ascii_case(mood)) {
        return (label, confidence);
    }
    let lower = text.to_lowercase();
    let mentioned = labels.iter().find(|l| lower.contains(&l.to_lowercase()));
    match mentioned.or(labels.first()) {
        Some(label) => (label, 0.9),
        None => ("", 0.0),
    }
}

/// An object for `schema`'s top-level properties: strings from `key: value` lines (else the
/// text's first word), numbers from the first number in the text, booleans true.
pub fn extraction(schema: Option<&Value>, text: &str) -> Value {
    let mut data = Map::new();
    let properties = schema.and_then(|s| s.get("properties")).and_then(Value::as_object);
    for (name, property) in properties.into_iter().flatten() {
        let line_value = text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        });
        let number =
            || text.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).and_then(|s| s.parse::<i64>().ok());
        let value = match property.get("type").and_then(Value::as_str) {
            Some("integer" | "number") => {
                json!(line_value.and_then(|v| v.parse::<i64>().ok()).or_else(number).unwrap_or(0))
            }
            Some("boolean") => json!(true),
            _ => json!(line_value.unwrap_or_else(|| text.split_whitespace().next().unwrap_or_default().to_owned())),
        };
        data.insert(name.clone(), value);
    }
    Value::Object(data)
}

/// A unit-length vector of `dims` from hashing the text's words: equal texts, equal vectors.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut vector = vec![0.0_f32; dims.max(1)];
    for word in text.split_whitespace() {
        let hash =
            word.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let slot = (hash % vector.len() as u64) as usize;
        vector[slot] += if hash & 1 == 0 { 1.0 } else { -1.0 };
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn given_each_task_prompt_when_answered_then_the_answer_has_the_task_shape() {
        let summary = chat("m", Some("Summarize the user's text in a few sentences."), "One. Two. Three.");
        assert_eq!(summary, "One.");
        let label = chat(
            "m",
            Some("Classify the user's text with exactly one of these labels: POSITIVE, NEGATIVE. Answer with JSON"),
            "This is terrible",
        );
        assert_eq!(serde_json::from_str::<Value>(&label).unwrap()["label"], "NEGATIVE");
        let schema = json!({"properties": {"name": {"type": "string"}, "age": {"type": "integer"}}});
        let extracted = chat("m", Some(&format!("Extract data as JSON.\n{schema}")), "name: Ada\nage: 37");
        assert_eq!(serde_json::from_str::<Value>(&extracted).unwrap(), json!({"name": "Ada", "age": 37}));
        assert_eq!(chat("gpt", None, "Hello"), "[gpt] Hello");
    }

    #[test]
    fn given_a_text_when_embedded_twice_then_the_vectors_match_and_have_unit_length() {
        let a = embedding("the same words", 8);
        assert_eq!(a, embedding("the same words", 8));
        assert!((a.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
