//! Handlers for `/v1/runs` and `/v1/models`: thin translations between HTTP and the engine's
//! use cases. Every run is looked up through the caller's tenant, so another tenant's run is
//! indistinguishable from one that does not exist.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AuthedTenant;
use super::body::{ApiJson, OptionalJson};
use super::problem::{ApiError, MalformedJson, NotJson, ProblemDetails, Unauthorized, Unavailable, UnknownMembers};
use crate::domain::{RunEvent, RunId, RunStatus, StepId};
use crate::engine::{ApprovalDecision, RunView, Submission};
use crate::ports::RunSummary;
use crate::providers::ModelInfo;
use crate::routing::Route;

/// The request header that makes `POST /v1/runs` safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a `POST /v1/runs` answer that returns a run created by an earlier request.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// The answer to `POST /v1/runs`: where to find the run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunAccepted {
    #[schema(value_type = String, example = "run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub id: RunId,
    /// `queued` for a new run; the current status for an idempotent replay.
    pub status: RunStatus,
    pub links: RunLinks,
}

/// Links to a run's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RunLinks {
    /// The run itself (`GET`).
    #[serde(rename = "self")]
    #[schema(example = "/v1/runs/run_01jd7v1b0m4xk3r0c9z9qz5y7w")]
    pub self_: String,
    /// Its history (`GET`).
    #[schema(example = "/v1/runs/run_01jd7v1b0m4xk3r0c9z9qz5y7w/events")]
    pub events: String,
}

impl RunLinks {
    pub(super) fn for_run(id: &RunId) -> Self {
        Self { self_: format!("/v1/runs/{id}"), events: format!("/v1/runs/{id}/events") }
    }
}

/// One page of the tenant's runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Runs per page, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page, as it was returned; any other value is a 400.
    // Every cursor is 40 characters of unpadded base64url (a 30-byte run id); which of those
    // strings name a run no pattern can say.
    #[param(pattern = r"^[A-Za-z0-9_-]{40}$")]
    pub cursor: Option<String>,
}

/// The body of `GET /v1/runs/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventList {
    /// Oldest first.
    pub events: Vec<RunEvent>,
}

/// The body of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelList {
    /// Every `provider:model` a step may name.
    pub models: Vec<ModelInfo>,
    /// Configured route names: how each picks among its `provider:model` entries.
    #[schema(example = json!({"fast": {"strategy": "fallback", "models": ["openai:gpt-4o-mini", "local:echo"]}}))]
    pub routes: BTreeMap<String, Route>,
}

/// The optional `Idempotency-Key` header, checked before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(&IDEMPOTENCY_KEY) else {
            return Ok(IdempotencyKey(None));
        };
        // Non-ASCII bytes make `to_str` fail; the empty string is then refused below.
        let key = value.to_str().unwrap_or_default();
        // Printable ASCII only: the key is stored and compared byte for byte.
        let printable = key.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
            return Err(ApiError::BadRequest(format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
            )));
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

/// `{id}` in the path. A string that is not a run id names no run, so it is a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPath(pub RunId);

impl<S: Send + Sync> FromRequestParts<S> for RunPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| run_not_found())?;
        RunId::parse(&raw).map(RunPath).map_err(|_| run_not_found())
    }
}

/// `{id}` and `{step}` in the path; malformed ids are 404s for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPath(pub RunId, pub StepId);

impl<S: Send + Sync> FromRequestParts<S> for StepPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((run, step)) =
            Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| run_not_found())?;
        let run_id = RunId::parse(&run).map_err(|_| run_not_found())?;
        let step_id = StepId::parse(&step).map_err(|_| ApiError::NotFound("step not found".to_owned()))?;
        Ok(StepPath(run_id, step_id))
    }
}

fn run_not_found() -> ApiError {
    ApiError::NotFound("run not found".to_owned())
}

