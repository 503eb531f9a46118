//! The running local stack as the soak sees it from the outside: the HTTP API with a tenant
//! of its own (registered in the table, with a fresh API key and webhook signing secret, as
//! the end-to-end tests do), and the steps queue for duplicate messages.

use std::sync::Arc;
use std::time::Duration;

use chorus::adapters::DynamoSigningSecrets;
use chorus::adapters::sealing::{LOCAL_STAND_IN_KEY, Sealer, SealingKey};
use chorus::domain::{RunEvent, RunId, RunStatus, TenantId};
use chorus::error::error_chain;
use chorus::ports::{SigningSecrets, StepMessage, Tenant};
use chorus::webhooks::WebhookSecret;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::SoakError;

/// One HTTP request's budget: the intake function may be slow while the machine is busy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The stack, with the soak's tenant.
pub struct Stack {
    pub api: String,
    pub http: reqwest::Client,
    key: SecretString,
    pub secret: WebhookSecret,
    pub tenant: TenantId,
    sqs: aws_sdk_sqs::Client,
    steps_queue_url: String,
}

/// What an API call answered, when it was not what the caller wanted.
#[derive(Debug)]
pub enum ApiFailure {
    /// No answer (connection, timeout) or a 5xx: worth retrying.
    Transient(String),
    /// Any other status: retrying will not help.
    Refused(String),
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Transient(what) | ApiFailure::Refused(what) => f.write_str(what),
        }
    }
}

/// A run as `GET /v1/runs` lists it, as far as the soak cares.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub id: RunId,
    pub status: RunStatus,
}

#[derive(Deserialize)]
struct RunList {
    runs: Vec<Listed>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct EventList {
    events: Vec<RunEvent>,
}

impl Stack {
    /// Checks the API answers and registers the soak's tenant.
    pub async fn connect(api: &str, table: &str, steps_queue: &str) -> Result<Self, SoakError> {
        let api = api.trim_end_matches('/').to_owned();
        let http = chorus::tls::http_client().timeout(REQUEST_TIMEOUT).build().map_err(SoakError::Http)?;
        let health = http.get(format!("{api}/healthz")).send().await;
        match health {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => return Err(SoakError::NoStack(format!("{api}/healthz answered {}", response.status()))),
            Err(err) => return Err(SoakError::NoStack(format!("{api}/healthz: {}", error_chain(&err)))),
        }
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
            return Err(SoakError::NoStack(
                "AWS_ENDPOINT_URL is not set: export the environment `chorus local up` prints".to_owned(),
            ));
        }
        let config = chorus::startup::sdk_config().await;
        let tenant = TenantId::parse(&format!("soak{:016x}", fastrand::u64(..)))
            .map_err(|err| SoakError::Settings(format!("tenant id: {err}")))?;
        let key = SecretString::from(format!("ck_{:032x}", fastrand::u128(..)));
        let secret = WebhookSecret::generate();
        // Sealed as the notifier opens it: the stand-in key `chorus local up` gives the functions,
        // unless CHORUS_TENANT_SECRETS_KEY says otherwise.
        let sealing_key = std::env::var("CHORUS_TENANT_SECRETS_KEY").unwrap_or_else(|_| LOCAL_STAND_IN_KEY.to_owned());
        let sealing_key = SealingKey::parse(&sealing_key)
            .map_err(|err| SoakError::Settings(format!("CHORUS_TENANT_SECRETS_KEY {err}")))?;
        let sealer = Arc::new(Sealer::new(sealing_key, &config));
        DynamoSigningSecrets::new(aws_sdk_dynamodb::Client::new(&config), table, sealer)
            .register(&Tenant::new(tenant.clone()), &SigningSecrets::new(secret.to_whsec()), &key)
            .await
            .map_err(|err| {
                SoakError::NoStack(format!("registering the soak's tenant in {table}: {}", error_chain(&err)))
            })?;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let steps_queue_url = sqs
            .get_queue_url()
            .queue_name(steps_queue)
            .send()
            .await
            .map_err(|err| SoakError::NoStack(format!("the queue {steps_queue}: {}", error_chain(&err))))?
            .queue_url
            .ok_or_else(|| SoakError::NoStack(format!("the queue {steps_queue} has no URL")))?;
        Ok(Self { api, http, key, secret, tenant, sqs, steps_queue_url })
    }

    /// `POST /v1/runs` with an Idempotency-Key: the run id, and whether the answer said it was
    /// a replay.
    pub async fn submit(&self, body: &Value, idempotency_key: &str) -> Result<(RunId, bool), ApiFailure> {
        let response = self
            .http
            .post(format!("{}/v1/runs", self.api))
            .header("x-api-key", self.key.expose_secret())
            .header("idempotency-key", idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(|err| ApiFailure::Transient(error_chain(&err)))?;
        let status = response.status();
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v.as_bytes() == b"true");
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::ACCEPTED && status != StatusCode::OK {
            let what = format!("POST /v1/runs answered {status}: {answer}");
            return Err(if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                ApiFailure::Transient(what)
            } else {
                ApiFailure::Refused(what)
            });
        }
        let id = answer["id"].as_str().and_then(|id| RunId::parse(id).ok());
        id.map(|id| (id, replayed))
            .ok_or_else(|| ApiFailure::Refused(format!("POST /v1/runs answered {status}: {answer}")))
    }

    /// Every run of the soak's tenant, with its status.
    pub async fn list_runs(&self) -> Result<Vec<Listed>, ApiFailure> {
        let mut runs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            // Cursors are unpadded base64url: safe in a query string as they are.
            let path = match &cursor {
                Some(cursor) => format!("/v1/runs?limit=100&cursor={cursor}"),
                None => "/v1/runs?limit=100".to_owned(),
            };
            let page: RunList = read_json(self.get(&path)).await?;
            runs.extend(page.runs);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(runs),
            }
        }
    }

    /// `GET /v1/runs/{id}`: the run with its steps.
    pub async fn run_view(&self, run_id: &RunId) -> Result<Value, ApiFailure> {
        read_json(self.get(&format!("/v1/runs/{run_id}"))).await
    }

    /// `GET /v1/runs/{id}/events`: the run's history.
    pub async fn events(&self, run_id: &RunId) -> Result<Vec<RunEvent>, ApiFailure> {
        let list: EventList = read_json(self.get(&format!("/v1/runs/{run_id}/events"))).await?;
        Ok(list.events)
    }

    /// Sends `message` to the steps queue, as SQS's at-least-once delivery sometimes does.
    pub async fn send_step_message(&self, message: &StepMessage) -> Result<(), SoakError> {
        let body = serde_json::to_string(message).map_err(|err| SoakError::Settings(err.to_string()))?;
        self.sqs
            .send_message()
            .queue_url(&self.steps_queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|err| SoakError::Aws(format!("sending a duplicate step message: {}", error_chain(&err))))?;
        Ok(())
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.api)).header("x-api-key", self.key.expose_secret())
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, ApiFailure> {
    let response = request.send().await.map_err(|err| ApiFailure::Transient(error_chain(&err)))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let what = format!("{status}: {body}");
        return Err(if status.is_server_error() { ApiFailure::Transient(what) } else { ApiFailure::Refused(what) });
    }
    response.json().await.map_err(|err| ApiFailure::Refused(format!("an answer that does not parse: {err}")))
}
