//! The offline, deterministic `local` provider: small non-AI algorithms named for what they
//! are, so every workflow runs with no keys and no network (DESIGN §7, §8).
//!
//! None of these is a language model. Each one does the simplest honest thing for its task:
//! echo the prompt, pick frequent sentences, count lexicon words, match label keywords, pull
//! values out of `key: value` lines, hash words into a vector, or fail on purpose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Completion, ModelInfo, Provider, ProviderError, TaskRequest, estimate_tokens};
use crate::domain::{FinishReason, Task, TaskOutput, Usage};

/// The prefix of every model here: `local:…`.
pub const PROVIDER: &str = "local";

/// Dimensions of `local:hash-embed` vectors.
pub const EMBED_DIMS: usize = 256;

/// The deterministic offline provider. Stateless and free; `temperature` is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProvider;

impl LocalProvider {
    /// The provider; it holds nothing.
    pub fn new() -> Self {
        Self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Echo,
    Extractive,
    Lexicon,
    Keywords,
    Extract,
    HashEmbed,
    Outage,
}

struct Spec {
    name: &'static str,
    model: Model,
    tasks: &'static [Task],
    description: &'static str,
}

const MODELS: [Spec; 7] = [
    Spec {
        name: "echo",
        model: Model::Echo,
        tasks: &[Task::Generate],
        description: "Not a language model: returns the prompt (then the input), cut at \
                      max_tokens × 4 characters.",
    },
    Spec {
        name: "extractive",
        model: Model::Extractive,
        tasks: &[Task::Summarize],
        description: "Extractive summary: keeps the sentences richest in frequent words \
                      (about a third, 1 to 5), in order.",
    },
    Spec {
        name: "lexicon",
        model: Model::Lexicon,
        tasks: &[Task::Classify],
        description: "Sentiment from a small English word list with simple negation; \
                      needs POSITIVE and NEGATIVE labels.",
    },
    Spec {
        name: "keywords",
        model: Model::Keywords,
        tasks: &[Task::Classify],
        description: "Counts each label's words in the text; the label with the most matches wins.",
    },
    Spec {
        name: "extract",
        model: Model::Extract,
        tasks: &[Task::Extract],
        description: "Fills a flat JSON Schema from `key: value` lines, emails, URLs, \
                      ISO dates, numbers, booleans and enum values.",
    },
    Spec {
        name: "hash-embed",
        model: Model::HashEmbed,
        tasks: &[Task::Embed],
        description: "256-dimension feature hashing of words and character trigrams: \
                      lexical overlap, no meaning.",
    },
    Spec {
        name: "outage",
        model: Model::Outage,
        tasks: &[Task::Generate, Task::Summarize, Task::Classify, Task::Extract, Task::Embed],
        description: "Always fails with a transient error, to exercise retries and fallbacks.",
    },
];

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        MODELS
            .iter()
            .map(|spec| ModelInfo {
                id: format!("{PROVIDER}:{}", spec.name),
                provider: PROVIDER.to_owned(),
                tasks: spec.tasks.to_vec(),
                description: spec.description.to_owned(),
            })
            .collect()
    }

    async fn call(&self, model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        self.supports(model, request.task).map_err(ProviderError::InvalidRequest)?;
        let Some(spec) = MODELS.iter().find(|spec| spec.name == model) else {
            return Err(ProviderError::InvalidRequest(format!("unknown model `{PROVIDER}:{model}`")));
        };
        let text = request.text();
        let output = match spec.model {
            Model::Echo => echo(request),
            Model::Extractive => TaskOutput::Summarize { text: summarize(text) },
            Model::Lexicon => sentiment(text, &request.labels)?,
            Model::Keywords => keywords(text, &request.labels)?,
            Model::Extract => TaskOutput::Extract { data: extract(text, request.schema.as_ref())? },
            Model::HashEmbed => TaskOutput::Embed { vector: embed(text), dims: EMBED_DIMS },
            Model::Outage => {
                return Err(ProviderError::Transient(
                    "local:outage always fails; it exists to exercise fallbacks".to_owned(),
                ));
            }
        };
        Ok(Completion { usage: usage(request, &output), output })
    }
}

