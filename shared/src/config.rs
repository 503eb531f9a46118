//! What the Lambda functions are configured with: settings read from the environment once
//! per cold start (names and values come from `infra/template.yaml`), and the AWS clients
//! and use cases built from them. Endpoints and credentials follow the standard AWS
//! configuration (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, the
//! function's role), so the same code runs against AWS and a local emulator.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use thiserror::Error;

use crate::adapters::{DynamoRateLimiter, DynamoRunStore, DynamoTenants, S3BlobStore, SqsQueue};
use crate::domain::Limits;
use crate::engine::{DeliverySchedule, Engine, EngineParts, Notifier};
use crate::notify::{CallbackPolicy, ClientBuildError, HttpWebhookSender};
use crate::ports::SystemClock;
use crate::providers::{CatalogError, ProviderRouter, router_from_env};

/// A function could not start: its configuration is missing or wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {detail}")]
    Invalid { name: &'static str, detail: String },
    #[error(transparent)]
    WebhookClient(#[from] ClientBuildError),
    #[error(transparent)]
    Providers(#[from] CatalogError),
}

/// The resources a function works with, from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CHORUS_TABLE`: the DynamoDB table.
    pub table: String,
    /// `CHORUS_BUCKET`: the S3 bucket for large payloads.
    pub bucket: String,
    /// `CHORUS_STEPS_QUEUE_URL`
    pub steps_queue_url: String,
    /// `CHORUS_NOTIFICATIONS_QUEUE_URL`
    pub notifications_queue_url: String,
    /// `CHORUS_STEPS_DLQ_ARN`: the notifier tells step dead letters from notifications by
    /// the queue a record came from.
    pub steps_dlq_arn: String,
    /// `CHORUS_RETENTION_DAYS` (default 30): how long runs are kept.
    pub retention: Duration,
    /// `CHORUS_CALLBACKS`: `production` (default: https, public addresses only) or `local`
    /// (loopback allowed, for the local AWS loop).
    pub callbacks: CallbackPolicy,
    /// `CHORUS_PUBLIC_URL`: where providers reach the webhook function (the HTTP API's
    /// URL). Without it, async providers (Replicate) are called synchronously.
    pub public_url: Option<String>,
    /// `CHORUS_INVOCATION_BUDGET_SECONDS` (default 90, under the worker's 120 s timeout):
    /// how long one worker invocation works on a step before re-enqueueing it.
    pub invocation_budget: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name).filter(|value| !value.trim().is_empty()).ok_or(ConfigError::Missing(name))
        };
        let retention_days = match lookup("CHORUS_RETENTION_DAYS") {
            Some(days) => {
                days.trim().parse::<u64>().ok().filter(|days| *days > 0).ok_or_else(|| ConfigError::Invalid {
                    name: "CHORUS_RETENTION_DAYS",
                    detail: format!("`{days}` is not a number of days"),
                })?
            }
            None => 30,
        };
        let callbacks = match lookup("CHORUS_CALLBACKS").as_deref().map(str::trim) {
            None | Some("production") => CallbackPolicy::production(),
            Some("local") => CallbackPolicy::local_development(),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "CHORUS_CALLBACKS",
                    detail: format!("`{other}` is neither `production` nor `local`"),
                });
            }
        };
        let invocation_budget = match lookup("CHORUS_INVOCATION_BUDGET_SECONDS") {
            Some(seconds) => {
                seconds.trim().parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| ConfigError::Invalid {
                    name: "CHORUS_INVOCATION_BUDGET_SECONDS",
                    detail: format!("`{seconds}` is not a number of seconds"),
                })?
            }
            None => 90,
        };
        Ok(Self {
            public_url: lookup("CHORUS_PUBLIC_URL").filter(|url| !url.trim().is_empty()),
            invocation_budget: Duration::from_secs(invocation_budget),
            table: required("CHORUS_TABLE")?,
            bucket: required("CHORUS_BUCKET")?,
            steps_queue_url: required("CHORUS_STEPS_QUEUE_URL")?,
            notifications_queue_url: required("CHORUS_NOTIFICATIONS_QUEUE_URL")?,
            steps_dlq_arn: required("CHORUS_STEPS_DLQ_ARN")?,
            retention: Duration::from_secs(retention_days * 24 * 3600),
            callbacks,
        })
    }
}

/// The AWS SDK configuration from the standard sources.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client. Path-style addressing works on AWS and on every emulator, where
/// virtual-hosted names (`bucket.127.0.0.1`) cannot resolve.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// The AWS adapters, wired.
pub struct AwsAdapters {
    pub store: Arc<DynamoRunStore>,
    pub blobs: Arc<S3BlobStore>,
    pub tenants: Arc<DynamoTenants>,
}

impl AwsAdapters {
    pub fn new(config: &SdkConfig, settings: &Settings) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(config);
        let blobs = Arc::new(S3BlobStore::new(s3_client(config), &settings.bucket));
        Self {
            store: Arc::new(DynamoRunStore::new(dynamodb.clone(), &settings.table, blobs.clone(), settings.retention)),
            blobs,
            tenants: Arc::new(DynamoTenants::new(dynamodb, &settings.table)),
        }
    }
}

/// Everything a function's handler needs, built once per cold start.
pub struct Services {
    pub settings: Settings,
    pub engine: Arc<Engine>,
    pub notifier: Arc<Notifier>,
    pub tenants: Arc<DynamoTenants>,
}

impl Services {
    /// Reads the environment and builds clients and use cases.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let config = sdk_config().await;
        let lookup = |name: &str| std::env::var(name).ok();
        // One bucket per provider in the table, shared by every concurrent function.
        let limiter = Arc::new(DynamoRateLimiter::new(
            aws_sdk_dynamodb::Client::new(&config),
            &settings.table,
            Arc::new(SystemClock),
        ));
        let router = router_from_env(&lookup, limiter).await?;
        Self::new(&config, settings, router)
    }

    pub fn new(config: &SdkConfig, settings: Settings, router: ProviderRouter) -> Result<Self, ConfigError> {
        let adapters = AwsAdapters::new(config, &settings);
        let sqs = aws_sdk_sqs::Client::new(config);
        let steps = Arc::new(SqsQueue::new(sqs.clone(), &settings.steps_queue_url));
        let notifications = Arc::new(SqsQueue::new(sqs, &settings.notifications_queue_url));
        let clock = Arc::new(SystemClock);
        let engine = Arc::new(Engine::new(EngineParts {
            store: adapters.store.clone(),
            steps,
            notifications: notifications.clone(),
            router: Arc::new(router),
            blobs: adapters.blobs,
            clock: clock.clone(),
            callbacks: settings.callbacks,
            limits: Limits::default(),
            public_url: settings.public_url.clone(),
            invocation_budget: Some(settings.invocation_budget),
        }));
        let notifier = Arc::new(Notifier {
            store: adapters.store,
            tenants: adapters.tenants.clone(),
            sender: Arc::new(HttpWebhookSender::new(settings.callbacks)?),
            queue: notifications,
            clock,
            schedule: DeliverySchedule::default(),
        });
        Ok(Self { settings, engine, notifier, tenants: adapters.tenants })
    }
}
