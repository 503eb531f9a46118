//! What model calls cost: a versioned price table (USD per million tokens, from
//! `providers.toml`), the cost of a call's usage, and the estimate the router checks against
//! a run's budget before it spends anything.

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
/// not listed (the `local` ones, Hugging Face's compute-billed models) cost nothing.
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

    /// The cost in USD of `usage` on `model`; zero for unknown models.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.price(model).map_or(0.0, |price| {
            (usage.input_tokens as f64 * price.input_per_million
                + usage.output_tokens as f64 * price.output_per_million)
                / 1_000_000.0
        })
    }

    /// The most `request` can cost on `model`: its text in, `max_tokens` (or
    /// [`DEFAULT_OUTPUT_ESTIMATE`]) out; embeddings produce no output tokens.
    pub fn estimate(&self, model: &str, request: &TaskRequest) -> f64 {
        let input: String = [request.prompt.as_deref(), request.input.as_deref()].into_iter().flatten().collect();
        let output =
            if request.task == Task::Embed { 0 } else { request.max_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE) };
        let usage = Usage { input_tokens: estimate_tokens(&input), output_tokens: u64::from(output), estimated: true };
        self.cost(model, &usage)
    }

    /// A model's price for ordering cheapest-first: input and output per million together.
    pub fn rank(&self, model: &str) -> f64 {
        self.price(model).map_or(0.0, |p| p.input_per_million + p.output_per_million)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn table() -> PriceTable {
        PriceTable::default().with("openai:gpt-4o-mini", Price { input_per_million: 0.15, output_per_million: 0.60 })
    }

    #[test]
    fn given_prices_when_costing_then_known_models_cost_per_million_and_unknown_ones_nothing() {
        let usage = Usage { input_tokens: 2_000_000, output_tokens: 500_000, estimated: false };
        assert!((table().cost("openai:gpt-4o-mini", &usage) - 0.60).abs() < 1e-12);
        assert_eq!(table().cost("local:echo", &usage), 0.0);
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
        let estimate = table().estimate("openai:gpt-4o-mini", &request);
        assert!((estimate - (0.000_15 + 0.001_2)).abs() < 1e-12, "{estimate}");
        let embed = TaskRequest { task: Task::Embed, ..request };
        assert!((table().estimate("openai:gpt-4o-mini", &embed) - 0.000_15).abs() < 1e-12);
    }
}
