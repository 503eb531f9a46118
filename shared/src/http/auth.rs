//! API-key authentication: `x-api-key: <key>` or `Authorization: Bearer <key>`, resolved to
//! the tenant that owns the key. Every run a handler touches is scoped by that tenant.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::AppState;
use super::problem::ApiError;
use crate::domain::TenantId;
use crate::ports::api_key_id;

/// The header carrying a bare API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The tenant whose API key authenticated the request, and that key's public id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedTenant {
    pub tenant: TenantId,
    /// [`api_key_id`] of the key presented: recorded beside an approval's `by`.
    pub key_id: String,
}

impl FromRequestParts<AppState> for AuthedTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = presented_key(&parts.headers)?;
        match state.tenants.tenant_for_key(&key).await {
            Ok(Some(tenant)) => {
                // Each tenant's requests come out of its own bucket: a flood is its own 429s.
                if let Some(quota) = state.engine.quota() {
                    quota.admit_request(&tenant.id, tenant.request_limit).await.map_err(ApiError::TooManyRequests)?;
                }
                Ok(AuthedTenant { tenant: tenant.id, key_id: api_key_id(&key) })
            }
            // Same answer for every unknown key, so responses do not help anyone guess.
            Ok(None) => Err(ApiError::Unauthorized("the API key is not valid".to_owned())),
            Err(err) => Err(crate::engine::EngineError::Port(err).into()),
        }
    }
}

/// Finds the key in the request, wrapped as a secret at once so it cannot be logged by
/// accident further on. A request may carry the key in several headers (`x-api-key` and
/// `Authorization`, or either twice) only if they all carry the same key: two different
/// credentials leave no way to tell which one the client meant.
fn presented_key(headers: &HeaderMap) -> Result<SecretString, ApiError> {
    let api_keys = headers.get_all(API_KEY_HEADER).iter().map(api_key);
    let bearers = headers.get_all(axum::http::header::AUTHORIZATION).iter().map(bearer_token);
    let mut presented = api_keys.chain(bearers);
    let Some(first) = presented.next() else {
        return Err(ApiError::Unauthorized(format!(
            "send an API key as `Authorization: Bearer <key>` or in the `{API_KEY_HEADER}` header"
        )));
    };
    let mut others = presented.peekable();
    if others.peek().is_none() {
        return first;
    }
    // Keys presented by the same client are compared, not a client's key with a stored one,
    // so an ordinary comparison reveals nothing.
    let key = first.map_err(|_| disagreeing())?;
    for other in others {
        if other.map_err(|_| disagreeing())?.expose_secret() != key.expose_secret() {
            return Err(disagreeing());
        }
    }
    Ok(key)
}

/// Neither key is named: either may be a real one.
fn disagreeing() -> ApiError {
    ApiError::Unauthorized(format!(
        "the credential headers disagree: `Authorization` and `{API_KEY_HEADER}` (or one of them sent twice) \
         carry different credentials; send one API key"
    ))
}

/// The key in one `x-api-key` header.
fn api_key(value: &HeaderValue) -> Result<SecretString, ApiError> {
    let key = value.to_str().map(str::trim).unwrap_or_default();
    if key.is_empty() {
        return Err(ApiError::Unauthorized(format!("the `{API_KEY_HEADER}` header is empty or not text")));
    }
    Ok(SecretString::from(key))
}

/// The key in one `Authorization: Bearer` header.
fn bearer_token(value: &HeaderValue) -> Result<SecretString, ApiError> {
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
    Ok(SecretString::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// The 401's detail, which must not repeat any key the request carried.
    fn refusal(pairs: &[(&'static str, &str)]) -> String {
        match presented_key(&headers(pairs)) {
            Err(ApiError::Unauthorized(detail)) => detail,
            other => panic!("expected 401 for {pairs:?}, got {:?}", other.map(|_| "a key")),
        }
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

    #[test]
    fn the_same_key_in_both_headers_is_accepted() {
        let key = presented_key(&headers(&[("x-api-key", "k1"), ("authorization", "Bearer k1")])).unwrap();
        assert_eq!(key.expose_secret(), "k1");
        let twice = presented_key(&headers(&[("x-api-key", "k1"), ("x-api-key", " k1 ")])).unwrap();
        assert_eq!(twice.expose_secret(), "k1");
    }

    #[test]
    fn two_different_credentials_are_refused_without_naming_either() {
        for pairs in [
            &[("x-api-key", "sk_live_one"), ("authorization", "Bearer sk_live_two")][..],
            // A junk or foreign credential next to a good key is still a second credential.
            &[("x-api-key", "sk_live_one"), ("authorization", "Basic c2tfbGl2ZV90d28=")][..],
            &[("x-api-key", "sk_live_one"), ("authorization", "Bearer ")][..],
            &[("x-api-key", "sk_live_one"), ("x-api-key", "sk_live_two")][..],
            &[("authorization", "Bearer sk_live_one"), ("authorization", "Bearer sk_live_two")][..],
        ] {
            let detail = refusal(pairs);
            assert!(detail.contains("headers disagree"), "{pairs:?}: {detail}");
            assert!(!detail.contains("sk_live") && !detail.contains("c2tf"), "{pairs:?}: {detail}");
        }
    }
}
