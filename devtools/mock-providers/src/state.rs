//! What the mock server keeps between requests: the fault book, the HTTP client async jobs
//! send their webhooks with, and a record of every webhook sent, for tests to inspect.

use std::sync::Arc;

use crate::faults::FaultBook;

/// What the mock server shares between requests.
#[derive(Clone)]
pub struct MockState {
    pub faults: Arc<FaultBook>,
    /// Sends the signed webhooks of async jobs.
    pub http: reqwest::Client,
    /// The Standard Webhooks secret (`whsec_…`) async job webhooks are signed with.
    pub webhook_secret: String,
    sent: Arc<std::sync::Mutex<Vec<SentWebhook>>>,
}

/// A webhook the mock sent, as it went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentWebhook {
    pub url: String,
    /// Its `webhook-id`.
    pub id: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MockState {
    pub fn new(webhook_secret: impl Into<String>) -> Self {
        Self {
            faults: Arc::default(),
            http: chorus::tls::http_client().build().unwrap_or_default(),
            webhook_secret: webhook_secret.into(),
            sent: Arc::default(),
        }
    }

    /// Every webhook sent so far.
    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn record_webhook(&self, webhook: SentWebhook) {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(webhook);
    }
}
