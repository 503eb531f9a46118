//! `local:lexicon`: sentiment from small English word lists with simple negation.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::classify::classification;
use super::text::{Token, tokens};
use crate::domain::TaskOutput;
use crate::providers::ProviderError;

/// A polar word this many words after a negator (in the same clause) counts for the other side.
const NEGATION_SCOPE: usize = 3;

/// Which of the step's labels mean positive, negative and (optionally) neutral.
struct SentimentLabels {
    positive: usize,
    negative: usize,
    neutral: Option<usize>,
}

impl SentimentLabels {
    fn find(labels: &[String]) -> Result<Self, ProviderError> {
        let position = |names: &[&str]| labels.iter().position(|l| names.iter().any(|n| l.eq_ignore_ascii_case(n)));
        match (position(&["positive", "pos"]), position(&["negative", "neg"])) {
            (Some(positive), Some(negative)) => Ok(Self { positive, negative, neutral: position(&["neutral", "neu"]) }),
            _ => Err(ProviderError::InvalidRequest(format!(
                "local:lexicon needs a positive and a negative label (POSITIVE or POS, \
                 NEGATIVE or NEG, any case; NEUTRAL optional); got [{}]",
                labels.join(", ")
            ))),
        }
    }
}

/// Counts positive and negative lexicon words, flipping those just after a negator, then maps
/// the counts onto the labels with a little smoothing. With a neutral label, opposing evidence
/// cancels into neutral; text with no polar words is neutral (or a tie without one). Labels
/// that are none of the three score zero.
pub(super) fn sentiment(text: &str, labels: &[String]) -> Result<TaskOutput, ProviderError> {
    let roles = SentimentLabels::find(labels)?;
    let (positive, negative) = polarity(text);
    let mut weights = vec![0.0; labels.len()];
    match roles.neutral {
        Some(neutral) => {
            weights[roles.positive] = positive + 0.25;
            weights[roles.negative] = negative + 0.25;
            weights[neutral] = 0.5 + positive.min(negative);
        }
        None => {
            weights[roles.positive] = positive + 0.5;
            weights[roles.negative] = negative + 0.5;
        }
    }
    Ok(classification(labels, &weights))
}

/// (positive, negative) evidence in `text`.
fn polarity(text: &str) -> (f64, f64) {
    let (mut positive, mut negative) = (0.0, 0.0);
    // Words left in the current negation's scope.
    let mut negated = 0;
    for token in tokens(text) {
        let Token::Word(word) = token else {
            negated = 0;
            continue;
        };
        if is_negator(&word) {
            negated = NEGATION_SCOPE;
            continue;
        }
        if word == "but" {
            negated = 0;
            continue;
        }
        let sign = if POSITIVE.contains(word.as_str()) {
            1
        } else if NEGATIVE.contains(word.as_str()) {
            -1
        } else {
            0
        };
        let sign = if negated > 0 { -sign } else { sign };
        match sign {
            1 => positive += 1.0,
            -1 => negative += 1.0,
            _ => {}
        }
        negated = negated.saturating_sub(1);
    }
    (positive, negative)
}

fn is_negator(word: &str) -> bool {
    word.ends_with("n't") || NEGATORS.contains(&word)
}

#[rustfmt::skip]
const NEGATORS: &[&str] = &[
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "cannot",
    "without", "hardly", "barely", "scarcely", "dont", "doesnt", "didnt", "isnt", "wasnt", "arent",
    "werent", "cant", "couldnt", "wont", "wouldnt", "shouldnt", "havent", "hasnt", "hadnt", "aint",
];

static POSITIVE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| POSITIVE_WORDS.iter().copied().collect());
static NEGATIVE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| NEGATIVE_WORDS.iter().copied().collect());

