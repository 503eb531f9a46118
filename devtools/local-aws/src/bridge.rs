//! The SQS → Lambda bridge: what an event source mapping does in AWS, for a stack where nothing
//! else does it (`cargo lambda watch` serves the Invoke API; emulators either have no event
//! source mappings or swallow the messages). For each queue a function reads it long-polls,
//! invokes the function through the Lambda Invoke API with the `SqsEvent` AWS would send,
//! deletes what succeeded and leaves the rest to reappear after the visibility timeout, so the
//! queue's own redrive policy moves a message that keeps failing to its dead-letter queue.
//! Schedule events are invoked at their rate with an EventBridge "Scheduled Event".
//!
//! Every invocation has a deadline, the function's `Timeout` (see [`crate::inflight`]): one that
//! does not answer in time fails like any other, its batch comes back after the visibility
//! timeout, and the other pollers and routes carry on meanwhile. Each route has its own pollers,
//! each with one batch in flight, so one stuck invocation holds one poller at most.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use chorus::error::error_chain;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::inflight::{InFlight, Interrupted};
use crate::template::{LocalResources, Template, local_name};

/// How long one ReceiveMessage waits for messages. Short, so a stop request is noticed quickly;
/// long enough that an idle bridge makes one request per queue and poller every couple of seconds.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// SQS hands out at most this many messages per ReceiveMessage and deletes at most this many
/// per DeleteMessageBatch.
const SQS_MAX_BATCH: usize = 10;
/// In-flight invocations get this long to finish after a stop request; a batch abandoned then
/// is not lost, it reappears after its visibility timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause after a failed receive (endpoint down, queue missing), doubled up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the bridge could not do a step of its job. A failing *function* is not an error here:
/// it is an outcome ([`BatchOutcome::function_error`]), as it is for an event source mapping.
#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("cannot receive from {queue}")]
    Receive {
        queue: String,
        #[source]
        source: Box<aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::receive_message::ReceiveMessageError>>,
    },
    #[error("cannot delete messages from {queue}")]
    Delete {
        queue: String,
        #[source]
        source:
            Box<aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchError>>,
    },
    #[error("cannot encode the event for {function}")]
    Encode {
        function: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{function} failed: {reason}")]
    Invoke { function: String, reason: String },
    #[error("{queue} (read by {function}) has no local URL or ARN; were the resources created?")]
    UnknownQueue { queue: String, function: String },
}

/// One SQS event source: a queue feeding a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRoute {
    pub queue_url: String,
    pub queue_arn: String,
    /// The function name for the Invoke API (under `cargo lambda watch`: the binary).
    pub function: String,
    /// At most this many messages per invocation.
    pub batch_size: usize,
    /// Whether the function's `batchItemFailures` decide what is deleted; without it every
    /// successful invocation deletes the whole batch, as in AWS.
    pub report_batch_item_failures: bool,
    /// Pollers for this route; each has at most one batch in flight.
    pub concurrency: usize,
    /// How long an invocation may take before the bridge treats it as failed: the function's
    /// `Timeout`.
    pub invoke_timeout: Duration,
}

/// One `Schedule` event: a function invoked every `every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRoute {
    pub function: String,
    pub every: Duration,
    /// The rule ARN the event names as its resource.
    pub rule_arn: String,
    pub invoke_timeout: Duration,
}

/// Everything one bridge process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub queues: Vec<QueueRoute>,
    pub schedules: Vec<ScheduleRoute>,
}

/// Local limits applied on top of the template.
#[derive(Debug, Clone)]
pub struct RouteOptions {
    /// Resource name prefix (see `CreateOptions::prefix`).
    pub prefix: String,
    /// Pollers per queue at most, whatever the template's `ScalingConfig.MaximumConcurrency`
    /// (10 for the worker) says: on a laptop more parallel debug builds only compete for cores.
    pub max_concurrency: usize,
}

