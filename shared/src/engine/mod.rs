//! Use cases: submit a run, execute a step, decide an approval, cancel, read state back,
//! register workflows, deliver the result ("Execution" in docs/architecture.md). The engine
//! reaches the world only through `ports` and the provider router, so the same code runs
//! embedded and on Lambda.

mod budget;
mod children;
mod control;
mod error;
mod execute;
mod jobs;
mod map;
mod notify;
mod progress;
mod quota;
mod rerun;
mod submit;
mod sweep;
mod transitions;
mod views;
mod workflows;

use std::sync::Arc;

use crate::domain::{Limits, Templates};
use crate::ports::{BlobStore, Clock, NotificationMessage, Queue, RunStore, StepMessage, WorkflowRegistry};
use crate::routing::ProviderRouter;
use crate::webhooks::DestinationPolicy;

pub use control::ApprovalDecision;
pub use error::EngineError;
pub use execute::LEASE_MARGIN;
pub use jobs::{CallbackError, CallbackOutcome};
pub use map::MAX_MAP_OUTPUT_BYTES;
pub use notify::{DeliverySchedule, Notifier};
pub use quota::{DEFAULT_REQUEST_LIMIT, DEFAULT_STEP_LIMIT, TenantQuota, Throttled, parse_limit};
pub use rerun::{ForkRequest, Retried};
pub use submit::{Submission, Submitted};
pub use sweep::{SWEEP_MAX, SWEEP_TIME, SweepReport};
pub use views::{RunView, StepView, Totals};
pub use workflows::WorkflowDetail;

/// Everything the use cases need, built once per process (or Lambda cold start).
pub struct Engine {
    store: Arc<dyn RunStore>,
    steps: Arc<dyn Queue<StepMessage>>,
    notifications: Arc<dyn Queue<NotificationMessage>>,
    router: Arc<ProviderRouter>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    /// The tenants' registered workflows, which a submission may name.
    registry: Arc<dyn WorkflowRegistry>,
    destinations: DestinationPolicy,
    /// Where providers reach the webhook function, e.g. `https://api.example.com`; without
    /// it async providers are called synchronously.
    public_url: Option<String>,
    /// How long one worker invocation may spend on a step before handing it back to the
    /// queue (a Lambda's timeout); `None` in a long-lived process.
    invocation_budget: Option<std::time::Duration>,
    templates: Arc<Templates>,
    limits: Limits,
    quota: Option<TenantQuota>,
    /// Names this process in step leases, so a worker only completes what it claimed.
    worker_id: String,
}

/// The parts an [`Engine`] is built from.
pub struct EngineParts {
    pub store: Arc<dyn RunStore>,
    pub steps: Arc<dyn Queue<StepMessage>>,
    pub notifications: Arc<dyn Queue<NotificationMessage>>,
    pub router: Arc<ProviderRouter>,
    /// Where provider job outputs are archived.
    pub blobs: Arc<dyn BlobStore>,
    pub clock: Arc<dyn Clock>,
    /// Registered workflows (`PUT /v1/workflows/{name}`), which a submission may name.
    pub registry: Arc<dyn WorkflowRegistry>,
    pub destinations: DestinationPolicy,
    pub limits: Limits,
    pub public_url: Option<String>,
    pub invocation_budget: Option<std::time::Duration>,
    /// Per-tenant request and step-start limits; `None` shares nothing out (tests).
    pub quota: Option<TenantQuota>,
}

impl Engine {
    pub fn new(parts: EngineParts) -> Self {
        Self {
            store: parts.store,
            steps: parts.steps,
            notifications: parts.notifications,
            router: parts.router,
            blobs: parts.blobs,
            clock: parts.clock,
            registry: parts.registry,
            destinations: parts.destinations,
            public_url: parts.public_url.map(|url| url.trim_end_matches('/').to_owned()),
            invocation_budget: parts.invocation_budget,
            templates: Arc::new(Templates::default()),
            limits: parts.limits,
            quota: parts.quota,
            // From the OS-seeded CSPRNG: a lease names its holder, so the id must not be guessable.
            worker_id: format!("worker-{:016x}", rand::random::<u64>()),
        }
    }

    pub fn router(&self) -> &ProviderRouter {
        &self.router
    }

    /// The per-tenant limits, if this engine enforces any.
    pub fn quota(&self) -> Option<&TenantQuota> {
        self.quota.as_ref()
    }
}

#[cfg(test)]
mod tests;
