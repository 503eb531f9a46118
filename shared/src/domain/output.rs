//! The normalized output of each task (DESIGN §3). Providers' raw payloads never leave the
//! adapter; every adapter returns one of these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What a model call produced, shaped by task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TaskOutput {
    Generate { text: String, finish_reason: FinishReason },
    Summarize { text: String },
    Classify { label: String, confidence: f64, scores: BTreeMap<String, f64> },
    Extract { data: Value },
    Embed { vector: Vec<f32>, dims: usize },
    Approval { approved: bool, by: String, comment: Option<String> },
}

impl TaskOutput {
    /// The output as the JSON object templates and clients see.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
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
