//! Registered workflows through the API: versions and their hashes, the same definition
//! registered twice, names, tenants, invalid definitions, runs that name a workflow (and the
//! version and hash they record), and the OpenAPI document of all of it.

use super::document::{document, links, operations, validator};
use super::*;
use crate::adapters::MemoryWorkflowRegistry;
use crate::domain::registry::parse_version;
use crate::domain::{RegistryLimits, WorkflowDefinition, WorkflowName, WorkflowSelector, definition_hash};
use crate::ports::WorkflowRegistry;

/// A one-step workflow whose output says which `version` of it ran.
fn definition(version: &str) -> Value {
    json!({
        "name": "triage",
        "input_schema": {"type": "object", "required": ["ticket"]},
        "steps": [{"id": "draft", "task": "generate", "model": "local:echo", "prompt": format!("{version}: {{{{ input.ticket }}}}")}],
        "output": {"text": "{{ steps.draft.text }}"}
    })
}

/// The hash the registry gives `workflow`: SHA-256 of the parsed definition's canonical JSON.
fn hash_of(workflow: &Value) -> String {
    definition_hash(&serde_json::from_value::<WorkflowDefinition>(workflow.clone()).unwrap())
}

impl Api {
    pub(super) async fn register(&self, key: &str, name: &str, workflow: &Value) -> Reply {
        self.send(json_request(Method::PUT, &format!("/v1/workflows/{name}"), key, &json!({"workflow": workflow})))
            .await
    }

    /// Registers and returns the version.
    async fn registered(&self, key: &str, name: &str, workflow: &Value) -> u64 {
        let reply = self.register(key, name, workflow).await;
        assert!(reply.status.is_success(), "{}", reply.body);
        reply.body["version"].as_u64().unwrap()
    }
}

