//! The port contracts against the AWS adapters on the emulator: the same clauses
//! `memory_conformance.rs` runs against the memory adapters, one test per clause and adapter
//! (`dynamo_run_store::creates_and_reads_back`), each with resources of its own. They need the
//! local AWS stack, so they are ignored by a plain `cargo test`; `make test` runs them on each
//! emulator.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chorus::adapters::dynamodb::DynamoRateLimiter;
use chorus::adapters::{DynamoRunStore, DynamoWorkflowRegistry, S3BlobStore, SqsQueue};
use chorus::domain::TenantId;
use chorus::ports::{
    BlobStore, Queue, RateLimiter, RunStore, SigningSecretStore, SigningSecrets, StepMessage, Tenant, WorkflowRegistry,
};
use chorus::startup::s3_client;
use chorus_tests::aws::emulator;
use chorus_tests::queue_contract::QueueUnderTest;
use chorus_tests::rate_limiter_contract::{LimiterUnderTest, ManualClock};
use chorus_tests::tenant_directory_contract::{KnownTenant, own_request_limit, rotating_secrets};
use chorus_tests::workflow_registry_contract::CONTRACT_LIMITS;
use secrecy::{ExposeSecret, SecretString};

chorus_tests::run_store_contract!(
    dynamo_run_store,
    make_dynamo_run_store,
    #[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
);
chorus_tests::blob_store_contract!(
    s3_blob_store,
    make_s3_blob_store,
    #[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
);
chorus_tests::queue_contract!(
    sqs_queue,
    make_sqs_queue,
    #[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
);
chorus_tests::tenant_directory_contract!(
    dynamo_tenant_directory,
    make_dynamo_tenant_directory,
    #[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
);
chorus_tests::rate_limiter_contract!(
    dynamo_rate_limiter,
    make_dynamo_rate_limiter,
    #[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
);
chorus_tests::workflow_registry_contract!(
    dynamo_workflow_registry,
    make_dynamo_workflow_registry,
    #[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
);

async fn make_dynamo_run_store() -> Arc<dyn RunStore> {
    let emulator = emulator().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
    let blobs = Arc::new(S3BlobStore::new(s3_client(&emulator.config), &emulator.bucket));
    Arc::new(DynamoRunStore::new(dynamodb, &emulator.table, blobs, Duration::from_secs(3600)))
}

async fn make_s3_blob_store() -> Arc<dyn BlobStore> {
    let emulator = emulator().await;
    Arc::new(S3BlobStore::new(s3_client(&emulator.config), &emulator.bucket))
}

/// An SQS queue of the test's own: the template's queues are consumed by the local loop's
/// bridge.
struct SqsQueueUnderTest {
    sqs: aws_sdk_sqs::Client,
    url: String,
    queue: SqsQueue<StepMessage>,
}

async fn make_sqs_queue() -> SqsQueueUnderTest {
    let emulator = emulator().await;
    let sqs = aws_sdk_sqs::Client::new(&emulator.config);
    let name = format!("chorus-contract-{:016x}", fastrand::u64(..));
    let url = sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url.unwrap();
    let queue = SqsQueue::<StepMessage>::new(sqs.clone(), &url);
    SqsQueueUnderTest { sqs, url, queue }
}

impl QueueUnderTest for SqsQueueUnderTest {
    fn queue(&self) -> &dyn Queue<StepMessage> {
        &self.queue
    }