/// Submits a workflow run.
///
/// Validates the workflow and its input, stores the run and queues its first steps. Send an
/// `Idempotency-Key` to retry safely: the same key with the same body returns the same run
/// (with `Idempotent-Replayed: true`); with another body it is a 409.
#[utoipa::path(
    post,
    path = "/v1/runs",
    tag = "runs",
    params(
        // Printable ASCII; no space at either end, because HTTP strips it before the server
        // sees the key.
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$",
            description = "1 to 255 printable ASCII characters; the same key with the same body returns the same run"),
    ),
    request_body(content = Submission, content_type = "application/json"),
    responses(
        (status = 202, description = "The run was accepted and will run asynchronously", body = RunAccepted,
            headers(
                ("Location" = String, description = "The run's URL"),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same key created the run"),
            ),
            links(
                ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")),
                    description = "The run just accepted")),
                ("GetRunEvents" = (operation_id = "run_events", parameters(("id" = "$response.body#/id")),
                    description = "Its history")),
                ("CancelRun" = (operation_id = "cancel_run", parameters(("id" = "$response.body#/id")),
                    description = "Cancel it")),
            )),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, response = inline(Unauthorized)),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The workflow or input is invalid; every problem is listed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn create_run(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(submission): ApiJson<Submission>,
) -> Result<Response, ApiError> {
    let submitted = state.engine.submit(&tenant, submission, key.as_deref()).await?;
    let run_id = submitted.run_id;
    // A replay may find the run well past `queued`; report where it actually is.
    let status =
        if submitted.created { RunStatus::Queued } else { state.engine.run_view(&tenant, &run_id).await?.status };
    let links = RunLinks::for_run(&run_id);
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&links.self_) {
        headers.insert(header::LOCATION, location);
    }
    if !submitted.created {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    let body = RunAccepted { id: run_id, status, links };
    Ok((StatusCode::ACCEPTED, headers, Json(body)).into_response())
}

/// Lists the tenant's runs, newest first.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    params(ListParams),
    responses(
        (status = 200, description = "One page of runs", body = RunList,
            links(
                ("GetFirstRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/runs/0/id")),
                    description = "The newest run of the page")),
                ("GetNextPage" = (operation_id = "list_runs", parameters(("cursor" = "$response.body#/next_cursor")),
                    description = "The next page, when `next_cursor` is not `null`")),
            )),
        (status = 400, description = "Bad `limit` or `cursor`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, response = inline(Unauthorized)),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn list_runs(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(params) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("`limit` must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state.engine.list_runs(&tenant, after.as_ref(), limit as usize).await?;
    Ok(Json(RunList { runs: page.runs, next_cursor: page.next_after.as_ref().map(encode_cursor) }))
}

/// Clients get the cursor wrapped, so they treat it as opaque and its content may change
/// without breaking anyone.
fn encode_cursor(after: &RunId) -> String {
    URL_SAFE_NO_PAD.encode(after.as_str())
}

fn decode_cursor(opaque: &str) -> Result<RunId, ApiError> {
    URL_SAFE_NO_PAD
        .decode(opaque)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| RunId::parse(&text).ok())
        .ok_or_else(|| ApiError::BadRequest("`cursor` is not a cursor this API returned".to_owned()))
}

/// A run with every step's progress, output and cost.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "The run id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "The run", body = RunView,
            links(
                ("GetRunEvents" = (operation_id = "run_events", parameters(("id" = "$response.body#/id")),
                    description = "Its history")),
                // A client learns step ids from the run; the first step is the one a link can name.
                ("ApproveFirstStep" = (operation_id = "approve_step",
                    parameters(("id" = "$response.body#/id"), ("step" = "$response.body#/steps/0/id")),
                    description = "Approve its first step, when that step waits for approval")),
                ("RejectFirstStep" = (operation_id = "reject_step",
                    parameters(("id" = "$response.body#/id"), ("step" = "$response.body#/steps/0/id")),
                    description = "Reject its first step, when that step waits for approval")),
            )),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    RunPath(run_id): RunPath,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(state.engine.run_view(&tenant, &run_id).await?))
}