/// Every SQS and Schedule event of the template, resolved against the local resources. Each
/// invocation's deadline is its function's `Timeout`, as on AWS. (`chorus local up` has every
/// SQS-fed function compiled before the bridge starts; an invocation that a later rebuild
/// delays past its deadline fails, and its messages come back after the visibility timeout.)
pub fn routes(template: &Template, resources: &LocalResources, options: &RouteOptions) -> Result<Routes, BridgeError> {
    let mut routes = Routes::default();
    for function in &template.functions {
        let invoke_timeout = function.timeout;
        for event in &function.sqs_events {
            let unknown =
                || BridgeError::UnknownQueue { queue: event.queue.clone(), function: function.binary.clone() };
            let concurrency =
                event.maximum_concurrency.map_or(usize::MAX, |max| usize::try_from(max).unwrap_or(usize::MAX));
            routes.queues.push(QueueRoute {
                queue_url: resources.reference(&event.queue).ok_or_else(unknown)?.to_owned(),
                queue_arn: resources.attribute(&event.queue, "Arn").ok_or_else(unknown)?.to_owned(),
                function: function.binary.clone(),
                batch_size: usize::try_from(event.batch_size).unwrap_or(SQS_MAX_BATCH).max(1),
                report_batch_item_failures: event.report_batch_item_failures,
                concurrency: concurrency.min(options.max_concurrency).max(1),
                invoke_timeout,
            });
        }
        for schedule in &function.schedules {
            let Some(every) = schedule.every.filter(|_| schedule.enabled) else {
                tracing::warn!(
                    function = function.binary,
                    event = schedule.name,
                    expression = schedule.expression,
                    enabled = schedule.enabled,
                    "schedule not run locally (disabled, or cron)"
                );
                continue;
            };
            let region = resources.reference("AWS::Region").unwrap_or("us-east-1");
            let account = resources.reference("AWS::AccountId").unwrap_or("000000000000");
            let rule = local_name(&options.prefix, &format!("{}{}", function.logical_id, schedule.name));
            routes.schedules.push(ScheduleRoute {
                function: function.binary.clone(),
                every,
                rule_arn: format!("arn:aws:events:{region}:{account}:rule/{rule}"),
                invoke_timeout,
            });
        }
    }
    Ok(routes)
}

/// What one receive → invoke → delete cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Messages received and sent to the function.
    pub received: usize,
    /// Messages deleted (the function succeeded with them).
    pub deleted: usize,
    /// Messages left on the queue to reappear after the visibility timeout.
    pub left: usize,
    /// The invocation failed as a whole (function error, invoke error, timeout, or a response
    /// AWS would reject): the whole batch was left.
    pub function_error: bool,
}

/// The bridge's clients and its invocations in flight. Cheap to clone; clones share the
/// invocations.
#[derive(Debug, Clone)]
pub struct Bridge {
    sqs: aws_sdk_sqs::Client,
    lambda: aws_sdk_lambda::Client,
    region: String,
    wait: Duration,
    in_flight: InFlight,
}

impl Bridge {
    /// Clients from `config` (the standard AWS environment); the Lambda endpoint comes from
    /// `AWS_ENDPOINT_URL_LAMBDA`, e.g. `cargo lambda watch` on http://127.0.0.1:9000.
    pub fn new(config: &SdkConfig) -> Self {
        Self::with_clients(aws_sdk_sqs::Client::new(config), lambda_client(config, None), config)
    }

    /// The bridge over given clients (tests point the Lambda client at a fake endpoint).
    pub fn with_clients(sqs: aws_sdk_sqs::Client, lambda: aws_sdk_lambda::Client, config: &SdkConfig) -> Self {
        let region = config.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        Self { sqs, lambda, region, wait: DEFAULT_WAIT, in_flight: InFlight::new() }
    }

