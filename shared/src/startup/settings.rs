//! What a Lambda function is configured with: settings read from the environment once per
//! cold start (names and values come from `infra/template.yaml`). Endpoints and credentials
//! follow the standard AWS configuration (`AWS_REGION`, `AWS_ENDPOINT_URL`, the function's
//! role), so the same code runs against AWS and a local emulator.

use crate::domain::RateLimit;
use crate::engine::{DEFAULT_REQUEST_LIMIT, DEFAULT_STEP_LIMIT, parse_limit};
use std::time::Duration;

use super::ConfigError;
use crate::webhooks::DestinationPolicy;

/// How long a worker invocation may spend on a step by default: under the worker function's
/// 120 s timeout, with room to store the result (checked against the template in
/// `devtools/local-aws/tests/template_timing.rs`).
pub const DEFAULT_INVOCATION_BUDGET: Duration = Duration::from_secs(90);

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
    /// `CHORUS_NOTIFY_URLS`: `production` (default: https, public addresses only) or `local`
    /// (loopback allowed, for the local AWS loop).
    pub destinations: DestinationPolicy,
    /// `CHORUS_PUBLIC_URL`: where providers reach the webhook function (the HTTP API's
    /// URL). Without it, async providers (Replicate) are called synchronously.
    pub public_url: Option<String>,
    /// `CHORUS_INVOCATION_BUDGET_SECONDS` (default 90, under the worker's 120 s timeout):
    /// how long one worker invocation works on a step before re-enqueueing it.
    pub invocation_budget: Duration,
    /// `CHORUS_TENANT_REQUEST_LIMIT` (default `600/100`: a minute's API requests / burst)
    /// for tenants whose record sets none.
    pub tenant_requests: RateLimit,
    /// `CHORUS_TENANT_STEP_LIMIT` (default `1200/200`): steps one tenant may start.
    pub tenant_steps: RateLimit,
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
        let destinations = match lookup("CHORUS_NOTIFY_URLS").as_deref().map(str::trim) {
            None | Some("production") => DestinationPolicy::production(),
            Some("local") => DestinationPolicy::local_development(),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "CHORUS_NOTIFY_URLS",
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
            None => DEFAULT_INVOCATION_BUDGET.as_secs(),
        };
        let limit = |name: &'static str, default: RateLimit| match lookup(name) {
            Some(text) => parse_limit(&text).map_err(|detail| ConfigError::Invalid { name, detail }),
            None => Ok(default),
        };
        Ok(Self {
            tenant_requests: limit("CHORUS_TENANT_REQUEST_LIMIT", DEFAULT_REQUEST_LIMIT)?,
            tenant_steps: limit("CHORUS_TENANT_STEP_LIMIT", DEFAULT_STEP_LIMIT)?,
            public_url: lookup("CHORUS_PUBLIC_URL").filter(|url| !url.trim().is_empty()),
            invocation_budget: Duration::from_secs(invocation_budget),
            table: required("CHORUS_TABLE")?,
            bucket: required("CHORUS_BUCKET")?,
            steps_queue_url: required("CHORUS_STEPS_QUEUE_URL")?,
            notifications_queue_url: required("CHORUS_NOTIFICATIONS_QUEUE_URL")?,
            steps_dlq_arn: required("CHORUS_STEPS_DLQ_ARN")?,
            retention: Duration::from_secs(retention_days * 24 * 3600),
            destinations,
        })
    }
}
