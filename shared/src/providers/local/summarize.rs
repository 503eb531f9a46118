//! `local:extractive`: keeps the sentences richest in frequent words, in order.

use std::collections::HashMap;

use super::text::{STOPWORDS, words};

/// Sentences shorter than this are scored as if they had this many words, so headings and
/// fragments do not win on density alone.
const MIN_SENTENCE_WORDS: usize = 6;
const MAX_SUMMARY_SENTENCES: usize = 5;

/// Keeps about a third of the sentences (1 to 5): those whose words are most frequent in the
/// whole text, per word, in their original order.
pub(super) fn summarize(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Task, TaskOutput};
    use crate::providers::local::tests::{call, with_input};

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
}
