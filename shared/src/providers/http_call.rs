//! What every HTTP adapter shares: the client, sending a request and reading the answer, and
//! the parts of error mapping that are the same for every provider (transport failures,
//! `Retry-After`, the meaning of a bare status). Each adapter refines the last with what its
//! error bodies say (quota, content filter, …) in its own `error_from` function.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::ProviderError;

/// Provider messages are cut to this many characters before they reach a step's error.
const MAX_MESSAGE_CHARS: usize = 300;

/// How long a connection may take to open; the router bounds each whole attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A provider's answer, read whole.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The HTTP client every adapter shares, built once per process. No redirects: an API that
/// redirects is misconfigured, and following would resend credentials elsewhere.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::http_client()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chorus/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` and reads the whole answer. Transport failures map to `Timeout` or
/// `Transient`; reqwest's messages are not used because they carry the URL.
pub async fn send(request: reqwest::RequestBuilder) -> Result<HttpReply, ProviderError> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(transport_error)?;
    Ok(HttpReply { status, headers, body })
}

fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout
    } else if error.is_connect() {
        ProviderError::Transient("could not connect to the provider".to_owned())
    } else if error.is_body() || error.is_decode() {
        ProviderError::Transient("the connection broke while reading the answer".to_owned())
    } else {
        ProviderError::Transient("the request to the provider failed".to_owned())
    }
}

/// Parses a success body; a body that does not match is `MalformedResponse` naming where it
/// broke, never echoing the body.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        ProviderError::MalformedResponse(format!("at `{path}`: {}", err.inner()))
    })
}

/// The delay a provider asked for: `retry-after-ms`, else `Retry-After` in seconds or as an
/// HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// What a bare status means, for answers whose body says nothing more specific.
pub fn error_for_status(status: StatusCode, headers: &HeaderMap, message: &str) -> ProviderError {
    let message = short(message);
    let described = if message.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {message}") };
    match status.as_u16() {
        // Never the provider's words: they may quote part of the key.
        401 | 403 => ProviderError::Auth(format!("the provider refused the credentials (HTTP {status})")),
        402 => ProviderError::QuotaExhausted(described),
        408 | 504 => ProviderError::Timeout,
        429 => ProviderError::RateLimited { retry_after: retry_after(headers) },
        503 | 529 => ProviderError::Overloaded { retry_after: retry_after(headers) },
        500..=599 => ProviderError::Transient(described),
        _ => ProviderError::InvalidRequest(described),
    }
}

/// A provider's message, trimmed and cut to a readable length.
pub fn short(message: &str) -> String {
    let message = message.trim();
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn given_retry_after_in_its_three_spellings_when_read_then_each_gives_the_delay() {
        assert_eq!(retry_after(&headers(&[("retry-after", "7")])), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "250")])), Some(Duration::from_millis(250)));
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let date = jiff::fmt::rfc2822::to_string(&soon.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let wait = retry_after(&headers(&[("retry-after", &date)])).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn given_bare_statuses_when_mapped_then_they_follow_the_taxonomy() {
        let none = HeaderMap::new();
        let kind = |code: u16| error_for_status(StatusCode::from_u16(code).unwrap(), &none, "m").kind().as_str();
        assert_eq!(
            [400, 401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 529].map(kind),
            [
                "invalid_request",
                "auth",
                "quota_exhausted",
                "auth",
                "invalid_request",
                "timeout",
                "rate_limited",
                "transient",
                "transient",
                "overloaded",
                "timeout",
                "overloaded"
            ]
        );
        let auth = error_for_status(StatusCode::UNAUTHORIZED, &none, "Incorrect API key provided: sk-abc***xyz");
        assert!(!auth.to_string().contains("sk-"), "{auth}");
    }

    #[test]
    fn given_a_long_message_when_shortened_then_it_is_cut_on_a_char_boundary() {
        let long = "é".repeat(400);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn given_a_body_of_the_wrong_shape_when_parsed_then_the_error_names_the_path() {
        #[derive(Debug, serde::Deserialize)]
        struct Reply {
            #[allow(dead_code)]
            choices: Vec<u32>,
        }
        let err = parse::<Reply>(br#"{"choices": ["x"]}"#).unwrap_err();
        assert!(matches!(&err, ProviderError::MalformedResponse(m) if m.contains("choices[0]")), "{err:?}");
    }
}
