//! What a model call cost, in USD: known (from the price table, or nothing for a model that
//! runs in this process) or unknown (a hosted model the price table does not list). An
//! unknown cost is not zero, so it is never written as one: in JSON it is `null`.

use serde::{Deserialize, Serialize};

/// The cost of a step's model call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "Option<f64>", into = "Option<f64>")]
pub enum Cost {
    /// USD, from the price table (0 for the `local` models and for a step that made no call).
    Known(f64),
    /// The model answered, but the price table has no price for it: it cost something no one
    /// here can say.
    Unknown,
}

impl Cost {
    /// Nothing was spent.
    pub const ZERO: Cost = Cost::Known(0.0);

    /// The cost in USD, when known.
    pub fn usd(self) -> Option<f64> {
        match self {
            Cost::Known(usd) => Some(usd),
            Cost::Unknown => None,
        }
    }

    pub fn is_known(self) -> bool {
        matches!(self, Cost::Known(_))
    }
}

impl Default for Cost {
    /// A step that has made no call has spent nothing.
    fn default() -> Self {
        Cost::ZERO
    }
}

impl From<Option<f64>> for Cost {
    fn from(usd: Option<f64>) -> Self {
        usd.map_or(Cost::Unknown, Cost::Known)
    }
}

impl From<Cost> for Option<f64> {
    fn from(cost: Cost) -> Self {
        cost.usd()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unknown_cost_is_null_in_json_and_a_known_one_a_number() {
        assert_eq!(serde_json::to_value(Cost::Unknown).unwrap(), json!(null));
        assert_eq!(serde_json::to_value(Cost::Known(0.25)).unwrap(), json!(0.25));
        assert_eq!(serde_json::from_value::<Cost>(json!(null)).unwrap(), Cost::Unknown);
        assert_eq!(serde_json::from_value::<Cost>(json!(0)).unwrap(), Cost::ZERO);
    }
}