#[tokio::test]
async fn each_new_definition_is_the_next_version_with_its_hash_and_the_same_one_is_not() {
    let api = api();
    let first = api.register(KEY_A, "triage", &definition("v1")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("location"), Some("/v1/workflows/triage/versions/1"));
    let hash_1 = hash_of(&definition("v1"));
    assert_eq!(first.body["name"], "triage");
    assert_eq!(first.body["version"], 1);
    assert_eq!(first.body["hash"], hash_1.as_str());
    assert!(hash_1.len() == 64 && hash_1.bytes().all(|b| b.is_ascii_hexdigit()), "{hash_1}");
    assert!(first.body["created_at"].is_string());
    assert_eq!(
        first.body["links"],
        json!({"self": "/v1/workflows/triage/versions/1", "workflow": "/v1/workflows/triage"})
    );

    // The same definition again, as sent or written differently (members reordered, defaults
    // spelled out): the version it already is, and nothing new.
    let again = api.register(KEY_A, "triage", &definition("v1")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.header("location"), Some("/v1/workflows/triage/versions/1"));
    assert_eq!((&again.body["version"], &again.body["hash"]), (&json!(1), &json!(hash_1)));
    assert_eq!(again.body["created_at"], first.body["created_at"]);
    let mut respelled = definition("v1");
    respelled["steps"][0]["optional"] = json!(false);
    respelled["steps"][0]["fallbacks"] = json!([]);
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"output": {}, "steps": {}, "input_schema": {{"required": ["ticket"], "type": "object"}}, "name": "triage"}}"#,
        respelled["output"], respelled["steps"]
    ))
    .unwrap();
    let same = api.register(KEY_A, "triage", &reordered).await;
    assert_eq!((same.status, &same.body["version"]), (StatusCode::OK, &json!(1)), "{}", same.body);

    let second = api.register(KEY_A, "triage", &definition("v2")).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.header("location"), Some("/v1/workflows/triage/versions/2"));
    let hash_2 = hash_of(&definition("v2"));
    assert_eq!((&second.body["version"], &second.body["hash"]), (&json!(2), &json!(hash_2)));
    assert_ne!(hash_1, hash_2);
    // An older definition again is a new version: only the latest is compared.
    assert_eq!(api.registered(KEY_A, "triage", &definition("v1")).await, 3);

    let workflow = api.get("/v1/workflows/triage", KEY_A).await;
    assert_eq!(workflow.status, StatusCode::OK, "{}", workflow.body);
    assert_eq!(workflow.body["name"], "triage");
    assert_eq!((&workflow.body["latest_version"], &workflow.body["latest_hash"]), (&json!(3), &json!(hash_1)));
    assert_eq!(workflow.body["definition"], definition("v1"));
    let versions: Vec<(u64, &str)> = workflow.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["hash"].as_str().unwrap()))
        .collect();
    assert_eq!(versions, [(1, hash_1.as_str()), (2, hash_2.as_str()), (3, hash_1.as_str())]);
    assert_eq!(workflow.body["created_at"], first.body["created_at"]);
    assert_eq!(workflow.body["updated_at"], workflow.body["versions"][2]["created_at"]);

    // Versions never change.
    let version_2 = api.get("/v1/workflows/triage/versions/2", KEY_A).await;
    assert_eq!(version_2.status, StatusCode::OK, "{}", version_2.body);
    assert_eq!(version_2.body["definition"], definition("v2"));
    assert_eq!((&version_2.body["version"], &version_2.body["hash"]), (&json!(2), &json!(hash_2)));
    assert_eq!(version_2.body["created_at"], second.body["created_at"]);
    for missing in ["4", "0", "01", "-1", "two", "99999999999"] {
        let reply = api.get(&format!("/v1/workflows/triage/versions/{missing}"), KEY_A).await;
        reply.problem(StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn workflows_are_listed_by_name_in_pages_with_an_opaque_cursor() {
    let api = api();
    assert_eq!(api.get("/v1/workflows", KEY_A).await.body, json!({"workflows": [], "next_cursor": null}));
    for name in ["charlie", "alpha", "bravo"] {
        api.registered(KEY_A, name, &definition(name)).await;
    }
    api.registered(KEY_A, "alpha", &definition("alpha 2")).await;

    let first = api.get("/v1/workflows?limit=2", KEY_A).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let page = first.body["workflows"].as_array().unwrap();
    let names: Vec<&str> = page.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "bravo"]);
    assert_eq!(page[0]["latest_version"], 2);
    assert_eq!(page[0]["latest_hash"], hash_of(&definition("alpha 2")).as_str());
    assert!(page[0]["created_at"].is_string() && page[0]["updated_at"].is_string());
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    assert!(!cursor.contains("bravo"), "the cursor should be opaque: {cursor}");

    let second = api.get(&format!("/v1/workflows?limit=2&cursor={cursor}"), KEY_A).await;
    assert_eq!(second.body["workflows"].as_array().unwrap().len(), 1, "{}", second.body);
    assert_eq!(second.body["workflows"][0]["name"], "charlie");
    assert_eq!(second.body["next_cursor"], Value::Null);

    for bad in ["limit=0", "limit=101", "limit=ten", "cursor=%%%", "cursor=bravo!", "cursor=", "cursor=QmFk"] {
        api.get(&format!("/v1/workflows?{bad}"), KEY_A).await.problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn another_tenants_workflow_does_not_exist() {
    let mut api = api();
    api.registered(KEY_A, "triage", &definition("acme's")).await;
    let missing = api.get("/v1/workflows/nothing", KEY_B).await;
    missing.problem(StatusCode::NOT_FOUND);
    let other_tenants = api.get("/v1/workflows/triage", KEY_B).await;
    other_tenants.problem(StatusCode::NOT_FOUND);
    assert_eq!(
        other_tenants.body["detail"].as_str().unwrap().replace("triage", "nothing"),
        missing.body["detail"].as_str().unwrap(),
        "another tenant's workflow and no workflow look alike"
    );
    api.get("/v1/workflows/triage/versions/1", KEY_B).await.problem(StatusCode::NOT_FOUND);
    assert_eq!(api.get("/v1/workflows", KEY_B).await.body["workflows"], json!([]));
    let named = api.submit(KEY_B, &json!({"workflow": "triage", "input": {"ticket": "x"}})).await;
    named.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(named.body["errors"][0]["detail"].as_str().unwrap().contains("no workflow named `triage`"));

    // Each tenant has a namespace of its own: B's `triage` is B's version 1.
    let theirs = api.register(KEY_B, "triage", &definition("globex's")).await;
    assert_eq!((theirs.status, &theirs.body["version"]), (StatusCode::CREATED, &json!(1)), "{}", theirs.body);
    let run = api.start(KEY_B, &json!({"workflow": "triage", "input": {"ticket": "x"}})).await;
    api.drive().await;
    let run = api.get(&format!("/v1/runs/{run}"), KEY_B).await;
    assert_eq!(run.body["output"]["text"], "globex's: x", "{}", run.body);
    let ours = api.get("/v1/workflows/triage", KEY_A).await;
    assert_eq!((&ours.body["latest_version"], &ours.body["definition"]), (&json!(1), &definition("acme's")));
}

#[tokio::test]
async fn a_name_that_is_not_a_workflow_name_is_refused_and_says_why() {
    let api = api();
    for bad in ["Triage", "-triage", "tri.age", "tri%40age", &"a".repeat(65)] {
        let put = api.register(KEY_A, bad, &definition("v1")).await;
        let detail = put.problem(StatusCode::BAD_REQUEST)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("not a valid workflow name") && detail.contains("lowercase"), "{bad}: {detail}");
        let get = api.get(&format!("/v1/workflows/{bad}"), KEY_A).await;
        let detail = get.problem(StatusCode::NOT_FOUND)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("not a valid workflow name"), "{bad}: {detail}");
        api.get(&format!("/v1/workflows/{bad}/versions/1"), KEY_A).await.problem(StatusCode::NOT_FOUND);
    }
    assert_eq!(api.get("/v1/workflows", KEY_A).await.body["workflows"], json!([]));
    // At the edge of the rule: a digit first, `_` and `-` after, 64 characters.
    for good in ["2fa", "a_b-c", &"a".repeat(64)] {
        assert_eq!(api.register(KEY_A, good, &definition("v1")).await.status, StatusCode::CREATED, "{good}");
    }
}

