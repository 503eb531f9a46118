//! The local stack against a real emulator (whatever `AWS_ENDPOINT_URL` points at: moto or
//! LocalStack + DynamoDB Local, started by `infra/local/emulator.sh`): the resources created from
//! the real `infra/template.yaml`, and the SQS → Lambda bridge's contract with a fake Lambda
//! Invoke API — successes deleted, reported failures redriven to the dead-letter queue after
//! `maxReceiveCount`, a function error keeping the whole batch, the batch size respected, an
//! invocation that never answers failed at its deadline while the other routes carry on.
//!
//! They need the emulator, so they are ignored by a plain `cargo test`; `make test` runs them on
//! each emulator. Run without one, they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chorus_local_aws::bridge::{self, BatchOutcome, Bridge, QueueRoute, RouteOptions, Routes, ScheduleRoute};
use chorus_local_aws::resources::{self, CreateOptions};
use chorus_local_aws::template::{Template, local_name};
use chorus_tests::poll;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Short, so a failed message comes back (and redrives) within seconds.
const VISIBILITY_SECS: u32 = 1;
const MAX_RECEIVES: u32 = 2;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The emulator's SDK configuration; fails the test without one.
async fn emulator() -> SdkConfig {
    chorus_tests::aws::emulator().await.config
}

/// A name no other test (or earlier run against the same emulator) uses.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t{}-{nanos}-{name}", std::process::id())
}

/// How the fake function answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Reports every message whose body starts with `fail` in `batchItemFailures`.
    ReportFailures,
    /// Fails as `cargo lambda watch` reports it: HTTP 500 with an error body.
    Http500,
    /// Fails as AWS reports it: 200 with `X-Amz-Function-Error: Unhandled`.
    FunctionErrorHeader,
    /// Invocations of this function never answer (a dead or stuck runtime under `cargo lambda
    /// watch`); others are answered as by `ReportFailures`.
    Hang { function: &'static str },
}

/// A Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`) that records every
/// event it receives and answers as its behaviour says.
#[derive(Clone)]
struct FakeLambda {
    behaviour: Arc<Mutex<Behaviour>>,
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeLambda {
    async fn start() -> (Self, String) {
        let fake = Self {
            behaviour: Arc::new(Mutex::new(Behaviour::ReportFailures)),
            events: Arc::new(Mutex::new(Vec::new())),
        };
        let app =
            Router::new().route("/2015-03-31/functions/{name}/invocations", post(invoke)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// The SQS batches received so far.
    fn batches(&self) -> Vec<SqsEvent> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(_, event)| event.get("Records").is_some())
            .map(|(_, event)| serde_json::from_value(event.clone()).unwrap())
            .collect()
    }

    fn events(&self) -> Vec<(String, Value)> {
        self.events.lock().unwrap().clone()
    }
}

async fn invoke(State(fake): State<FakeLambda>, UrlPath(name): UrlPath<String>, body: Bytes) -> Response {
    let event: Value = serde_json::from_slice(&body).unwrap();
    fake.events.lock().unwrap().push((name.clone(), event.clone()));
    let behaviour = *fake.behaviour.lock().unwrap();
    let error = json!({ "errorType": "TestError", "errorMessage": "the fake function failed" });
    match behaviour {
        Behaviour::Hang { function } if function == name => std::future::pending().await,
        Behaviour::ReportFailures | Behaviour::Hang { .. } => {
            let failures: Vec<Value> = event["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|record| record["body"].as_str().is_some_and(|body| body.starts_with("fail")))
                .map(|record| json!({ "itemIdentifier": record["messageId"] }))
                .collect();
            axum::Json(json!({ "batchItemFailures": failures })).into_response()
        }
        Behaviour::Http500 => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response(),
        Behaviour::FunctionErrorHeader => {
            ([(HeaderName::from_static("x-amz-function-error"), "Unhandled")], axum::Json(error)).into_response()
        }
    }
}

fn bridge_to(config: &SdkConfig, lambda_url: &str) -> Bridge {
    let lambda = bridge::lambda_client(config, Some(lambda_url));
    Bridge::with_clients(aws_sdk_sqs::Client::new(config), lambda, config).with_wait(Duration::from_secs(1))
}

/// A work queue redriving to its own dead-letter queue after [`MAX_RECEIVES`], as the
/// template's queues do, with a [`VISIBILITY_SECS`] visibility timeout.
struct TestQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    dlq_url: String,
}

impl TestQueue {
    async fn create(config: &SdkConfig, name: &str) -> Self {
        let sqs = aws_sdk_sqs::Client::new(config);
        let dlq_url =
            sqs.create_queue().queue_name(unique(&format!("{name}-dlq"))).send().await.unwrap().queue_url.unwrap();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES }).to_string();
        let url = sqs
            .create_queue()
            .queue_name(unique(name))
            .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_SECS.to_string())
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = queue_arn(&sqs, &url).await;
        Self { sqs, url, arn, dlq_url }
    }

    fn route(&self, batch_size: usize) -> QueueRoute {
        QueueRoute {
            queue_url: self.url.clone(),
            queue_arn: self.arn.clone(),
            function: "worker".to_owned(),
            batch_size,
            report_batch_item_failures: true,
            concurrency: 1,
            invoke_timeout: Duration::from_secs(10),
        }
    }

    async fn send(&self, bodies: &[&str]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(*body).build().unwrap()
                })
                .collect();
            let sent =
                self.sqs.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await.unwrap();
            assert!(sent.failed.is_empty(), "{:?}", sent.failed);
        }
    }

    /// Bodies currently receivable from `url` (made invisible for a minute, so each is seen once),
    /// until a receive finds none.
    async fn drain(&self, url: &str) -> Vec<String> {
        let bodies = Mutex::new(Vec::new());
        let (sqs, drained) = (&self.sqs, &bodies);
        poll::until(&format!("{url} runs empty"), TIMEOUT, Duration::ZERO, || async move {
            let received = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(());
            }
            let mut drained = drained.lock().unwrap();
            drained.extend(messages.into_iter().filter_map(|m| m.body));
            Err(format!("{} received so far", drained.len()))
        })
        .await;
        bodies.into_inner().unwrap()
    }

    async fn delete(self) {
        for url in [&self.url, &self.dlq_url] {
            let _ = self.sqs.delete_queue().queue_url(url).send().await;
        }
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap()
}

