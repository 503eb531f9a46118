//! What a step costs in AWS requests: the engine over the DynamoDB and SQS adapters on the
//! emulator, every request counted by an SDK interceptor. The numbers asserted here are the
//! ones "Request costs" in docs/architecture.md states.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use chorus::adapters::{DynamoRunStore, S3BlobStore, SqsQueue};
use chorus::domain::{Limits, RunStatus, TenantId};
use chorus::engine::{Engine, EngineParts, Submission};
use chorus::ports::{RunStore, StepMessage, SystemClock};
use chorus::startup::s3_client;
use chorus::webhooks::DestinationPolicy;
use chorus_tests::aws::emulator;
use chorus_tests::poll;
use serde_json::json;

/// Counts requests by operation (`UpdateItem`, `SendMessageBatch`, …) from the target
/// header both DynamoDB and SQS (JSON protocol) requests carry.
#[derive(Debug, Default, Clone)]
struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("unknown");
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        *self.counts.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}

impl RequestCounter {
    fn take(&self) -> Cost {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap());
        let sum = |ops: &[&str]| ops.iter().map(|op| counts.get(*op).copied().unwrap_or(0)).sum();
        let cost = Cost {
            reads: sum(&["GetItem", "Query"]),
            writes: sum(&["UpdateItem", "PutItem", "TransactWriteItems", "BatchWriteItem"]),
            sends: sum(&["SendMessage", "SendMessageBatch"]),
        };
        let known = ["GetItem", "Query", "UpdateItem", "PutItem", "TransactWriteItems", "BatchWriteItem"];
        let unknown: Vec<_> =
            counts.keys().filter(|op| !known.contains(&op.as_str()) && !op.starts_with("Send")).collect();
        assert!(unknown.is_empty(), "unexpected requests: {unknown:?}");
        cost
    }
}

/// Requests of one kind: DynamoDB reads, DynamoDB writes, SQS sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cost {
    reads: u32,
    writes: u32,
    sends: u32,
}

const fn cost(reads: u32, writes: u32, sends: u32) -> Cost {
    Cost { reads, writes, sends }
}

/// The engine over the emulator's table and a fresh queue of its own (steps and
/// notifications both), every DynamoDB and SQS request counted by `counter`.
struct Metered {
    engine: Engine,
    store: Arc<DynamoRunStore>,
    counter: RequestCounter,
    setup: aws_sdk_sqs::Client,
    url: String,
}

async fn metered_engine() -> Metered {
    let emulator = emulator().await;
    let counter = RequestCounter::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&emulator.config).interceptor(counter.clone()).build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&emulator.config).interceptor(counter.clone()).build(),
    );
    let setup = aws_sdk_sqs::Client::new(&emulator.config);
    let name = format!("chorus-cost-{:016x}", fastrand::u64(..));
    let url = setup.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();

    let blobs = Arc::new(S3BlobStore::new(s3_client(&emulator.config), &emulator.bucket));
    let store = Arc::new(DynamoRunStore::new(dynamodb, &emulator.table, blobs, Duration::from_secs(3600)));
    let engine = Engine::new(EngineParts {
        store: store.clone(),
        steps: Arc::new(SqsQueue::new(sqs.clone(), &url)),
        notifications: Arc::new(SqsQueue::new(sqs, &url)),
        router: Arc::new(chorus::startup::default_router()),
        clock: Arc::new(SystemClock),
        registry: Arc::new(chorus::adapters::MemoryWorkflowRegistry::new()),
        destinations: DestinationPolicy::production(),
        limits: Limits::default(),
        blobs: Arc::new(chorus::adapters::memory::MemoryBlobStore::new()),
        public_url: None,
        invocation_budget: None,
        // The tenant's step-start bucket would add one conditional write per step.
        quota: None,
    });
    Metered { engine, store, counter, setup, url }
}

impl Metered {
    /// Runs every message as it arrives until `expected` steps or items have run, each
    /// message's requests counted on their own (keyed by step id; a step's second message,
    /// if any, adds to its first).
    async fn run_all(&self, expected: usize) -> BTreeMap<String, Cost> {
        let per_step = Mutex::new(BTreeMap::new());
        let (executed, worker, counted, sqs, queue_url) =
            (&per_step, &self.engine, &self.counter, &self.setup, self.url.as_str());
        poll::until("every step arrives and runs", Duration::from_secs(120), Duration::ZERO, || async move {
            for message in receive(sqs, queue_url).await {
                worker.execute_step(&message).await.unwrap();
                let took = counted.take();
                let mut executed = executed.lock().unwrap();
                let entry = executed.entry(message.step_id.to_string()).or_insert(cost(0, 0, 0));
                *entry = cost(entry.reads + took.reads, entry.writes + took.writes, entry.sends + took.sends);
            }
            let done = executed.lock().unwrap().len();
            if done < expected { Err(format!("ran {done} of {expected}")) } else { Ok(()) }
        })
        .await;
        per_step.into_inner().unwrap()
    }
}

