//! Use cases (DESIGN §4): submit a run, execute a step, decide an approval, cancel, read
//! state back, deliver the result. The engine reaches the world only through `ports` and
//! the provider router, so the same code runs embedded and on Lambda.

mod control;
mod error;
mod execute;
mod notify;
mod progress;
mod submit;
mod sweep;
mod views;

use std::sync::Arc;

use crate::domain::{Limits, Templates};
use crate::notify::CallbackPolicy;
use crate::ports::{Clock, NotificationMessage, Queue, RunStore, StepMessage};
use crate::providers::ProviderRouter;

pub use control::ApprovalDecision;
pub use error::EngineError;
pub use notify::{DeliverySchedule, Notifier};
pub use submit::{Submission, Submitted};
pub use views::{RunView, StepView, Totals};

/// Everything the use cases need, built once per process (or Lambda cold start).
pub struct Engine {
    store: Arc<dyn RunStore>,
    steps: Arc<dyn Queue<StepMessage>>,
    notifications: Arc<dyn Queue<NotificationMessage>>,
    router: Arc<ProviderRouter>,
    clock: Arc<dyn Clock>,
    callbacks: CallbackPolicy,
    templates: Templates,
    limits: Limits,
    /// Names this process in step leases, so a worker only completes what it claimed.
    worker_id: String,
}

/// The parts an [`Engine`] is built from.
pub struct EngineParts {
    pub store: Arc<dyn RunStore>,
    pub steps: Arc<dyn Queue<StepMessage>>,
    pub notifications: Arc<dyn Queue<NotificationMessage>>,
    pub router: Arc<ProviderRouter>,
    pub clock: Arc<dyn Clock>,
    pub callbacks: CallbackPolicy,
    pub limits: Limits,
}

impl Engine {
    pub fn new(parts: EngineParts) -> Self {
        Self {
            store: parts.store,
            steps: parts.steps,
            notifications: parts.notifications,
            router: parts.router,
            clock: parts.clock,
            callbacks: parts.callbacks,
            templates: Templates::default(),
            limits: parts.limits,
            worker_id: format!("worker-{:016x}", fastrand::u64(..)),
        }
    }

    pub fn router(&self) -> &ProviderRouter {
        &self.router
    }
}

#[cfg(test)]
mod tests;