#[tokio::test]
async fn an_invalid_definition_is_422_listing_every_problem_and_stores_nothing() {
    let api = api();
    let broken = json!({"steps": [
        {"id": "draft", "task": "generate", "model": "nope:model", "prompt": "{{ input.ticket }}"},
        {"id": "sum", "task": "summarize", "model": "local:extractive", "input": "{{ steps.missing.text }}"},
        {"id": "label", "task": "classify", "model": "local:echo", "input": "{{ steps.draft.text }}"}
    ]});
    let reply = api.register(KEY_A, "triage", &broken).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let pointers = reply.pointers();
    for expected in ["/workflow/steps/0/model", "/workflow/steps/2/model", "/workflow/steps/2/labels"] {
        assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
    }
    assert!(pointers.iter().any(|p| p.starts_with("/workflow/steps/1")), "{pointers:?}");
    api.get("/v1/workflows/triage", KEY_A).await.problem(StatusCode::NOT_FOUND);

    // The body's own shape: the envelope, and what is inside it.
    let put = |body: Value| json_request(Method::PUT, "/v1/workflows/triage", KEY_A, &body);
    for (body, pointer) in [
        (json!({}), "/workflow"),
        (json!({"workflow": definition("v1"), "input": {}}), "/input"),
        (json!({"workflow": {"steps": []}}), "/workflow/steps"),
        (json!({"workflow": "triage"}), "/workflow"),
        (
            json!({"workflow": {"steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": "x"}], "extra": 1}}),
            "/workflow/extra",
        ),
    ] {
        let reply = api.send(put(body.clone())).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.pointers(), [pointer], "{body}");
    }
    let not_json = request(Method::PUT, "/v1/workflows/triage", Some(KEY_A)).body(Body::from("{}")).unwrap();
    api.send(not_json).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let malformed = request(Method::PUT, "/v1/workflows/triage", Some(KEY_A))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"workflow\": "))
        .unwrap();
    api.send(malformed).await.problem(StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/v1/workflows", KEY_A).await.body["workflows"], json!([]));
}

