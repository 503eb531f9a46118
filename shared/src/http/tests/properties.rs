//! The API's edge under generated requests: arbitrary bytes, arbitrary JSON and submissions
//! broken anywhere POSTed to `/v1/runs`, sound submissions, and any method on any path
//! (registered workflows' among them).
//! Whatever comes in, the answer is a success or a 4xx `application/problem+json` that says
//! what is wrong (a 422's pointers pointing into the body sent), never a 5xx, a panic or a
//! hang; and every run accepted goes on to run its steps without an engine error. The
//! generators are shared with the domain's properties (`crate::domain::properties`).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;
use crate::domain::properties::strategies::{
    SoundWorkflow, json_value, mutated, points_into, sound_workflow, submission, workflow, workflow_with,
};
use crate::domain::properties::{config, finishes};
use crate::http::problem::PROBLEM_JSON;
use axum::http::HeaderValue;

/// Step messages a run may take to settle here; more, and it never would.
const MAX_MESSAGES: usize = 200;

/// Where a generated path names "the run": replaced by the id of a run that exists.
const THE_RUN: &str = "{run}";

/// A well-formed run id that no run has.
const SOME_RUN: &str = "run_01jd7v1b0m4xk3r0c9z9qz5y7w";

/// What came back for one request, and for an accepted run, the run once its steps ran.
#[derive(Debug)]
struct Exchange {
    status: StatusCode,
    content_type: Option<String>,
    body: Vec<u8>,
    /// `GET /v1/runs/{id}` after every queued step ran, when the request created a run.
    run: Option<Value>,
}

/// Sends the request `build` makes to a fresh API, on a thread and runtime of its own (time
/// paused, so retry backoffs pass at once); with `with_run`, a run waiting for approval is
/// made first and `build` gets its id. A run the request creates is then run as workers
/// would, and read back.
fn exchange(
    with_run: bool,
    build: impl FnOnce(&str) -> Request<Body> + Send + 'static,
) -> Result<Exchange, TestCaseError> {
    finishes(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        runtime.block_on(async move {
            let mut api = api();
            let existing = if with_run {
                let id = api.start(KEY_A, &approval_workflow()).await;
                settle(&mut api).await?;
                id
            } else {
                SOME_RUN.to_owned()
            };
            let response = api.app.clone().oneshot(build(&existing)).await.unwrap();
            let status = response.status();
            let content_type =
                response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
            let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
            let created = (status == StatusCode::ACCEPTED)
                .then(|| serde_json::from_slice::<Value>(&body).ok())
                .flatten()
                .and_then(|accepted| accepted["id"].as_str().map(str::to_owned))
                .filter(|id| *id != existing);
            let mut run = None;
            if let Some(id) = created {
                settle(&mut api).await?;
                let view = api.get(&format!("/v1/runs/{id}"), KEY_A).await;
                prop_assert_eq!(view.status, StatusCode::OK, "{}", view.body);
                let events = api.get(&format!("/v1/runs/{id}/events"), KEY_A).await;
                prop_assert_eq!(events.status, StatusCode::OK, "{}", events.body);
                run = Some(view.body);
            }
            Ok(Exchange { status, content_type, body, run })
        })
    })?
}

/// Runs the queued steps, as workers would, until none is left.
async fn settle(api: &mut Api) -> Result<(), TestCaseError> {
    for _ in 0..MAX_MESSAGES {
        let Ok(message) = api.steps.try_recv() else { return Ok(()) };
        if let Err(err) = api.engine.execute_step(&message).await {
            return Err(TestCaseError::fail(format!("the engine failed on {message:?}: {err}")));
        }
    }
    Err(TestCaseError::fail(format!("still sending step messages after {MAX_MESSAGES}")))
}

