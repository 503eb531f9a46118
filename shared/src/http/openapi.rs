//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the exposed types' schemas, and served at `GET /openapi.json`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::API_KEY_HEADER;
use super::problem::ProblemDetails;
use super::runs::{EventList, ModelList, RunAccepted, RunLinks, RunList};
use crate::domain::{Problem, RunEvent, RunStatus, StepStatus};
use crate::engine::{ApprovalDecision, RunView, StepView, Submission, Totals};
use crate::ports::RunSummary;

/// Name of the `Authorization: Bearer` security scheme.
pub const BEARER_SCHEME: &str = "bearer";
/// Name of the `x-api-key` security scheme.
pub const API_KEY_SCHEME: &str = "api_key";

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chorus API",
        description = "Multi-step, multi-provider AI workflows. Errors are RFC 9457 `application/problem+json`.",
    ),
    paths(
        super::runs::create_run,
        super::runs::list_runs,
        super::runs::get_run,
        super::runs::cancel_run,
        super::runs::approve_step,
        super::runs::reject_step,
        super::runs::run_events,
        super::runs::list_models,
        openapi_json,
        super::healthz,
    ),
    components(schemas(
        ProblemDetails,
        Problem,
        Submission,
        RunAccepted,
        RunLinks,
        RunList,
        RunSummary,
        RunView,
        StepView,
        Totals,
        RunStatus,
        StepStatus,
        ApprovalDecision,
        EventList,
        RunEvent,
        ModelList,
        super::Health,
    )),
    modifiers(&SecuritySchemes),
    // Either header style authenticates; each alternative is its own requirement object.
    // The names must match `BEARER_SCHEME` and `API_KEY_SCHEME` (a test checks).
    security(("bearer" = []), ("api_key" = [])),
    tags(
        (name = "runs", description = "Submit workflow runs, follow them, cancel them, decide approvals"),
        (name = "models", description = "What a step's `model` may name"),
        (name = "meta", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// Registers the two ways to present an API key.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <api key>`"))
                    .build(),
            ),
        );
        let mut api_key = ApiKeyValue::new(API_KEY_HEADER);
        api_key.description = Some(format!("`{API_KEY_HEADER}: <api key>`"));
        components.add_security_scheme(API_KEY_SCHEME, SecurityScheme::ApiKey(ApiKey::Header(api_key)));
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