#[tokio::test]
async fn registering_takes_a_key_and_counts_against_the_tenants_request_rate() {
    let api = api_with(|clock| {
        Some(crate::engine::TenantQuota {
            requests: crate::domain::RateLimit { per_minute: 60, burst: 2 },
            ..crate::engine::TenantQuota::new(Arc::new(crate::adapters::MemoryRateLimiter::new(clock)))
        })
    });
    let unauthenticated = request(Method::PUT, "/v1/workflows/triage", None)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"workflow": definition("v1")}).to_string()))
        .unwrap();
    api.send(unauthenticated).await.problem(StatusCode::UNAUTHORIZED);
    api.get("/v1/workflows", "sk_test_nobody").await.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(api.register(KEY_A, "triage", &definition("v1")).await.status, StatusCode::CREATED);
    assert_eq!(api.get("/v1/workflows/triage", KEY_A).await.status, StatusCode::OK);
    api.register(KEY_A, "triage", &definition("v2")).await.problem(StatusCode::TOO_MANY_REQUESTS);
    api.get("/v1/workflows", KEY_A).await.problem(StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_run_names_a_registered_workflow_and_records_the_version_and_hash_it_ran() {
    let mut api = api();
    api.registered(KEY_A, "triage", &definition("v1")).await;
    api.registered(KEY_A, "triage", &definition("v2")).await;

    let latest = api.start(KEY_A, &json!({"workflow": "triage", "input": {"ticket": "printer on fire"}})).await;
    let pinned = api.start(KEY_A, &json!({"workflow": "triage@1", "input": {"ticket": "printer on fire"}})).await;
    let inline = api.start(KEY_A, &json!({"workflow": definition("inline"), "input": {"ticket": "x"}})).await;
    // A version registered after a run started changes nothing about that run.
    api.registered(KEY_A, "triage", &definition("v3")).await;
    api.drive().await;

    let run = api.get(&format!("/v1/runs/{latest}"), KEY_A).await;
    assert_eq!(run.body["status"], "succeeded", "{}", run.body);
    assert_eq!(run.body["workflow"], json!({"name": "triage", "version": 2, "hash": hash_of(&definition("v2"))}));
    assert_eq!(run.body["output"]["text"], "v2: printer on fire");
    assert_eq!(run.body["name"], "triage");
    let run = api.get(&format!("/v1/runs/{pinned}"), KEY_A).await;
    assert_eq!(run.body["workflow"], json!({"name": "triage", "version": 1, "hash": hash_of(&definition("v1"))}));
    assert_eq!(run.body["output"]["text"], "v1: printer on fire");
    let run = api.get(&format!("/v1/runs/{inline}"), KEY_A).await;
    assert!(run.body.get("workflow").is_none(), "an inline definition names no registered workflow: {}", run.body);
    assert_eq!(run.body["output"]["text"], "inline: x");

    // The input is held against the registered definition's `input_schema`.
    let reply = api.submit(KEY_A, &json!({"workflow": "triage@1", "input": {"subject": "no ticket"}})).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/input"]);
    let reply = api
        .submit(KEY_A, &json!({"workflow": "triage", "input": {}, "notify": {"url": "ftp://example.com/hook"}}))
        .await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/input", "/notify/url"]);
}

#[tokio::test]
async fn an_unknown_workflow_or_version_is_422_at_workflow_saying_what_is_missing() {
    let api = api();
    api.registered(KEY_A, "triage", &definition("v1")).await;
    api.registered(KEY_A, "triage", &definition("v2")).await;
    for (reference, says) in [
        ("nothing", "no workflow named `nothing` is registered"),
        ("nothing@1", "no workflow named `nothing` is registered"),
        ("triage@3", "workflow `triage` has no version 3; its latest is version 2"),
        ("triage@0", "is not a workflow reference"),
        ("Triage", "is not a workflow reference"),
        ("triage@latest", "is not a workflow reference"),
        ("", "is not a workflow reference"),
    ] {
        let reply = api.submit(KEY_A, &json!({"workflow": reference, "input": {"ticket": "x"}})).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.pointers(), ["/workflow"], "{reference}");
        let detail = reply.body["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{reference}: {detail}");
    }
    // Neither a number nor anything but a definition or a name.
    for other in [json!(3), json!(["triage"]), json!(null)] {
        let reply = api.submit(KEY_A, &json!({"workflow": other, "input": {}})).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(reply.pointers().iter().all(|p| p.starts_with("/workflow")), "{}", reply.body);
    }
    assert_eq!(api.get("/v1/runs", KEY_A).await.body["runs"], json!([]), "nothing was stored");
}