    /// Tracks invocations in `in_flight`, shared with a supervisor that reports dead runtimes
    /// (whose invocations then fail at once) and hears of hung ones.
    #[must_use]
    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// How long each ReceiveMessage waits (whole seconds, at most 20, as SQS allows).
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// One cycle for `route`: receive up to its batch size, invoke, delete what succeeded.
    /// Returns an empty outcome when the queue had nothing within the wait.
    pub async fn poll_once(&self, route: &QueueRoute) -> Result<BatchOutcome, BridgeError> {
        let messages = self.receive(route).await?;
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let received = messages.len();
        let event = sqs_event(&messages, route, self.region_of(&route.queue_arn));
        let failed = match self.invoke_batch(route, &event).await {
            Ok(failed) => failed,
            Err(err) => {
                tracing::warn!(
                    function = route.function,
                    queue = route.queue_arn,
                    messages = received,
                    error = %error_chain(&err),
                    "invocation failed; the whole batch comes back after the visibility timeout"
                );
                return Ok(BatchOutcome { received, deleted: 0, left: received, function_error: true });
            }
        };
        let done: Vec<&Message> =
            messages.iter().filter(|m| m.message_id().is_none_or(|id| !failed.contains(id))).collect();
        let deleted = self.delete(route, &done).await?;
        let outcome = BatchOutcome { received, deleted, left: received - deleted, function_error: false };
        if failed.is_empty() {
            tracing::debug!(function = route.function, queue = route.queue_arn, ?outcome, "invoked");
        } else {
            tracing::warn!(
                function = route.function,
                queue = route.queue_arn,
                failed = ?failed,
                ?outcome,
                "the function reported failed messages; they come back after the visibility timeout"
            );
        }
        Ok(outcome)
    }

    /// Invokes a schedule's function once with an EventBridge "Scheduled Event".
    pub async fn invoke_schedule(&self, route: &ScheduleRoute) -> Result<(), BridgeError> {
        let event = scheduled_event(&route.rule_arn, self.region_of(&route.rule_arn));
        self.invoke(&route.function, &event, route.invoke_timeout).await.map(|_| ())
    }

    /// Runs every route until `stop` turns true (or its sender is gone), then gives in-flight
    /// invocations [`DRAIN_TIMEOUT`] to finish.
    pub async fn run(&self, routes: Routes, mut stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        for route in routes.queues {
            tracing::info!(
                function = route.function,
                queue = route.queue_arn,
                batch_size = route.batch_size,
                pollers = route.concurrency,
                "bridging"
            );
            for _ in 0..route.concurrency {
                tasks.spawn(poll_loop(self.clone(), route.clone(), stop.clone()));
            }
        }
        for route in routes.schedules {
            tracing::info!(function = route.function, every = ?route.every, rule = route.rule_arn, "scheduling");
            tasks.spawn(schedule_loop(self.clone(), route, stop.clone()));
        }
        // An error means the sender is gone, which is a stop too.
        let _ = stop.wait_for(|stopped| *stopped).await;
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(done) = tasks.join_next().await {
                if let Err(err) = done {
                    tracing::error!(error = %err, "a bridge task ended abnormally");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "in-flight invocations did not finish in time; their batches come back after the visibility timeout"
            );
            tasks.abort_all();
        }
    }

    async fn receive(&self, route: &QueueRoute) -> Result<Vec<Message>, BridgeError> {
        let mut messages = Vec::new();
        let mut wait = i32::try_from(self.wait.as_secs()).unwrap_or(20);
        // One ReceiveMessage gives at most ten; larger batches take several, the later ones
        // without waiting (an event source mapping's batching window, kept at zero).
        while messages.len() < route.batch_size {
            let want = (route.batch_size - messages.len()).min(SQS_MAX_BATCH);
            let received = self
                .sqs
                .receive_message()
                .queue_url(&route.queue_url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|source| BridgeError::Receive { queue: route.queue_url.clone(), source: Box::new(source) })?;
            let batch = received.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            messages.extend(batch);
            wait = 0;
        }
        Ok(messages)
    }

