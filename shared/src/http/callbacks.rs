//! The webhook function's API: `POST /v1/callbacks/{provider}/{token}`, where providers
//! that run jobs asynchronously (Replicate) report results. The engine verifies the
//! provider's signature and the URL's token, then completes the waiting step. Answers are
//! problem+json like the rest of the API; a provider retries on anything but a 2xx.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{ApiError, healthz, method_not_allowed, not_found};
use crate::engine::{CallbackError, CallbackOutcome, Engine};
use crate::providers::{Callback, CallbackRejection};

/// The callback route alone, for merging into another app (`chorus dev`).
pub fn callbacks_routes(engine: Arc<Engine>) -> Router {
    Router::new().route("/v1/callbacks/{provider}/{token}", post(provider_callback)).with_state(engine)
}

/// The callbacks API as the webhook function serves it.
pub fn callbacks_app(engine: Arc<Engine>) -> Router {
    callbacks_routes(engine)
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// `provider` and `token` from the path's last two segments. Read from the URI rather than
/// axum's path parameters because local Lambda emulation (`cargo lambda watch`) serves the
/// function under a prefix and does not fill API Gateway's parameters.
fn provider_and_token(uri: &Uri) -> Option<(&str, &str)> {
    let mut segments = uri.path().trim_end_matches('/').rsplit('/');
    let token = segments.next()?;
    let provider = segments.next()?;
    (segments.next() == Some("callbacks")).then_some((provider, token))
}

async fn provider_callback(State(engine): State<Arc<Engine>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some((provider, token)) = provider_and_token(&uri) else {
        return ApiError::NotFound("no resource at this path".to_owned()).into_response();
    };
    let callback = Callback { headers: &headers, body: &body, received_at: jiff::Timestamp::now() };
    match engine.receive_callback(provider, token, &callback).await {
        Ok(outcome) => {
            let status = match outcome {
                CallbackOutcome::Completed => "completed",
                CallbackOutcome::AlreadyDone => "already_done",
                CallbackOutcome::StillRunning => "still_running",
            };
            (StatusCode::OK, axum::Json(serde_json::json!({ "status": status }))).into_response()
        }
        Err(error) => {
            tracing::warn!(%provider, error = %error, "callback not taken");
            callback_problem(error).into_response()
        }
    }
}

fn callback_problem(error: CallbackError) -> ApiError {
    match error {
        CallbackError::UnknownJob => ApiError::NotFound("no pending job has this callback URL".to_owned()),
        CallbackError::Rejected(CallbackRejection::Malformed(detail)) => ApiError::BadRequest(detail),
        CallbackError::Rejected(CallbackRejection::Unavailable(detail)) => {
            tracing::error!(%detail, "cannot verify a callback");
            ApiError::Unavailable
        }
        CallbackError::Rejected(rejection) => ApiError::Unauthorized(rejection.to_string()),
        CallbackError::NotReady => {
            ApiError::Conflict("the job's step is not waiting for it yet; deliver again later".to_owned())
        }
        CallbackError::Engine(error) => {
            tracing::error!(error = %crate::error::error_chain(&error), "callback failed");
            ApiError::Unavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_callback_paths_when_read_then_provider_and_token_come_from_the_last_segments() {
        let read = |path: &str| {
            provider_and_token(&path.parse::<Uri>().unwrap_or_default()).map(|(p, t)| (p.to_owned(), t.to_owned()))
        };
        assert_eq!(read("/v1/callbacks/replicate/abc"), Some(("replicate".into(), "abc".into())));
        assert_eq!(read("/lambda-url/webhook/v1/callbacks/replicate/abc/"), Some(("replicate".into(), "abc".into())));
        assert_eq!(read("/v1/other/replicate/abc"), None);
    }
}
