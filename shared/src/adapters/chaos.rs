//! AWS errors on demand, for the chaos soak (`make soak`): an AWS SDK interceptor that fails
//! DynamoDB and SQS requests *before they are sent*, at a rate a harness changes while the
//! functions run. Off unless [`CHAOS_FILE_ENV`] names a file; never set it in production.
//!
//! The file holds one number, the share of requests to fail (`0` to `1`); it is re-read at
//! most every [`REREAD_EVERY`], so writing `0.5` into it starts a burst and `0` ends it. A
//! missing or unreadable file, or anything but a number in range, means `0`.
//!
//! A failed request looks like what a busy service answers: the attempt ends with an HTTP 503
//! response error, which the SDK's standard retry classifies as transient and retries with
//! backoff (as it would a real 503), and which reaches the adapters, after the SDK's last
//! attempt, as the same `SdkError::ResponseError` a real one would. Each injection logs
//! [`INJECTED_LOG`] at warn level, which the soak counts in the functions' log.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::interceptors::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata, OrchestratorError};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// The environment variable that switches chaos on: the path of the rate file.
pub const CHAOS_FILE_ENV: &str = "CHORUS_AWS_CHAOS_FILE";
/// What every injected failure logs (with the service and operation as fields).
pub const INJECTED_LOG: &str = "chaos: failed an AWS request before sending it";
/// How stale the rate may be: a burst starts and ends within this of the file changing.
pub const REREAD_EVERY: Duration = Duration::from_millis(200);
/// The status the injected failures carry: "service unavailable", retried by every AWS SDK.
const INJECTED_STATUS: http::StatusCode = http::StatusCode::SERVICE_UNAVAILABLE;

/// The chaos dial the functions' DynamoDB and SQS clients share.
#[derive(Debug, Clone)]
pub struct AwsChaos {
    dial: Arc<Dial>,
}

#[derive(Debug)]
struct Dial {
    path: PathBuf,
    /// The rate and when it was read; re-read when older than [`REREAD_EVERY`].
    cached: Mutex<Option<(Instant, f64)>>,
    injected: AtomicU64,
}

impl AwsChaos {
    /// Chaos from [`CHAOS_FILE_ENV`], or `None` (no interceptor at all) when it is unset or empty.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os(CHAOS_FILE_ENV).filter(|path| !path.is_empty())?;
        tracing::warn!(file = %Path::new(&path).display(), "{CHAOS_FILE_ENV} is set: DynamoDB and SQS requests may fail on purpose");
        Some(Self::from_file(path))
    }

    /// Chaos whose rate is read from `path`.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self { dial: Arc::new(Dial { path: path.into(), cached: Mutex::new(None), injected: AtomicU64::new(0) }) }
    }

    /// The share of requests failed now.
    pub fn rate(&self) -> f64 {
        self.dial.rate()
    }

    /// How many requests this dial has failed.
    pub fn injected(&self) -> u64 {
        self.dial.injected.load(Ordering::Relaxed)
    }

    /// The interceptor, for a service's config builder.
    fn interceptor(&self) -> ChaosInterceptor {
        ChaosInterceptor { dial: self.dial.clone() }
    }
}

/// A DynamoDB client, failing requests on purpose when `chaos` is given.
pub fn dynamodb_client(config: &SdkConfig, chaos: Option<&AwsChaos>) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
    if let Some(chaos) = chaos {
        builder = builder.interceptor(chaos.interceptor());
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// An SQS client, failing requests on purpose when `chaos` is given.
pub fn sqs_client(config: &SdkConfig, chaos: Option<&AwsChaos>) -> aws_sdk_sqs::Client {
    let mut builder = aws_sdk_sqs::config::Builder::from(config);
    if let Some(chaos) = chaos {
        builder = builder.interceptor(chaos.interceptor());
    }
    aws_sdk_sqs::Client::from_conf(builder.build())
}

impl Dial {
    fn rate(&self) -> f64 {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        match *cached {
            Some((read_at, rate)) if read_at.elapsed() < REREAD_EVERY => rate,
            previous => {
                let rate = read_rate(&self.path);
                if previous.is_none_or(|(_, before)| before != rate) {
                    tracing::info!(rate, "AWS chaos rate");
                }
                *cached = Some((Instant::now(), rate));
                rate
            }
        }
    }

    /// Rolls the dice for one request.
    fn strike(&self) -> bool {
        let rate = self.rate();
        let struck = rate > 0.0 && fastrand::f64() < rate;
        if struck {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        struck
    }
}

/// The rate in `path`: a number from 0 to 1; anything else, or no file, is 0.
fn read_rate(path: &Path) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|rate| (0.0..=1.0).contains(rate))
        .unwrap_or(0.0)
}