    /// The ids of the messages the function reported as failed.
    async fn invoke_batch(&self, route: &QueueRoute, event: &SqsEvent) -> Result<HashSet<String>, BridgeError> {
        let payload = self.invoke(&route.function, event, route.invoke_timeout).await?;
        if !route.report_batch_item_failures {
            return Ok(HashSet::new());
        }
        let ids: HashSet<&str> = event.records.iter().filter_map(|r| r.message_id.as_deref()).collect();
        batch_item_failures(&payload, &ids)
            .map_err(|reason| BridgeError::Invoke { function: route.function.clone(), reason })
    }

    /// Invokes `function` synchronously and returns its response payload, or an error when the
    /// invocation failed in any way. Retrying is the queue's job (visibility timeout), never the
    /// SDK's, which is why the Lambda client is built without retries ([`lambda_client`]).
    async fn invoke<T: serde::Serialize>(
        &self,
        function: &str,
        event: &T,
        timeout: Duration,
    ) -> Result<Vec<u8>, BridgeError> {
        let payload = serde_json::to_vec(event)
            .map_err(|source| BridgeError::Encode { function: function.to_owned(), source })?;
        let failed = |reason: String| BridgeError::Invoke { function: function.to_owned(), reason };
        let sent = self.lambda.invoke().function_name(function).payload(Blob::new(payload)).send();
        let output = match self.in_flight.call(function, timeout, sent).await {
            Err(Interrupted::Deadline { hung }) => {
                let why = if hung {
                    "the function answered nothing since it was sent"
                } else {
                    "it waited behind other invocations of the function"
                };
                return Err(failed(format!("no answer within the function's timeout of {timeout:?}; {why}")));
            }
            Err(Interrupted::RuntimeDied) => return Err(failed("its runtime process died".to_owned())),
            Ok(Err(err)) => return Err(failed(error_chain(&err))),
            Ok(Ok(output)) => output,
        };
        let body = output.payload.map(Blob::into_inner).unwrap_or_default();
        // AWS answers 200 with X-Amz-Function-Error for a failed function; `cargo lambda watch`
        // answers 500, which arrives above as an SDK error.
        if let Some(kind) = output.function_error {
            return Err(failed(format!("{kind}: {}", String::from_utf8_lossy(&body))));
        }
        Ok(body)
    }

    async fn delete(&self, route: &QueueRoute, messages: &[&Message]) -> Result<usize, BridgeError> {
        let mut deleted = 0;
        for chunk in messages.chunks(SQS_MAX_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let result = self
                .sqs
                .delete_message_batch()
                .queue_url(&route.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|source| BridgeError::Delete { queue: route.queue_url.clone(), source: Box::new(source) })?;
            deleted += result.successful.len();
            for failure in &result.failed {
                // The message comes back after its visibility timeout and is processed again,
                // which at-least-once consumers must tolerate anyway.
                tracing::warn!(queue = route.queue_url, code = failure.code, message = ?failure.message, "cannot delete a message");
            }
        }
        Ok(deleted)
    }

    /// The region in an ARN (`arn:aws:sqs:REGION:...`), or the configured one.
    fn region_of<'a>(&'a self, arn: &'a str) -> &'a str {
        arn.split(':').nth(3).filter(|region| !region.is_empty()).unwrap_or(&self.region)
    }
}