/// A success, or a 4xx problem that says what is wrong; never a 5xx. `sent` is the body
/// as JSON, when it was JSON: the pointers of a 422 must point into it.
fn check_answer(exchange: &Exchange, sent: Option<&Value>) -> Result<(), TestCaseError> {
    let status = exchange.status;
    let text = String::from_utf8_lossy(&exchange.body);
    prop_assert!(!status.is_server_error(), "{status}: {text}");
    if status.is_success() {
        return Ok(());
    }
    prop_assert!(status.is_client_error(), "{status}: {text}");
    prop_assert_eq!(exchange.content_type.as_deref(), Some(PROBLEM_JSON), "{}: {}", status, text);
    let problem: Value = serde_json::from_slice(&exchange.body)
        .map_err(|err| TestCaseError::fail(format!("a {status} whose body is not JSON ({err}): {text}")))?;
    let kind = problem["type"].as_str().unwrap_or_default();
    prop_assert!(kind.starts_with("https://chorus.dev/problems/"), "{problem}");
    prop_assert!(problem["title"].as_str().is_some_and(|title| !title.is_empty()), "{problem}");
    prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status.as_u16())), "{}", problem);
    prop_assert!(problem["detail"].as_str().is_some_and(|detail| !detail.trim().is_empty()), "{problem}");
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        let errors = problem["errors"].as_array().cloned().unwrap_or_default();
        prop_assert!(!errors.is_empty(), "a 422 that lists no problem: {problem}");
        for error in &errors {
            let pointer = error["pointer"].as_str();
            prop_assert!(pointer.is_some(), "{error}");
            prop_assert!(error["detail"].as_str().is_some_and(|detail| !detail.trim().is_empty()), "{error}");
            if let (Some(sent), Some(pointer)) = (sent, pointer) {
                prop_assert!(points_into(sent, pointer), "{pointer} points nowhere in {sent}");
            }
        }
    }
    Ok(())
}

fn post_runs(body: Vec<u8>, content_type: Option<&'static str>) -> impl FnOnce(&str) -> Request<Body> + Send {
    move |_: &str| {
        let builder = request(Method::POST, "/v1/runs", Some(KEY_A));
        let builder = match content_type {
            Some(content_type) => builder.header(header::CONTENT_TYPE, content_type),
            None => builder,
        };
        builder.body(Body::from(body)).unwrap()
    }
}

/// A content type: mostly JSON's, sometimes another or none.
fn content_type() -> BoxedStrategy<Option<&'static str>> {
    let others = vec![
        None,
        Some("text/plain"),
        Some("application/problem+json"),
        Some("application/json; charset=latin1"),
        Some("APPLICATION/JSON"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some(""),
    ];
    prop_oneof![6 => Just(Some("application/json")), 1 => select(others)].boxed()
}

/// How a JSON text is damaged: cut short, a byte overwritten, a byte slipped in.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Overwrite(Index, u8),
    Insert(Index, u8),
}

fn damaged(text: Vec<u8>, damage: Damage) -> Vec<u8> {
    let mut text = text;
    if text.is_empty() {
        return text;
    }
    match damage {
        Damage::Truncate(at) => text.truncate(at.index(text.len())),
        Damage::Overwrite(at, byte) => {
            let at = at.index(text.len());
            text[at] = byte;
        }
        Damage::Insert(at, byte) => text.insert(at.index(text.len()), byte),
    }
    text
}

