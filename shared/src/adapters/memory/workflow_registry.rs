//! [`WorkflowRegistry`] in memory: every tenant's workflows under one mutex, so a
//! registration reads the latest version and appends the next one in a single step (what the
//! DynamoDB adapter does with a conditional transaction).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::poisoned;
use crate::domain::{RegistryLimits, TenantId, WorkflowDefinition, WorkflowName, definition_hash};
use crate::ports::{
    PortError, RegisterError, Registration, VersionSummary, WorkflowPage, WorkflowRegistry, WorkflowSummary,
    WorkflowVersion,
};

/// A tenant's workflows by name (so in name order), each its versions, oldest first.
type Workflows = BTreeMap<WorkflowName, Vec<WorkflowVersion>>;

/// [`WorkflowRegistry`] in memory.
#[derive(Default)]
pub struct MemoryWorkflowRegistry {
    tenants: Mutex<HashMap<TenantId, Workflows>>,
    limits: RegistryLimits,
}

impl MemoryWorkflowRegistry {
    /// A registry with the default [`RegistryLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that bounds versions and workflows by `limits`.
    pub fn with_limits(limits: RegistryLimits) -> Self {
        Self { limits, ..Self::default() }
    }

    fn lock(&self) -> Result<MutexGuard<'_, HashMap<TenantId, Workflows>>, PortError> {
        self.tenants.lock().map_err(|_| poisoned("memory workflow registry"))
    }
}

fn summary(name: &WorkflowName, versions: &[WorkflowVersion]) -> Option<WorkflowSummary> {
    let (first, latest) = (versions.first()?, versions.last()?);
    Some(WorkflowSummary {
        name: name.clone(),
        latest_version: latest.version,
        latest_hash: latest.hash.clone(),
        created_at: first.created_at,
        updated_at: latest.created_at,
    })
}

#[async_trait]
impl WorkflowRegistry for MemoryWorkflowRegistry {
    async fn register(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        definition: &WorkflowDefinition,
        at: jiff::Timestamp,
    ) -> Result<Registration, RegisterError> {
        let hash = definition_hash(definition);
        let mut tenants = self.lock()?;
        let workflows = tenants.entry(tenant.clone()).or_default();
        let latest = workflows.get(name).and_then(|versions| versions.last());
        if let Some(latest) = latest.filter(|latest| latest.hash == hash) {
            return Ok(Registration { version: latest.summary(), created: false });
        }
        let next = latest.map_or(1, |latest| latest.version.saturating_add(1));
        if next > self.limits.max_versions {
            return Err(RegisterError::TooManyVersions { name: name.clone(), max: self.limits.max_versions });
        }
        let known = u32::try_from(workflows.len()).unwrap_or(u32::MAX);
        if next == 1 && known >= self.limits.max_workflows {
            return Err(RegisterError::TooManyWorkflows { max: self.limits.max_workflows });
        }
        let version =
            WorkflowVersion { name: name.clone(), version: next, hash, definition: definition.clone(), created_at: at };
        let summary = version.summary();
        workflows.entry(name.clone()).or_default().push(version);
        Ok(Registration { version: summary, created: true })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        name: &WorkflowName,
        version: Option<u32>,
    ) -> Result<Option<WorkflowVersion>, PortError> {
        let tenants = self.lock()?;
        let Some(versions) = tenants.get(tenant).and_then(|workflows| workflows.get(name)) else { return Ok(None) };
        let found = match version {
            None => versions.last(),
            // Versions are 1, 2, 3… in order, so version n is at n - 1.
            Some(number) => number.checked_sub(1).and_then(|index| versions.get(index as usize)),
        };
        Ok(found.cloned())
    }

    async fn versions(&self, tenant: &TenantId, name: &WorkflowName) -> Result<Vec<VersionSummary>, PortError> {
        let tenants = self.lock()?;
        let versions = tenants.get(tenant).and_then(|workflows| workflows.get(name));
        Ok(versions.map(|versions| versions.iter().map(WorkflowVersion::summary).collect()).unwrap_or_default())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&WorkflowName>,
        limit: usize,
    ) -> Result<WorkflowPage, PortError> {
        let tenants = self.lock()?;
        let Some(workflows) = tenants.get(tenant) else { return Ok(WorkflowPage::from_fetched(Vec::new(), limit)) };
        let fetched = workflows
            .iter()
            .filter(|(name, _)| after.is_none_or(|after| *name > after))
            .filter_map(|(name, versions)| summary(name, versions))
            .take(limit.saturating_add(1))
            .collect();
        Ok(WorkflowPage::from_fetched(fetched, limit))
    }
}