    async fn receive(&self, wait: Duration) -> Vec<StepMessage> {
        let wait = i32::try_from(wait.as_secs().max(1)).unwrap();
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .send()
            .await;
        let mut batch = Vec::new();
        for message in received.unwrap().messages.unwrap_or_default() {
            batch.push(serde_json::from_str(message.body().unwrap()).unwrap());
            self.sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        batch
    }

    async fn delete(self) {
        self.sqs.delete_queue().queue_url(&self.url).send().await.unwrap();
    }
}

async fn make_dynamo_tenant_directory() -> KnownTenant {
    let emulator = emulator().await;
    let store = emulator.signing_secrets();
    let id = TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap();
    let tenant = Tenant { request_limit: Some(own_request_limit()), ..Tenant::new(id) };
    let api_key = SecretString::from(format!("chorus_{:032x}", fastrand::u128(..)));
    let secrets = rotating_secrets();
    store.register(&tenant, &secrets, &api_key).await.unwrap();
    KnownTenant {
        directory: Arc::new(store.directory().clone()),
        secrets_store: Arc::new(store),
        tenant,
        secrets,
        api_key,
    }
}

/// The secrets are sealed in the item: neither secret, nor its base64 key, is in it.
#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn dynamo_signing_secrets_are_stored_sealed() {
    let emulator = emulator().await;
    let known = make_dynamo_tenant_directory().await;
    let item = aws_sdk_dynamodb::Client::new(&emulator.config)
        .get_item()
        .table_name(&emulator.table)
        .key("pk", AttributeValue::S(format!("TENANT#{}", known.tenant.id)))
        .key("sk", AttributeValue::S("TENANT".to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the tenant item");
    let stored = format!("{item:?}");
    for secret in known.secrets.iter() {
        let secret = secret.expose_secret();
        assert!(!stored.contains(secret) && !stored.contains(&secret["whsec_".len()..]), "{stored}");
    }
    assert!(item.contains_key("webhook_secrets") && !item.contains_key("webhook_secret"));
}

/// A rotation adds a secret in front and keeps the newest so far; retiring drops the older.
#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn dynamo_signing_secrets_rotate_and_retire() {
    let emulator = emulator().await;
    let store = emulator.signing_secrets();
    let tenant = Tenant::new(TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap());
    let first = SigningSecrets::new(SecretString::from("whsec_Zmlyc3Q="));
    store.register(&tenant, &first, &SecretString::from(format!("ck_{:032x}", fastrand::u128(..)))).await.unwrap();
    let listed = |secrets: SigningSecrets| secrets.iter().map(|s| s.expose_secret().to_owned()).collect::<Vec<_>>();

    assert!(store.rotate(&tenant.id, SecretString::from("whsec_c2Vjb25k")).await.unwrap());
    let rotating = store.signing_secrets(&tenant.id).await.unwrap().unwrap();
    assert_eq!(listed(rotating), ["whsec_c2Vjb25k", "whsec_Zmlyc3Q="]);
    assert!(store.retire_previous(&tenant.id).await.unwrap());
    let rotated = store.signing_secrets(&tenant.id).await.unwrap().unwrap();
    assert_eq!(listed(rotated), ["whsec_c2Vjb25k"]);

    let stranger = TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap();
    assert!(!store.rotate(&stranger, SecretString::from("whsec_eA==")).await.unwrap(), "no such tenant");
}

async fn make_dynamo_rate_limiter() -> LimiterUnderTest {
    let emulator = emulator().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
    let clock = ManualClock::starting_now();
    let (table, ticking) = (emulator.table, clock.clone());
    // A new limiter per call: each is a worker of its own, sharing only the table.
    let make =
        move || Arc::new(DynamoRateLimiter::new(dynamodb.clone(), &table, ticking.clone())) as Arc<dyn RateLimiter>;
    LimiterUnderTest { clock, make: Box::new(make) }
}

/// A run whose payload in S3 is gone (deleted by hand, by a lifecycle rule) cannot be read;
/// the reconciler then fails it through `fail_unreadable_run`, which leaves it readable.
#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn dynamo_run_store_fails_a_run_whose_payload_is_gone_and_reads_it_again() {
    use chorus::domain::{ErrorKind, Run, RunStatus, StepError, StepId, StepState, WorkflowDefinition};
    use chorus::ports::{CreateOutcome, DueRef, NewRun};