/// Estimated tokens: the prompt and input in, the text (or JSON) out. Embeddings have no
/// output tokens, as with hosted embedding APIs.
fn usage(request: &TaskRequest, output: &TaskOutput) -> Usage {
    let input: Vec<&str> = [request.prompt.as_deref(), request.input.as_deref()].into_iter().flatten().collect();
    let output_tokens = match output {
        TaskOutput::Generate { text, .. } | TaskOutput::Summarize { text } => estimate_tokens(text),
        TaskOutput::Embed { .. } => 0,
        other => estimate_tokens(&other.to_json().to_string()),
    };
    Usage { input_tokens: estimate_tokens(&input.join("\n\n")), output_tokens, estimated: true }
}

// ---------------------------------------------------------------------------------------------
// Text helpers shared by the models.

/// Lowercase words: runs of letters and digits, keeping inner apostrophes (`don't`).
fn words(text: &str) -> Vec<String> {
    tokens(text)
        .into_iter()
        .filter_map(|token| match token {
            Token::Word(word) => Some(word),
            Token::Break => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// Clause punctuation; it ends the scope of a negation.
    Break,
}

fn tokens(text: &str) -> Vec<Token> {
    fn flush(word: &mut String, out: &mut Vec<Token>) {
        let trimmed = word.trim_matches('\'');
        if !trimmed.is_empty() {
            out.push(Token::Word(trimmed.to_lowercase()));
        }
        word.clear();
    }
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else if c == '\'' || c == '’' {
            word.push('\'');
        } else {
            flush(&mut word, &mut out);
            if matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '\n') {
                out.push(Token::Break);
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Byte offset of the first whole-word, case-insensitive occurrence of `needle` (already
/// lowercase) in `haystack` (already lowercase).
fn find_word(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.match_indices(needle).map(|(at, _)| at).find(|&at| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

// ---------------------------------------------------------------------------------------------
// local:echo

/// The prompt, then the input after a blank line. With `max_tokens`, cut at `max_tokens × 4`
/// characters (the same four-characters-a-token rule as [`estimate_tokens`], so the reported
/// usage never exceeds the limit), backing off to the last whole word.
fn echo(request: &TaskRequest) -> TaskOutput {
    let parts: Vec<&str> = [request.prompt.as_deref(), request.input.as_deref()].into_iter().flatten().collect();
    let text = parts.join("\n\n");
    match request.max_tokens.and_then(|max| truncate(&text, max)) {
        Some(cut) => TaskOutput::Generate { text: cut, finish_reason: FinishReason::Length },
        None => TaskOutput::Generate { text, finish_reason: FinishReason::Stop },
    }
}

/// `None` when `text` fits in `max_tokens`.
fn truncate(text: &str, max_tokens: u32) -> Option<String> {
    let limit = usize::try_from(max_tokens).unwrap_or(usize::MAX).saturating_mul(4);
    let (cut, _) = text.char_indices().nth(limit)?;
    let head = &text[..cut];
    let at_boundary = text[cut..].starts_with(char::is_whitespace);
    let head = match head.rfind(char::is_whitespace) {
        // Never cut a word in half, unless the first word alone is over the limit.
        Some(space) if !at_boundary && space > 0 => &head[..space],
        _ => head,
    };
    Some(head.trim_end().to_owned())
}

// ---------------------------------------------------------------------------------------------
// local:extractive

/// Sentences shorter than this are scored as if they had this many words, so headings and
/// fragments do not win on density alone.
const MIN_SENTENCE_WORDS: usize = 6;
const MAX_SUMMARY_SENTENCES: usize = 5;

/// Keeps about a third of the sentences (1 to 5): those whose words are most frequent in the
/// whole text, per word, in their original order.
fn summarize(text: &str) -> String {
    let sentences = sentences(text);
    if sentences.is_empty() {
        return String::new();
    }
    let sentence_words: Vec<Vec<String>> = sentences.iter().map(|s| words(s)).collect();
    let mut frequency: HashMap<&str, usize> = HashMap::new();
    for word in sentence_words.iter().flatten().filter(|w| is_content_word(w)) {
        *frequency.entry(word.as_str()).or_default() += 1;
    }
    let max = frequency.values().copied().max().unwrap_or(1).max(1) as f64;
    let scores: Vec<f64> = sentence_words
        .iter()
        .map(|words| {
            let weight: f64 =
                words.iter().filter_map(|w| frequency.get(w.as_str())).map(|&count| count as f64 / max).sum();
            weight / words.len().max(MIN_SENTENCE_WORDS) as f64
        })
        .collect();

    let keep = sentences.len().div_ceil(3).clamp(1, MAX_SUMMARY_SENTENCES);
    let mut ranked: Vec<usize> = (0..sentences.len()).collect();
    // Stable sort: equal scores keep the earlier sentence first.
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut chosen: Vec<usize> = ranked.into_iter().take(keep).collect();
    chosen.sort_unstable();
    chosen
        .into_iter()
        .map(|i| sentences[i].split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_content_word(word: &str) -> bool {
    word.chars().count() > 1 && !STOPWORDS.contains(word)
}

/// Splits on blank lines, then after `.`, `!` or `?` followed by whitespace and a character
/// that is not lowercase (so `e.g. this` stays whole).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for paragraph in paragraphs(text) {
        let mut start = 0;
        let mut chars = paragraph.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if !matches!(c, '.' | '!' | '?') {
                continue;
            }
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !matches!(d, '.' | '!' | '?' | '"' | '\'' | ')' | '”' | '’') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let rest = &paragraph[end..];
            let next = rest.trim_start().chars().next();
            if rest.starts_with(char::is_whitespace) && !next.is_some_and(char::is_lowercase) {
                out.push(paragraph[start..end].trim());
                start = end;
            }
        }
        out.push(paragraph[start..].trim());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Runs of non-blank lines.
fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push(&text[s..end]);
            }
        } else {
            start.get_or_insert(offset);
            end = offset + line.len();
        }
        offset += line.len();
    }
    if let Some(s) = start {
        out.push(&text[s..end]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Classification helpers.

/// Scores proportional to `weights` (uniform when all are zero); the best label wins, ties
/// going to the earlier label.
fn classification(labels: &[String], weights: &[f64]) -> TaskOutput {
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

fn require_labels(labels: &[String]) -> Result<(), ProviderError> {
    if labels.is_empty() {
        Err(ProviderError::InvalidRequest("`classify` needs at least one label".to_owned()))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// local:lexicon

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
fn sentiment(text: &str, labels: &[String]) -> Result<TaskOutput, ProviderError> {
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

#[rustfmt::skip]
const STOPWORDS_LIST: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "don't", "down", "during", "each",
    "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers",
    "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "it's", "its",
    "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off",
    "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same",
    "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while",
    "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves",
    "may", "might", "must", "shall", "one", "two", "many", "much", "every", "said", "says", "like",
    "get", "got", "make", "made", "us", "yet", "still", "even", "ever", "within", "without", "upon",
    "via", "per",
];

static STOPWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| STOPWORDS_LIST.iter().copied().collect());

// ---------------------------------------------------------------------------------------------
// local:keywords

/// Each label's words (split on anything not a letter or digit, so on spaces, `_` and `-`)
/// counted as whole words in the text. Scores are proportional to the counts; with no match at
/// all, scores are uniform and the first label wins.
fn keywords(text: &str, labels: &[String]) -> Result<TaskOutput, ProviderError> {
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

// ---------------------------------------------------------------------------------------------
// local:extract

/// Fills the top-level `properties` of `schema` from the text. For each property, in order:
/// a `key: value` or `key = value` line whose key matches the property name (any case,
/// `_`/`-` and camelCase read as spaces), coerced to the property's type; then the text at
/// large, by what the property is: an `enum` value appearing in it, an email, URL or ISO date
/// (by `format` or by name), a number or boolean right after the property's name, or the only
/// number in play when the schema has a single numeric property. Properties not found are left
/// out; nested objects are not filled. Validation against the schema is the router's job.
fn extract(text: &str, schema: Option<&Value>) -> Result<Value, ProviderError> {
    let properties = schema.and_then(|s| s.get("properties")).and_then(Value::as_object).ok_or_else(|| {
        ProviderError::InvalidRequest(
            "local:extract needs a JSON Schema object with `properties` in the step's `schema`".to_owned(),
        )
    })?;
    let lines = key_values(text);
    let lower = text.to_lowercase();
    let numeric_properties = properties.values().filter(|p| matches!(kind(p), "number" | "integer")).count();

    let mut data = Map::new();
    for (name, property) in properties {
        let key = normalize_key(name);
        let from_line = lines.iter().filter(|(k, _)| *k == key).find_map(|(_, value)| coerce(value, property));
        let found = from_line.or_else(|| search(text, &lower, &key, property, numeric_properties == 1));
        if let Some(value) = found {
            data.insert(name.clone(), value);
        }
    }
    Ok(Value::Object(data))
}

/// The property's JSON type: the first non-null one when `type` is a list; `string` for an
/// untyped property.
fn kind(property: &Value) -> &str {
    match property.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("string"),
        _ => "string",
    }
}

fn format(property: &Value) -> &str {
    property.get("format").and_then(Value::as_str).unwrap_or_default()
}

/// `first_name`, `first-name`, `firstName` and `First Name` all become `first name`.
fn normalize_key(key: &str) -> String {
    let mut spaced = String::with_capacity(key.len() + 4);
    let mut previous_lower = false;
    for c in key.chars() {
        if c.is_uppercase() && previous_lower {
            spaced.push(' ');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        spaced.push(if c == '_' || c == '-' { ' ' } else { c });
    }
    spaced.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `key: value` and `key = value` lines (bullets allowed), keys normalized.
fn key_values(text: &str) -> Vec<(String, &str)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches(['-', '*', '•']).trim_start();
            let split = line.find([':', '='])?;
            let (key, value) = (&line[..split], line[split + 1..].trim());
            let key = normalize_key(key);
            // A long "key" is a sentence that happens to contain a colon.
            (!key.is_empty() && key.len() <= 40 && !value.is_empty()).then_some((key, value))
        })
        .collect()
}

/// A `key: value` line's value as the property's type, or `None` when it is not one.
fn coerce(value: &str, property: &Value) -> Option<Value> {
    if let Some(options) = property.get("enum").and_then(Value::as_array) {
        return enum_value(&value.to_lowercase(), options);
    }
    match kind(property) {
        "number" | "integer" => number_value(numbers(value).next()?, kind(property)),
        "boolean" => boolean(value.split_whitespace().next()?).map(Value::Bool),
        "array" => {
            let items = property.get("items").cloned().unwrap_or(Value::Null);
            let values: Vec<Value> = value.split([',', ';']).filter_map(|item| coerce(item.trim(), &items)).collect();
            (!values.is_empty()).then_some(Value::Array(values))
        }
        "string" => match format(property) {
            "email" | "idn-email" => email(value).map(Value::from),
            "uri" | "url" | "iri" => url(value).map(Value::from),
            "date" => date(value).map(Value::from),
            "date-time" => date_time(value).map(Value::from),
            _ => {
                let unquoted = value.trim_matches(|c| c == '"' || c == '\'' || c == '`').trim();
                (!unquoted.is_empty()).then(|| Value::from(unquoted))
            }
        },
        // Objects and nulls are not filled from a line of text.
        _ => None,
    }
}

/// Looks for the property's value in the whole text, by its type, format and name.
fn search(text: &str, lower: &str, key: &str, property: &Value, only_number: bool) -> Option<Value> {
    if let Some(options) = property.get("enum").and_then(Value::as_array) {
        return enum_value(lower, options);
    }
    let named = |hints: &[&str]| hints.iter().any(|hint| key.split(' ').any(|part| part == *hint));
    match kind(property) {
        "string" => {
            let format = format(property);
            if matches!(format, "email" | "idn-email") || named(&["email", "mail"]) {
                email(text).map(Value::from)
            } else if matches!(format, "uri" | "url" | "iri") || named(&["url", "website", "link", "homepage"]) {
                url(text).map(Value::from)
            } else if format == "date-time" {
                date_time(text).map(Value::from)
            } else if format == "date" || named(&["date"]) {
                date(text).map(Value::from)
            } else {
                None
            }
        }
        kind @ ("number" | "integer") => {
            let after_name = after_word(text, lower, key).and_then(|rest| numbers(first_line(rest)).next());
            let value = after_name.or_else(|| if only_number { numbers(text).next() } else { None })?;
            number_value(value, kind)
        }
        "boolean" => {
            let rest = after_word(text, lower, key)?;
            first_line(rest)
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .take(3)
                .find_map(boolean)
                .map(Value::Bool)
        }
        _ => None,
    }
}

/// The text after the first whole-word occurrence of `key`.
fn after_word<'t>(text: &'t str, lower: &str, key: &str) -> Option<&'t str> {
    let at = find_word(lower, key)?;
    // Lowercasing can change byte lengths (rarely); only slice when the offsets still agree.
    (lower.len() == text.len()).then(|| &text[at + key.len()..])
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The enum option that appears earliest in `lower` as a whole word (string options), or that
/// `lower` is, read as JSON (numbers, booleans: only a `key: value` line is that short).
fn enum_value(lower: &str, options: &[Value]) -> Option<Value> {
    let parsed: Option<Value> = serde_json::from_str(lower.trim()).ok();
    let equals = |option: &Value| match (&parsed, option) {
        // `3` and `3.0` are the same enum value.
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(value), option) => value == option,
        (None, _) => false,
    };
    options
        .iter()
        .filter_map(|option| match option {
            Value::String(s) => find_word(lower, &s.to_lowercase()).map(|at| (at, option)),
            other => equals(other).then_some((0, option)),
        })
        .min_by_key(|(at, _)| *at)
        .map(|(_, option)| option.clone())
}

fn number_value(value: f64, kind: &str) -> Option<Value> {
    let integral = value.fract() == 0.0 && value.abs() < 9.0e15;
    if integral {
        // Whole numbers print as `3`, not `3.0`, whatever the declared type.
        return Some(Value::from(value as i64));
    }
    if kind == "integer" { None } else { serde_json::Number::from_f64(value).map(Value::Number) }
}

/// Plain numbers among whitespace-separated words: `42`, `-3.5`, `1,234.50`, `$19.99`, `15%`.
/// Dates, phone numbers and versions are not numbers here.
fn numbers(text: &str) -> impl Iterator<Item = f64> + '_ {
    text.split_whitespace().filter_map(|word| {
        let word = word
            .trim_start_matches(['$', '€', '£', '(', '"', '\''])
            .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '%', '"', '\'']);
        let digits = word.replace(',', "");
        let plain = digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
            && digits.chars().any(|c| c.is_ascii_digit());
        if plain { digits.parse().ok() } else { None }
    })
}

fn boolean(word: &str) -> Option<bool> {
    match word.to_lowercase().trim_matches(|c: char| !c.is_alphanumeric()) {
        "yes" | "true" | "y" => Some(true),
        "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// Whitespace-separated words with surrounding punctuation trimmed.
fn bare_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | '"' | ',' | ';'))
        .map(|word| word.trim_end_matches(['.', ':', '!', '?', '\'']))
        .filter(|word| !word.is_empty())
}

fn email(text: &str) -> Option<&str> {
    bare_words(text).map(|w| w.trim_start_matches("mailto:")).find(|word| {
        let Some((local, domain)) = word.split_once('@') else {
            return false;
        };
        let local_ok = !local.is_empty() && local.chars().all(|c| c.is_alphanumeric() || "._%+-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
        local_ok && domain_ok
    })
}

fn url(text: &str) -> Option<&str> {
    bare_words(text)
        .filter(|word| word.starts_with("http://") || word.starts_with("https://"))
        .find(|word| url::Url::parse(word).is_ok_and(|u| u.host().is_some()))
}

/// The first valid `YYYY-MM-DD` date not glued to other digits.
fn date(text: &str) -> Option<&str> {
    date_starts(text).map(|at| &text[at..at + 10]).find(|date| date.parse::<jiff::civil::Date>().is_ok())
}

/// An RFC 3339 timestamp (with its offset) starting where a date does.
fn date_time(text: &str) -> Option<&str> {
    date_starts(text).find_map(|at| {
        let word = text[at..].split_whitespace().next()?.trim_end_matches(['.', ',', ';', ')', '"', '\'']);
        word.parse::<jiff::Timestamp>().is_ok().then_some(word)
    })
}

/// Byte offsets of `dddd-dd-dd` not glued to other digits. The ten bytes are ASCII, so both
/// ends are char boundaries.
fn date_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(9)).filter(move |&i| {
        let shape = bytes[i..i + 10]
            .iter()
            .enumerate()
            .all(|(j, b)| if j == 4 || j == 7 { *b == b'-' } else { b.is_ascii_digit() });
        let glued_before = i > 0 && bytes[i - 1].is_ascii_digit();
        let glued_after = bytes.get(i + 10).is_some_and(u8::is_ascii_digit);
        shape && !glued_before && !glued_after
    })
}

// ---------------------------------------------------------------------------------------------
// local:hash-embed

/// Weight of a character trigram relative to a whole word: enough to bring `run` and
/// `running` together without drowning out whole-word matches.
const TRIGRAM_WEIGHT: f32 = 0.5;

/// Feature hashing: each lowercase word and each character trigram of ` word ` adds ±weight
/// to one of 256 buckets (bucket and sign from FNV-1a 64, stable across builds and
/// platforms, unlike `DefaultHasher`), then the vector is L2-normalised. No words → zeros.
fn embed(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0_f32; EMBED_DIMS];
    for word in words(text) {
        add_feature(&mut vector, "w", &word, 1.0);
        let padded: Vec<char> = format!(" {word} ").chars().collect();
        for trigram in padded.windows(3) {
            add_feature(&mut vector, "c", &trigram.iter().collect::<String>(), TRIGRAM_WEIGHT);
        }
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

fn add_feature(vector: &mut [f32], namespace: &str, feature: &str, weight: f32) {
    // Namespaced so the word `the` and the trigram `the` are different features.
    let hash = fnv1a64(format!("{namespace}:{feature}").as_bytes());
    // FNV's low bits mix poorly; fold the high half in before taking the bucket.
    let bucket = ((hash ^ (hash >> 32)) % EMBED_DIMS as u64) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    if let Some(slot) = vector.get_mut(bucket) {
        *slot += sign * weight;
    }
}

/// FNV-1a, 64-bit.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(task: Task) -> TaskRequest {
        TaskRequest {
            task,
            prompt: None,
            input: None,
            labels: Vec::new(),
            schema: None,
            max_tokens: None,
            temperature: None,
        }
    }

    fn with_input(task: Task, input: &str) -> TaskRequest {
        TaskRequest { input: Some(input.to_owned()), ..request(task) }
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    async fn call(model: &str, request: &TaskRequest) -> Result<Completion, ProviderError> {
        LocalProvider.call(model, request).await
    }

    async fn classify(model: &str, text: &str, names: &[&str]) -> (String, f64, BTreeMap<String, f64>) {
        let request = TaskRequest { labels: labels(names), ..with_input(Task::Classify, text) };
        match call(model, &request).await.unwrap().output {
            TaskOutput::Classify { label, confidence, scores } => (label, confidence, scores),
            other => panic!("not a classification: {other:?}"),
        }
    }

    fn assert_sums_to_one(scores: &BTreeMap<String, f64>) {
        let total: f64 = scores.values().sum();
        assert!((total - 1.0).abs() < 1e-9, "scores sum to {total}: {scores:?}");
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    // --- models and errors

    #[test]
    fn given_the_provider_when_listing_models_then_every_model_is_local_and_described() {
        let models = LocalProvider.models();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "local:echo",
                "local:extractive",
                "local:lexicon",
                "local:keywords",
                "local:extract",
                "local:hash-embed",
                "local:outage"
            ]
        );
        assert!(models.iter().all(|m| m.provider == "local" && !m.description.is_empty() && !m.tasks.is_empty()));
    }

    #[tokio::test]
    async fn given_a_model_and_the_wrong_task_when_called_then_the_request_is_invalid() {
        let err = call("echo", &with_input(Task::Summarize, "text")).await.unwrap_err();
        assert!(matches!(&err, ProviderError::InvalidRequest(m) if m.contains("cannot summarize")), "{err:?}");
    }

    #[tokio::test]
    async fn given_an_unknown_model_when_called_then_the_request_is_invalid() {
        let err = call("gpt-9", &with_input(Task::Generate, "text")).await.unwrap_err();
        assert!(matches!(&err, ProviderError::InvalidRequest(m) if m.contains("unknown model")), "{err:?}");
    }

    // --- echo

    #[tokio::test]
    async fn given_a_prompt_and_input_when_echoed_then_both_come_back_with_stop() {
        let request = TaskRequest { prompt: Some("Say hi".into()), ..with_input(Task::Generate, "to Ada") };
        let completion = call("echo", &request).await.unwrap();
        assert_eq!(
            completion.output,
            TaskOutput::Generate { text: "Say hi\n\nto Ada".into(), finish_reason: FinishReason::Stop }
        );
        assert_eq!(completion.usage, Usage { input_tokens: 4, output_tokens: 4, estimated: true });
    }

    #[tokio::test]
    async fn given_max_tokens_when_the_prompt_is_longer_then_it_is_cut_on_a_word_with_length() {
        let request = TaskRequest {
            prompt: Some("one two three four five six seven".into()),
            max_tokens: Some(3),
            ..request(Task::Generate)
        };
        let completion = call("echo", &request).await.unwrap();
        // 3 tokens = 12 characters: "one two thre" backs off to "one two".
        assert_eq!(
            completion.output,
            TaskOutput::Generate { text: "one two".into(), finish_reason: FinishReason::Length }
        );
        assert!(completion.usage.output_tokens <= 3);
    }

    #[tokio::test]
    async fn given_max_tokens_when_the_prompt_fits_then_it_is_whole_with_stop() {
        let request = TaskRequest { prompt: Some("short".into()), max_tokens: Some(2), ..request(Task::Generate) };
        let output = call("echo", &request).await.unwrap().output;
        assert_eq!(output, TaskOutput::Generate { text: "short".into(), finish_reason: FinishReason::Stop });
    }

    #[test]
    fn given_a_single_long_word_when_truncated_then_it_is_cut_mid_word_rather_than_emptied() {
        assert_eq!(truncate("abcdefghijkl", 2).as_deref(), Some("abcdefgh"));
        assert_eq!(truncate("abcd efgh", 1).as_deref(), Some("abcd"));
        assert_eq!(truncate("abcd", 1), None);
    }

    // --- extractive

    #[tokio::test]
    async fn given_a_text_about_one_topic_when_summarized_then_the_salient_sentence_is_kept() {
        let text = "The weather was mild on Tuesday. Solar panels convert sunlight into electricity. \
                    Solar panels on roofs cut electricity bills. Someone walked a dog.";
        let output = call("extractive", &with_input(Task::Summarize, text)).await.unwrap().output;
        // Four sentences keep two: the two about solar panels and electricity.
        assert_eq!(
            output,
            TaskOutput::Summarize {
                text: "Solar panels convert sunlight into electricity. Solar panels on roofs cut electricity bills."
                    .into()
            }
        );
    }

    #[test]
    fn given_salient_sentences_far_apart_when_summarized_then_they_keep_their_original_order() {
        let text = "Rust compiles to fast native code. Lunch was a sandwich. The weather was grey. \
                    Nobody called. Rust prevents data races at compile time and Rust code is fast.";
        assert_eq!(
            summarize(text),
            "Rust compiles to fast native code. Rust prevents data races at compile time and Rust code is fast."
        );
    }

    #[test]
    fn given_tricky_punctuation_when_splitting_then_sentences_follow_terminators_and_blank_lines() {
        let text = "Title line\n\nIt works, e.g. like this. Really?! \"Yes.\" Version 1.2 is out";
        assert_eq!(
            sentences(text),
            ["Title line", "It works, e.g. like this.", "Really?!", "\"Yes.\"", "Version 1.2 is out"]
        );
    }

    #[test]
    fn given_one_sentence_or_none_when_summarized_then_it_is_kept_or_empty() {
        assert_eq!(summarize("Only one sentence here"), "Only one sentence here");
        assert_eq!(summarize("  \n "), "");
    }

    // --- lexicon

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

    // --- keywords

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

    // --- extract

    fn extract_with(schema: Value, text: &str) -> Value {
        extract(text, Some(&schema)).unwrap()
    }

    #[tokio::test]
    async fn given_a_schema_when_extracting_then_found_values_are_filled_and_missing_ones_omitted() {
        let schema = json!({
            "type": "object",
            "properties": {
                "customer_name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
                "amount": {"type": "number"},
                "priority": {"type": "string", "enum": ["low", "medium", "high"]},
                "phone": {"type": "string"}
            }
        });
        let text = "Customer Name: Ada Lovelace\nPlease reply to ada@example.com. \
                    It is HIGH priority; the amount is $1,250.50 in total.";
        let request = TaskRequest { schema: Some(schema), ..with_input(Task::Extract, text) };
        let output = call("extract", &request).await.unwrap().output;
        assert_eq!(
            output,
            TaskOutput::Extract {
                data: json!({
                    "customer_name": "Ada Lovelace",
                    "email": "ada@example.com",
                    "amount": 1250.5,
                    "priority": "high"
                })
            }
        );
    }

    #[test]
    fn given_key_value_lines_when_extracting_then_values_are_coerced_to_the_property_types() {
        let schema = json!({"properties": {
            "orderId": {"type": "integer"},
            "express": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "due": {"type": "string", "format": "date"},
            "site": {"type": "string", "format": "uri"}
        }});
        let text = "- Order ID = 42\n* express: yes\ntags: red, green\n\
                    due: by 2024-03-05 latest\nsite: <https://example.com/x>.";
        assert_eq!(
            extract_with(schema, text),
            json!({"orderId": 42, "express": true, "tags": ["red", "green"], "due": "2024-03-05",
                   "site": "https://example.com/x"})
        );
    }

    #[test]
    fn given_free_text_when_extracting_then_numbers_follow_their_names_and_dates_urls_are_found() {
        let schema = json!({"properties": {
            "age": {"type": "integer"},
            "height": {"type": "number"},
            "signup_date": {"type": "string"},
            "website": {"type": "string"},
            "created": {"type": "string", "format": "date-time"},
            "verified": {"type": "boolean"}
        }});
        let text = "Height 1.82 m and age 37. Signed up 2023-11-02, see https://ada.dev. \
                    Created 2023-11-02T10:00:00Z. Verified: no";
        assert_eq!(
            extract_with(schema, text),
            json!({"age": 37, "height": 1.82, "signup_date": "2023-11-02", "website": "https://ada.dev",
                   "created": "2023-11-02T10:00:00Z", "verified": false})
        );
    }

    #[test]
    fn given_non_string_enums_when_extracting_then_only_an_exact_value_line_fills_them() {
        let schema = json!({"properties": {"stars": {"enum": [1, 2, 3]}, "tier": {"enum": ["gold", 0]}}});
        assert_eq!(extract_with(schema.clone(), "stars: 3.0\ntier: Gold member"), json!({"stars": 3, "tier": "gold"}));
        assert_eq!(extract_with(schema, "I give it 3 stars"), json!({}));
    }

    #[test]
    fn given_an_unlabelled_number_when_several_numeric_properties_exist_then_none_is_guessed() {
        let schema = json!({"properties": {"a": {"type": "number"}, "b": {"type": "number"}}});
        assert_eq!(extract_with(schema, "The total came to 12."), json!({}));
        let schema = json!({"properties": {"total": {"type": "number"}}});
        assert_eq!(extract_with(schema, "It came to 12."), json!({"total": 12}));
    }

    #[tokio::test]
    async fn given_no_schema_properties_when_extracting_then_the_request_is_invalid() {
        let request = TaskRequest { schema: Some(json!({"type": "string"})), ..with_input(Task::Extract, "x") };
        let err = call("extract", &request).await.unwrap_err();
        assert!(matches!(err, ProviderError::InvalidRequest(_)), "{err:?}");
    }

    // --- hash-embed

    async fn embedding(text: &str) -> Vec<f32> {
        match call("hash-embed", &with_input(Task::Embed, text)).await.unwrap().output {
            TaskOutput::Embed { vector, dims } => {
                assert_eq!(dims, 256);
                assert_eq!(vector.len(), 256);
                vector
            }
            other => panic!("not an embedding: {other:?}"),
        }
    }

    #[tokio::test]
    async fn given_text_when_embedded_then_the_vector_is_unit_length_and_repeatable() {
        let a = embedding("The quick brown fox").await;
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert_eq!(a, embedding("The quick brown fox").await);
        assert_eq!(a, embedding("the QUICK brown fox!").await);
    }

    #[tokio::test]
    async fn given_similar_and_unrelated_texts_when_embedded_then_similar_ones_are_closer() {
        let base = embedding("the cat sat on the mat").await;
        let similar = embedding("a cat sitting on a mat").await;
        let unrelated = embedding("quarterly revenue grew in europe").await;
        assert!(cosine(&base, &similar) > cosine(&base, &unrelated) + 0.2);
    }

    #[tokio::test]
    async fn given_empty_text_when_embedded_then_the_vector_is_zero_and_costs_no_output_tokens() {
        let completion = call("hash-embed", &with_input(Task::Embed, "  ")).await.unwrap();
        assert_eq!(completion.output, TaskOutput::Embed { vector: vec![0.0; 256], dims: 256 });
        assert_eq!(completion.usage.output_tokens, 0);
    }

    #[test]
    fn given_known_inputs_when_hashed_then_fnv1a64_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    // --- outage

    #[tokio::test]
    async fn given_the_outage_model_when_called_for_any_model_task_then_it_fails_transiently() {
        for task in [Task::Generate, Task::Summarize, Task::Classify, Task::Extract, Task::Embed] {
            let err = call("outage", &with_input(task, "x")).await.unwrap_err();
            assert!(err.is_retryable());
            assert_eq!(
                err,
                ProviderError::Transient("local:outage always fails; it exists to exercise fallbacks".into())
            );
        }
    }
}
