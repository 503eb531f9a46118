//! End to end with real provider adapters: `chorus dev` runs workflows against the mock
//! provider server, which speaks each provider's wire format. The seed patterns: OpenAI draft
//! → Cohere summary → Hugging Face sentiment; a summary failing over from OpenAI (500s) to
//! Hugging Face's BART; a Replicate step completed by its signed webhook, whose forged and
//! replayed copies are turned away; a budget that refuses a call; and one workflow whose
//! `model` moves between every provider with no other change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use chorus::webhooks::{WebhookSecret, signed_headers};
use chorus_mock_providers::{self as mock, Fault};
use chorus_tests::provider_contract::MockServer;
use serde_json::{Value, json};
use support::Api;

mod support;

/// `chorus dev` with every provider pointed at `mock` (Bedrock through the AWS SDK, with
/// throwaway credentials the mock accepts).
async fn dev_with_providers(mock: &MockServer) -> Api {
    let mut env: Vec<(&str, String)> = mock::base_urls(&mock.base());
    env.extend([
        ("AWS_ACCESS_KEY_ID", "mock".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "mock".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]);
    Api::start(&env).await
}

async fn run_workflow(api: &Api, workflow: Value, input: Value) -> Value {
    let body = json!({ "workflow": workflow, "input": input });
    let response = api.post("/v1/runs", &body).await;
    let status = response.status();
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted:#}");
    let id = accepted["id"].as_str().unwrap();
    api.run_to_end("workflow", id).await
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {run:#}"))
}

fn attempts(step: &Value) -> Vec<String> {
    step["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["provider"].as_str().unwrap(), a["error"]["kind"].as_str().unwrap_or("ok")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_seed_chain_when_run_then_openai_cohere_and_hugging_face_each_do_their_step() {
    let mock = MockServer::start().await;
    let api = dev_with_providers(&mock).await;
    let workflow = json!({
        "name": "draft-summarize-sentiment",
        "steps": [
            {"id": "draft", "task": "generate", "model": "openai:gpt-4o-mini", "prompt": "{{ input.prompt }}", "max_tokens": 300},
            {"id": "summary", "task": "summarize", "model": "cohere:command-r", "input": "{{ steps.draft.text }}"},
            {"id": "sentiment", "task": "classify", "model": "huggingface:distilbert-base-uncased-finetuned-sst-2-english",
             "input": "{{ steps.summary.text }}", "labels": ["POSITIVE", "NEGATIVE"]}
        ],
        "output": {"summary": "{{ steps.summary.text }}", "sentiment": "{{ steps.sentiment.label }}"}
    });
    let run =
        run_workflow(&api, workflow, json!({"prompt": "A short, happy note about our wonderful support team."})).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    for (id, provider, reports_usage) in
        [("draft", "openai", true), ("summary", "cohere", true), ("sentiment", "huggingface", false)]
    {
        let step = step(&run, id);
        assert_eq!(step["provider"], provider, "{id}");
        assert_eq!(attempts(step), [format!("{provider} ok")], "{id}");
        assert!(step["usage"]["input_tokens"].as_u64().unwrap() > 0, "{id}: usage recorded");
        assert_eq!(step["usage"]["estimated"], !reports_usage, "{id}: estimated only when the provider has no usage");
    }
    assert!(step(&run, "draft")["cost_usd"].as_f64().unwrap() > 0.0, "gpt-4o-mini is priced");
    // Hugging Face bills by compute time: the table has no price, so its cost is unknown, not 0.
    let sentiment = step(&run, "sentiment");
    assert_eq!((&sentiment["cost_usd"], &sentiment["cost_known"]), (&Value::Null, &json!(false)), "{sentiment}");
    assert_eq!(sentiment["output"]["label"], "POSITIVE");
    assert_eq!(run["output"]["sentiment"], "POSITIVE");
    let known: f64 = run["steps"].as_array().unwrap().iter().filter_map(|s| s["cost_usd"].as_f64()).sum();
    let totals = &run["totals"];
    assert!((totals["cost_usd"].as_f64().unwrap() - known).abs() < 1e-12, "the run's total sums the known costs");
    assert_eq!(totals["cost_known"], false, "and says it is a lower bound: {totals}");
    assert_eq!(run["totals"]["model_calls"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_openai_answering_500s_when_summarizing_then_hugging_face_bart_takes_over() {
    let mock = MockServer::start().await;
    let api = dev_with_providers(&mock).await;
    mock.script("openai", Fault::ServerError, 100);
    let workflow = json!({"steps": [{
        "id": "summary", "task": "summarize", "model": "openai:gpt-4o-mini",
        "fallbacks": ["huggingface:facebook/bart-large-cnn"], "retries": 2,
        "input": "{{ input.text }}"
    }]});
    let text = "Chorus runs AI workflows. It retries, falls back and keeps costs in check. Users like it.";
    let run = run_workflow(&api, workflow, json!({ "text": text })).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let summary = step(&run, "summary");
    assert_eq!(attempts(summary), ["openai transient", "openai transient", "openai transient", "huggingface ok"]);
    assert_eq!(
        (summary["provider"].as_str(), summary["model"].as_str()),
        (Some("huggingface"), Some("facebook/bart-large-cnn"))
    );
    assert_eq!(summary["output"]["text"], "Chorus runs AI workflows.");
    assert_eq!(mock.requests("openai"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_replicate_step_when_its_signed_webhook_arrives_then_the_step_completes_and_copies_are_refused() {
    let mock = MockServer::start().await;
    let api = dev_with_providers(&mock).await;
    let workflow = json!({"steps": [
        {"id": "draft", "task": "generate", "model": "replicate:meta/meta-llama-3-8b-instruct", "prompt": "Say hello"},
        {"id": "after", "task": "summarize", "model": "local:extractive", "input": "{{ steps.draft.text }}"}
    ]});
    let run = run_workflow(&api, workflow, json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let draft = step(&run, "draft");
    assert_eq!(draft["provider"], "replicate");
    assert!(draft["output"]["text"].as_str().unwrap().contains("Say hello"), "{draft:#}");
    assert_eq!(step(&run, "after")["status"], "succeeded", "the dependant was released");

    // The history shows the job and where its raw output was archived.
    let id = run["id"].as_str().unwrap();
    let events = api.get(&format!("/v1/runs/{id}/events")).await;
    let events = events["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "job_submitted"), "{events:#?}");
    let finished = events.iter().find(|e| e["type"] == "job_finished").unwrap();
    assert!(finished["archived_at"].as_str().unwrap().ends_with(".json"));
    let delivery_id = finished["delivery_id"].as_str().unwrap();

    // The webhook as it was delivered, to replay and tamper with.
    let delivered = mock.state.webhooks().into_iter().find(|w| w.id == delivery_id).unwrap();
    let post = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let http = api.http.clone();
        let url = delivered.url.clone();
        async move {
            let mut request = http.post(url).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap().status()
        }
    };
    // An exact redelivery is accepted and changes nothing.
    assert_eq!(post(delivered.headers.clone(), delivered.body.clone()).await, StatusCode::OK);
    let again = api.get(&format!("/v1/runs/{id}/events")).await;
    assert_eq!(again["events"].as_array().unwrap().len(), events.len(), "a replay adds no history");
    // A forged body under the real signature, or a body signed with another secret: 401.
    let forged = String::from_utf8(delivered.body.clone()).unwrap().replace("succeeded", "failed").into_bytes();
    assert_eq!(post(delivered.headers.clone(), forged.clone()).await, StatusCode::UNAUTHORIZED);
    let stranger = WebhookSecret::generate();
    let now = jiff::Timestamp::now().as_second();
    assert_eq!(post(signed_headers(&stranger, &delivered.id, now, &forged), forged).await, StatusCode::UNAUTHORIZED);
    // The real secret, but a message from ten minutes ago: a replay outside the window.
    let secret = WebhookSecret::parse(mock::DEFAULT_WEBHOOK_SECRET).unwrap();
    let stale = signed_headers(&secret, "msg_stale", now - 600, &delivered.body);
    assert_eq!(post(stale, delivered.body.clone()).await, StatusCode::UNAUTHORIZED);
    // A guessed callback URL: 404.
    let guessed = delivered.url.rsplit_once('/').map(|(base, _)| format!("{base}/{id}.draft.00")).unwrap();
    let status = api.http.post(guessed).body(delivered.body.clone()).send().await.unwrap().status();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_tiny_budget_when_a_priced_model_would_exceed_it_then_the_step_fails_clearly() {
    let mock = MockServer::start().await;
    let api = dev_with_providers(&mock).await;
    let workflow = json!({"budget_usd": 0.000001, "steps": [
        {"id": "draft", "task": "generate", "model": "openai:gpt-4o", "prompt": "Write a long essay", "max_tokens": 4000}
    ]});
    let run = run_workflow(&api, workflow, json!({})).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = &step(&run, "draft")["error"];
    assert_eq!(error["kind"], "budget_exceeded");
    assert!(error["message"].as_str().unwrap().contains("budget"), "{error}");
    assert_eq!(mock.requests("openai"), 0, "the refused call was never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_one_summarize_step_when_only_its_model_changes_then_every_provider_runs_it() {
    let mock = MockServer::start().await;
    let api = dev_with_providers(&mock).await;
    let text = "Chorus runs AI workflows on AWS. It is fast. Teams use it every day.";
    for model in [
        "openai:gpt-4o-mini",
        "anthropic:claude-3-5-haiku-latest",
        "gemini:gemini-2.0-flash",
        "cohere:command-r",
        "huggingface:facebook/bart-large-cnn",
        "replicate:meta/meta-llama-3-8b-instruct",
        "bedrock:amazon.nova-micro-v1:0",
        "local:extractive",
    ] {
        let workflow =
            json!({"steps": [{"id": "summary", "task": "summarize", "model": model, "input": "{{ input.text }}"}]});
        let run = run_workflow(&api, workflow, json!({ "text": text })).await;
        assert_eq!(run["status"], "succeeded", "{model}: {run:#}");
        let summary = step(&run, "summary");
        let (provider, id) = model.split_once(':').unwrap();
        assert_eq!((summary["provider"].as_str(), summary["model"].as_str()), (Some(provider), Some(id)));
        assert!(!summary["output"]["text"].as_str().unwrap().is_empty(), "{model}");
    }
}