#[rustfmt::skip]
const POSITIVE_WORDS: &[&str] = &[
    "good", "great", "excellent", "amazing", "awesome", "fantastic", "wonderful", "brilliant",
    "superb", "outstanding", "perfect", "best", "better", "nice", "fine", "lovely", "beautiful",
    "pleasant", "delightful", "enjoy", "enjoyed", "enjoying", "enjoys", "enjoyable", "love",
    "loved", "loves", "loving", "lovable", "liked", "happy", "happier", "happiest", "happily",
    "glad", "pleased", "satisfied", "satisfying", "satisfaction", "impressive", "impressed",
    "recommend", "recommended", "favorite", "favourite", "fun", "helpful", "useful", "easy",
    "easier", "effortless", "smooth", "fast", "quick", "quickly", "reliable", "stable", "clean",
    "clear", "friendly", "kind", "polite", "generous", "thanks", "thank", "thankful", "grateful",
    "appreciate", "appreciated", "exciting", "excited", "incredible", "remarkable", "exceptional",
    "terrific", "fabulous", "marvelous", "marvellous", "splendid", "stellar", "positive", "success",
    "successful", "successfully", "win", "wins", "winning", "won", "worth", "worthwhile",
    "valuable", "affordable", "cheap", "comfortable", "cool", "correct", "cute", "elegant",
    "efficient", "effective", "fair", "fresh", "gorgeous", "improve", "improved", "improvement",
    "improves", "innovative", "joy", "joyful", "keen", "solid", "strong", "safe", "secure",
    "supportive", "superior", "trust", "trusted", "trustworthy", "wow", "yay", "calm", "charming",
    "cheerful", "convenient", "creative", "delight", "delighted", "eager", "ease", "enthusiastic",
    "flawless", "fortunate", "gain", "gains", "genius", "hope", "hopeful", "ideal",
    "intuitive", "kudos", "lucky", "masterpiece", "neat", "optimistic", "outstandingly",
    "passionate", "peaceful", "phenomenal", "pleasure", "polished", "praise", "productive", "proud",
    "quality", "refreshing", "relief", "relieved", "respect", "responsive", "rewarding", "robust",
    "seamless", "sincere", "smart", "smile", "smiling", "sparkling", "spectacular", "stunning",
    "super", "thrilled", "thriving", "tidy", "upbeat", "valid", "victory", "warm", "welcome",
    "wise", "works", "worked", "working", "resolved", "fixed", "accurate", "adore", "adored",
    "admire", "amazed", "beneficial", "benefit", "bliss", "bright", "celebrate", "champion",
    "clever", "confident", "congratulations", "courteous", "dependable", "enjoyment", "excellence",
    "fan", "glowing", "graceful", "handy", "harmonious", "healthy", "honest", "inspiring",
    "laugh", "lively", "magnificent", "nicely", "painless", "profit", "profitable", "prompt",
    "recommendable", "satisfactory", "simple", "sleek", "speedy", "stylish", "sweet", "tasty",
    "thorough", "timely", "wonderfully",
];

