//! Retry and fork through the API: status codes, problem+json, `Location`, links,
//! `Idempotency-Key` replays, and answers that match their documented schemas.

use super::*;

/// A run of [`approval_workflow`] whose approval was rejected: it failed, `publish` cancelled.
async fn rejected_run(api: &mut Api) -> String {
    let id = api.start(KEY_A, &approval_workflow()).await;
    api.drive().await;
    let rejected = api.post_empty(&format!("/v1/runs/{id}/steps/review/reject"), KEY_A).await;
    assert_eq!(rejected.body["status"], "failed", "{}", rejected.body);
    id
}

fn with_key(mut request: Request<Body>, key: &str) -> Request<Body> {
    request.headers_mut().insert("idempotency-key", key.parse().unwrap());
    request
}

fn retry_request(id: &str, key: Option<&str>) -> Request<Body> {
    let request = request(Method::POST, &format!("/v1/runs/{id}/retry"), Some(KEY_A)).body(Body::empty()).unwrap();
    match key {
        Some(key) => with_key(request, key),
        None => request,
    }
}

fn fork_request(id: &str, body: &Value) -> Request<Body> {
    json_request(Method::POST, &format!("/v1/runs/{id}/fork"), KEY_A, body)
}

/// Validates `body` against the document's schema `name`, as a client would.
fn conforms(name: &str, body: &Value) {
    let document = serde_json::to_value(openapi_document()).unwrap();
    let root = json!({"$ref": format!("#/components/schemas/{name}"), "components": document["components"]});
    let schema = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = schema.iter_errors(body).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{name} {body}: {errors:?}");
}

#[tokio::test]
async fn a_failed_run_is_retried_from_where_it_failed() {
    let mut api = api();
    let id = rejected_run(&mut api).await;
    let before = api.get(&format!("/v1/runs/{id}"), KEY_A).await.body;

    let retried = api.send(retry_request(&id, None)).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    conforms("RunAccepted", &retried.body);
    assert_eq!(retried.body["id"], id.as_str());
    assert_eq!(retried.body["status"], "running");
    assert_eq!(retried.body["links"]["self"], format!("/v1/runs/{id}"));
    assert_eq!(retried.header("location"), Some(format!("/v1/runs/{id}").as_str()));
    assert_eq!(retried.header("idempotent-replayed"), None);
    // Running again: a second retry is a conflict until it has ended.
    let again = api.send(retry_request(&id, None)).await;
    assert!(again.problem(StatusCode::CONFLICT)["detail"].as_str().unwrap().contains("is running"));

    api.drive().await;
    let waiting = api.get(&format!("/v1/runs/{id}"), KEY_A).await.body;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(step(&waiting, "draft"), step(&before, "draft"), "the succeeded step is kept as it was");
    assert_eq!(step(&waiting, "review")["status"], "waiting_approval");
    assert!(step(&waiting, "review")["output"].get("approved").is_none(), "the rejection is gone from the step");
    api.post_empty(&format!("/v1/runs/{id}/steps/review/approve"), KEY_A).await;
    api.drive().await;
    let done = api.get(&format!("/v1/runs/{id}"), KEY_A).await.body;
    assert_eq!((&done["status"], &done["generation"]), (&json!("succeeded"), &json!(1)), "{done}");
    assert_eq!(done["output"]["published"], "hello");
    conforms("RunView", &done);
    let history = api.get(&format!("/v1/runs/{id}/events"), KEY_A).await.body;
    conforms("EventList", &history);
    let retried_event = history["events"].as_array().unwrap().iter().find(|e| e["type"] == "run_retried").cloned();
    assert_eq!(retried_event.map(|e| e["steps"].clone()), Some(json!(["publish", "review"])));

    let succeeded = api.send(retry_request(&id, None)).await;
    let detail = succeeded.problem(StatusCode::CONFLICT)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("succeeded") && detail.contains("fork"), "{detail}");
}

