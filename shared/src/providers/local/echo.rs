//! `local:echo`: the prompt and input back, cut at `max_tokens`.

use crate::domain::{FinishReason, TaskOutput};
use crate::providers::TaskRequest;

/// The prompt, then the input after a blank line. With `max_tokens`, cut at `max_tokens × 4`
/// characters (the same four-characters-a-token rule as [`estimate_tokens`], so the reported
/// usage never exceeds the limit), backing off to the last whole word.
///
/// [`estimate_tokens`]: crate::providers::estimate_tokens
pub(super) fn echo(request: &TaskRequest) -> TaskOutput {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Task, Usage};
    use crate::providers::local::tests::{call, request, with_input};

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
}