#[rustfmt::skip]
const NEGATIVE_WORDS: &[&str] = &[
    "bad", "worse", "worst", "terrible", "horrible", "awful", "poor", "poorly", "disappointing",
    "disappointed", "disappointment", "hate", "hated", "hates", "hating", "dislike", "disliked",
    "sad", "unhappy", "angry", "annoyed", "annoying", "frustrated", "frustrating", "frustration",
    "upset", "useless", "broken", "break", "breaks", "broke", "bug", "bugs", "buggy", "crash",
    "crashed", "crashes", "crashing", "error", "errors", "fail", "failed", "fails", "failing",
    "failure", "fault", "faulty", "slow", "slowly", "late", "delay", "delayed", "delays",
    "difficult", "hard", "confusing", "confused", "complicated", "expensive", "overpriced", "waste",
    "wasted", "rude", "unfriendly", "unhelpful", "unreliable", "unstable", "unusable", "wrong",
    "problem", "problems", "issue", "issues", "complaint", "complain", "complained", "refund",
    "ugly", "dirty", "boring", "bored", "dull", "mediocre", "lousy", "pathetic", "ridiculous",
    "disgusting", "dreadful", "horrendous", "nasty", "painful", "pain", "regret", "regrets",
    "regretted", "sorry", "scam", "fraud", "lost", "lose", "loses", "losing", "loss", "negative",
    "damaged", "damage", "defective", "dangerous", "unsafe", "insecure", "inaccurate", "incorrect",
    "invalid", "missing", "worry", "worried", "fear", "afraid", "scared", "stress", "stressful",
    "hostile", "hurt", "hurts", "cheated", "abysmal", "abuse", "angrily", "anxious", "appalling",
    "atrocious", "bitter", "blame", "bland", "clumsy", "corrupt", "crappy", "cruel", "cumbersome",
    "defect", "deficient", "depressed", "depressing", "despise", "destroy", "destroyed",
    "difficulty", "disaster", "disastrous", "disgusted", "dishonest", "disorganized", "displeased",
    "dissatisfied", "distressed", "dismal", "fake", "flawed", "flaw", "flaws", "fragile", "garbage",
    "glitch", "glitches", "greedy", "grim", "gross", "hassle", "hopeless", "horrid", "ignored",
    "impossible", "incompetent", "inconvenient", "inferior", "infuriating", "irritating", "junk",
    "lacking", "lag", "laggy", "lame", "leak", "leaks", "mess", "messy", "misleading", "miserable",
    "mistake", "mistakes", "noisy", "obnoxious", "offensive", "outrage", "outrageous", "overrated",
    "poorer", "rubbish", "sloppy", "shoddy", "stupid", "suck", "sucks", "sucked", "terribly",
    "trash", "trouble", "troublesome", "unacceptable", "unfortunate", "unfortunately", "unpleasant",
    "unprofessional", "unresponsive", "unsatisfied", "unsatisfactory", "upsetting", "weak",
    "worthless", "yuck", "cancel", "cancelled", "canceled", "stuck", "freeze", "freezes",
    "frozen", "outage", "unavailable",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Task;
    use crate::providers::TaskRequest;
    use crate::providers::local::tests::{assert_sums_to_one, call, classify, labels, with_input};

    #[tokio::test]
    async fn given_praise_when_classified_by_lexicon_then_positive_wins() {
        let (label, confidence, scores) =
            classify("lexicon", "I love this product, it is great and works perfectly", &["POSITIVE", "NEGATIVE"])
                .await;
        assert_eq!(label, "POSITIVE");
        assert!(confidence > 0.7);
        assert_eq!(confidence, scores["POSITIVE"]);
        assert_sums_to_one(&scores);
    }

    #[tokio::test]
    async fn given_complaints_when_classified_by_lexicon_then_negative_wins() {
        let (label, _, scores) =
            classify("lexicon", "Terrible support. The app is slow and broken.", &["positive", "negative"]).await;
        assert_eq!(label, "negative");
        assert_sums_to_one(&scores);
    }

    #[tokio::test]
    async fn given_negated_praise_when_classified_by_lexicon_then_negative_wins() {
        let (label, _, _) = classify("lexicon", "This was not good. I was never happy with it.", &["POS", "NEG"]).await;
        assert_eq!(label, "NEG");
        let (label, _, _) = classify("lexicon", "The update isn't bad at all", &["POS", "NEG"]).await;
        assert_eq!(label, "POS");
    }

    #[tokio::test]
    async fn given_factual_text_and_a_neutral_label_when_classified_by_lexicon_then_neutral_wins() {
        let (label, confidence, scores) =
            classify("lexicon", "The meeting is on Thursday at noon.", &["Positive", "Neutral", "Negative"]).await;
        assert_eq!(label, "Neutral");
        assert_eq!(confidence, scores["Neutral"]);
        assert_eq!(scores.keys().collect::<Vec<_>>(), ["Negative", "Neutral", "Positive"]);
        assert_sums_to_one(&scores);
    }

    #[tokio::test]
    async fn given_extra_labels_when_classified_by_lexicon_then_they_score_zero() {
        let (label, _, scores) = classify("lexicon", "great", &["NEGATIVE", "POSITIVE", "SPAM"]).await;
        assert_eq!(label, "POSITIVE");
        assert_eq!(scores["SPAM"], 0.0);
        assert_eq!(scores.len(), 3);
        assert_sums_to_one(&scores);
    }

    #[tokio::test]
    async fn given_labels_without_a_negative_when_classified_by_lexicon_then_it_is_invalid() {
        let request = TaskRequest { labels: labels(&["billing", "positive"]), ..with_input(Task::Classify, "x") };
        let err = call("lexicon", &request).await.unwrap_err();
        let ProviderError::InvalidRequest(message) = &err else { panic!("{err:?}") };
        assert!(message.contains("NEGATIVE") && message.contains("billing"), "{message}");
    }
}
