//! Errors as RFC 9457 `application/problem+json`: a stable `type` URI per kind of problem,
//! a human `detail`, and per-field `errors` for validation. Internal failures are logged
//! here and reach the client only as a generic "try again later".

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{ToResponse, ToSchema};

use crate::domain::Problem;
use crate::engine::{EngineError, Throttled};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// A stable URI naming the kind of problem; clients branch on this, not on `title`.
    #[serde(rename = "type")]
    #[schema(example = "https://chorus.dev/problems/validation")]
    pub kind: String,
    /// A short summary of the kind of problem; the same for every occurrence.
    #[schema(example = "The request is invalid")]
    pub title: String,
    /// The HTTP status code, repeated for clients that only see the body.
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong this time, in words the client can act on.
    pub detail: String,
    /// Every problem found in the request body, located by JSON Pointer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
}

/// Declares a problem response that several routes share, for the OpenAPI document only
/// (handlers build problems through [`ApiError`]; these types are never constructed).
macro_rules! shared_problem_responses {
    ($($(#[$doc:meta])* $name:ident = $description:literal;)*) => {$(
        $(#[$doc])*
        #[derive(ToResponse)]
        #[response(description = $description, content_type = "application/problem+json")]
        #[allow(dead_code)]
        pub struct $name(ProblemDetails);
    )*};
}

shared_problem_responses! {
    /// 400 for a body that is not well-formed JSON.
    MalformedJson = "Malformed JSON";
    /// 401 on every authenticated route.
    Unauthorized = "Missing or unknown API key, or two headers carrying different keys";
    /// 415 for a body sent with another content type.
    NotJson = "A body was sent that is not JSON";
    /// 422 for a body with unknown or mistyped members.
    UnknownMembers = "The body has unknown or mistyped members";
    /// 503 when a backend fails; the client may retry.
    Unavailable = "A backend is unavailable; retry later";
    /// 429 when the tenant has used its request rate; `Retry-After` says when to come back.
    TooManyRequests = "The tenant's request rate is used up; retry after `Retry-After` seconds";
}

/// Everything a request can fail with at the HTTP edge.
#[derive(Debug)]
pub enum ApiError {
    /// No usable credentials, or credentials no tenant owns.
    Unauthorized(String),
    /// The request is unusable as sent (malformed JSON, bad header or query).
    BadRequest(String),
    /// No such resource for this tenant (another tenant's run included).
    NotFound(String),
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// The request conflicts with the resource's current state.
    Conflict(String),
    /// The body is larger than [`super::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// The body is not JSON.
    UnsupportedMediaType(String),
    /// The body is well-formed JSON but wrong in these places.
    Unprocessable(Vec<Problem>),
    /// A backend failed; the cause is logged, never shown.
    Unavailable,
    /// The tenant is over its request rate.
    TooManyRequests(Throttled),
}

/// Where each kind of problem is documented, and its fixed title.
struct Kind {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
}

impl ApiError {
    fn kind(&self) -> Kind {
        let (status, slug, title) = match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "The request is malformed"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict with the current state"),
            ApiError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "The request body is too large")
            }
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request is invalid"),
            ApiError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable")
            }
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
        };
        Kind { status, slug, title }
    }

    /// The problem body this error is shown as.
    pub fn to_problem(&self) -> ProblemDetails {
        let Kind { status, slug, title } = self.kind();
        let (detail, errors) = match self {
            ApiError::Unauthorized(detail)
            | ApiError::BadRequest(detail)
            | ApiError::NotFound(detail)
            | ApiError::Conflict(detail)
            | ApiError::UnsupportedMediaType(detail) => (detail.clone(), Vec::new()),
            ApiError::MethodNotAllowed => {
                ("this resource does not support the request's method; see the Allow header".to_owned(), Vec::new())
            }
            ApiError::PayloadTooLarge => {
                (format!("the request body is larger than the limit of {} bytes", super::MAX_BODY_BYTES), Vec::new())
            }
            ApiError::Unprocessable(errors) => {
                let detail = match errors.len() {
                    1 => "the request has 1 problem; see `errors`".to_owned(),
                    n => format!("the request has {n} problems; see `errors`"),
                };
                (detail, errors.clone())
            }
            ApiError::Unavailable => {
                ("a backend is temporarily unavailable; retry the request later".to_owned(), Vec::new())
            }
            ApiError::TooManyRequests(Throttled { retry_after, limit }) => (
                format!(
                    "this tenant may make {} requests a minute after a burst of {}; retry in {} s",
                    limit.per_minute,
                    limit.burst,
                    retry_seconds(*retry_after)
                ),
                Vec::new(),
            ),
        };
        ProblemDetails { kind: problem_type(slug), title: title.to_owned(), status: status.as_u16(), detail, errors }
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> StatusCode {
        self.kind().status
    }
}

/// A wait in whole seconds, rounded up (a client that waits that long finds a token).
fn retry_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The stable `type` URI for a problem slug.
pub fn problem_type(slug: &str) -> String {
    format!("https://chorus.dev/problems/{slug}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Serializing a struct of strings cannot fail; the fallback keeps the lint happy
        // without a panic path.
        let body = serde_json::to_vec(&self.to_problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            // RFC 9110 requires a challenge on every 401.
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            // RFC 9110 Retry-After, and the IETF RateLimit header fields (draft-ietf-httpapi-
            // ratelimit-headers): the policy (a minute's quota) and what is left now.
            ApiError::TooManyRequests(Throttled { retry_after, limit }) => {
                let seconds = retry_seconds(retry_after);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                let policy = format!("\"tenant\";q={};w=60", limit.per_minute);
                let now = format!("\"tenant\";r=0;t={seconds}");
                for (name, value) in [("ratelimit-policy", policy), ("ratelimit", now)] {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(name, value);
                    }
                }
            }
            _ => {}
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Invalid(problems) => ApiError::Unprocessable(problems),
            EngineError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            EngineError::Conflict(detail) => ApiError::Conflict(detail),
            EngineError::Port(source) => {
                // The cause may name tables, queues or hosts: log it for operators only.
                tracing::error!(error = %source, cause = ?std::error::Error::source(&source), "backend failure while serving a request");
                ApiError::Unavailable
            }
            EngineError::Interrupted(source) => {
                tracing::error!(error = %source, "request work interrupted");
                ApiError::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortError;

    #[test]
    fn port_errors_are_hidden_behind_a_generic_503() {
        let err = EngineError::Port(PortError::Corrupt { what: "table runs-prod", detail: "secret-ish".into() });
        let api: ApiError = err.into();
        let problem = api.to_problem();
        assert_eq!(problem.status, 503);
        assert!(!problem.detail.contains("runs-prod"));
        assert!(!problem.detail.contains("secret"));
    }

    #[test]
    fn validation_problems_keep_every_pointer() {
        let api: ApiError = EngineError::Invalid(vec![
            Problem::new("/workflow/steps/0/model", "unknown model"),
            Problem::new("/input/prompt", "required"),
        ])
        .into();
        let problem = api.to_problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.kind, "https://chorus.dev/problems/validation");
        assert_eq!(problem.errors.len(), 2);
    }
}
