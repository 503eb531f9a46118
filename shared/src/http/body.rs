//! JSON request bodies with precise errors: 415 when the body is not declared as JSON, 400
//! (with line and column) when it is not JSON at all, 422 with a JSON Pointer when it is JSON
//! of the wrong shape, 413 when it is over [`super::MAX_BODY_BYTES`].

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::problem::ApiError;
use crate::domain::Problem;

/// A JSON body of type `T`; rejections are problem+json.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body (with any or no content type) or a JSON `null` is
/// `None`: for actions whose body only adds optional detail, such as approving a step.
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Checked before reading so a wrong client fails fast without uploading megabytes.
        require_json(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        require_json(&headers)?;
        // A `null` body says "nothing to add", as a `null` member means an absent one
        // everywhere in this API.
        if bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(None));
        }
        parse(&bytes).map(|value| OptionalJson(Some(value)))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    // `Bytes` honours the router's `DefaultBodyLimit`, so an oversized body stops being read
    // at the limit instead of being buffered whole.
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("the request body could not be read".to_owned())
        }
    })
}

/// Accepts `application/json` and `application/<anything>+json`, with any parameters.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let essence = declared.map(|value| value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let is_json = essence.as_deref().is_some_and(|mime| {
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    if is_json {
        Ok(())
    } else {
        let got = declared.map_or_else(|| "no content type".to_owned(), |value| format!("`{value}`"));
        Err(ApiError::UnsupportedMediaType(format!(
            "the request body must be sent as `Content-Type: application/json`, not {got}"
        )))
    }
}

/// Parses `bytes` as `T`: syntax first, so malformed JSON is always a 400 even when a type
/// error comes earlier in the text, then the shape, so the client learns where it is wrong.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty; send a JSON object".to_owned()));
    }
    if let Err(err) = serde_json::from_slice::<IgnoredAny>(bytes) {
        return Err(ApiError::BadRequest(format!("the request body is not valid JSON: {err}")));
    }
    // serde also accepts a struct written as an array of its fields; no client means that.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::Unprocessable(vec![Problem::new("", "the request body must be a JSON object")]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| ApiError::Unprocessable(vec![problem_from(&err)]))
}

/// Turns a shape error into a problem whose pointer names the offending member.
fn problem_from(err: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let mut pointer = String::new();
    for segment in err.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            serde_path_to_error::Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&escape_pointer(key));
            }
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    let inner = err.inner();
    let message = inner.to_string();
    // The pointer already says where; the position suffix would only repeat it less usefully.
    let suffix = format!(" at line {} column {}", inner.line(), inner.column());
    let detail = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
    // serde reports a missing member at its parent; point at the member itself.
    if let Some(field) = missing_field(&detail) {
        pointer.push('/');
        pointer.push_str(&escape_pointer(field));
    }
    Problem::new(pointer, detail)
}

/// The member named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// Escapes a member name for use in a JSON Pointer (RFC 6901 §3).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        name: String,
        #[serde(default)]
        tags: Vec<u32>,
    }

    fn unprocessable(body: &str) -> Vec<Problem> {
        match parse::<Shape>(body.as_bytes()) {
            Err(ApiError::Unprocessable(problems)) => problems,
            other => panic!("expected 422 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn shape_errors_point_at_the_member() {
        assert_eq!(unprocessable(r#"{"name": "a", "extra": 1}"#)[0].pointer, "/extra");
        assert_eq!(unprocessable(r#"{"name": "a", "tags": [1, "x"]}"#)[0].pointer, "/tags/1");
        let missing = unprocessable(r#"{"tags": []}"#);
        assert_eq!(missing[0].pointer, "/name");
        assert_eq!(missing[0].detail, "missing field `name`");
        assert_eq!(unprocessable(r#"["a"]"#)[0].pointer, "");
        assert_eq!(unprocessable(r#"{"a/b~": 1, "name": "x"}"#)[0].pointer, "/a~1b~0");
    }

    #[test]
    fn syntax_errors_win_over_shape_errors() {
        for body in [r#"{"extra": 1, "name": "#, "{} trailing", "", "  "] {
            assert!(matches!(parse::<Shape>(body.as_bytes()), Err(ApiError::BadRequest(_))), "{body}");
        }
    }

    #[test]
    fn json_media_types_are_recognised() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(value));
            require_json(&headers).is_ok()
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(require_json(&HeaderMap::new()).is_err());
    }
}
