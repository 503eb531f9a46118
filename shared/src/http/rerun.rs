//! Handlers for running a run again: `retry` reopens a failed or cancelled run in place,
//! `fork` creates a new run from an ended one. Both answer like `POST /v1/runs` (202, the
//! run's links, `Location`) and honour `Idempotency-Key` the same way.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::AuthedTenant;
use super::body::ApiJson;
use super::problem::{ApiError, ProblemDetails, Unauthorized, Unavailable};
use super::runs::{IDEMPOTENT_REPLAYED, IdempotencyKey, RunAccepted, RunLinks, RunPath};
use crate::domain::{RunId, RunStatus, TenantId};
use crate::engine::ForkRequest;

/// Runs a failed or cancelled run again from where it stopped.
///
/// Like Step Functions' redrive: the steps that failed or were cancelled, and the steps
/// skipped because of them, run again; succeeded steps keep their outputs and are not paid
/// for again. The run is `running` again, and notifies again when it ends (under a new
/// `webhook-id`). The run must have stopped: a step still running under a worker is a 409
/// until it ends. Send an `Idempotency-Key` to retry the request safely: the same key
/// returns the same answer (with `Idempotent-Replayed: true`) and the run is reopened once.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/retry",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$",
            description = "1 to 255 printable ASCII characters; the same key retries the run once"),
    ),
    responses(
        (status = 202, description = "The run runs again", body = RunAccepted,
            headers(
                ("Location" = String, description = "The run's URL"),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same key retried the run"),
            ),
            links(
                ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")),
                    description = "The run retried")),
                ("GetRunEvents" = (operation_id = "run_events", parameters(("id" = "$response.body#/id")),
                    description = "Its history")),
            )),
        (status = 400, description = "Malformed Idempotency-Key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The run is not failed or cancelled, has no step to run again, still has a step running, or the Idempotency-Key was used for another request", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn retry_run(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    RunPath(run_id): RunPath,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Response, ApiError> {
    let retried = state.engine.retry(&tenant, &run_id, key.as_deref()).await?;
    let status = state.engine.run_view(&tenant, &run_id).await?.status;
    Ok(accepted(retried.run_id, status, retried.replayed))
}

/// Creates a new run from an ended one, reusing what need not run again.
///
/// The new run has the source's workflow with `overrides` merged into its steps, and `input`
/// (or the source's). The steps named in `from`, the steps changed, the steps that read
/// `input` when it changed, the steps that did not succeed in the source, and everything
/// downstream of them run; every other step is reused: created succeeded with the source's
/// output (marked `reused_from`, its cost not counted again). The run shows `forked_from`.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/fork",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The source run's id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$",
            description = "1 to 255 printable ASCII characters; the same key with the same body returns the same run"),
    ),
    request_body(content = ForkRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "The new run was accepted and will run asynchronously", body = RunAccepted,
            headers(
                ("Location" = String, description = "The new run's URL"),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same key created the run"),
            ),
            links(
                ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")),
                    description = "The new run")),
                ("GetRunEvents" = (operation_id = "run_events", parameters(("id" = "$response.body#/id")),
                    description = "Its history")),
                ("CancelRun" = (operation_id = "cancel_run", parameters(("id" = "$response.body#/id")),
                    description = "Cancel it")),
            )),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The source run has not ended, or the Idempotency-Key was used with another body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "An unknown step, a changed workflow or input that does not validate (pointers under `/from`, `/overrides/<step>/<field>`, `/input`), or nothing would run", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn fork_run(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    RunPath(source): RunPath,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(request): ApiJson<ForkRequest>,
) -> Result<Response, ApiError> {
    let forked = state.engine.fork(&tenant, &source, request, key.as_deref()).await?;
    let status = current_status(&state, &tenant, &forked.run_id, forked.created).await?;
    Ok(accepted(forked.run_id, status, !forked.created))
}

/// A new run is `queued`; a replay reports where the run actually is.
async fn current_status(
    state: &AppState,
    tenant: &TenantId,
    run_id: &RunId,
    created: bool,
) -> Result<RunStatus, ApiError> {
    if created { Ok(RunStatus::Queued) } else { Ok(state.engine.run_view(tenant, run_id).await?.status) }
}

/// 202 with the run's links and `Location`, marked replayed when an earlier request did it.
fn accepted(run_id: RunId, status: RunStatus, replayed: bool) -> Response {
    let links = RunLinks::for_run(&run_id);
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&links.self_) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    (StatusCode::ACCEPTED, headers, Json(RunAccepted { id: run_id, status, links })).into_response()
}