fn tenant() -> TenantId {
    TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap()
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_diamond_costs_three_writes_per_step_one_per_dependency_two_reads_and_one_batched_send() {
    let metered = metered_engine().await;
    let Metered { engine, store, counter, setup, url } = &metered;
    let generate =
        |id: &str, prompt: &str| json!({"id": id, "task": "generate", "model": "local:echo", "prompt": prompt});
    let workflow = json!({"steps": [
        generate("a", "{{ input.topic }}"),
        generate("b", "{{ steps.a.text }} one"),
        generate("c", "{{ steps.a.text }} two"),
        generate("d", "{{ steps.b.text }} and {{ steps.c.text }}")
    ], "output": {"d": "{{ steps.d.text }}"}});
    let submission = Submission { workflow, input: json!({"topic": "costs"}), notify: None };
    let run_id = engine.submit(&tenant(), submission, None).await.unwrap().run_id;
    // Submission: the steps in one batch write, the run in one more, the root step sent.
    assert_eq!(counter.take(), cost(0, 2, 1), "submission");

    // Each step as it arrives, its requests counted on their own.
    let per_step = metered.run_all(4).await;
    // Of its own, every step reads run and steps (2) and writes its claim, its completion
    // and, once what follows its end is done, clears its due time (3). Then: `a` counts down
    // `b` and `c` (2 writes) and sends both in one batch; it is also the run's first step
    // (1 write: queued → running). Of `b` and `c`, each counts down `d`; the one that takes
    // it to zero sends it. `d`, the run's only sink, counts the run down (1 write), reads the
    // steps to render the output and ends the run (1 write; a run that succeeded with no one
    // to notify has no follow-up of its own to clear).
    let (b, c) = (per_step["b"], per_step["c"]);
    assert_eq!(per_step["a"], cost(2, 6, 1), "a");
    assert_eq!((b.reads, b.writes, c.reads, c.writes), (2, 4, 2, 4), "b and c");
    assert_eq!(b.sends + c.sends, 1, "d is sent once");
    assert_eq!(per_step["d"], cost(3, 5, 0), "d");

    let run = store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    setup.delete_queue().queue_url(url).send().await.unwrap();
}

#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn a_map_item_costs_four_reads_five_writes_and_one_send() {
    let metered = metered_engine().await;
    let Metered { engine, store, counter, setup, url } = &metered;
    let (items, slots) = (20, 4);
    let workflow = json!({"steps": [{
        "id": "each", "task": "generate", "model": "local:echo", "prompt": "{{ item }}",
        "for_each": "input.docs", "max_concurrency": slots
    }]});
    let docs: Vec<String> = (0..items).map(|i| format!("doc {i}")).collect();
    let submission = Submission { workflow, input: json!({ "docs": docs }), notify: None };
    let run_id = engine.submit(&tenant(), submission, None).await.unwrap().run_id;
    counter.take();
    let per_step = metered.run_all(items + 1).await;

    // The map step: reads run and steps, claims itself (and the run: queued → running),
    // stores its 20 items in one batch write, records that it started them, and sends the
    // first four in one batch.
    assert_eq!(per_step["each"], cost(2, 4, 1), "the map step");
    // Every item, of its own: reads the run, the run's steps and itself (3), claims itself
    // and stores its completion (2), counts itself on the map step (1: a transaction of two
    // writes, the item's mark and the map's count, which then reads the map step back: 1
    // read) and clears its due time (1). An item with one waiting for its slot releases it (1
    // write) and sends it (1). The last item to end also lists the items (1 read), ends the
    // map step (1 write) and does what follows that (the run's end: 1 read, 2 writes).
    let item = |i: usize| per_step[&format!("each[{i}]")];
    for i in 0..items - slots {
        assert_eq!(item(i), cost(4, 5, 1), "item {i}, which releases item {}", i + slots);
    }
    let tail: Vec<Cost> = (items - slots..items).map(item).collect();
    let plain = tail.iter().filter(|c| **c == cost(4, 4, 0)).count();
    assert!(plain >= slots - 1, "the last items release nothing: {tail:?}");
    let run = store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    setup.delete_queue().queue_url(url).send().await.unwrap();
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<StepMessage> {
    let received = sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await;
    let mut messages = Vec::new();
    for message in received.unwrap().messages.unwrap_or_default() {
        messages.push(serde_json::from_str(message.body().unwrap()).unwrap());
        sqs.delete_message().queue_url(url).receipt_handle(message.receipt_handle().unwrap()).send().await.unwrap();
    }
    messages
}