/// Polls `route` once at a time until the function has processed `count` messages; how many
/// the bridge deleted.
async fn delete_all(bridge: &Bridge, route: &QueueRoute, count: usize) -> usize {
    let deleted = Mutex::new(0);
    let total = &deleted;
    poll::until(&format!("the bridge deletes {count} messages"), TIMEOUT, Duration::ZERO, || async move {
        let outcome = bridge.poll_once(route).await.unwrap();
        let mut total = total.lock().unwrap();
        *total += outcome.deleted;
        if *total < count { Err(format!("{total} deleted")) } else { Ok(()) }
    })
    .await;
    deleted.into_inner().unwrap()
}

/// How often each body was handed to the function, and with which receive counts.
fn deliveries(fake: &FakeLambda) -> HashMap<String, Vec<String>> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for batch in fake.batches() {
        for record in batch.records {
            let count = record.attributes.get("ApproximateReceiveCount").cloned().unwrap_or_default();
            seen.entry(record.body.unwrap_or_default()).or_default().push(count);
        }
    }
    seen
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn successes_are_deleted_and_reported_failures_reach_the_dead_letter_queue() {
    let config = emulator().await;
    let (fake, lambda_url) = FakeLambda::start().await;
    let queue = TestQueue::create(&config, "redrive").await;
    queue.send(&["ok-1", "fail-1", "ok-2"]).await;

    let bridge = bridge_to(&config, &lambda_url);
    let (stop, stopped) = watch::channel(false);
    let routes = Routes { queues: vec![queue.route(10)], schedules: vec![] };
    let running = tokio::spawn(async move { bridge.run(routes, stopped).await });

    // SQS moves the message on the receive after its MAX_RECEIVES-th.
    let redriven = &queue;
    let dead =
        poll::until("a reported failure reaches the dead-letter queue", TIMEOUT, Duration::ZERO, || async move {
            let dead = redriven.drain(&redriven.dlq_url).await;
            if dead.is_empty() { Err("nothing in the dead-letter queue") } else { Ok(dead) }
        })
        .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("the bridge stops promptly").unwrap();

    assert_eq!(dead, ["fail-1"]);
    assert!(queue.drain(&queue.url).await.is_empty(), "the work queue should be empty");
    let seen = deliveries(&fake);
    assert_eq!(seen["ok-1"], ["1"], "a success is deleted after one delivery");
    assert_eq!(seen["ok-2"], ["1"]);
    assert_eq!(seen["fail-1"], ["1", "2"], "a reported failure comes back until maxReceiveCount");

    let record = &fake.batches()[0].records[0];
    assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(record.event_source_arn.as_deref(), Some(queue.arn.as_str()));
    assert_eq!(record.aws_region.as_deref(), Some(queue.arn.split(':').nth(3).unwrap()));
    assert!(record.receipt_handle.as_deref().is_some_and(|h| !h.is_empty()));
    assert!(record.md5_of_body.as_deref().is_some_and(|m| m.len() == 32));
    assert!(record.attributes.contains_key("SentTimestamp"), "{:?}", record.attributes);
    assert!(fake.events().iter().all(|(function, _)| function == "worker"));
    queue.delete().await;
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_function_error_keeps_the_whole_batch() {
    let config = emulator().await;
    let (fake, lambda_url) = FakeLambda::start().await;
    let bridge = bridge_to(&config, &lambda_url);
    for behaviour in [Behaviour::Http500, Behaviour::FunctionErrorHeader] {
        let queue = TestQueue::create(&config, "errors").await;
        queue.send(&["a", "b", "c"]).await;
        let route = queue.route(10);

        fake.set(behaviour);
        let outcome = bridge.poll_once(&route).await.unwrap();
        assert_eq!(outcome, BatchOutcome { received: 3, deleted: 0, left: 3, function_error: true }, "{behaviour:?}");

        // The same three come back after the visibility timeout, and go once the function works.
        fake.set(Behaviour::ReportFailures);
        tokio::time::sleep(Duration::from_millis(u64::from(VISIBILITY_SECS) * 1000 + 500)).await;
        let deleted = delete_all(&bridge, &route, 3).await;
        assert_eq!(deleted, 3, "{behaviour:?}");
        let last = fake.batches().pop().unwrap();
        assert!(last.records.iter().all(|r| r.attributes["ApproximateReceiveCount"] == "2"), "{behaviour:?}");
        assert!(queue.drain(&queue.url).await.is_empty());
        assert!(queue.drain(&queue.dlq_url).await.is_empty());
        queue.delete().await;
    }
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn an_invocation_past_its_deadline_fails_and_the_other_routes_carry_on() {
    let config = emulator().await;
    let (fake, lambda_url) = FakeLambda::start().await;
    fake.set(Behaviour::Hang { function: "worker" });
    let stuck = TestQueue::create(&config, "stuck").await;
    let other = TestQueue::create(&config, "other").await;
    stuck.send(&["never-answered"]).await;
    other.send(&["ok-meanwhile"]).await;

    let bridge = bridge_to(&config, &lambda_url);
    let deadline = Duration::from_secs(1);
    let stuck_route = QueueRoute { invoke_timeout: deadline, ..stuck.route(10) };
    let other_route = QueueRoute { function: "notifier".to_owned(), ..other.route(10) };
    let (stop, stopped) = watch::channel(false);
    let routes = Routes { queues: vec![stuck_route, other_route], schedules: vec![] };
    let running = tokio::spawn(async move { bridge.run(routes, stopped).await });

    // A message whose every invocation times out comes back after the visibility timeout each
    // time, and SQS dead-letters it after maxReceiveCount, as with a function timing out on AWS.
    let redriven = &stuck;
    let dead =
        poll::until("the timed-out message reaches the dead-letter queue", TIMEOUT, Duration::ZERO, || async move {
            let dead = redriven.drain(&redriven.dlq_url).await;
            if dead.is_empty() { Err("nothing in the dead-letter queue") } else { Ok(dead) }
        })
        .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), running).await.expect("the bridge stops").unwrap();

    assert_eq!(dead, ["never-answered"]);
    let seen = deliveries(&fake);
    assert_eq!(seen["never-answered"], ["1", "2"], "each delivery failed at the deadline");
    assert_eq!(seen["ok-meanwhile"], ["1"], "the other route was served, once");
    assert!(other.drain(&other.url).await.is_empty(), "and its message deleted");
    stuck.delete().await;
    other.delete().await;
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn batches_never_exceed_the_batch_size() {
    let config = emulator().await;
    let (fake, lambda_url) = FakeLambda::start().await;
    let bridge = bridge_to(&config, &lambda_url);
    let queue = TestQueue::create(&config, "batches").await;
    let bodies: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    queue.send(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let route = queue.route(3);
    let deleted = delete_all(&bridge, &route, 7).await;
    assert_eq!(deleted, 7);
    let batches = fake.batches();
    assert!(batches.iter().all(|b| !b.records.is_empty() && b.records.len() <= 3), "{:?}", batches.len());
    let delivered: BTreeSet<String> =
        batches.iter().flat_map(|b| b.records.iter().filter_map(|r| r.body.clone())).collect();
    assert_eq!(delivered, bodies.into_iter().collect());
    queue.delete().await;
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn without_report_batch_item_failures_a_success_deletes_the_whole_batch() {
    let config = emulator().await;
    let (_fake, lambda_url) = FakeLambda::start().await;
    let bridge = bridge_to(&config, &lambda_url);
    let queue = TestQueue::create(&config, "no-report").await;
    queue.send(&["fail-but-ignored", "ok"]).await;
    let route = QueueRoute { report_batch_item_failures: false, ..queue.route(10) };
    let outcome = bridge.poll_once(&route).await.unwrap();
    assert_eq!(outcome, BatchOutcome { received: 2, deleted: 2, left: 0, function_error: false });
    queue.delete().await;
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn schedules_invoke_their_function_with_a_scheduled_event() {
    let config = emulator().await;
    let (fake, lambda_url) = FakeLambda::start().await;
    let bridge = bridge_to(&config, &lambda_url);
    let rule_arn = "arn:aws:events:us-east-1:123456789012:rule/chorus-notifier-function-sweep".to_owned();
    let schedule = ScheduleRoute {
        function: "notifier".to_owned(),
        every: Duration::from_millis(300),
        rule_arn,
        invoke_timeout: TIMEOUT,
    };
    let (stop, stopped) = watch::channel(false);
    let running =
        tokio::spawn(async move { bridge.run(Routes { queues: vec![], schedules: vec![schedule] }, stopped).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.unwrap().unwrap();

    let events = fake.events();
    assert!(events.len() >= 2, "{events:?}");
    let (function, event) = &events[0];
    assert_eq!(function, "notifier");
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(event["resources"][0], "arn:aws:events:us-east-1:123456789012:rule/chorus-notifier-function-sweep");
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn the_real_templates_resources_are_created_with_their_keys_indexes_and_redrive() {
    let config = emulator().await;
    let template = Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")).unwrap();
    // A prefix of its own, so a running `chorus local up` (prefix `chorus`) is not touched.
    let prefix = unique("chorus");
    let options = CreateOptions { prefix: prefix.clone(), visibility_timeout: Some(2) };
    let created = resources::create(&config, &template, &options).await.unwrap();
    // Idempotent: a second `up` finds everything in place.
    let again = resources::create(&config, &template, &options).await.unwrap();
    assert_eq!(created, again);
    assert_eq!(resources::locate(&config, &template, &prefix).await.unwrap(), created);

    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let table_name = local_name(&prefix, "Table");
    let table = dynamodb.describe_table().table_name(&table_name).send().await.unwrap().table.unwrap();
    let keys: Vec<(&str, &str)> =
        table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    // One line per index: name, keys, projection.
    let mut indexes: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            let keys: Vec<String> = index
                .key_schema()
                .iter()
                .map(|k| format!("{}:{}", k.attribute_name(), k.key_type().as_str()))
                .collect();
            let projection = index.projection().unwrap();
            let mut non_key = projection.non_key_attributes().to_vec();
            non_key.sort();
            let projection_type = projection.projection_type().unwrap().as_str();
            format!("{} {} {projection_type} [{}]", index.index_name().unwrap(), keys.join(" "), non_key.join(","))
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "reconcile_by_due due_bucket:HASH due_at:RANGE KEYS_ONLY []",
            "runs_by_tenant tenant_pk:HASH created_sk:RANGE INCLUDE [created_at,finished_at,id,run_name,status]",
        ]
    );
    let ttl = dynamodb.describe_time_to_live().table_name(&table_name).send().await.unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status.unwrap().as_str(), "ENABLED");

    let sqs = aws_sdk_sqs::Client::new(&config);
    let attributes = |queue: &'static str| {
        let sqs = sqs.clone();
        let url = created.reference(queue).unwrap().to_owned();
        async move {
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()
        }
    };
    for (queue, dead_letters) in
        [("StepsQueue", "StepsDeadLetterQueue"), ("NotificationsQueue", "NotificationsDeadLetterQueue")]
    {
        let main = attributes(queue).await;
        let dlq = attributes(dead_letters).await;
        let policy: Value = serde_json::from_str(&main[&QueueAttributeName::RedrivePolicy]).unwrap();
        assert_eq!(policy["deadLetterTargetArn"], dlq[&QueueAttributeName::QueueArn].as_str(), "{queue}");
        assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5", "{queue}");
        assert_eq!(main[&QueueAttributeName::VisibilityTimeout], "2", "the override applies to {queue}");
        assert_eq!(dlq[&QueueAttributeName::MessageRetentionPeriod], "1209600", "{dead_letters}");
        assert!(main[&QueueAttributeName::QueueArn].ends_with(&local_name(&prefix, queue)));
    }

    chorus::startup::s3_client(&config).head_bucket().bucket(local_name(&prefix, "Bucket")).send().await.unwrap();

    // The functions' environment and the bridge's routes point at what was created.
    let env = template.local_environment(&created).unwrap();
    let steps_url =
        sqs.get_queue_url().queue_name(local_name(&prefix, "StepsQueue")).send().await.unwrap().queue_url.unwrap();
    assert_eq!(env["CHORUS_STEPS_QUEUE_URL"], steps_url);
    assert_eq!(env["CHORUS_TABLE"], table_name);
    assert_eq!(env["CHORUS_STEPS_DLQ_ARN"], created.attribute("StepsDeadLetterQueue", "Arn").unwrap());
    let options = RouteOptions { prefix: prefix.clone(), max_concurrency: 2 };
    let routes = bridge::routes(&template, &created, &options).unwrap();
    let mut pairs: Vec<(&str, &str)> = routes
        .queues
        .iter()
        .map(|r| {
            (r.function.as_str(), r.queue_url.rsplit('/').next().unwrap().strip_prefix(&format!("{prefix}-")).unwrap())
        })
        .collect();
    pairs.sort_unstable();
    assert_eq!(
        pairs,
        [("notifier", "notifications-queue"), ("notifier", "steps-dead-letter-queue"), ("worker", "steps-queue")]
    );
    // The worker takes one step per invocation (its blast radius is that step); the notifier ten.
    let batch = |function: &str| routes.queues.iter().filter(|r| r.function == function).map(|r| r.batch_size).max();
    assert_eq!((batch("worker"), batch("notifier")), (Some(1), Some(10)));
    assert!(routes.queues.iter().all(|r| r.concurrency == 2 && r.report_batch_item_failures));
    // Each invocation's deadline is its function's Timeout, nothing added.
    let deadline = |function: &str| routes.queues.iter().find(|r| r.function == function).unwrap().invoke_timeout;
    assert_eq!((deadline("worker"), deadline("notifier")), (Duration::from_secs(120), Duration::from_secs(60)));
    assert_eq!(routes.schedules.len(), 1);
    assert_eq!(routes.schedules[0].every, Duration::from_secs(60));

    // Best effort: the emulator is shared with other tests and runs.
    for queue in &template.queues {
        let _ = sqs.delete_queue().queue_url(created.reference(&queue.logical_id).unwrap()).send().await;
    }
    let _ = dynamodb.delete_table().table_name(&table_name).send().await;
    let _ = chorus::startup::s3_client(&config).delete_bucket().bucket(local_name(&prefix, "Bucket")).send().await;
}
