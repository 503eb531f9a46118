//! API-key authentication: `x-api-key: <key>` or `Authorization: Bearer <key>`, resolved to
//! the tenant that owns the key. Every run a handler touches is scoped by that tenant.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use secrecy::SecretString;

use super::AppState;
use super::problem::ApiError;
use crate::domain::TenantId;

/// The header carrying a bare API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The tenant whose API key authenticated the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedTenant(pub TenantId);

impl FromRequestParts<AppState> for AuthedTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = presented_key(&parts.headers)?;
        match state.tenants.tenant_for_key(&key).await {
            Ok(Some(tenant)) => Ok(AuthedTenant(tenant.id)),
            // Same answer for every unknown key, so responses do not help anyone guess.
            Ok(None) => Err(ApiError::Unauthorized("the API key is not valid".to_owned())),
            Err(err) => Err(crate::engine::EngineError::Port(err).into()),
        }
    }
}

/// Finds the key in the request, wrapped as a secret at once so it cannot be logged by
/// accident further on.
fn presented_key(headers: &HeaderMap) -> Result<SecretString, ApiError> {
    if let Some(value) = headers.get(API_KEY_HEADER) {
        let key = value.to_str().map(str::trim).unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::Unauthorized(format!("the `{API_KEY_HEADER}` header is empty or not text")));
        }
        return Ok(SecretString::from(key));
    }
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let raw = value.to_str().unwrap_or_default();
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let (scheme, credentials) = raw.split_once(' ').unwrap_or((raw, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized("use `Authorization: Bearer <api key>` or `x-api-key`".to_owned()));
        }
        let key = credentials.trim();
        if key.is_empty() {
            return Err(ApiError::Unauthorized("the bearer token is empty".to_owned()));
        }
        return Ok(SecretString::from(key));
    }
    Err(ApiError::Unauthorized(format!(
        "send an API key as `Authorization: Bearer <key>` or in the `{API_KEY_HEADER}` header"
    )))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use secrecy::ExposeSecret;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn both_header_styles_yield_the_key() {
        let bearer = presented_key(&headers(&[("authorization", "bearer  k1 ")])).unwrap();
        assert_eq!(bearer.expose_secret(), "k1");
        let api_key = presented_key(&headers(&[("x-api-key", "k2")])).unwrap();
        assert_eq!(api_key.expose_secret(), "k2");
    }

    #[test]
    fn other_schemes_and_empty_keys_are_refused() {
        for pairs in [
            &[("authorization", "Basic dXNlcjpwYXNz")][..],
            &[("authorization", "Bearer ")][..],
            &[("x-api-key", " ")][..],
            &[][..],
        ] {
            assert!(matches!(presented_key(&headers(pairs)), Err(ApiError::Unauthorized(_))), "{pairs:?}");
        }
    }
}
