//! The client's end of notifications: a loopback HTTP server every soak run names as its
//! `notify.url`. It checks each delivery's Standard Webhooks signature with the tenant's
//! secret (a bad one is counted and refused with 401, as a careful client would) and
//! records, per run, the distinct `webhook-id`s it heard and how many deliveries came.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chorus::webhooks::signing::{DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use chorus::webhooks::{WebhookHeaders, WebhookSecret, verify};
use serde_json::Value;

use crate::SoakError;

/// What one run's notifications looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heard {
    /// Distinct `webhook-id`s: exactly one means the client heard exactly once.
    pub webhook_ids: BTreeSet<String>,
    /// Deliveries, redeliveries of the same id included.
    pub deliveries: u32,
    /// The `data.status` of each delivery.
    pub statuses: BTreeSet<String>,
}

/// Everything the receiver heard.
#[derive(Debug, Default)]
pub struct Inbox {
    book: Mutex<Book>,
}

#[derive(Debug, Default, Clone)]
struct Book {
    runs: BTreeMap<String, Heard>,
    bad_signatures: u64,
    /// Signed correctly, but not a `run.finished` with a run id.
    unreadable: u64,
}

impl Inbox {
    /// What was heard for `run_id`.
    pub fn heard(&self, run_id: &str) -> Heard {
        self.lock().runs.get(run_id).cloned().unwrap_or_default()
    }

    /// Every run heard of, by id.
    pub fn runs(&self) -> BTreeMap<String, Heard> {
        self.lock().runs.clone()
    }

    pub fn bad_signatures(&self) -> u64 {
        self.lock().bad_signatures
    }

    pub fn unreadable(&self) -> u64 {
        self.lock().unreadable
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks and records one delivery; the status code to answer with.
    fn receive(&self, secret: &WebhookSecret, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
        let signed = WebhookHeaders {
            id: header(HEADER_ID),
            timestamp: header(HEADER_TIMESTAMP),
            signature: header(HEADER_SIGNATURE),
        };
        let mut book = self.lock();
        if signed.id.is_empty() || verify(secret, &signed, body, jiff::Timestamp::now(), DEFAULT_TOLERANCE).is_err() {
            book.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let run_id = payload["data"]["id"].as_str();
        let (Some(run_id), Some("run.finished")) = (run_id, payload["type"].as_str()) else {
            book.unreadable += 1;
            return StatusCode::BAD_REQUEST;
        };
        let heard = book.runs.entry(run_id.to_owned()).or_default();
        heard.webhook_ids.insert(signed.id.to_owned());
        heard.deliveries += 1;
        heard.statuses.insert(payload["data"]["status"].as_str().unwrap_or("?").to_owned());
        StatusCode::NO_CONTENT
    }
}

struct Receiver {
    secret: WebhookSecret,
    inbox: Arc<Inbox>,
}

/// Starts the receiver on a loopback port: its URL and its inbox.
pub async fn start(secret: WebhookSecret) -> Result<(String, Arc<Inbox>), SoakError> {
    let inbox = Arc::new(Inbox::default());
    let state = Arc::new(Receiver { secret, inbox: inbox.clone() });
    let app = Router::new()
        .route(
            "/hook",
            post(|State(state): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes| async move {
                state.inbox.receive(&state.secret, &headers, &body)
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(SoakError::Receiver)?;
    let addr = listener.local_addr().map_err(SoakError::Receiver)?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the notification receiver stopped");
        }
    });
    Ok((format!("http://{addr}/hook"), inbox))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chorus::webhooks::signing::sign;

    use super::*;

    fn delivery(secret: &WebhookSecret, id: &str, body: &str) -> HeaderMap {
        let timestamp = jiff::Timestamp::now().as_second();
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, id.parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, timestamp.to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, sign(secret, id, timestamp, body.as_bytes()).parse().unwrap());
        headers
    }

    #[test]
    fn signed_deliveries_are_recorded_per_run_and_forged_ones_counted_and_refused() {
        let secret = WebhookSecret::generate();
        let inbox = Inbox::default();
        let body = r#"{"type": "run.finished", "data": {"id": "run_1", "status": "succeeded"}}"#;
        let headers = delivery(&secret, "msg_1", body);
        assert_eq!(inbox.receive(&secret, &headers, body.as_bytes()), StatusCode::NO_CONTENT);
        assert_eq!(inbox.receive(&secret, &headers, body.as_bytes()), StatusCode::NO_CONTENT, "a redelivery");
        let other = delivery(&secret, "msg_2", body);
        inbox.receive(&secret, &other, body.as_bytes());

        let heard = inbox.heard("run_1");
        assert_eq!(heard.webhook_ids.len(), 2, "two distinct notifications for one run");
        assert_eq!(heard.deliveries, 3);
        assert_eq!(heard.statuses, BTreeSet::from(["succeeded".to_owned()]));

        let forged = delivery(&WebhookSecret::generate(), "msg_3", body);
        assert_eq!(inbox.receive(&secret, &forged, body.as_bytes()), StatusCode::UNAUTHORIZED);
        let tampered = r#"{"type": "run.finished", "data": {"id": "run_1", "status": "failed"}}"#;
        assert_eq!(inbox.receive(&secret, &headers, tampered.as_bytes()), StatusCode::UNAUTHORIZED);
        assert_eq!(inbox.receive(&secret, &HeaderMap::new(), body.as_bytes()), StatusCode::UNAUTHORIZED);
        assert_eq!(inbox.bad_signatures(), 3);
        assert_eq!(inbox.heard("run_1").deliveries, 3);
    }
}
