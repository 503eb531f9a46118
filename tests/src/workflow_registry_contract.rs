//! The `WorkflowRegistry` contract, for the memory and DynamoDB adapters alike: versions
//! numbered from 1, the same definition never stored twice in a row, versions read back
//! whole, tenants apart, listing in pages, the bounds, and concurrent registrations that
//! neither lose a version nor make two of one definition.

use std::collections::BTreeSet;
use std::sync::Arc;

use chorus::domain::{RegistryLimits, TenantId, WorkflowDefinition, WorkflowName, definition_hash};
use chorus::ports::{RegisterError, VersionSummary, WorkflowRegistry};
use serde_json::json;

/// One test per clause against the registries `$make` returns (an `async fn() -> Arc<dyn
/// WorkflowRegistry>`, called once per test, made with [`CONTRACT_LIMITS`]), in
/// `mod $adapter`; attributes after the factory go on every test. Two worker threads, so
/// concurrent registrations really race.
#[macro_export]
macro_rules! workflow_registry_contract {
    ($adapter:ident, $make:path $(, #[$attr:meta])* $(,)?) => {
        $crate::contract_tests!(
            workflow_registry_contract,
            [tokio::test(flavor = "multi_thread", worker_threads = 2)],
            $adapter,
            $make,
            [$(#[$attr])*],
            [
                the_first_version_is_1,
                the_same_definition_again_is_the_same_version,
                a_new_definition_is_the_next_version,
                a_version_is_read_back_as_the_latest_by_number_or_not_at_all,
                versions_are_listed_oldest_first,
                tenants_are_isolated,
                workflows_are_listed_by_name_in_pages,
                versions_and_workflows_are_bounded,
                concurrent_registrations_of_different_definitions_get_distinct_consecutive_versions,
                concurrent_registrations_of_one_definition_make_one_version,
            ]
        );
    };
}

/// The bounds the factories make registries with: small, so that the bounds clause reaches
/// them in a few writes, and large enough for every other clause.
pub const CONTRACT_LIMITS: RegistryLimits = RegistryLimits { max_versions: 5, max_workflows: 4 };

/// A tenant of its own for each check: registries on a shared table keep what earlier runs
/// registered.
fn fresh_tenant() -> TenantId {
    TenantId::parse(&format!("t{:016x}", fastrand::u64(..))).unwrap()
}

fn name(text: &str) -> WorkflowName {
    WorkflowName::parse(text).unwrap()
}

/// A definition that differs by `label`.
fn definition(label: &str) -> WorkflowDefinition {
    serde_json::from_value(json!({
        "input_schema": {"type": "object", "properties": {"ticket": {"type": "string"}}},
        "steps": [{"id": "a", "task": "generate", "model": "local:echo", "prompt": format!("{label}: {{{{ input.ticket }}}}")}]
    }))
    .unwrap()
}

/// A time `n` seconds into the suite's day: stored and read back to the nanosecond.
fn at(n: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + n).unwrap()
}

async fn register(registry: &dyn WorkflowRegistry, tenant: &TenantId, workflow: &str, label: &str, when: i64) -> u32 {
    let registration = registry.register(tenant, &name(workflow), &definition(label), at(when)).await.unwrap();
    registration.version.version
}

pub async fn the_first_version_is_1(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    let registration = registry.register(&tenant, &name("triage"), &definition("one"), at(1)).await.unwrap();
    assert!(registration.created);
    let expected = VersionSummary { version: 1, hash: definition_hash(&definition("one")), created_at: at(1) };
    assert_eq!(registration.version, expected);
}

pub async fn the_same_definition_again_is_the_same_version(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    let first = registry.register(&tenant, &name("triage"), &definition("one"), at(1)).await.unwrap();
    let again = registry.register(&tenant, &name("triage"), &definition("one"), at(2)).await.unwrap();
    assert!(!again.created, "nothing new was stored");
    assert_eq!(again.version, first.version, "the version it already is, with its own time");
    // The same content parsed from other text is the same definition.
    let respelled: WorkflowDefinition = serde_json::from_value(json!({
        "steps": [{"prompt": "one: {{ input.ticket }}", "model": "local:echo", "task": "generate", "id": "a", "retries": null}],
        "input_schema": {"properties": {"ticket": {"type": "string"}}, "type": "object"}
    }))
    .unwrap();
    assert!(!registry.register(&tenant, &name("triage"), &respelled, at(3)).await.unwrap().created);
    assert_eq!(registry.versions(&tenant, &name("triage")).await.unwrap().len(), 1);
}

pub async fn a_new_definition_is_the_next_version(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    assert_eq!(register(&*registry, &tenant, "triage", "one", 1).await, 1);
    let second = registry.register(&tenant, &name("triage"), &definition("two"), at(2)).await.unwrap();
    assert!(second.created);
    assert_eq!(second.version.version, 2);
    assert_eq!(second.version.hash, definition_hash(&definition("two")));
    // Only the latest version is compared: an older definition again is a new version.
    assert_eq!(register(&*registry, &tenant, "triage", "one", 3).await, 3);
}

pub async fn a_version_is_read_back_as_the_latest_by_number_or_not_at_all(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    let triage = name("triage");
    register(&*registry, &tenant, "triage", "one", 1).await;
    register(&*registry, &tenant, "triage", "two", 2).await;

    let latest = registry.get(&tenant, &triage, None).await.unwrap().expect("the latest version");
    assert_eq!((latest.name.as_str(), latest.version), ("triage", 2));
    assert_eq!(
        (latest.definition, latest.hash, latest.created_at),
        (definition("two"), definition_hash(&definition("two")), at(2))
    );
    let first = registry.get(&tenant, &triage, Some(1)).await.unwrap().expect("version 1");
    assert_eq!(first.reference().hash, definition_hash(&definition("one")));
    assert_eq!((first.version, first.definition, first.created_at), (1, definition("one"), at(1)));

    for missing in [Some(0), Some(3), Some(u32::MAX)] {
        assert!(registry.get(&tenant, &triage, missing).await.unwrap().is_none(), "{missing:?}");
    }
    for version in [None, Some(1)] {
        assert!(registry.get(&tenant, &name("unknown"), version).await.unwrap().is_none());
    }
}

pub async fn versions_are_listed_oldest_first(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    for (when, label) in [(1, "one"), (2, "two"), (3, "three")] {
        register(&*registry, &tenant, "triage", label, when).await;
    }
    let listed = registry.versions(&tenant, &name("triage")).await.unwrap();
    let expected: Vec<VersionSummary> = [(1, "one"), (2, "two"), (3, "three")]
        .into_iter()
        .map(|(n, label)| VersionSummary {
            version: n,
            hash: definition_hash(&definition(label)),
            created_at: at(n.into()),
        })
        .collect();
    assert_eq!(listed, expected);
    assert!(registry.versions(&tenant, &name("unknown")).await.unwrap().is_empty());
    // A name that begins another's is another workflow.
    assert!(registry.versions(&tenant, &name("tri")).await.unwrap().is_empty());
}

pub async fn tenants_are_isolated(registry: Arc<dyn WorkflowRegistry>) {
    let (acme, globex) = (fresh_tenant(), fresh_tenant());
    let shared = name("shared");
    register(&*registry, &acme, "shared", "acme's", 1).await;
    assert!(registry.get(&globex, &shared, None).await.unwrap().is_none());
    assert!(registry.get(&globex, &shared, Some(1)).await.unwrap().is_none());
    assert!(registry.versions(&globex, &shared).await.unwrap().is_empty());
    assert!(registry.list(&globex, None, 10).await.unwrap().workflows.is_empty());

    // The same name is another workflow for another tenant, starting at 1.
    assert_eq!(register(&*registry, &globex, "shared", "globex's", 2).await, 1);
    let acmes = registry.get(&acme, &shared, None).await.unwrap().unwrap();
    assert_eq!((acmes.version, acmes.definition), (1, definition("acme's")));
    let globexs = registry.get(&globex, &shared, None).await.unwrap().unwrap();
    assert_eq!((globexs.version, globexs.definition), (1, definition("globex's")));
}

pub async fn workflows_are_listed_by_name_in_pages(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    assert_eq!(registry.list(&tenant, None, 10).await.unwrap().workflows, []);
    register(&*registry, &tenant, "charlie", "c", 1).await;
    register(&*registry, &tenant, "alpha", "a", 2).await;
    register(&*registry, &tenant, "bravo", "b", 3).await;
    register(&*registry, &tenant, "alpha", "a again", 4).await;

    let first = registry.list(&tenant, None, 2).await.unwrap();
    let names: Vec<&str> = first.workflows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo"]);
    assert_eq!(first.next_after, Some(name("bravo")));
    let alpha = &first.workflows[0];
    assert_eq!(
        (alpha.latest_version, alpha.latest_hash.as_str()),
        (2, definition_hash(&definition("a again")).as_str())
    );
    assert_eq!((alpha.created_at, alpha.updated_at), (at(2), at(4)));

    let second = registry.list(&tenant, first.next_after.as_ref(), 2).await.unwrap();
    let names: Vec<&str> = second.workflows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!((names, second.next_after), (vec!["charlie"], None));
    // A page that ends exactly at the last workflow says there is no other.
    let whole = registry.list(&tenant, None, 3).await.unwrap();
    assert_eq!((whole.workflows.len(), whole.next_after), (3, None));
}

pub async fn versions_and_workflows_are_bounded(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    let max = CONTRACT_LIMITS.max_versions;
    for version in 1..=max {
        assert_eq!(register(&*registry, &tenant, "busy", &format!("v{version}"), version.into()).await, version);
    }
    let refused = registry.register(&tenant, &name("busy"), &definition("one too many"), at(99)).await;
    assert!(matches!(refused, Err(RegisterError::TooManyVersions { max: m, .. }) if m == max), "{refused:?}");
    // The latest again is still answered, and nothing was stored.
    let latest = registry.register(&tenant, &name("busy"), &definition(&format!("v{max}")), at(99)).await.unwrap();
    assert_eq!((latest.created, latest.version.version), (false, max));
    assert_eq!(registry.versions(&tenant, &name("busy")).await.unwrap().len(), max as usize);

    let workflows = CONTRACT_LIMITS.max_workflows;
    for n in 2..=workflows {
        register(&*registry, &tenant, &format!("w{n}"), "x", 1).await;
    }
    let refused = registry.register(&tenant, &name("extra"), &definition("x"), at(1)).await;
    assert!(matches!(refused, Err(RegisterError::TooManyWorkflows { max: m }) if m == workflows), "{refused:?}");
    assert!(registry.get(&tenant, &name("extra"), None).await.unwrap().is_none());
    // Workflows it has still take new versions; another tenant counts its own.
    assert_eq!(register(&*registry, &tenant, "w2", "y", 2).await, 2);
    assert_eq!(register(&*registry, &fresh_tenant(), "extra", "x", 1).await, 1);
}

/// Registers each definition of `labels` under one name at once, each from a task of its own.
async fn race(registry: &Arc<dyn WorkflowRegistry>, tenant: &TenantId, labels: &[&str]) -> Vec<(bool, u32)> {
    let tasks: Vec<_> = labels
        .iter()
        .map(|label| {
            let (registry, tenant, definition) = (registry.clone(), tenant.clone(), definition(label));
            tokio::spawn(async move { registry.register(&tenant, &name("race"), &definition, at(1)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let registration = task.await.unwrap().unwrap();
        outcomes.push((registration.created, registration.version.version));
    }
    outcomes
}

pub async fn concurrent_registrations_of_different_definitions_get_distinct_consecutive_versions(
    registry: Arc<dyn WorkflowRegistry>,
) {
    let tenant = fresh_tenant();
    let labels = ["one", "two", "three", "four"];
    let outcomes = race(&registry, &tenant, &labels).await;
    assert!(outcomes.iter().all(|(created, _)| *created), "{outcomes:?}");
    let versions: BTreeSet<u32> = outcomes.iter().map(|(_, version)| *version).collect();
    assert_eq!(versions, (1..=4).collect(), "{outcomes:?}");
    // Each definition is the version its registration was told.
    for (label, (_, version)) in labels.iter().zip(&outcomes) {
        let stored = registry.get(&tenant, &name("race"), Some(*version)).await.unwrap().unwrap();
        assert_eq!(stored.definition, definition(label));
    }
    assert_eq!(registry.versions(&tenant, &name("race")).await.unwrap().len(), 4);
    assert_eq!(registry.list(&tenant, None, 10).await.unwrap().workflows.len(), 1, "one workflow");
}

pub async fn concurrent_registrations_of_one_definition_make_one_version(registry: Arc<dyn WorkflowRegistry>) {
    let tenant = fresh_tenant();
    let outcomes = race(&registry, &tenant, &["same"; 4]).await;
    assert_eq!(outcomes.iter().filter(|(created, _)| *created).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, version)| *version == 1), "{outcomes:?}");
    assert_eq!(registry.versions(&tenant, &name("race")).await.unwrap().len(), 1);
}
