//! Delivering a finished run to the client's notification URL, signed per Standard Webhooks
//! (once with each of the tenant's active secrets while it rotates them), retried on a bounded
//! schedule through the notifications queue (so no one sleeps).

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;

use super::EngineError;
use super::views::RunView;
use crate::domain::{EventKind, RunEvent};
use crate::ports::{
    Clock, DeliveryError, NotificationMessage, OutgoingWebhook, PortError, Queue, RunStore, SigningSecretStore,
    SigningSecrets, WebhookSender,
};
use crate::webhooks::{InvalidSecret, WebhookSecret, signed_headers_with_each};

/// Delays before each retry of a failed delivery; its length bounds the retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySchedule(pub Vec<Duration>);

impl Default for DeliverySchedule {
    /// Six attempts over about half an hour; each delay fits SQS's 15-minute `DelaySeconds`.
    fn default() -> Self {
        Self([5, 30, 120, 600, 900].into_iter().map(Duration::from_secs).collect())
    }
}

/// The body of a notification: Standard Webhooks' `type` / `timestamp` / `data` envelope.
#[derive(Serialize)]
struct Envelope<'a> {
    r#type: &'static str,
    timestamp: jiff::Timestamp,
    data: &'a RunView,
}

/// Delivers run results; one per process, like the engine.
pub struct Notifier {
    pub store: Arc<dyn RunStore>,
    /// The tenants' signing secrets: the only part of the system that reads them.
    pub secrets: Arc<dyn SigningSecretStore>,
    pub sender: Arc<dyn WebhookSender>,
    pub queue: Arc<dyn Queue<NotificationMessage>>,
    pub clock: Arc<dyn Clock>,
    pub schedule: DeliverySchedule,
}

impl Notifier {
    /// Makes one delivery attempt for `message`, and queues the next one if it failed and
    /// the schedule allows. Outcomes are recorded in the run's history.
    pub async fn deliver(&self, message: &NotificationMessage) -> Result<(), EngineError> {
        let run_id = &message.run_id;
        let Some(run) = self.store.get_run(run_id).await? else {
            tracing::warn!(%run_id, "notification for an unknown run; dropping it");
            return Ok(());
        };
        let Some(target) = run.notify.clone() else { return Ok(()) };
        let Some(secrets) = self.secrets.signing_secrets(&run.tenant).await? else {
            tracing::warn!(%run_id, tenant = %run.tenant, "notification for an unknown tenant; dropping it");
            return Ok(());
        };
        let attempt = message.attempt + 1;
        let now = self.clock.now();
        if message.generation != run.generation {
            // The run was retried after this end: it runs again, and its next end is
            // notified under an id of its own. This one is superseded.
            let reason =
                format!("not sent: the run was retried after the end it reported (generation {})", message.generation);
            let event = EventKind::NotificationFailed { attempt, reason, will_retry: false };
            self.store.append_events(run_id, vec![RunEvent::run(now, event)]).await?;
            return Ok(());
        }

        let steps = self.store.get_steps(run_id).await?;
        let view = RunView::new(run, steps);
        let body = serde_json::to_vec(&Envelope { r#type: "run.finished", timestamp: now, data: &view })
            .map_err(|err| PortError::Corrupt { what: "stored run", detail: err.to_string() })?;
        let outcome = match parse_each(&secrets) {
            Ok(secrets) => {
                // The id is stable across retries so receivers can de-duplicate.
                let headers = signed_headers_with_each(&secrets, &webhook_id(&view), now.as_second(), &body);
                self.sender.send(&OutgoingWebhook { url: target.url, headers, body }).await
            }
            Err(err) => Err(DeliveryError::Refused(format!("the tenant's signing secret is unusable: {err}"))),
        };

        let event = match outcome {
            Ok(http_status) => EventKind::NotificationDelivered { attempt, http_status },
            Err(error) => {
                let delay = self.schedule.0.get(message.attempt as usize).copied();
                // 410 Gone means the receiver asks us to stop; refusals will not change.
                let permanent = matches!(error, DeliveryError::Status(410) | DeliveryError::Refused(_));
                let will_retry = delay.is_some() && !permanent;
                if let (Some(delay), true) = (delay, will_retry) {
                    let next = NotificationMessage { run_id: run_id.clone(), attempt, generation: message.generation };
                    self.queue.send(vec![next], delay).await?;
                }
                let reason = if will_retry || permanent {
                    error.to_string()
                } else {
                    format!("{error}; giving up after {attempt} attempts")
                };
                EventKind::NotificationFailed { attempt, reason, will_retry }
            }
        };
        self.store.append_events(run_id, vec![RunEvent::run(now, event)]).await?;
        Ok(())
    }
}

/// The notification's `webhook-id`: the same for every delivery of one end of the run, so
/// receivers drop duplicates, and another for each end: a run retried (`generation` 1, 2, …)
/// that ends again is news. The first end keeps the id it always had.
fn webhook_id(view: &RunView) -> String {
    match view.generation {
        0 => format!("msg_{}", view.id),
        generation => format!("msg_{}_{generation}", view.id),
    }
}

/// The tenant's secrets ready to sign with, newest first; any malformed one makes the
/// delivery impossible (a signature the receiver cannot check is no better than none).
fn parse_each(secrets: &SigningSecrets) -> Result<Vec<WebhookSecret>, InvalidSecret> {
    secrets.iter().map(|secret| WebhookSecret::parse(secret.expose_secret())).collect()
}
