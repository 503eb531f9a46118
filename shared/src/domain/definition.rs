//! The workflow definition a client submits: steps, their tasks, models and templates.
//! These types mirror the workflow JSON the README documents; `validation` turns them into a checked plan.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{Display, IntoStaticStr};
use utoipa::ToSchema;

use super::ids::StepId;

/// A workflow: a small DAG of AI steps plus an optional output template.
/// The output cap of a step that sets no `max_tokens`: an answer is bounded even when the
/// workflow does not say how.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The largest `max_tokens` a step may ask for (about 400 KB of text, under the 1 MiB step
/// output limit).
pub const MAX_MAX_TOKENS: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// A label for people; not used by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema the run's `input` must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    #[schema(min_items = 1, max_items = 100)]
    pub steps: Vec<StepDefinition>,
    /// The most the run may spend on model calls, in USD. Before each priced call its
    /// estimated cost (its text in, `max_tokens` or 1024 tokens out, at the model's price) is
    /// reserved against what the run has spent and reserved, steps running in parallel
    /// included; a call that does not fit is not made: the step moves to its next fallback,
    /// or fails with `budget_exceeded`. A model with no price in the price table is not
    /// called either (`price_unknown`), unless `allow_unpriced_models` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0)]
    pub budget_usd: Option<f64>,
    /// With a `budget_usd`: call models that have no price in the price table anyway. Their
    /// cost is unknown, counts as nothing against the budget, and shows as `cost_usd: null`.
    /// Only with a `budget_usd` (without one every model may be called).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unpriced_models: bool,
    /// The run's output: any JSON whose strings are templates over `input` and `steps`.
    /// A string that is exactly one `{{ expression }}` keeps the expression's JSON type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub output: Option<Value>,
}

impl WorkflowDefinition {
    /// The step `id` names, or for a map item (`summarize[3]`) its map step's definition
    /// under the item's id: an item runs as its map step does, under its own name.
    pub fn find_step(&self, id: &StepId) -> Option<StepDefinition> {
        match id.map_item() {
            Some((map, _)) => {
                let step = self.steps.iter().find(|s| s.id == map && s.for_each.is_some())?;
                Some(StepDefinition { id: id.clone(), ..step.clone() })
            }
            None => self.steps.iter().find(|s| &s.id == id).cloned(),
        }
    }
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    #[schema(value_type = String, example = "draft", pattern = r"^[a-z][a-z0-9_]{0,63}$")]
    pub id: StepId,
    pub task: Task,
    /// `provider:model` (e.g. `local:echo`, `openai:gpt-4o-mini`) or a configured route name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Models tried in order when `model` keeps failing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 4)]
    pub fallbacks: Vec<String>,
    /// Instructions for the model; required for `generate`, optional elsewhere. A template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The text the task works on; required for every model task but `generate`. A template.
    /// For a `workflow` step, the child run's input: a template whose sole `{{ expression }}`
    /// keeps its JSON type (`"{{ steps.split.data }}"` is an object); `{}` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Steps that must finish first, beyond those referenced in templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>, pattern = r"^[a-z][a-z0-9_]{0,63}$")]
    pub needs: Vec<StepId>,
    /// A condition over `input` and `steps`; when false the step is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Time allowed for one provider attempt; for an `approval` step, time the approver has
    /// before the step fails (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // 30 days, an approval's limit; the HTTP document narrows model steps to 15 minutes.
    #[schema(minimum = 1, maximum = 2_592_000_000_u64)]
    pub timeout_ms: Option<u64>,
    /// Time allowed for the whole step: every attempt, retry, fallback and delayed retry
    /// (default 15 minutes). For a provider job (Replicate), `timeout_ms` is how long the job
    /// may take (default 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub step_timeout_ms: Option<u64>,
    /// Extra attempts on the same model for retryable errors, before moving to a fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10)]
    pub retries: Option<u32>,
    /// When true, this step failing does not fail the run; steps needing its output are skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// JSON Schema the `extract` output must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    /// The labels a `classify` step chooses from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The most tokens the model may answer with: [`DEFAULT_MAX_TOKENS`] when unset, at
    /// most [`MAX_MAX_TOKENS`]. Every adapter, `local:echo` included, sends or applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f32>,
    /// Makes the step a map: an expression over `input` and `steps` (like `when`) that
    /// yields a list, e.g. `input.documents`. The task then runs once per item, its templates
    /// seeing the item as `item` and its position as `index`, and the step's output is
    /// `{items: [...]}` in list order. At most [`MAX_MAP_ITEMS`] items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// With `for_each`: how many items run at once (default [`DEFAULT_MAX_CONCURRENCY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_concurrency: Option<u32>,
    /// For a `workflow` step: the registered workflow to run as a child run, `name@version`
    /// or `name` (its latest version when the run is submitted; the run records which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "triage@3")]
    pub workflow: Option<String>,
    /// With `for_each`: how many items may fail (a count, or a share such as `"10%"` of the
    /// items, rounded down) before the step fails. Default 0: any item failing fails it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerate_failures: Option<Tolerance>,
}

