//! Classification helpers shared by `local:lexicon` and `local:keywords`.

use std::collections::BTreeMap;

use crate::domain::TaskOutput;
use crate::providers::ProviderError;

/// Scores proportional to `weights` (uniform when all are zero); the best label wins, ties
/// going to the earlier label.
pub(super) fn classification(labels: &[String], weights: &[f64]) -> TaskOutput {
    let total: f64 = weights.iter().sum();
    let n = labels.len().max(1) as f64;
    let shares: Vec<f64> = weights.iter().map(|&w| if total > 0.0 { w / total } else { 1.0 / n }).collect();
    let mut best = 0;
    for (i, &share) in shares.iter().enumerate() {
        if share > shares[best] {
            best = i;
        }
    }
    let scores: BTreeMap<String, f64> = labels.iter().cloned().zip(shares.iter().copied()).collect();
    TaskOutput::Classify {
        label: labels.get(best).cloned().unwrap_or_default(),
        confidence: shares.get(best).copied().unwrap_or_default(),
        scores,
    }
}

pub(super) fn require_labels(labels: &[String]) -> Result<(), ProviderError> {
    if labels.is_empty() {
        Err(ProviderError::InvalidRequest("`classify` needs at least one label".to_owned()))
    } else {
        Ok(())
    }
}
