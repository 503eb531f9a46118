//! The `intake` Lambda: serves the HTTP API behind API Gateway. Clients and use cases are
//! built once per cold start; each request then goes through the same axum router
//! `chorus dev` serves.

use chorus::http::{AppState, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let services = chorus::startup::for_intake().await?;
    lambda_http::run(app(AppState { engine: services.engine, tenants: services.tenants })).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use chorus::adapters::MemoryTenantDirectory;
    use chorus::domain::TenantId;
    use chorus::http::{AppState, app};
    use chorus::ports::{SigningSecrets, Tenant};
    use chorus::testing::TestKit;
    use http_body_util::BodyExt;
    use secrecy::SecretString;
    use tower::ServiceExt;

    /// An API Gateway HTTP API (payload 2.0) event, as the function receives it.
    fn api_gateway_event(method: &str, path: &str, body: &str) -> String {
        serde_json::json!({
            "version": "2.0",
            "routeKey": "ANY /{proxy+}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"content-type": "application/json", "x-api-key": "key-1", "host": "api.example.com"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
                "requestId": "r1", "routeKey": "ANY /{proxy+}", "stage": "$default", "time": "21/Nov/2026:10:00:00 +0000", "timeEpoch": 0
            },
            "body": body,
            "isBase64Encoded": false
        })
        .to_string()
    }

    #[tokio::test]
    async fn an_api_gateway_event_submits_a_run() {
        let mut kit = TestKit::new();
        let engine = Arc::new(kit.engine());
        let tenant = Tenant::new(TenantId::parse("acme").unwrap());
        let secrets = SigningSecrets::new(SecretString::from("whsec_eA=="));
        let tenants = Arc::new(MemoryTenantDirectory::new().with_key(tenant, secrets, &SecretString::from("key-1")));
        let workflow =
            r#"{"workflow": {"steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "hi"}]}}"#;

        let request = lambda_http::request::from_str(&api_gateway_event("POST", "/v1/runs", workflow)).unwrap();
        let response = app(AppState { engine, tenants }).oneshot(request).await.unwrap();

        assert_eq!(response.status(), 202);
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["status"], "queued");
        assert_eq!(kit.backends.step_messages.try_recv().unwrap().step_id.as_str(), "a");
    }
}
