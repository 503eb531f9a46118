//! Tasks on chat models: the messages each task becomes, and how the model's text answer
//! turns back into the task's normalized output. Every chat adapter (OpenAI, Anthropic,
//! Gemini, Cohere, Bedrock, Replicate) goes through here, so `classify` means the same thing
//! whichever provider runs it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ProviderError, TaskRequest};
use crate::domain::{FinishReason, Task, TaskOutput};

/// The tasks a chat model does through these prompts.
pub const TASKS: [Task; 4] = [Task::Generate, Task::Summarize, Task::Classify, Task::Extract];

/// A task as chat messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPrompt {
    /// Instructions for the model, when the task has any.
    pub system: Option<String>,
    pub user: String,
    /// For `classify` and `extract`: the JSON Schema the answer must follow. Adapters whose
    /// API enforces schemas send it natively; the system prompt asks for it either way.
    pub json_schema: Option<Value>,
}

/// The messages for `request`. `embed` has none: it is not a chat task.
pub fn prompt(request: &TaskRequest) -> Result<ChatPrompt, ProviderError> {
    let text = request.text().to_owned();
    let extra = |base: &str| match (&request.prompt, &request.input) {
        (Some(prompt), Some(_)) => format!("{base}\n\n{prompt}"),
        _ => base.to_owned(),
    };
    Ok(match request.task {
        Task::Generate => {
            let user = match (&request.prompt, &request.input) {
                (Some(prompt), Some(input)) => format!("{prompt}\n\n{input}"),
                _ => text,
            };
            ChatPrompt { system: None, user, json_schema: None }
        }
        Task::Summarize => ChatPrompt {
            system: Some(extra(
                "Summarize the user's text in a few sentences. Answer with the summary only, \
                 in the text's language.",
            )),
            user: text,
            json_schema: None,
        },
        Task::Classify => {
            if request.labels.is_empty() {
                return Err(ProviderError::InvalidRequest("classify needs at least one label".to_owned()));
            }
            let labels = request.labels.join(", ");
            ChatPrompt {
                system: Some(extra(&format!(
                    "Classify the user's text with exactly one of these labels: {labels}. Answer with a \
                     JSON object {{\"label\": <one of the labels>, \"confidence\": <0 to 1>}} and nothing else."
                ))),
                user: text,
                json_schema: Some(classify_schema(&request.labels)),
            }
        }
        Task::Extract => {
            let schema = request.schema.clone().unwrap_or_else(|| json!({"type": "object"}));
            ChatPrompt {
                system: Some(extra(&format!(
                    "Extract data from the user's text as one JSON object matching this JSON Schema. \
                     Answer with the JSON object only.\n{schema}"
                ))),
                user: text,
                json_schema: Some(schema),
            }
        }
        Task::Embed | Task::Approval | Task::Workflow => {
            return Err(ProviderError::InvalidRequest(format!("{} is not a chat task", request.task)));
        }
    })
}

/// The schema a `classify` answer follows.
fn classify_schema(labels: &[String]) -> Value {
    json!({
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": labels},
            "confidence": {"type": "number"}
        },
        "required": ["label", "confidence"],
        "additionalProperties": false
    })
}

/// The normalized output for a chat model's `text` answer to `request`.
pub fn output(request: &TaskRequest, text: &str, finish_reason: FinishReason) -> Result<TaskOutput, ProviderError> {
    match request.task {
        Task::Generate => Ok(TaskOutput::Generate { text: text.to_owned(), finish_reason }),
        Task::Summarize => Ok(TaskOutput::Summarize { text: text.trim().to_owned() }),
        Task::Classify => classification(&request.labels, text),
        Task::Extract => Ok(TaskOutput::Extract { data: json_answer(text)? }),
        Task::Embed | Task::Approval | Task::Workflow => {
            Err(ProviderError::InvalidRequest(format!("{} is not a chat task", request.task)))
        }
    }
}

