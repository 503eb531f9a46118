//! Registered workflows: a tenant registers a definition under a name (each new definition
//! becomes the next immutable version), reads its workflows back, and a submission names one
//! (`"workflow": "triage"` for the latest version, `"triage@3"`) instead of sending it inline.

use serde_json::Value;

use super::{Engine, EngineError};
use crate::domain::validation::validate_definition;
use crate::domain::{Problem, TenantId, WorkflowName, WorkflowRef, WorkflowSelector};
use crate::ports::{PortError, RegisterError, Registration, VersionSummary, WorkflowPage, WorkflowVersion};

/// A workflow: its latest version, definition included, and every version.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowDetail {
    pub latest: WorkflowVersion,
    /// Oldest first.
    pub versions: Vec<VersionSummary>,
}

impl Engine {
    /// Validates `workflow` as a submission's definition is validated (its input aside) and
    /// stores it as the workflow's next version, or finds it is the latest already.
    pub async fn register_workflow(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        workflow: &Value,
    ) -> Result<Registration, EngineError> {
        // CPU work, bounded but not small (templates and schemas compile): the blocking pool.
        let (router, templates, limits) = (self.router.clone(), self.templates.clone(), self.limits);
        let workflow = workflow.clone();
        let validated =
            tokio::task::spawn_blocking(move || validate_definition(&workflow, router.as_ref(), &templates, limits))
                .await
                .map_err(EngineError::Interrupted)?
                .map_err(EngineError::Invalid)?;
        self.check_children(tenant, name, &validated.definition).await?;
        let registered = self.registry.register(tenant, name, &validated.definition, self.clock.now()).await;
        registered.map_err(|err| match err {
            RegisterError::Port(err) => EngineError::Port(err),
            bound @ (RegisterError::TooManyVersions { .. } | RegisterError::TooManyWorkflows { .. }) => {
                EngineError::Conflict(bound.to_string())
            }
        })
    }

    /// The workflows a definition's `workflow` steps name must be registered already, but
    /// for the workflow itself (it may call itself; nesting is bounded when it runs). Each
    /// run pins the versions when it is submitted.
    async fn check_children(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        definition: &crate::domain::WorkflowDefinition,
    ) -> Result<(), EngineError> {
        let mut problems = Vec::new();
        for (index, step) in definition.steps.iter().enumerate() {
            let Some(reference) = step.workflow.as_deref() else { continue };
            if WorkflowSelector::parse(reference).is_ok_and(|selector| &selector.name == name) {
                continue;
            }
            if let Err(problem) = self.resolve_workflow(tenant, reference).await? {
                problems.push(Problem::new(format!("/workflow/steps/{index}/workflow"), problem.detail));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(EngineError::Invalid(problems)) }
    }

    /// The tenant's workflow with its latest definition and every version.
    pub async fn workflow(&self, tenant: &TenantId, name: &WorkflowName) -> Result<WorkflowDetail, EngineError> {
        let versions = self.registry.versions(tenant, name).await?;
        let Some(newest) = versions.last() else { return Err(workflow_not_found(name)) };
        // The version the list ends with, rather than "the latest": a version registered
        // since the list was read does not make the two disagree.
        let latest = self.workflow_version(tenant, name, newest.version).await?;
        Ok(WorkflowDetail { latest, versions })
    }

    /// One version of the tenant's workflow.
    pub async fn workflow_version(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        version: u32,
    ) -> Result<WorkflowVersion, EngineError> {
        let found = self.registry.get(tenant, name, Some(version)).await?;
        found.ok_or_else(|| EngineError::NotFound(format!("version {version} of workflow `{name}`")))
    }

    /// The tenant's workflows in name order.
    pub async fn list_workflows(
        &self,
        tenant: &TenantId,
        after: Option<&WorkflowName>,
        limit: usize,
    ) -> Result<WorkflowPage, EngineError> {
        Ok(self.registry.list(tenant, after, limit).await?)
    }

    /// The version a submission's `workflow` string names, with its definition as JSON to
    /// validate; or, when it names none, the problem at `/workflow`.
    pub(super) async fn resolve_workflow(
        &self,
        tenant: &TenantId,
        reference: &str,
    ) -> Result<Result<(WorkflowRef, Value), Problem>, EngineError> {
        let selector = match WorkflowSelector::parse(reference) {
            Ok(selector) => selector,
            Err(err) => return Ok(Err(Problem::new("/workflow", err.to_string()))),
        };
        if let Some(found) = self.registry.get(tenant, &selector.name, selector.version).await? {
            let definition = serde_json::to_value(&found.definition).map_err(|err| PortError::Corrupt {
                what: "registered workflow definition",
                detail: err.to_string(),
            })?;
            return Ok(Ok((found.reference(), definition)));
        }
        let name = &selector.name;
        let detail = match selector.version {
            Some(version) => match self.registry.versions(tenant, name).await?.last() {
                Some(latest) => {
                    format!("workflow `{name}` has no version {version}; its latest is version {}", latest.version)
                }
                None => format!("no workflow named `{name}` is registered"),
            },
            None => format!("no workflow named `{name}` is registered"),
        };
        Ok(Err(Problem::new("/workflow", detail)))
    }
}

fn workflow_not_found(name: &WorkflowName) -> EngineError {
    EngineError::NotFound(format!("workflow `{name}`"))
}

/// A problem found in a registered definition when a run names it: the request body holds
/// only the name, so the problem is told at `/workflow`, naming the version and the place in
/// its definition.
pub(super) fn in_registered(problem: Problem, workflow: &WorkflowRef) -> Problem {
    let Some(within) = problem.pointer.strip_prefix("/workflow") else { return problem };
    if !(within.is_empty() || within.starts_with('/')) {
        return problem;
    }
    let place = if within.is_empty() { String::new() } else { format!(" at {within}") };
    Problem::new(
        "/workflow",
        format!("registered workflow `{}@{}`{place}: {}", workflow.name, workflow.version, problem.detail),
    )
}
