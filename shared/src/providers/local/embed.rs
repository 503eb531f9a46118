//! `local:hash-embed`: feature hashing of words and character trigrams with FNV-1a 64.

use super::EMBED_DIMS;
use super::text::words;

/// Weight of a character trigram relative to a whole word: enough to bring `run` and
/// `running` together without drowning out whole-word matches.
const TRIGRAM_WEIGHT: f32 = 0.5;

/// Feature hashing: each lowercase word and each character trigram of ` word ` adds ±weight
/// to one of 256 buckets (bucket and sign from FNV-1a 64, stable across builds and
/// platforms, unlike `DefaultHasher`), then the vector is L2-normalised. No words → zeros.
pub(super) fn embed(text: &str) -> Vec<f32> {
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
    use super::*;
    use crate::domain::{Task, TaskOutput};
    use crate::providers::local::tests::{call, with_input};

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

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
}