/// Cancels an unfinished run: no further steps start and the client is notified.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    tag = "runs",
    params(("id" = String, Path, description = "The run id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 202, description = "The run is cancelled; steps already calling a provider finish but their results are discarded", body = RunView),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The run already ended", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    RunPath(run_id): RunPath,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    state.engine.cancel(&tenant, &run_id).await?;
    let view = state.engine.run_view(&tenant, &run_id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Approves a step waiting for approval; the run goes on.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/steps/{step}/approve",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
        ("step" = String, Path, description = "The approval step's id", pattern = r"^[a-z][a-z0-9_]{0,63}$"),
    ),
    request_body(content = Option<ApprovalDecision>, content_type = "application/json", description = "Optional: who decided and why; an empty body is fine"),
    responses(
        (status = 200, description = "The run after the decision", body = RunView),
        (status = 400, response = inline(MalformedJson)),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run or step for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The step is not waiting for approval (repeating the decision it recorded is answered 200)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, response = inline(NotJson)),
        (status = 422, response = inline(UnknownMembers)),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn approve_step(
    State(state): State<AppState>,
    AuthedTenant { tenant, key_id }: AuthedTenant,
    StepPath(run_id, step_id): StepPath,
    OptionalJson(decision): OptionalJson<ApprovalDecision>,
) -> Result<Json<RunView>, ApiError> {
    decide(&state, &tenant, &key_id, &run_id, &step_id, true, decision).await
}

/// Rejects a step waiting for approval; the step fails, and the run with it unless the
/// step is optional.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/steps/{step}/reject",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
        ("step" = String, Path, description = "The approval step's id", pattern = r"^[a-z][a-z0-9_]{0,63}$"),
    ),
    request_body(content = Option<ApprovalDecision>, content_type = "application/json", description = "Optional: who decided and why; an empty body is fine"),
    responses(
        (status = 200, description = "The run after the decision", body = RunView),
        (status = 400, response = inline(MalformedJson)),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run or step for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The step is not waiting for approval (repeating the decision it recorded is answered 200)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, response = inline(NotJson)),
        (status = 422, response = inline(UnknownMembers)),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn reject_step(
    State(state): State<AppState>,
    AuthedTenant { tenant, key_id }: AuthedTenant,
    StepPath(run_id, step_id): StepPath,
    OptionalJson(decision): OptionalJson<ApprovalDecision>,
) -> Result<Json<RunView>, ApiError> {
    decide(&state, &tenant, &key_id, &run_id, &step_id, false, decision).await
}

async fn decide(
    state: &AppState,
    tenant: &crate::domain::TenantId,
    key_id: &str,
    run_id: &RunId,
    step_id: &StepId,
    approved: bool,
    decision: Option<ApprovalDecision>,
) -> Result<Json<RunView>, ApiError> {
    let decision = decision.unwrap_or_default();
    state.engine.decide_approval(tenant, run_id, step_id, approved, decision, key_id).await?;
    Ok(Json(state.engine.run_view(tenant, run_id).await?))
}

/// The run's history, oldest first: status changes, provider calls, approvals, deliveries.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}/events",
    tag = "runs",
    params(("id" = String, Path, description = "The run id", pattern = r"^run_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "The run's events", body = EventList),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such run for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn run_events(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    RunPath(run_id): RunPath,
) -> Result<Json<EventList>, ApiError> {
    let events = state.engine.run_events(&tenant, &run_id).await?;
    Ok(Json(EventList { events }))
}

/// The models and routes a step's `model` may name.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses(
        (status = 200, description = "Models and routes", body = ModelList),
        (status = 401, response = inline(Unauthorized)),
    )
)]
pub async fn list_models(State(state): State<AppState>, _: AuthedTenant) -> Json<ModelList> {
    let router = state.engine.router();
    Json(ModelList { models: router.models(), routes: router.routes().clone() })
}
