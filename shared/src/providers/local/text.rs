//! Text helpers shared by the `local` models: words, clause-aware tokens, whole-word search
//! and stopwords.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Lowercase words: runs of letters and digits, keeping inner apostrophes (`don't`).
pub(super) fn words(text: &str) -> Vec<String> {
    tokens(text)
        .into_iter()
        .filter_map(|token| match token {
            Token::Word(word) => Some(word),
            Token::Break => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    Word(String),
    /// Clause punctuation; it ends the scope of a negation.
    Break,
}

pub(super) fn tokens(text: &str) -> Vec<Token> {
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
pub(super) fn find_word(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.match_indices(needle).map(|(at, _)| at).find(|&at| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

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

pub(super) static STOPWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| STOPWORDS_LIST.iter().copied().collect());