/// A registered definition that no longer validates (a model that went away since) is
/// refused at submission, its problems told at `/workflow`, the only place of the body
/// that holds it.
#[tokio::test]
async fn a_registered_definition_that_no_longer_validates_is_refused_at_workflow() {
    let registry = Arc::new(MemoryWorkflowRegistry::new());
    let api = api_from(|parts, _| EngineParts { registry: registry.clone(), ..parts });
    let stored = serde_json::from_value::<WorkflowDefinition>(json!({"steps": [
        {"id": "draft", "task": "generate", "model": "gone:model", "prompt": "x"}
    ]}))
    .unwrap();
    let (tenant, name) = (TenantId::parse("acme").unwrap(), WorkflowName::parse("legacy").unwrap());
    registry.register(&tenant, &name, &stored, jiff::Timestamp::now()).await.unwrap();
    let reply = api.submit(KEY_A, &json!({"workflow": "legacy"})).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.pointers(), ["/workflow"]);
    let detail = reply.body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("registered workflow `legacy@1` at /steps/0/model: "), "{detail}");
}

#[tokio::test]
async fn an_idempotency_key_hashes_the_request_as_sent() {
    let api = api();
    api.registered(KEY_A, "triage", &definition("v1")).await;
    let with_key = |body: &Value| {
        let mut request = json_request(Method::POST, "/v1/runs", KEY_A, body);
        request.headers_mut().insert("idempotency-key", "ticket-7".parse().unwrap());
        request
    };
    let submission = json!({"workflow": "triage", "input": {"ticket": "x"}});
    let first = api.send(with_key(&submission)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    // `triage` now resolves to version 2, but the retry is the same request: the same run.
    api.registered(KEY_A, "triage", &definition("v2")).await;
    let retry = api.send(with_key(&submission)).await;
    assert_eq!((retry.status, retry.header("idempotent-replayed")), (StatusCode::ACCEPTED, Some("true")));
    assert_eq!(retry.body["id"], first.body["id"]);
    let run = api.get(&format!("/v1/runs/{}", first.body["id"].as_str().unwrap()), KEY_A).await;
    assert_eq!(run.body["workflow"]["version"], 1);
    // Naming the version it resolved to is another request.
    let pinned = api.send(with_key(&json!({"workflow": "triage@1", "input": {"ticket": "x"}}))).await;
    pinned.problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_workflow_has_at_most_its_versions_and_a_tenant_its_workflows() {
    let limits = RegistryLimits { max_versions: 2, max_workflows: 2 };
    let api =
        api_from(|parts, _| EngineParts { registry: Arc::new(MemoryWorkflowRegistry::with_limits(limits)), ..parts });
    api.registered(KEY_A, "triage", &definition("v1")).await;
    api.registered(KEY_A, "triage", &definition("v2")).await;
    let refused = api.register(KEY_A, "triage", &definition("v3")).await;
    let detail = refused.problem(StatusCode::CONFLICT)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("already has 2 versions"), "{detail}");
    // The latest again is still answered.
    assert_eq!(api.register(KEY_A, "triage", &definition("v2")).await.status, StatusCode::OK);

    api.registered(KEY_A, "billing", &definition("v1")).await;
    let refused = api.register(KEY_A, "shipping", &definition("v1")).await;
    let detail = refused.problem(StatusCode::CONFLICT)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("already has 2 registered workflows"), "{detail}");
    assert_eq!(api.registered(KEY_B, "shipping", &definition("v1")).await, 1, "another tenant counts its own");
}