/// A request body: any bytes, any JSON, a submission whole or damaged as text, or JSON
/// nested deeper than any parser should follow.
fn body() -> BoxedStrategy<Vec<u8>> {
    let damage = prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Damage::Overwrite(at, byte)),
        (any::<Index>(), select(b"{}[]\",:\\\0 ".to_vec())).prop_map(|(at, byte)| Damage::Insert(at, byte)),
    ];
    let as_text = |value: Value| value.to_string().into_bytes();
    prop_oneof![
        vec(any::<u8>(), 0..128),
        json_value().prop_map(as_text),
        submission(workflow()).prop_map(as_text),
        (submission(workflow()).prop_map(as_text), vec(damage, 1..3))
            .prop_map(|(text, damages)| damages.into_iter().fold(text, damaged)),
        (1usize..5000).prop_map(|depth| format!(
            r#"{{"workflow": {{"steps": {}{}}}, "input": {{}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes()),
    ]
    .boxed()
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROBE"];

/// Path segments: the API's own, ids of every kind, and what paths should not hold.
const SEGMENTS: [&str; 25] = [
    "v1",
    "v1",
    "runs",
    "runs",
    "workflows",
    "versions",
    "1",
    THE_RUN,
    THE_RUN,
    "steps",
    "review",
    "draft",
    "approve",
    "reject",
    "cancel",
    "events",
    "models",
    "openapi.json",
    "healthz",
    "run_01jd7v1b0m4xk3r0c9z9qz5y7w",
    "Not-A-Step",
    "%2F..%2F",
    "%C3%BC",
    "..",
    "",
];

const QUERIES: [&str; 8] = [
    "",
    "",
    "?limit=0",
    "?limit=5",
    "?limit=ten",
    "?cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "?cursor=",
    "?x=%ff",
];

/// Any header value HTTP can carry (no line breaks, no NUL): visible ASCII, spaces and tabs,
/// and bytes above ASCII.
fn header_value(max_len: usize) -> BoxedStrategy<HeaderValue> {
    let byte = prop_oneof![8 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')];
    vec(byte, 0..max_len).prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap()).boxed()
}

/// An API key header: a tenant's, another tenant's, none, or anything.
fn api_key() -> BoxedStrategy<Option<HeaderValue>> {
    prop_oneof![
        4 => Just(Some(HeaderValue::from_static(KEY_A))),
        1 => Just(Some(HeaderValue::from_static(KEY_B))),
        1 => Just(None),
        1 => header_value(40).prop_map(Some),
    ]
    .boxed()
}

/// An optional body for any route: none, JSON, a decision, `null`, or bytes.
fn any_body() -> BoxedStrategy<Option<Vec<u8>>> {
    prop_oneof![
        3 => Just(None),
        1 => json_value().prop_map(|value| Some(value.to_string().into_bytes())),
        1 => Just(Some(br#"{"by": "maria", "comment": "fine"}"#.to_vec())),
        1 => Just(Some(b"null".to_vec())),
        1 => vec(any::<u8>(), 0..32).prop_map(Some),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn arbitrary_bodies_are_answered_with_a_success_or_a_problem(
        body in body(),
        content_type in content_type(),
    ) {
        let sent = serde_json::from_slice::<Value>(&body).ok();
        let answer = exchange(false, post_runs(body, content_type))?;
        check_answer(&answer, sent.as_ref())?;
    }

    #[test]
    fn submissions_broken_anywhere_are_answered_with_a_success_or_problems_that_point_into_them(
        body in prop_oneof![submission(workflow()), mutated(submission(workflow_with(0.02)))],
    ) {
        let answer = exchange(false, post_runs(body.to_string().into_bytes(), Some("application/json")))?;
        check_answer(&answer, Some(&body))?;
    }

    #[test]
    fn sound_submissions_are_accepted_and_their_runs_run_to_the_end(sound in sound_workflow()) {
        let SoundWorkflow { workflow, input, has_approval, .. } = sound;
        let body = json!({"workflow": workflow, "input": input});
        let answer = exchange(false, post_runs(body.to_string().into_bytes(), Some("application/json")))?;
        prop_assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&answer.body));
        let run = answer.run.unwrap_or_default();
        // A person has to decide an approval; everything else runs to success on `local`.
        let expected = if has_approval { "waiting" } else { "succeeded" };
        prop_assert_eq!(run["status"].as_str(), Some(expected), "{}", run);
    }

    #[test]
    fn any_method_on_any_path_is_answered_with_a_success_or_a_problem(
        method in select(METHODS.to_vec()),
        segments in vec(select(SEGMENTS.to_vec()), 0..6),
        query in select(QUERIES.to_vec()),
        key in api_key(),
        idempotency_key in proptest::option::weighted(0.2, header_value(300)),
        body in any_body(),
        json_typed in any::<bool>(),
    ) {
        let path = format!("/{}{query}", segments.join("/"));
        prop_assume!(path.replace(THE_RUN, SOME_RUN).parse::<axum::http::Uri>().is_ok());
        let sent = body.as_deref().and_then(|body| serde_json::from_slice::<Value>(body).ok());
        let answer = exchange(true, move |run: &str| {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let mut builder = request(method, &path.replace(THE_RUN, run), None);
            if let Some(key) = key {
                builder = builder.header("x-api-key", key);
            }
            if let Some(idempotency_key) = idempotency_key {
                builder = builder.header("idempotency-key", idempotency_key);
            }
            if json_typed {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
            }
            builder.body(body.map_or_else(Body::empty, Body::from)).unwrap()
        })?;
        check_answer(&answer, sent.as_ref())?;
    }
}
