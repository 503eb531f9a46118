//! Handlers for `/v1/workflows`: registering a workflow's versions and reading them back, thin
//! translations to the engine's use cases. Every workflow is looked up through the caller's
//! tenant, so another tenant's workflow is indistinguishable from one that does not exist.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AuthedTenant;
use super::body::ApiJson;
use super::problem::{ApiError, ProblemDetails, Unauthorized, Unavailable};
use crate::domain::registry::parse_version;
use crate::domain::{WorkflowDefinition, WorkflowName};
use crate::engine::WorkflowDetail;
use crate::ports::{VersionSummary, WorkflowSummary, WorkflowVersion};

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// The body of `PUT /v1/workflows/{name}`: the definition, in the envelope `POST /v1/runs`
/// uses, so that a definition moves between the two unchanged (and other members can come).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRegistration {
    /// The workflow definition, validated as `POST /v1/runs` validates one sent inline
    /// (without an input to hold against its `input_schema`).
    #[schema(value_type = WorkflowDefinition)]
    pub workflow: Value,
}

/// The answer to `PUT /v1/workflows/{name}`: the version that holds the definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VersionRegistered {
    #[schema(value_type = String, example = "triage", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: WorkflowName,
    #[serde(flatten)]
    pub version: VersionSummary,
    pub links: WorkflowLinks,
}

/// Links to a registered workflow's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WorkflowLinks {
    /// This version (`GET`).
    #[serde(rename = "self")]
    #[schema(example = "/v1/workflows/triage/versions/3")]
    pub self_: String,
    /// The workflow: its latest version and every version (`GET`).
    #[schema(example = "/v1/workflows/triage")]
    pub workflow: String,
}

impl WorkflowLinks {
    fn for_version(name: &WorkflowName, version: u32) -> Self {
        Self { self_: format!("/v1/workflows/{name}/versions/{version}"), workflow: format!("/v1/workflows/{name}") }
    }
}

/// One page of the tenant's registered workflows, by name.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A registered workflow: its latest version with the definition, and every version.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkflowView {
    #[serde(flatten)]
    pub summary: WorkflowSummary,
    /// The latest version's definition, as stored (parsed, defaults left out).
    pub definition: WorkflowDefinition,
    /// Every version, oldest first.
    pub versions: Vec<VersionSummary>,
}

impl From<WorkflowDetail> for WorkflowView {
    fn from(detail: WorkflowDetail) -> Self {
        let WorkflowDetail { latest, versions } = detail;
        let created_at = versions.first().map_or(latest.created_at, |first| first.created_at);
        let summary = WorkflowSummary {
            name: latest.name,
            latest_version: latest.version,
            latest_hash: latest.hash,
            created_at,
            updated_at: latest.created_at,
        };
        Self { summary, definition: latest.definition, versions }
    }
}

/// One version of a registered workflow, with its definition.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkflowVersionView {
    #[schema(value_type = String, example = "triage", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: WorkflowName,
    #[serde(flatten)]
    pub version: VersionSummary,
    /// The definition, as stored (parsed, defaults left out).
    pub definition: WorkflowDefinition,
}

impl From<WorkflowVersion> for WorkflowVersionView {
    fn from(version: WorkflowVersion) -> Self {
        Self { version: version.summary(), name: version.name, definition: version.definition }
    }
}

/// Query of `GET /v1/workflows`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListWorkflowsParams {
    /// Workflows per page, 1 to 100.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page, as it was returned; any other value is a 400.
    // Unpadded base64url of a workflow name (1 to 64 bytes).
    #[param(pattern = r"^[A-Za-z0-9_-]{2,86}$")]
    pub cursor: Option<String>,
}

/// `{name}` in a path that reads: a string that is not a workflow name names no workflow, so
/// it is a 404 (the detail says why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPath(pub WorkflowName);

impl<S: Send + Sync> FromRequestParts<S> for WorkflowPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| workflow_not_found())?;
        WorkflowName::parse(&raw)
            .map(WorkflowPath)
            .map_err(|err| ApiError::NotFound(format!("no such workflow: {err}")))
    }
}

/// `{name}` and `{version}`; malformed ones are 404s for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPath(pub WorkflowName, pub u32);

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((name, version)) =
            Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| workflow_not_found())?;
        let name = WorkflowName::parse(&name).map_err(|err| ApiError::NotFound(format!("no such workflow: {err}")))?;
        let version = parse_version(&version).ok_or_else(|| {
            ApiError::NotFound(format!("workflow `{name}` has no version `{version}`: versions are numbered 1, 2, 3…"))
        })?;
        Ok(VersionPath(name, version))
    }
}

fn workflow_not_found() -> ApiError {
    ApiError::NotFound("workflow not found".to_owned())
}

