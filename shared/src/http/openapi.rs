//! The OpenAPI 3.1 document: its frame (`ApiDoc`: info, security, tags), the paths and
//! schemas the route list in `super` collects from the handlers' `#[utoipa::path]`
//! annotations, and the refinements of `super::schema_rules`. Served at `GET /openapi.json`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa::Modify;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::auth::API_KEY_HEADER;

/// Name of the `Authorization: Bearer` security scheme.
pub const BEARER_SCHEME: &str = "bearer";
/// Name of the `x-api-key` security scheme.
pub const API_KEY_SCHEME: &str = "api_key";

/// The document's frame. It lists no paths: those, and the schemas they use, come from the
/// route list (`super::routes`), so the whole document is [`super::openapi_document`].
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Chorus API",
        description = "Multi-step, multi-provider AI workflows. Errors are RFC 9457 `application/problem+json`.",
    ),
    modifiers(&SecuritySchemes),
    // Either header style authenticates (both only with the same key: `super::auth`); each
    // alternative is its own requirement object.
    // The names must match `BEARER_SCHEME` and `API_KEY_SCHEME` (a test checks).
    security(("bearer" = []), ("api_key" = [])),
    tags(
        (name = "runs", description = "Submit workflow runs, follow them, cancel them, decide approvals, retry or fork them"),
        (name = "workflows", description = "Register workflows as immutable, numbered versions that runs name"),
        (name = "models", description = "What a step's `model` may name"),
        (name = "meta", description = "Health and this document"),
    )
)]
pub(super) struct ApiDoc;

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
                    .description(Some(format!(
                        "`Authorization: Bearer <api key>`; sent with `{API_KEY_HEADER}` too, both must carry the same key"
                    )))
                    .build(),
            ),
        );
        let mut api_key = ApiKeyValue::new(API_KEY_HEADER);
        api_key.description = Some(format!("`{API_KEY_HEADER}: <api key>`"));
        components.add_security_scheme(API_KEY_SCHEME, SecurityScheme::ApiKey(ApiKey::Header(api_key)));
    }
}

/// The document as built by [`super::app`], which every request reaches as an extension.
#[derive(Clone)]
pub struct ServedDocument(Arc<utoipa::openapi::OpenApi>);

impl ServedDocument {
    pub fn new(document: utoipa::openapi::OpenApi) -> Self {
        Self(Arc::new(document))
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
pub async fn openapi_json(Extension(ServedDocument(document)): Extension<ServedDocument>) -> Response {
    Json(document.as_ref()).into_response()
}
