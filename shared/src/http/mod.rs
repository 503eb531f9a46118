//! The HTTP API: one axum [`Router`] over the engine, with API-key auth,
//! problem+json errors and an OpenAPI document derived from the same route list. It opens no
//! socket: the intake Lambda and `chorus dev` serve it, tests call it with
//! `tower::ServiceExt::oneshot`.

pub mod auth;
pub mod body;
pub mod callbacks;
pub mod openapi;
pub mod problem;
pub mod rerun;
pub mod runs;
mod schema_rules;
pub mod workflows;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use openapi::ApiDoc;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::Engine;
use crate::ports::TenantDirectory;

pub use auth::AuthedTenant;
pub use callbacks::{callbacks_app, callbacks_routes};
pub use problem::{ApiError, ProblemDetails};

/// The largest request body accepted: a 6 MiB input plus room for the workflow
/// definition and JSON framing.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024 + 256 * 1024;

/// What every handler needs; cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub tenants: Arc<dyn TenantDirectory>,
}

/// Every route of the API, each declared once by its handler: the router and the OpenAPI
/// document are both split from this, so no route can be served undocumented or documented
/// unserved. Add routes here with `.routes(routes!(…))` only; `OpenApiRouter::route` would
/// bypass the document.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(runs::create_run, runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(rerun::retry_run))
        .routes(routes!(rerun::fork_run))
        .routes(routes!(runs::approve_step))
        .routes(routes!(runs::reject_step))
        .routes(routes!(runs::run_events))
        .routes(routes!(workflows::list_workflows))
        .routes(routes!(workflows::register_workflow, workflows::get_workflow))
        .routes(routes!(workflows::get_workflow_version))
        .routes(routes!(runs::list_models))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(healthz))
        .split_for_parts();
    // After the split: `routes!` adds each handler's schemas as derived, which would
    // overwrite a schema refined any earlier.
    schema_rules::refine(&mut document);
    (router, document)
}

/// The whole API as a router with its state applied.
pub fn app(state: AppState) -> Router {
    let (router, document) = routes();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Enforced by the body extractors, which turn an overflow into a 413 problem.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(openapi::ServedDocument::new(document)))
        .with_state(state)
}

/// The OpenAPI document of [`app`], as `GET /openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().1
}

/// Liveness: answers without touching any backend or requiring a key.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The API is up", body = Health))
)]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no resource at this path".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
