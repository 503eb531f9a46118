//! End to end through the real `chorus` binary: start `chorus dev`, register every workflow
//! in `examples/workflows/`, submit every workflow in `examples/` over HTTP, approve where a
//! run waits for it, check each run's normalized outputs, and check the signed notification
//! each run sends to a receiver in this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chorus::webhooks::WebhookSecret;
use chorus_tests::webhook_receiver::start_receiver;
use serde_json::{Value, json};
use support::{APPROVER, Api, POLL_EVERY, WEBHOOK_SECRET};

mod support;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("examples")
}

/// Every example file name (without `.json`) with its body.
fn examples() -> BTreeMap<String, Value> {
    json_files(&examples_dir())
}

/// Every `.json` file of `dir` by name (without `.json`), with its body.
fn json_files(dir: &Path) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let body: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
            found.insert(name, body);
        }
    }
    found
}

/// The checks for one example's finished run.
type Check = fn(&Value);

fn expectations() -> BTreeMap<&'static str, Check> {
    BTreeMap::from([
        ("draft-summarize-sentiment", check_draft_summarize_sentiment as Check),
        ("failover-summarize-sentiment", check_failover as Check),
        ("classifier-routing", check_classifier_routing as Check),
        ("parallel-enrichment", check_parallel_enrichment as Check),
        ("generate-then-validate", check_generate_then_validate as Check),
        ("approval-gate", check_approval_gate as Check),
        ("map-summarize-classify", check_map_summarize_classify as Check),
        ("subworkflow-gist", check_subworkflow_gist as Check),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs_to_completion_in_chorus_dev() {
    // GIVEN chorus dev with a known key and signing secret, and a receiver for notifications
    let api = Api::start(&[]).await;
    let (hook, mut deliveries) = start_receiver().await;

    let examples = examples();
    let expectations = expectations();
    let names: Vec<&str> = examples.keys().map(String::as_str).collect();
    let checked: Vec<&str> = expectations.keys().copied().collect();
    assert_eq!(names, checked, "every example in examples/ needs expectations here, and the other way round");

    // An unauthenticated caller gets nothing.
    let anonymous = api.http.get(api.server.url("/v1/runs")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The workflows the examples call as sub-workflows are registered first.
    for (name, body) in json_files(&examples_dir().join("workflows")) {
        let response = api.put(&format!("/v1/workflows/{name}"), &body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "registering {name}");
    }

    // WHEN every example is submitted and driven to its end
    let mut runs = BTreeMap::new();
    for (name, body) in &examples {
        let id = api.submit(name, body.clone(), &hook).await;
        let run = api.run_to_end(name, &id).await;
        // THEN it succeeded with the outputs its tasks promise
        assert_eq!(run["status"], "succeeded", "{name}: {run:#}");
        assert_eq!(run["name"], body["workflow"]["name"], "{name}");
        check_model_steps(name, &run);
        expectations[name.as_str()](&run);
        runs.insert(id, name.clone());
    }

    // AND the tenant's list shows every run
    let listed = api.get("/v1/runs?limit=100").await;
    let listed: Vec<&str> = listed["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in runs.keys() {
        assert!(listed.contains(&id.as_str()), "run {id} is missing from GET /v1/runs");
    }

    // AND each run sent one notification, signed with the tenant's secret, saying it succeeded
    let secret = WebhookSecret::parse(WEBHOOK_SECRET).unwrap();
    let mut notified = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while notified.len() < runs.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(delivery)) = tokio::time::timeout(left, deliveries.recv()).await else {
            panic!("notifications arrived for {notified:?} only; expected every run in {runs:?}");
        };
        let body = delivery.verified(&secret);
        let id = body["data"]["id"].as_str().unwrap().to_owned();
        let name = runs.get(&id).unwrap_or_else(|| panic!("notification for unknown run {id}"));
        assert_eq!(body["type"], "run.finished", "{name}");
        assert_eq!(body["data"]["status"], "succeeded", "{name}");
        assert!(body["data"]["output"].is_object(), "{name}: the notification carries the output");
        assert!(notified.insert(id, delivery.webhook_id().to_owned()).is_none(), "{name}: notified twice");
    }

    // AND a SIGTERM stops the server cleanly
    #[cfg(unix)]
    {
        let mut server = api.server;
        let pid = server.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status =
            chorus_tests::poll::until("chorus dev stops after SIGTERM", Duration::from_secs(15), POLL_EVERY, || {
                let exited = server.child.try_wait().unwrap();
                async move { exited.ok_or("still running") }
            })
            .await;
        assert!(status.success(), "chorus dev exited with {status} after SIGTERM");
    }
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step `{id}` in {run:#}"))
}

fn text(run: &Value, id: &str) -> String {
    let output = &step(run, id)["output"];
    let text = output["text"].as_str().unwrap_or_else(|| panic!("step `{id}` has no text: {output:#}"));
    assert!(!text.is_empty(), "step `{id}` produced empty text");
    text.to_owned()
}

/// Every model step that ran records who answered, every attempt, usage, cost and latency.
fn check_model_steps(name: &str, run: &Value) {
    for step in run["steps"].as_array().unwrap() {
        // A map step's calls are its items' (checked with its output); a person or a child
        // run does an approval's or a workflow step's work.
        let no_call = ["approval", "workflow"].contains(&step["task"].as_str().unwrap_or_default());
        if no_call || step.get("map").is_some() || step["status"] != "succeeded" {
            continue;
        }
        let id = &step["id"];
        assert_eq!(step["provider"], "local", "{name}/{id}");
        assert!(step["model"].is_string(), "{name}/{id}");
        let attempts = step["attempts"].as_array().unwrap();
        assert!(!attempts.is_empty(), "{name}/{id}: attempts");
        assert!(attempts.last().unwrap().get("error").is_none(), "{name}/{id}: the last attempt succeeded");
        assert!(step["usage"]["input_tokens"].is_u64(), "{name}/{id}: usage");
        assert!(step["usage"]["output_tokens"].is_u64(), "{name}/{id}: usage");
        assert_eq!(step["cost_usd"], 0.0, "{name}/{id}: local models are free");
        assert!(step["latency_ms"].is_u64(), "{name}/{id}: latency");
    }
}

fn check_classification(run: &Value, id: &str, labels: &[&str]) -> String {
    let output = &step(run, id)["output"];
    let label = output["label"].as_str().unwrap_or_else(|| panic!("step `{id}` has no label: {output:#}"));
    assert!(labels.contains(&label), "step `{id}`: {label} is not one of {labels:?}");
    let confidence = output["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&confidence), "step `{id}`: confidence {confidence}");
    let scores = output["scores"].as_object().unwrap();
    assert_eq!(scores.len(), labels.len(), "step `{id}`: a score per label");
    label.to_owned()
}

fn check_draft_summarize_sentiment(run: &Value) {
    let draft = text(run, "draft");
    assert_eq!(step(run, "draft")["output"]["finish_reason"], "stop");
    let summary = text(run, "summary");
    assert!(summary.len() < draft.len(), "the summary is shorter than the draft");
    let label = check_classification(run, "sentiment", &["POSITIVE", "NEGATIVE"]);
    assert_eq!(label, "POSITIVE", "the release notes read as positive");
    let output = &run["output"];
    assert_eq!(output["draft"], draft.as_str());
    assert_eq!(output["summary"], summary.as_str());
    assert_eq!(output["sentiment"], label.as_str());
    assert!(output["confidence"].is_f64(), "a sole `{{{{ expression }}}}` keeps its JSON type");
}

fn check_failover(run: &Value) {
    let summary = step(run, "summary");
    let attempts = summary["attempts"].as_array().unwrap();
    // `retries: 1`: two tries on the model that is down, then the fallback.
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    for failed in &attempts[..2] {
        assert_eq!(failed["provider"], "local");
        assert_eq!(failed["model"], "outage");
        assert_eq!(failed["error"]["kind"], "transient");
    }
    assert_eq!(attempts[2]["model"], "extractive");
    assert_eq!(summary["provider"], "local");
    assert_eq!(summary["model"], "extractive");
    text(run, "summary");
    let label = check_classification(run, "sentiment", &["POSITIVE", "NEGATIVE"]);
    assert_eq!(label, "NEGATIVE", "an outage report reads as negative");
    assert_eq!(run["output"]["sentiment"], label.as_str());
    assert_eq!(run["totals"]["model_calls"], 4, "three summarize attempts and one classify");
}

fn check_classifier_routing(run: &Value) {
    let label = check_classification(run, "route", &["billing", "technical"]);
    assert_eq!(label, "billing");
    let reply = text(run, "billing_reply");
    let skipped = step(run, "tech_reply");
    assert_eq!(skipped["status"], "skipped");
    assert!(skipped.get("output").is_none());
    assert_eq!(run["output"]["category"], "billing");
    assert_eq!(run["output"]["reply"], reply.as_str());
    assert!(run["output"]["scores"]["billing"].is_f64());
}

fn check_parallel_enrichment(run: &Value) {
    text(run, "summary");
    let sentiment = check_classification(run, "sentiment", &["POSITIVE", "NEGATIVE", "NEUTRAL"]);
    assert_eq!(sentiment, "NEGATIVE", "a late, damaged delivery reads as negative");
    assert_eq!(check_classification(run, "topic", &["delivery", "billing", "product"]), "delivery");
    let data = &step(run, "details")["output"]["data"];
    assert_eq!(data, &json!({ "email": "dana@example.com", "order_number": "CH-48213" }));
    let vector = &step(run, "vector")["output"];
    assert_eq!(vector["dims"], 256);
    assert_eq!(vector["vector"].as_array().unwrap().len(), 256);
    let report = text(run, "report");
    assert!(report.contains("CH-48213") && report.contains("delivery"), "{report}");
    // The fan-in step starts only after all five enrichments ended.
    let report_started = step(run, "report")["started_at"].as_str().unwrap().to_owned();
    for id in ["summary", "sentiment", "topic", "details", "vector"] {
        let finished = step(run, id)["finished_at"].as_str().unwrap();
        let (finished, started): (jiff::Timestamp, jiff::Timestamp) =
            (finished.parse().unwrap(), report_started.parse().unwrap());
        assert!(finished <= started, "{id} finished after the report started");
    }
    let output = &run["output"];
    assert_eq!(output["email"], "dana@example.com");
    assert_eq!(output["order_number"], "CH-48213");
    assert_eq!(output["embedding_dims"], 256);
    assert_eq!(output["report"], report.as_str());
}

fn check_generate_then_validate(run: &Value) {
    let record = text(run, "record");
    assert!(record.contains("plan: team"), "{record}");
    let expected = json!({ "name": "Ada Lovelace", "email": "ada@example.com", "plan": "team", "seats": 12 });
    assert_eq!(step(run, "validated")["output"]["data"], expected);
    assert_eq!(run["output"]["record"], expected);
}

fn check_approval_gate(run: &Value) {
    text(run, "draft");
    check_classification(run, "sentiment", &["POSITIVE", "NEGATIVE"]);
    let review = step(run, "review");
    assert_eq!(review["status"], "succeeded");
    assert_eq!(review["output"]["approved"], true);
    assert_eq!(review["output"]["by"], APPROVER);
    assert_eq!(review["output"]["comment"], "ship it");
    let key_id = review["output"]["key_id"].as_str().unwrap_or_default();
    assert!(key_id.starts_with("key_") && key_id.len() == 20, "the approving key is on record: {key_id}");
    let published = text(run, "publish");
    assert!(published.ends_with(&format!("(Approved by {APPROVER}.)")), "{published}");
    assert_eq!(run["output"]["approved_by"], APPROVER);
    assert_eq!(run["output"]["comment"], "ship it");
    assert_eq!(run["output"]["published"], published.as_str());
}

fn check_map_summarize_classify(run: &Value) {
    let map = step(run, "summaries");
    assert_eq!(map["map"], json!({"items": 5, "pending": 0, "failed": 0}));
    let items = map["output"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item["index"], index, "in list order");
        assert_eq!((&item["status"], &item["model"]), (&json!("succeeded"), &json!("local:extractive")));
        assert!(!item["output"]["text"].as_str().unwrap().is_empty(), "item {index}");
        assert_eq!((&item["attempts"], &item["cost_usd"]), (&json!(1), &json!(0.0)), "item {index}");
    }
    let used: u64 = items.iter().map(|item| item["usage"]["input_tokens"].as_u64().unwrap()).sum();
    assert_eq!(map["usage"]["input_tokens"], used, "the map's usage sums its items'");
    assert!(items[0]["output"]["text"].as_str().unwrap().contains("release"), "{:#}", items[0]);
    assert_eq!(run["output"]["summaries"], map["output"]["items"]);
    assert_eq!(run["output"]["mood"], check_classification(run, "mood", &["POSITIVE", "NEGATIVE"]));
}

fn check_subworkflow_gist(run: &Value) {
    let gist = step(run, "gist");
    assert!(gist["child_run"].as_str().unwrap().starts_with("run_"), "{gist:#}");
    assert_eq!(run["children"], json!([gist["child_run"]]));
    assert_eq!(gist["output"]["tone"], "POSITIVE");
    assert!(!gist["output"]["summary"].as_str().unwrap().is_empty());
    assert_eq!(run["output"]["tone"], "POSITIVE");
    assert!(text(run, "announce").starts_with("POSITIVE news: "));
    let pinned = run["steps"].as_array().unwrap().iter().find(|s| s["id"] == "gist").unwrap();
    assert_eq!(pinned["task"], "workflow");
}
