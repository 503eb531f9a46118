//! Named routes: a step's `"model": "fast"` expands to several `provider:model` entries in
//! an order the route's strategy picks: as listed (ordered fallback), one drawn by weight
//! first (a weighted split, e.g. for A/B tests or spreading load), or cheapest first by the
//! price table. The router then tries them in that order like explicit fallbacks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A configured route, as written in `providers.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Route {
    /// Tried in the order listed.
    Fallback { models: Vec<String> },
    /// One model drawn by weight for each step, then the others, heaviest first.
    Weighted { models: Vec<WeightedModel> },
    /// Cheapest first: free models (`local`), then by the price table, then models the
    /// table has no price for (their cost is unknown, not free).
    Cheapest { models: Vec<String> },
}

/// One entry of a weighted split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedModel {
    pub model: String,
    pub weight: u32,
}

impl Route {
    /// A route that tries `models` in order.
    pub fn fallback(models: &[&str]) -> Self {
        Route::Fallback { models: models.iter().map(|m| (*m).to_owned()).collect() }
    }

    /// Every entry, in the order written.
    pub fn models(&self) -> Vec<&str> {
        match self {
            Route::Fallback { models } | Route::Cheapest { models } => models.iter().map(String::as_str).collect(),
            Route::Weighted { models } => models.iter().map(|m| m.model.as_str()).collect(),
        }
    }

    /// The entries in the order to try them. `rank` prices an entry for `cheapest` (lower
    /// first); `draw` in `[0, 1)` picks the weighted entry.
    pub fn order(&self, rank: impl Fn(&str) -> f64, draw: f64) -> Vec<&str> {
        match self {
            Route::Fallback { models } => models.iter().map(String::as_str).collect(),
            Route::Cheapest { models } => {
                let mut sorted: Vec<&str> = models.iter().map(String::as_str).collect();
                // Stable: equally priced models keep their written order.
                sorted.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
                sorted
            }
            Route::Weighted { models } => {
                let mut by_weight: Vec<&WeightedModel> = models.iter().collect();
                by_weight.sort_by_key(|m| std::cmp::Reverse(m.weight));
                let total: u64 = models.iter().map(|m| u64::from(m.weight)).sum();
                let mut ticket = (draw.clamp(0.0, 1.0) * total as f64) as u64;
                let drawn = models.iter().position(|m| {
                    let weight = u64::from(m.weight);
                    let hit = ticket < weight;
                    ticket = ticket.saturating_sub(weight);
                    hit
                });
                let first = drawn.map(|i| models[i].model.as_str());
                first
                    .into_iter()
                    .chain(by_weight.iter().map(|m| m.model.as_str()).filter(|m| Some(*m) != first))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::routing::{Price, PriceTable};

    /// Prices nothing: the order of every strategy but `cheapest` ignores it.
    fn unranked(_: &str) -> f64 {
        0.0
    }

    fn weighted() -> Route {
        Route::Weighted {
            models: vec![
                WeightedModel { model: "a:1".into(), weight: 1 },
                WeightedModel { model: "b:1".into(), weight: 3 },
            ],
        }
    }

    #[test]
    fn given_a_weighted_route_when_drawn_then_the_share_follows_the_weights_and_the_rest_follow() {
        assert_eq!(weighted().order(unranked, 0.1), ["a:1", "b:1"]);
        assert_eq!(weighted().order(unranked, 0.3), ["b:1", "a:1"]);
        assert_eq!(weighted().order(unranked, 0.99), ["b:1", "a:1"]);
        let drawn_a = (0..1000).filter(|i| weighted().order(unranked, f64::from(*i) / 1000.0)[0] == "a:1").count();
        assert_eq!(drawn_a, 250);
    }

    #[test]
    fn given_a_cheapest_route_when_ordered_then_prices_decide_and_ties_keep_their_order() {
        let prices = PriceTable::default()
            .with("x:big", Price { input_per_million: 3.0, output_per_million: 15.0 })
            .with("x:small", Price { input_per_million: 0.1, output_per_million: 0.4 });
        let models = ["x:unpriced", "x:big", "local:echo", "x:small", "local:b"];
        let route = Route::Cheapest { models: models.iter().map(|m| (*m).to_owned()).collect() };
        // As the router ranks: free, then by price, then unpriced.
        let rank = |model: &str| {
            if model.starts_with("local:") { 0.0 } else { prices.rank(model).unwrap_or(f64::INFINITY) }
        };
        assert_eq!(route.order(rank, 0.5), ["local:echo", "local:b", "x:small", "x:big", "x:unpriced"]);
    }

    #[test]
    fn given_toml_routes_when_parsed_then_each_strategy_reads() {
        let routes: std::collections::BTreeMap<String, Route> = toml::from_str(
            r#"
            fast = { strategy = "fallback", models = ["a:1", "b:1"] }
            cheap = { strategy = "cheapest", models = ["a:1"] }
            split = { strategy = "weighted", models = [{ model = "a:1", weight = 1 }, { model = "b:1", weight = 3 }] }
            "#,
        )
        .unwrap();
        assert_eq!(routes["fast"], Route::fallback(&["a:1", "b:1"]));
        assert_eq!(routes["split"], weighted());
        assert!(toml::from_str::<Route>(r#"strategy = "random""#).is_err());
    }
}