/// A Lambda client that never retries: a retried Invoke runs the function again, and
/// `cargo lambda watch` answers a function error with HTTP 500, which the SDK would retry
/// twice more by default. `endpoint` overrides the environment's endpoint; it is set on the
/// service's own configuration because there it wins over `AWS_ENDPOINT_URL` (an endpoint set on
/// a copied `SdkConfig` does not).
pub fn lambda_client(config: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_lambda::Client {
    let mut builder = aws_sdk_lambda::config::Builder::from(config).retry_config(RetryConfig::disabled());
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_lambda::Client::from_conf(builder.build())
}

async fn poll_loop(bridge: Bridge, route: QueueRoute, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::ZERO;
    while !*stop.borrow() {
        match bridge.poll_once(&route).await {
            Ok(_) => backoff = Duration::ZERO,
            Err(err) => {
                backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                tracing::warn!(function = route.function, error = %error_chain(&err), retry_in = ?backoff, "bridge error");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
            }
        }
    }
}

/// Fires one interval after start and then every interval, like a new EventBridge rule; a tick
/// missed while an invocation ran is not made up.
async fn schedule_loop(bridge: Bridge, route: ScheduleRoute, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + route.every, route.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        match bridge.invoke_schedule(&route).await {
            Ok(()) => tracing::debug!(function = route.function, rule = route.rule_arn, "scheduled invocation"),
            Err(err) => {
                tracing::warn!(function = route.function, error = %error_chain(&err), "scheduled invocation failed")
            }
        }
    }
}

/// The event AWS sends for a batch: every record carries the queue's ARN and region, the
/// message's system attributes (ApproximateReceiveCount...) and its message attributes.
pub fn sqs_event(messages: &[Message], route: &QueueRoute, region: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|message| {
            let mut record = SqsMessage::default();
            record.message_id = message.message_id.clone();
            record.receipt_handle = message.receipt_handle.clone();
            record.body = message.body.clone();
            record.md5_of_body = message.md5_of_body.clone();
            record.md5_of_message_attributes = message.md5_of_message_attributes.clone();
            record.attributes = message
                .attributes
                .iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect();
            record.message_attributes = message
                .message_attributes
                .iter()
                .flatten()
                .map(|(name, value)| (name.clone(), message_attribute(value)))
                .collect::<HashMap<_, _>>();
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(route.queue_arn.clone());
            record.aws_region = Some(region.to_owned());
            record
        })
        .collect();
    event
}

fn message_attribute(value: &aws_sdk_sqs::types::MessageAttributeValue) -> SqsMessageAttribute {
    let mut attribute = SqsMessageAttribute::default();
    attribute.string_value = value.string_value.clone();
    attribute.binary_value = value.binary_value.as_ref().map(base64_data);
    attribute.string_list_values = value.string_list_values().to_vec();
    attribute.binary_list_values = value.binary_list_values().iter().map(base64_data).collect();
    attribute.data_type = Some(value.data_type().to_owned());
    attribute
}

/// `Base64Data` is `#[non_exhaustive]`: built empty, then filled.
fn base64_data(blob: &aws_sdk_sqs::primitives::Blob) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(blob.as_ref());
    data
}

/// The failed message ids of a `ReportBatchItemFailures` response, by AWS's rules: an empty or
/// `null` response, or a missing, `null` or empty `batchItemFailures`, is a full success; a
/// response that is not a batch response, or names an identifier that is empty or not in the
/// batch, fails the whole batch (the `Err` case).
pub fn batch_item_failures(payload: &[u8], batch: &HashSet<&str>) -> Result<HashSet<String>, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashSet::new());
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|err| format!("the response is not JSON: {err}"))?;
    let failures = match &value {
        serde_json::Value::Null => return Ok(HashSet::new()),
        serde_json::Value::Object(fields) => match fields.get("batchItemFailures") {
            None | Some(serde_json::Value::Null) => return Ok(HashSet::new()),
            Some(_) => serde_json::from_value::<SqsBatchResponse>(value.clone())
                .map_err(|err| format!("the response is not a batch response: {err}"))?,
        },
        _ => return Err("the response is not a batch response object".to_owned()),
    };
    let mut failed = HashSet::new();
    for failure in failures.batch_item_failures {
        let id = failure.item_identifier;
        if id.is_empty() || !batch.contains(id.as_str()) {
            return Err(format!("batchItemFailures names {id:?}, which is not a message of the batch"));
        }
        failed.insert(id);
    }
    Ok(failed)
}