/// Registers a workflow version.
///
/// Validates the definition as `POST /v1/runs` validates one sent inline and stores it as the
/// workflow's next version (1 for a new workflow), with its content hash: SHA-256 of the
/// parsed definition as canonical JSON. The same definition as the latest version (whatever
/// its formatting or member order) is not stored again: the answer is that version, 200.
/// Versions never change; runs name them as `name` (the latest) or `name@version`.
#[utoipa::path(
    put,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")),
    request_body(content = WorkflowRegistration, content_type = "application/json"),
    responses(
        (status = 201, description = "A new version holds the definition", body = VersionRegistered,
            headers(("Location" = String, description = "The version's URL")),
            links(
                ("GetWorkflowVersion" = (operation_id = "get_workflow_version",
                    parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/version")),
                    description = "The version just registered")),
                ("GetWorkflow" = (operation_id = "get_workflow", parameters(("name" = "$response.body#/name")),
                    description = "The workflow with every version")),
            )),
        (status = 200, description = "The definition is the latest version already; nothing was stored", body = VersionRegistered,
            headers(("Location" = String, description = "The version's URL"))),
        (status = 400, description = "Malformed JSON, or a name that is not a workflow name", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, response = inline(Unauthorized)),
        (status = 409, description = "The workflow has all the versions it may have (1,000), or the tenant all the workflows (1,000)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The definition is invalid; every problem is listed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn register_workflow(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    Path(raw): Path<String>,
    ApiJson(registration): ApiJson<WorkflowRegistration>,
) -> Result<Response, ApiError> {
    // A name to create something under: a malformed one is a bad request, not a missing thing.
    let name = WorkflowName::parse(&raw).map_err(|err| ApiError::BadRequest(err.to_string()))?;
    let registered = state.engine.register_workflow(&tenant, &name, &registration.workflow).await?;
    let links = WorkflowLinks::for_version(&name, registered.version.version);
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&links.self_) {
        headers.insert(header::LOCATION, location);
    }
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    let body = VersionRegistered { name, version: registered.version, links };
    Ok((status, headers, Json(body)).into_response())
}

/// Lists the tenant's registered workflows by name, each with its latest version.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    tag = "workflows",
    params(ListWorkflowsParams),
    responses(
        (status = 200, description = "One page of workflows", body = WorkflowList,
            links(
                ("GetFirstWorkflow" = (operation_id = "get_workflow", parameters(("name" = "$response.body#/workflows/0/name")),
                    description = "The first workflow of the page")),
                ("GetNextPage" = (operation_id = "list_workflows", parameters(("cursor" = "$response.body#/next_cursor")),
                    description = "The next page, when `next_cursor` is not `null`")),
            )),
        (status = 400, description = "Bad `limit` or `cursor`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, response = inline(Unauthorized)),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn list_workflows(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    query: Result<Query<ListWorkflowsParams>, QueryRejection>,
) -> Result<Json<WorkflowList>, ApiError> {
    let Query(params) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("`limit` must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state.engine.list_workflows(&tenant, after.as_ref(), limit as usize).await?;
    Ok(Json(WorkflowList { workflows: page.workflows, next_cursor: page.next_after.as_ref().map(encode_cursor) }))
}

/// Clients get the cursor wrapped, so they treat it as opaque (as `GET /v1/runs` does).
fn encode_cursor(after: &WorkflowName) -> String {
    URL_SAFE_NO_PAD.encode(after.as_str())
}

fn decode_cursor(opaque: &str) -> Result<WorkflowName, ApiError> {
    URL_SAFE_NO_PAD
        .decode(opaque)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| WorkflowName::parse(&text).ok())
        .ok_or_else(|| ApiError::BadRequest("`cursor` is not a cursor this API returned".to_owned()))
}

/// A registered workflow: its latest version with the definition, and every version.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowView,
            links(
                ("GetLatestVersion" = (operation_id = "get_workflow_version",
                    parameters(("name" = "$response.body#/name"), ("version" = "$response.body#/latest_version")),
                    description = "Its latest version")),
            )),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such workflow for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn get_workflow(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    WorkflowPath(name): WorkflowPath,
) -> Result<Json<WorkflowView>, ApiError> {
    Ok(Json(state.engine.workflow(&tenant, &name).await?.into()))
}

/// One version of a registered workflow, with its definition and hash.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}/versions/{version}",
    tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name", pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"),
        ("version" = u32, Path, description = "The version number", minimum = 1, maximum = 999_999_999),
    ),
    responses(
        (status = 200, description = "The version", body = WorkflowVersionView),
        (status = 401, response = inline(Unauthorized)),
        (status = 404, description = "No such workflow or version for this tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, response = inline(Unavailable)),
    )
)]
pub async fn get_workflow_version(
    State(state): State<AppState>,
    AuthedTenant { tenant, .. }: AuthedTenant,
    VersionPath(name, version): VersionPath,
) -> Result<Json<WorkflowVersionView>, ApiError> {
    Ok(Json(state.engine.workflow_version(&tenant, &name, version).await?.into()))
}
