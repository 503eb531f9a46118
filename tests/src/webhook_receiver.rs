//! A notification receiver for end-to-end tests: a loopback HTTP server that answers 204
//! and hands every delivery over, with the Standard Webhooks check each test makes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chorus::webhooks::signing::{DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use chorus::webhooks::{WebhookHeaders, WebhookSecret, verify};
use serde_json::Value;
use tokio::sync::mpsc;

/// One webhook delivery as received.
#[derive(Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
    }

    /// The `webhook-id`, stable across retries of one notification.
    pub fn webhook_id(&self) -> &str {
        self.header(HEADER_ID)
    }

    /// Checks the signature against `secret` and returns the JSON body.
    pub fn verified(&self, secret: &WebhookSecret) -> Value {
        let signed = WebhookHeaders {
            id: self.header(HEADER_ID),
            timestamp: self.header(HEADER_TIMESTAMP),
            signature: self.header(HEADER_SIGNATURE),
        };
        verify(secret, &signed, &self.body, jiff::Timestamp::now(), DEFAULT_TOLERANCE)
            .unwrap_or_else(|err| panic!("notification signature: {err}"));
        assert_eq!(self.header("content-type"), "application/json");
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Starts a receiver on a loopback port; returns its URL and the deliveries.
pub async fn start_receiver() -> (String, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(tx): State<mpsc::UnboundedSender<Delivery>>, headers: HeaderMap, body: Bytes| async move {
                // The test may have stopped listening: the delivery still succeeded.
                let _ = tx.send(Delivery { headers, body });
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}