/// An EventBridge "Scheduled Event", as a `Schedule` rule sends it.
pub fn scheduled_event(rule_arn: &str, region: &str) -> EventBridgeEvent {
    let mut event = EventBridgeEvent::default();
    event.version = Some("0".to_owned());
    event.id = Some(event_id());
    event.detail_type = "Scheduled Event".to_owned();
    event.source = "aws.events".to_owned();
    event.account = rule_arn.split(':').nth(4).map(str::to_owned);
    // Through serde so this crate needs no date library of its own: RFC 3339, whole seconds, as
    // EventBridge writes it.
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    event.time = serde_json::from_value(serde_json::Value::String(now.to_string())).ok();
    event.region = Some(region.to_owned());
    event.resources = Some(vec![rule_arn.to_owned()]);
    event.detail = serde_json::Value::Object(serde_json::Map::new());
    event
}

/// A random UUID-shaped id, as EventBridge gives each event.
fn event_id() -> String {
    let mut bytes = [0_u8; 16];
    rand::fill(&mut bytes[..]);
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn route() -> QueueRoute {
        QueueRoute {
            queue_url: "http://q/1/chorus-steps-queue".to_owned(),
            queue_arn: "arn:aws:sqs:eu-west-1:123456789012:chorus-steps-queue".to_owned(),
            function: "worker".to_owned(),
            batch_size: 10,
            report_batch_item_failures: true,
            concurrency: 1,
            invoke_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_sqs_event_has_the_shape_aws_sends() {
        let message = Message::builder()
            .message_id("m1")
            .receipt_handle("rh1")
            .body("{\"step\":1}")
            .md5_of_body("abc")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .message_attributes(
                "kind",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("step")
                    .build()
                    .unwrap(),
            )
            .build();
        let event = sqs_event(&[message], &route(), "eu-west-1");
        let json = serde_json::to_value(&event).unwrap();
        let record = &json["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["receiptHandle"], "rh1");
        assert_eq!(record["body"], "{\"step\":1}");
        assert_eq!(record["md5OfBody"], "abc");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], "arn:aws:sqs:eu-west-1:123456789012:chorus-steps-queue");
        assert_eq!(record["awsRegion"], "eu-west-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["messageAttributes"]["kind"]["stringValue"], "step");
        assert_eq!(record["messageAttributes"]["kind"]["dataType"], "String");
        // And a Rust function reads it back as its own event type.
        let parsed: SqsEvent = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, event);
    }

    #[test]
    fn batch_responses_follow_the_aws_rules() {
        let batch: HashSet<&str> = ["a", "b"].into_iter().collect();
        let ok = |payload: &str| batch_item_failures(payload.as_bytes(), &batch).unwrap();
        let whole_batch_fails = |payload: &str| batch_item_failures(payload.as_bytes(), &batch).is_err();
        for success in ["", "null", "{}", r#"{"batchItemFailures":null}"#, r#"{"batchItemFailures":[]}"#] {
            assert!(ok(success).is_empty(), "{success}");
        }
        assert_eq!(ok(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#), HashSet::from(["b".to_owned()]));
        for failure in [
            "not json",
            "[]",
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"id":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
        ] {
            assert!(whole_batch_fails(failure), "{failure}");
        }
    }

    #[test]
    fn the_scheduled_event_is_an_eventbridge_scheduled_event() {
        let event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/chorus-sweep", "us-east-1");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["detail-type"], "Scheduled Event");
        assert_eq!(json["source"], "aws.events");
        assert_eq!(json["account"], "123456789012");
        assert_eq!(json["resources"][0], "arn:aws:events:us-east-1:123456789012:rule/chorus-sweep");
        assert_eq!(json["detail"], serde_json::json!({}));
        let time = json["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 20, "{time}");
        assert_eq!(json["id"].as_str().unwrap().len(), 36);
    }
}
