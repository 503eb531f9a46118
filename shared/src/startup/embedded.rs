//! The embedded composition: every port on its memory adapter, in one process (`chorus dev`
//! and the test kit). The caller drains the queues' receiving ends, as SQS event source
//! mappings feed the Lambda functions on AWS.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::adapters::{MemoryBlobStore, MemoryQueue, MemoryRunStore, MemoryWorkflowRegistry};
use crate::domain::Limits;
use crate::engine::{DeliverySchedule, EngineParts, Notifier};
use crate::ports::{Clock, NotificationMessage, SigningSecretStore, StepMessage, WebhookSender};
use crate::routing::ProviderRouter;
use crate::webhooks::DestinationPolicy;

/// The memory backends of one process, with the receiving ends of its two queues.
pub struct Embedded {
    pub store: Arc<MemoryRunStore>,
    pub blobs: Arc<MemoryBlobStore>,
    pub registry: Arc<MemoryWorkflowRegistry>,
    pub steps: MemoryQueue<StepMessage>,
    pub step_messages: UnboundedReceiver<StepMessage>,
    pub notifications: MemoryQueue<NotificationMessage>,
    pub notification_messages: UnboundedReceiver<NotificationMessage>,
}

/// What an embedded engine is built with beyond its backends.
pub struct EmbeddedOptions {
    pub router: Arc<ProviderRouter>,
    pub clock: Arc<dyn Clock>,
    /// Where clients' notification URLs may point.
    pub destinations: DestinationPolicy,
    /// This process's own address, where providers report async jobs.
    pub public_url: Option<String>,
    /// Per-tenant request and step-start limits (`chorus dev` keeps their buckets in memory).
    pub quota: Option<crate::engine::TenantQuota>,
}

impl Embedded {
    /// Empty backends.
    pub fn new() -> Self {
        let (steps, step_messages) = MemoryQueue::channel();
        let (notifications, notification_messages) = MemoryQueue::channel();
        Self {
            store: Arc::new(MemoryRunStore::new()),
            blobs: Arc::new(MemoryBlobStore::new()),
            registry: Arc::new(MemoryWorkflowRegistry::new()),
            steps,
            step_messages,
            notifications,
            notification_messages,
        }
    }

    /// The engine's parts over these backends. A long-lived process has no invocation
    /// budget: a step runs as long as its own time limits allow.
    pub fn engine_parts(&self, options: EmbeddedOptions) -> EngineParts {
        EngineParts {
            store: self.store.clone(),
            steps: Arc::new(self.steps.clone()),
            notifications: Arc::new(self.notifications.clone()),
            router: options.router,
            blobs: self.blobs.clone(),
            clock: options.clock,
            registry: self.registry.clone(),
            destinations: options.destinations,
            limits: Limits::default(),
            public_url: options.public_url,
            invocation_budget: None,
            quota: options.quota,
        }
    }

    /// The notifier over these backends, signing with `secrets` and sending through `sender`.
    pub fn notifier(
        &self,
        secrets: Arc<dyn SigningSecretStore>,
        sender: Arc<dyn WebhookSender>,
        clock: Arc<dyn Clock>,
    ) -> Notifier {
        Notifier {
            store: self.store.clone(),
            secrets,
            sender,
            queue: Arc::new(self.notifications.clone()),
            clock,
            schedule: DeliverySchedule::default(),
        }
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Self::new()
    }
}
