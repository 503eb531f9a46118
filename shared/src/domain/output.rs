//! The normalized output of each task. Providers' raw payloads never leave the adapter;
//! every adapter returns one of these, and [`TaskOutput::check`] says whether it is what
//! the step asked for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use utoipa::ToSchema;

use super::definition::Task;

/// At most this many schema violations are listed in an [`OutputError`].
const MAX_VIOLATIONS_SHOWN: usize = 10;

/// The largest step output, as JSON text after normalization: what is stored (in S3 past
/// 64 KiB), handed to the next steps' templates and returned to clients.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// What a model call produced, shaped by task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TaskOutput {
    Generate {
        text: String,
        finish_reason: FinishReason,
    },
    Summarize {
        text: String,
    },
    Classify {
        label: String,
        confidence: f64,
        scores: BTreeMap<String, f64>,
    },
    Extract {
        data: Value,
    },
    Embed {
        vector: Vec<f32>,
        dims: usize,
    },
    Approval {
        approved: bool,
        /// Who decided, in the caller's words.
        by: String,
        comment: Option<String>,
        /// The id of the API key that decided: `by` is what the caller says, this is who it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
}

impl TaskOutput {
    /// The output as the JSON object templates and clients see.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The task this output answers.
    pub fn task(&self) -> Task {
        match self {
            TaskOutput::Generate { .. } => Task::Generate,
            TaskOutput::Summarize { .. } => Task::Summarize,
            TaskOutput::Classify { .. } => Task::Classify,
            TaskOutput::Extract { .. } => Task::Extract,
            TaskOutput::Embed { .. } => Task::Embed,
            TaskOutput::Approval { .. } => Task::Approval,
        }
    }

    /// Whether the output fulfils a step of `task`: no larger than [`MAX_OUTPUT_BYTES`], and
    /// for `extract`, its data satisfying the step's `schema` (CPU work: see [`super::schema`]).
    pub fn check(&self, task: Task, schema: Option<&Value>) -> Result<(), OutputError> {
        if self.task() != task {
            return Err(OutputError::WrongTask { expected: task });
        }
        let bytes = serde_json::to_vec(self).map_or(usize::MAX, |text| text.len());
        if bytes > MAX_OUTPUT_BYTES {
            return Err(OutputError::TooLarge { bytes, limit: MAX_OUTPUT_BYTES });
        }
        let (TaskOutput::Extract { data }, Some(schema)) = (self, schema) else { return Ok(()) };
        let validator = super::schema::compile(schema).map_err(OutputError::BadSchema)?;
        let violations: Vec<String> = validator
            .iter_errors(data)
            .map(|err| {
                let path = err.instance_path().to_string();
                format!("{}: {err}", if path.is_empty() { "/" } else { &path })
            })
            .collect();
        if violations.is_empty() { Ok(()) } else { Err(OutputError::SchemaMismatch(violations)) }
    }
}

/// Why an output does not do what its step asks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OutputError {
    #[error("expected a {expected} output")]
    WrongTask { expected: Task },
    /// The step's own schema cannot be compiled (validation should have refused it).
    #[error("the step's schema is not valid: {0}")]
    BadSchema(String),
    #[error("the data does not match the schema: {}", shown(.0))]
    SchemaMismatch(Vec<String>),
    #[error("the output is {bytes} bytes as JSON; a step output may be at most {limit}")]
    TooLarge { bytes: usize, limit: usize },
}

/// The first violations, and how many more there are.
fn shown(violations: &[String]) -> String {
    let listed = violations.iter().take(MAX_VIOLATIONS_SHOWN).cloned().collect::<Vec<_>>().join("; ");
    match violations.len().saturating_sub(MAX_VIOLATIONS_SHOWN) {
        0 => listed,
        more => format!("{listed} (and {more} more)"),
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    Other,
}