#[tokio::test]
async fn a_retry_of_a_run_that_is_not_there_is_404() {
    let mut api = api();
    let id = rejected_run(&mut api).await;
    let mut other_tenant = retry_request(&id, None);
    other_tenant.headers_mut().insert("x-api-key", KEY_B.parse().unwrap());
    api.send(other_tenant).await.problem(StatusCode::NOT_FOUND);
    api.send(retry_request("run_01jd7v1b0m4xk3r0c9z9qz5y7w", None)).await.problem(StatusCode::NOT_FOUND);
    api.send(retry_request("nope", None)).await.problem(StatusCode::NOT_FOUND);
    let unauthenticated = request(Method::POST, &format!("/v1/runs/{id}/retry"), None).body(Body::empty()).unwrap();
    api.send(unauthenticated).await.problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_retry_with_an_idempotency_key_is_done_once_and_answered_again() {
    let mut api = api();
    let id = rejected_run(&mut api).await;
    let first = api.send(retry_request(&id, Some("retry-7"))).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let replay = api.send(retry_request(&id, Some("retry-7"))).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!((&replay.body["id"], replay.header("location")), (&first.body["id"], first.header("location")));

    // The run fails again; the same key still means that first retry, not a new one.
    api.drive().await;
    api.post_empty(&format!("/v1/runs/{id}/steps/review/reject"), KEY_A).await;
    let late = api.send(retry_request(&id, Some("retry-7"))).await;
    assert_eq!((late.status, late.header("idempotent-replayed")), (StatusCode::ACCEPTED, Some("true")));
    let run = api.get(&format!("/v1/runs/{id}"), KEY_A).await.body;
    assert_eq!((&run["status"], &run["generation"]), (&json!("failed"), &json!(1)));

    // Another request with that key is a conflict: a submission, or a retry of another run.
    let submission = with_key(json_request(Method::POST, "/v1/runs", KEY_A, &echo_workflow()), "retry-7");
    api.send(submission).await.problem(StatusCode::CONFLICT);
    let other = rejected_run(&mut api).await;
    api.send(retry_request(&other, Some("retry-7"))).await.problem(StatusCode::CONFLICT);
    api.send(retry_request(&other, Some("tab\there"))).await.problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_fork_reuses_the_source_and_reruns_what_changed() {
    let mut api = api();
    let source = api.start(KEY_A, &echo_workflow()).await;
    api.drive().await;
    let body = json!({"overrides": {"summary": {"model": "local:extractive", "max_tokens": 50}}});
    let forked = api.send(fork_request(&source, &body)).await;
    assert_eq!(forked.status, StatusCode::ACCEPTED, "{}", forked.body);
    conforms("RunAccepted", &forked.body);
    let id = forked.body["id"].as_str().unwrap().to_owned();
    assert_ne!(id, source);
    assert_eq!(forked.body["status"], "queued");
    assert_eq!(forked.header("location"), Some(format!("/v1/runs/{id}").as_str()));

    api.drive().await;
    let run = api.get(&format!("/v1/runs/{id}"), KEY_A).await.body;
    assert_eq!(run["status"], "succeeded", "{run}");
    conforms("RunView", &run);
    assert_eq!(run["forked_from"], json!({"run_id": source, "reused": ["draft"]}));
    assert_eq!(step(&run, "draft")["reused_from"], source.as_str());
    assert!(step(&run, "summary").get("reused_from").is_none());
    let source_run = api.get(&format!("/v1/runs/{source}"), KEY_A).await.body;
    assert_eq!(step(&run, "draft")["output"], step(&source_run, "draft")["output"]);
    assert_eq!(run["output"], source_run["output"], "the same text summarized the same way");
    let history = api.get(&format!("/v1/runs/{id}/events"), KEY_A).await.body;
    conforms("EventList", &history);
    assert_eq!(history["events"][0]["type"], "run_forked");
    assert_eq!(history["events"][0]["from"], source.as_str());
}

#[tokio::test]
async fn a_fork_is_refused_as_problems_pointing_into_the_request() {
    let mut api = api();
    let source = api.start(KEY_A, &echo_workflow()).await;
    // Not ended yet.
    api.send(fork_request(&source, &json!({"from": ["draft"]}))).await.problem(StatusCode::CONFLICT);
    api.drive().await;

    let pointers = |reply: &Reply| {
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        reply.pointers().into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let nothing = api.send(fork_request(&source, &json!({}))).await;
    assert_eq!(pointers(&nothing), [""], "every step would be reused");
    let unknown = api.send(fork_request(&source, &json!({"frm": ["draft"]}))).await;
    assert_eq!(pointers(&unknown), ["/frm"]);
    let bad = json!({"from": ["nope"], "overrides": {"summary": {"model": "nope:model"}, "draft": {"id": "x"}}});
    assert_eq!(pointers(&api.send(fork_request(&source, &bad)).await), ["/from/0", "/overrides/draft/id"]);
    let invalid = api.send(fork_request(&source, &json!({"overrides": {"summary": {"model": "nope:model"}}}))).await;
    assert_eq!(pointers(&invalid), ["/overrides/summary/model"]);
    let input = api.send(fork_request(&source, &json!({"input": {"other": 1}}))).await;
    assert_eq!(pointers(&input), ["/input"], "the input must satisfy the workflow's input_schema");

    let not_json =
        request(Method::POST, &format!("/v1/runs/{source}/fork"), Some(KEY_A)).body(Body::from("{}")).unwrap();
    api.send(not_json).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut other_tenant = fork_request(&source, &json!({"from": ["draft"]}));
    other_tenant.headers_mut().insert("x-api-key", KEY_B.parse().unwrap());
    api.send(other_tenant).await.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_fork_with_an_idempotency_key_replays_the_same_run() {
    let mut api = api();
    let source = api.start(KEY_A, &echo_workflow()).await;
    api.drive().await;
    let body = json!({"from": ["summary"]});
    let first = api.send(with_key(fork_request(&source, &body), "fork-1")).await;
    assert_eq!((first.status, first.header("idempotent-replayed")), (StatusCode::ACCEPTED, None));
    let again = api.send(with_key(fork_request(&source, &body), "fork-1")).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (StatusCode::ACCEPTED, Some("true")));
    assert_eq!(again.body["id"], first.body["id"]);
    let changed = api.send(with_key(fork_request(&source, &json!({"from": ["draft"]})), "fork-1")).await;
    changed.problem(StatusCode::CONFLICT);
}