/// The most items one map step (`for_each`) runs.
pub const MAX_MAP_ITEMS: u32 = 1_000;
/// The most map items one run may run, all its map steps together.
pub const MAX_RUN_ITEMS: u32 = 5_000;
/// Items of a map that run at once when the step does not say.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 10;
/// The most items of a map that may run at once.
pub const MAX_MAX_CONCURRENCY: u32 = 100;

/// How many of a map's items may fail before the map step fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Tolerance {
    /// This many items.
    Count(u32),
    /// A share of the items, as `"25%"` (0 to 100), rounded down.
    #[schema(example = "10%")]
    Share(String),
}

impl Tolerance {
    /// The share as a percentage, if it is one and is well formed (0 to 100).
    pub fn percent(&self) -> Option<f64> {
        match self {
            Tolerance::Count(_) => None,
            Tolerance::Share(text) => {
                let percent: f64 = text.strip_suffix('%')?.trim().parse().ok()?;
                (0.0..=100.0).contains(&percent).then_some(percent)
            }
        }
    }

    /// How many of `items` may fail.
    pub fn allowed(&self, items: u32) -> u32 {
        match self {
            Tolerance::Count(count) => *count,
            Tolerance::Share(_) => {
                let percent = self.percent().unwrap_or(0.0);
                // Floor of items × percent / 100, in integers where the share is whole.
                ((f64::from(items) * percent / 100.0) + 1e-9).floor() as u32
            }
        }
    }
}

impl StepDefinition {
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_APPROVAL_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
    pub const DEFAULT_STEP_TIMEOUT_MS: u64 = 15 * 60 * 1000;
    pub const DEFAULT_JOB_TIMEOUT_MS: u64 = 10 * 60 * 1000;

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(Self::DEFAULT_TIMEOUT_MS))
    }

    /// How long an `approval` step waits for a decision.
    pub fn wait_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(Self::DEFAULT_APPROVAL_TIMEOUT_MS))
    }

    /// How long the whole step may take across attempts and re-enqueues.
    pub fn step_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.step_timeout_ms.unwrap_or(Self::DEFAULT_STEP_TIMEOUT_MS))
    }

    /// How long a provider job (an async call answered by webhook) may take.
    pub fn job_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(Self::DEFAULT_JOB_TIMEOUT_MS))
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(Self::DEFAULT_RETRIES)
    }

    /// How many of a map's items run at once.
    pub fn max_concurrency(&self) -> u32 {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY).clamp(1, MAX_MAX_CONCURRENCY)
    }

    /// How many of a map's `items` may fail before the step does.
    pub fn tolerated_failures(&self, items: u32) -> u32 {
        self.tolerate_failures.as_ref().map_or(0, |tolerance| tolerance.allowed(items))
    }

    /// The model followed by its fallbacks, in the order they are tried.
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        self.model.iter().chain(&self.fallbacks).map(String::as_str)
    }

    /// Every template of the step with the field it sits in.
    pub fn templates(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [("prompt", &self.prompt), ("input", &self.input)]
            .into_iter()
            .filter_map(|(field, template)| template.as_deref().map(|t| (field, t)))
    }
}

/// What a step does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema, IntoStaticStr, Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Task {
    Generate,
    Summarize,
    Classify,
    Extract,
    Embed,
    /// Waits for a person to approve or reject through the API.
    Approval,
    /// Runs a registered workflow (`workflow`) as a child run of the same tenant, with the
    /// step's `input` rendered as its input, and completes with the child's output.
    Workflow,
}

impl Task {
    pub const ALL: [Task; 7] =
        [Task::Generate, Task::Summarize, Task::Classify, Task::Extract, Task::Embed, Task::Approval, Task::Workflow];

    /// Whether the task calls an AI model (everything but `approval` and `workflow`).
    pub fn uses_model(self) -> bool {
        !matches!(self, Task::Approval | Task::Workflow)
    }

    /// The task as written in JSON, e.g. `summarize`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
