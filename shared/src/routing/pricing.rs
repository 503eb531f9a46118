//! What model calls cost: a versioned price table (USD per million tokens, from
//! `providers.toml`), the cost of a call's usage, and the estimate the router reserves
//! against a run's budget before it spends anything. A model the table does not list has no
//! price here: the router knows which providers are free (`local`); any other such model's
//! cost is unknown.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::{Task, Usage};
use crate::providers::{TaskRequest, estimate_tokens};

/// Output tokens assumed for a call whose step sets no `max_tokens`, when estimating.
pub const DEFAULT_OUTPUT_ESTIMATE: u32 = 1_024;

/// What one model charges, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    #[serde(rename = "input")]
    pub input_per_million: f64,
    #[serde(rename = "output")]
    pub output_per_million: f64,
}

/// Prices by `provider:model`, with the version of the price list they come from. Models
/// not listed have no price: nothing for the `local` ones, unknown for hosted ones (Hugging
/// Face bills by compute time, which Chorus cannot see).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PriceTable {
    /// When the prices were last checked against the providers' price pages, e.g.
    /// `2026-11-01`; recorded with every priced call so old costs stay explainable.
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "models")]
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    /// The table with `model` (`provider:model`) priced at `price`.
    pub fn with(mut self, model: impl Into<String>, price: Price) -> Self {
        self.prices.insert(model.into(), price);
        self
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices.get(model).copied()
    }

    /// Every priced model with its price, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Price)> {
        self.prices.iter().map(|(model, price)| (model.as_str(), *price))
    }

    /// The cost in USD of `usage` on `model`; `None` when the table has no price for it.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.price(model).map(|price| {
            (usage.input_tokens as f64 * price.input_per_million
                + usage.output_tokens as f64 * price.output_per_million)
                / 1_000_000.0
        })
    }

    /// The most `request` should cost on `model`: its text in, `max_tokens` (or
    /// [`DEFAULT_OUTPUT_ESTIMATE`]) out; embeddings produce no output tokens. `None` when
    /// the table has no price for it.
    pub fn estimate(&self, model: &str, request: &TaskRequest) -> Option<f64> {
        self.cost(model, &estimated_usage(request))
    }

    /// A model's price for ordering cheapest-first: input and output per million together;
    /// `None` when the table has no price for it.
    pub fn rank(&self, model: &str) -> Option<f64> {
        self.price(model).map(|p| p.input_per_million + p.output_per_million)
    }
}

/// The tokens `request` is expected to use: its text in (about four characters a token),
/// `max_tokens` (or [`DEFAULT_OUTPUT_ESTIMATE`]) out, none out for embeddings.
fn estimated_usage(request: &TaskRequest) -> Usage {
    let input: String = [request.prompt.as_deref(), request.input.as_deref()].into_iter().flatten().collect();
    let output = if request.task == Task::Embed { 0 } else { request.max_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE) };
    Usage { input_tokens: estimate_tokens(&input), output_tokens: u64::from(output), estimated: true }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn table() -> PriceTable {
        PriceTable::default().with("openai:gpt-4o-mini", Price { input_per_million: 0.15, output_per_million: 0.60 })
    }

    #[test]
    fn given_prices_when_costing_then_known_models_cost_per_million_and_unlisted_ones_have_no_price() {
        let usage = Usage { input_tokens: 2_000_000, output_tokens: 500_000, estimated: false };
        assert!((table().cost("openai:gpt-4o-mini", &usage).unwrap() - 0.60).abs() < 1e-12);
        assert_eq!(table().cost("huggingface:gpt2", &usage), None);
        assert_eq!(table().rank("huggingface:gpt2"), None);
    }

    #[test]
    fn given_a_request_when_estimated_then_its_text_and_max_tokens_are_priced() {
        let request = TaskRequest {
            task: Task::Generate,
            prompt: Some("x".repeat(4_000)),
            input: None,
            labels: Vec::new(),
            schema: None,
            max_tokens: Some(2_000),
            temperature: None,
        };
        // 1,000 tokens in at $0.15/M, 2,000 out at $0.60/M.
        let estimate = table().estimate("openai:gpt-4o-mini", &request).unwrap();
        assert!((estimate - (0.000_15 + 0.001_2)).abs() < 1e-12, "{estimate}");
        let embed = TaskRequest { task: Task::Embed, ..request };
        assert!((table().estimate("openai:gpt-4o-mini", &embed).unwrap() - 0.000_15).abs() < 1e-12);
    }
}
