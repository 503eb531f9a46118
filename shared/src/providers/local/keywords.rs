//! `local:keywords`: the label whose words appear most often in the text wins.

use std::collections::HashMap;

use super::classify::{classification, require_labels};
use super::text::words;
use crate::domain::TaskOutput;
use crate::providers::ProviderError;

/// Each label's words (split on anything not a letter or digit, so on spaces, `_` and `-`)
/// counted as whole words in the text. Scores are proportional to the counts; with no match at
/// all, scores are uniform and the first label wins.
pub(super) fn keywords(text: &str, labels: &[String]) -> Result<TaskOutput, ProviderError> {
    require_labels(labels)?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in words(text) {
        *counts.entry(word).or_default() += 1;
    }
    let weights: Vec<f64> = labels
        .iter()
        .map(|label| words(label).iter().map(|w| counts.get(w).copied().unwrap_or(0)).sum::<usize>() as f64)
        .collect();
    Ok(classification(labels, &weights))
}

#[cfg(test)]
mod tests {
    use crate::providers::local::tests::{assert_sums_to_one, classify};

    #[tokio::test]
    async fn given_label_words_in_the_text_when_classified_by_keywords_then_most_matches_win() {
        let text = "My invoice shows a double charge; please refund the charge.";
        let (label, confidence, scores) = classify("keywords", text, &["shipping", "billing_charge", "refund"]).await;
        assert_eq!(label, "billing_charge");
        assert!((confidence - 2.0 / 3.0).abs() < 1e-9);
        assert!((scores["refund"] - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(scores["shipping"], 0.0);
    }

    #[tokio::test]
    async fn given_a_tie_when_classified_by_keywords_then_the_earlier_label_wins() {
        let (label, _, _) = classify("keywords", "Refund my late-delivery order", &["delivery", "refund"]).await;
        assert_eq!(label, "delivery");
    }

    #[tokio::test]
    async fn given_no_matching_words_when_classified_by_keywords_then_the_first_label_wins() {
        let (label, confidence, scores) = classify("keywords", "Hello there", &["sales", "support", "other"]).await;
        assert_eq!(label, "sales");
        assert!((confidence - 1.0 / 3.0).abs() < 1e-9);
        assert_sums_to_one(&scores);
    }

    #[tokio::test]
    async fn given_a_partial_word_when_classified_by_keywords_then_it_does_not_count() {
        let (_, _, scores) = classify("keywords", "The bills arrived", &["bill", "arrived"]).await;
        assert_eq!(scores["bill"], 0.0);
    }
}