/// Fails requests before transmission, then dresses the failure as a 503 from the service.
#[derive(Debug)]
struct ChaosInterceptor {
    dial: Arc<Dial>,
}

/// The error an injected failure carries.
#[derive(Debug, Clone)]
pub struct Injected {
    pub service: String,
    pub operation: String,
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: 503 Service Unavailable injected by {CHAOS_FILE_ENV}", self.service, self.operation)
    }
}

impl StdError for Injected {}

impl Intercept for ChaosInterceptor {
    fn name(&self) -> &'static str {
        "ChorusAwsChaos"
    }

    // The last hook before the request goes out: an error here ends the attempt unsent.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !self.dial.strike() {
            return Ok(());
        }
        let (service, operation) =
            cfg.load::<Metadata>().map(|m| (m.service().to_owned(), m.name().to_owned())).unwrap_or_default();
        tracing::warn!(service, operation, "{INJECTED_LOG}");
        Err(Box::new(Injected { service, operation }))
    }

    // An interceptor's error is not retried by the SDK and does not look like the service's;
    // a response error with a 503 is both, so the SDK's own retries are exercised too.
    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let injected = match context.output_or_error() {
            Some(Err(err)) => find_injected(err),
            _ => None,
        };
        if let Some(injected) = injected {
            let inner = context.inner_mut();
            inner.set_response(unavailable_response(&injected));
            inner.set_output_or_error(Err(OrchestratorError::response(Box::new(injected))));
        }
        Ok(())
    }
}

/// The injected failure somewhere in `err`'s chain of causes.
fn find_injected(err: &(dyn StdError + 'static)) -> Option<Injected> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(injected) = current.downcast_ref::<Injected>() {
            return Some(injected.clone());
        }
        cause = current.source();
    }
    None
}

/// What a busy AWS JSON service answers.
fn unavailable_response(injected: &Injected) -> HttpResponse {
    let body = serde_json::json!({"__type": "ServiceUnavailable", "message": injected.to_string()}).to_string();
    let mut response = HttpResponse::new(StatusCode::from(INJECTED_STATUS), SdkBody::from(body));
    response.headers_mut().insert("content-type", "application/x-amz-json-1.0");
    response.headers_mut().insert("x-amzn-errortype", "ServiceUnavailable");
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use aws_config::BehaviorVersion;
    use aws_sdk_dynamodb::error::SdkError;

    use super::*;

    fn rate_file(contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("chorus-chaos-{:016x}", fastrand::u64(..)));
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A client config whose endpoint nothing listens on, so a request that is sent fails
    /// with a connection error and one that is not fails with the injected 503.
    async fn config() -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region("us-east-1")
            .endpoint_url("http://127.0.0.1:9")
            .test_credentials()
            .retry_config(aws_config::retry::RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
            .load()
            .await
    }

    #[test]
    fn the_rate_is_the_number_in_the_file_and_anything_else_is_zero() {
        for (contents, rate) in [("0.25\n", 0.25), (" 1 ", 1.0), ("0", 0.0), ("1.5", 0.0), ("-1", 0.0), ("x", 0.0)] {
            assert_eq!(read_rate(&rate_file(contents)), rate, "{contents:?}");
        }
        assert_eq!(read_rate(Path::new("/nonexistent/chorus-chaos")), 0.0);
    }

    #[test]
    fn a_changed_file_is_read_again_after_the_reread_interval() {
        let path = rate_file("0");
        let chaos = AwsChaos::from_file(&path);
        assert_eq!(chaos.rate(), 0.0);
        std::fs::write(&path, "0.5").unwrap();
        std::thread::sleep(REREAD_EVERY + Duration::from_millis(50));
        assert_eq!(chaos.rate(), 0.5);
    }

    #[tokio::test]
    async fn at_rate_one_every_attempt_fails_unsent_as_a_retried_503() {
        let chaos = AwsChaos::from_file(rate_file("1"));
        let client = dynamodb_client(&config().await, Some(&chaos));

        let err = client.list_tables().send().await.unwrap_err();

        let SdkError::ResponseError(response) = &err else { panic!("a response error: {err:?}") };
        assert_eq!(response.raw().status().as_u16(), 503);
        // The standard retry mode makes 3 attempts: each was failed before sending.
        assert_eq!(chaos.injected(), 3);
        assert!(find_injected(&err).is_some(), "{err:?}");
    }

    #[tokio::test]
    async fn at_rate_zero_requests_go_out() {
        let chaos = AwsChaos::from_file(rate_file("0"));
        let client = sqs_client(&config().await, Some(&chaos));

        let err = client.list_queues().send().await.unwrap_err();

        assert!(matches!(err, SdkError::DispatchFailure(_)), "the request reached the (closed) port: {err:?}");
        assert_eq!(chaos.injected(), 0);
    }
}