#[tokio::test]
async fn responses_match_their_documented_schemas_and_links_lead_on() {
    let mut api = api();
    let document = document();
    let conforms = |name: &str, body: &Value| {
        let schema = validator(&document, name);
        let errors: Vec<String> = schema.iter_errors(body).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name} {body}: {errors:?}");
    };
    let registration = json!({"workflow": definition("v1")});
    conforms("WorkflowRegistration", &registration);
    let created = api.register(KEY_A, "triage", &definition("v1")).await;
    conforms("VersionRegistered", &created.body);
    conforms("VersionRegistered", &api.register(KEY_A, "triage", &definition("v1")).await.body);
    conforms("WorkflowView", &api.get("/v1/workflows/triage", KEY_A).await.body);
    conforms("WorkflowVersionView", &api.get("/v1/workflows/triage/versions/1", KEY_A).await.body);
    conforms("WorkflowList", &api.get("/v1/workflows?limit=1", KEY_A).await.body);
    conforms("ProblemDetails", &api.get("/v1/workflows/nothing", KEY_A).await.body);
    conforms("ProblemDetails", &api.register(KEY_A, "triage", &json!({"steps": []})).await.body);
    let run = api.start(KEY_A, &json!({"workflow": "triage@1", "input": {"ticket": "x"}})).await;
    api.drive().await;
    conforms("RunView", &api.get(&format!("/v1/runs/{run}"), KEY_A).await.body);

    let operations = operations(&document);
    for (name, link) in links(&document, "/v1/workflows/{name}", "put", "201") {
        let reply = api.follow(&operations, link, &created.body).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
    }
    let workflow = api.get("/v1/workflows/triage", KEY_A).await;
    for (name, link) in links(&document, "/v1/workflows/{name}", "get", "200") {
        let reply = api.follow(&operations, link, &workflow.body).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
    }
    api.registered(KEY_A, "urgent", &definition("v1")).await;
    let page = api.get("/v1/workflows?limit=1", KEY_A).await;
    for (name, link) in links(&document, "/v1/workflows", "get", "200") {
        let reply = api.follow(&operations, link, &page.body).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
    }
}

#[test]
fn the_documented_patterns_agree_with_the_parsers() {
    let document = document();
    let matches = |pattern: &Value, value: &str| jsonschema::is_valid(&json!({ "pattern": pattern }), &json!(value));
    let names = ["triage", "2fa", "a_b-c", "Triage", "-a", "_a", "a.b", "a@1", "", &"a".repeat(64), &"a".repeat(65)];
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["name"] == "name" {
                    for name in names {
                        let pattern = &parameter["schema"]["pattern"];
                        assert_eq!(
                            matches(pattern, name),
                            WorkflowName::parse(name).is_ok(),
                            "{method} {path}: {name}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3, "PUT and GET /v1/workflows/{{name}}, and its versions");

    let version = &document["paths"]["/v1/workflows/{name}/versions/{version}"]["get"]["parameters"][1]["schema"];
    assert_eq!((&version["minimum"], &version["maximum"]), (&json!(1), &json!(999_999_999)));
    assert_eq!(parse_version("999999999"), Some(999_999_999));

    let reference = &document["components"]["schemas"]["WorkflowReference"]["pattern"];
    for written in ["triage", "triage@1", "triage@999999999", "triage@0", "triage@01", "triage@", "Triage", "a@1@2"] {
        assert_eq!(matches(reference, written), WorkflowSelector::parse(written).is_ok(), "{written}");
    }
    let submission = validator(&document, "Submission");
    assert!(submission.is_valid(&json!({"workflow": "triage@3"})));
    assert!(submission.is_valid(&json!({"workflow": {"steps": [{"id": "a", "task": "approval"}]}})));
    assert!(!submission.is_valid(&json!({"workflow": "Triage"})));
    assert!(!submission.is_valid(&json!({"workflow": 3})));
}