    let emulator = emulator().await;
    let store = make_dynamo_run_store().await;
    let s3 = s3_client(&emulator.config);
    let now = jiff::Timestamp::now();
    let definition: WorkflowDefinition = serde_json::from_value(serde_json::json!({"steps": [
        {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ input.text }}"}
    ]}))
    .unwrap();
    let tenant = TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap();
    let run = Run {
        id: chorus::domain::RunId::generate(now),
        tenant: tenant.clone(),
        status: RunStatus::Queued,
        definition,
        input: serde_json::json!({"text": "chorus ".repeat(20_000)}),
        notify: None,
        output: None,
        error: None,
        pending_sinks: 1,
        created_at: now,
        updated_at: now,
        finished_at: None,
        due: None,
        budget: Default::default(),
        workflow: None,
        generation: 0,
        forked_from: None,
        parent: None,
        depth: 0,
    };
    let run_id = run.id.clone();
    let steps = vec![StepState::new(StepId::parse("a").unwrap(), 0, Vec::new())];
    let created = store.create_run(NewRun { run, steps, idempotency: None, events: Vec::new() }).await.unwrap();
    assert_eq!(created, CreateOutcome::Created);

    let prefix = format!("tenants/{tenant}/runs/{run_id}/");
    let listed = s3.list_objects_v2().bucket(&emulator.bucket).prefix(&prefix).send().await.unwrap();
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    assert!(!keys.is_empty(), "the large input went to S3");
    for key in keys {
        s3.delete_object().bucket(&emulator.bucket).key(key).send().await.unwrap();
    }
    let unreadable = store.get_run(&run_id).await;
    assert!(matches!(unreadable, Err(chorus::ports::PortError::Corrupt { .. })), "{unreadable:?}");

    let error = StepError::new(ErrorKind::PayloadMissing, "the input is gone");
    assert!(store.fail_unreadable_run(&run_id, error.clone(), now).await.unwrap());
    let run = store.get_run(&run_id).await.unwrap().expect("readable again");
    assert_eq!((run.status, run.input, run.error), (RunStatus::Failed, serde_json::Value::Null, Some(error.clone())));
    assert_eq!(run.due, Some(now), "its follow-up (the client's notification) is due");
    let due = store.due(now + Duration::from_secs(1), 10_000).await.unwrap();
    assert!(due.contains(&DueRef { run_id: run_id.clone(), step_id: None }));
    assert!(!store.fail_unreadable_run(&run_id, error, now).await.unwrap(), "an ended run is left as it is");
}

async fn make_dynamo_workflow_registry() -> Arc<dyn WorkflowRegistry> {
    let emulator = emulator().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.config);
    Arc::new(DynamoWorkflowRegistry::with_limits(dynamodb, &emulator.table, CONTRACT_LIMITS))
}

/// Registered workflows do not expire: none of their items carries the table's TTL
/// attribute, and each kind the adapter writes is there.
#[tokio::test]
#[ignore = "needs the local AWS stack (AWS_ENDPOINT_URL): make test runs it"]
async fn dynamo_workflow_registry_items_never_expire() {
    use chorus::domain::{WorkflowDefinition, WorkflowName};

    let emulator = emulator().await;
    let registry = make_dynamo_workflow_registry().await;
    let tenant = TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap();
    let definition: WorkflowDefinition = serde_json::from_value(serde_json::json!({"steps": [
        {"id": "a", "task": "generate", "model": "local:echo", "prompt": "{{ input.text }}"}
    ]}))
    .unwrap();
    let name = WorkflowName::parse("kept").unwrap();
    registry.register(&tenant, &name, &definition, jiff::Timestamp::now()).await.unwrap();
    let items = aws_sdk_dynamodb::Client::new(&emulator.config)
        .query()
        .table_name(&emulator.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("WORKFLOWS#{tenant}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let mut kinds: Vec<String> =
        items.iter().map(|item| item["sk"].as_s().unwrap().split('#').next().unwrap().to_owned()).collect();
    kinds.sort();
    assert_eq!(kinds, ["COUNT", "DEFINITION", "NAME", "VERSION"]);
    for item in &items {
        assert!(!item.contains_key("expires_at"), "{item:?}");
    }
}