/// The label and confidence a model chose; the rest of the probability is spread evenly
/// over the other labels. A label outside the list breaks the step's contract.
fn classification(labels: &[String], text: &str) -> Result<TaskOutput, ProviderError> {
    let answer = json_answer(text)?;
    let Some(chosen) = answer.get("label").and_then(Value::as_str) else {
        return Err(ProviderError::InvalidOutput("the answer has no `label`".to_owned()));
    };
    let Some(label) = labels.iter().find(|l| l.eq_ignore_ascii_case(chosen.trim())) else {
        return Err(ProviderError::InvalidOutput(format!("`{chosen}` is not one of the labels")));
    };
    let confidence = answer.get("confidence").and_then(Value::as_f64).unwrap_or(1.0).clamp(0.0, 1.0);
    let others = labels.len().saturating_sub(1).max(1) as f64;
    let scores: BTreeMap<String, f64> =
        labels.iter().map(|l| (l.clone(), if l == label { confidence } else { (1.0 - confidence) / others })).collect();
    Ok(TaskOutput::Classify { label: label.clone(), confidence, scores })
}

/// The JSON object in a model's answer, which may come wrapped in a Markdown code fence or
/// a sentence.
fn json_answer(text: &str) -> Result<Value, ProviderError> {
    let start = text.find('{');
    let end = text.rfind('}');
    let candidate = match (start, end) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => text,
    };
    serde_json::from_str(candidate)
        .map_err(|err| ProviderError::InvalidOutput(format!("the answer is not a JSON object: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: None,
            input: Some("The service was wonderful.".into()),
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            schema: None,
            max_tokens: None,
            temperature: None,
        }
    }

    #[test]
    fn given_each_chat_task_when_prompted_then_the_text_is_the_user_message() {
        for task in [Task::Summarize, Task::Classify, Task::Extract] {
            let prompt = prompt(&request(task)).unwrap();
            assert_eq!(prompt.user, "The service was wonderful.");
            assert!(prompt.system.is_some());
        }
        let generate = TaskRequest { prompt: Some("Write a haiku".into()), input: None, ..request(Task::Generate) };
        assert_eq!(
            prompt(&generate).unwrap(),
            ChatPrompt { system: None, user: "Write a haiku".into(), json_schema: None }
        );
        let classify = prompt(&request(Task::Classify)).unwrap();
        assert_eq!(classify.json_schema.unwrap()["properties"]["label"]["enum"], json!(["POSITIVE", "NEGATIVE"]));
        assert!(prompt(&request(Task::Embed)).is_err());
    }

    #[test]
    fn given_a_fenced_classification_when_read_then_scores_cover_every_label() {
        let text = "```json\n{\"label\": \"positive\", \"confidence\": 0.8}\n```";
        let TaskOutput::Classify { label, confidence, scores } =
            output(&request(Task::Classify), text, FinishReason::Stop).unwrap()
        else {
            panic!("not a classification")
        };
        assert_eq!((label.as_str(), confidence), ("POSITIVE", 0.8));
        assert!((scores["NEGATIVE"] - 0.2).abs() < 1e-9);
    }

    #[test]
    fn given_an_answer_outside_the_contract_when_read_then_the_output_is_invalid() {
        let classify = request(Task::Classify);
        for text in ["{\"label\": \"MIXED\"}", "I think it is positive", "{\"confidence\": 1}"] {
            let err = output(&classify, text, FinishReason::Stop).unwrap_err();
            assert_eq!(err.kind().as_str(), "invalid_output", "{text}: {err}");
        }
        let err = output(&request(Task::Extract), "no json here", FinishReason::Stop).unwrap_err();
        assert_eq!(err.kind().as_str(), "invalid_output");
    }

    #[test]
    fn given_extract_and_summarize_answers_when_read_then_they_normalize() {
        let data = output(&request(Task::Extract), "Here: {\"name\": \"Ada\"}", FinishReason::Stop).unwrap();
        assert_eq!(data, TaskOutput::Extract { data: json!({"name": "Ada"}) });
        let summary = output(&request(Task::Summarize), "  Short.\n", FinishReason::Stop).unwrap();
        assert_eq!(summary, TaskOutput::Summarize { text: "Short.".into() });
    }
}
