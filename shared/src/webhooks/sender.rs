//! The HTTP client that delivers notifications to clients' URLs, enforcing the
//! [`DestinationPolicy`] both on the URL and on every address DNS returns for it.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use thiserror::Error;
use url::Url;

use super::destination::DestinationPolicy;
use crate::ports::{DeliveryError, OutgoingWebhook, WebhookSender};

/// Time allowed for the whole delivery, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to establish the connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: &str = concat!("Chorus-Webhooks/", env!("CARGO_PKG_VERSION"));

/// The webhook HTTP client could not be created (TLS backend initialisation).
#[derive(Debug, Error)]
#[error("cannot build the webhook HTTP client")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Delivers webhooks over HTTP(S) and refuses destinations its [`DestinationPolicy`] forbids.
/// Build it once and share it: it holds a connection pool.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
    policy: DestinationPolicy,
}

impl HttpWebhookSender {
    /// A sender with the [`DEFAULT_TIMEOUT`].
    pub fn new(policy: DestinationPolicy) -> Result<Self, ClientBuildError> {
        Self::with_timeout(policy, DEFAULT_TIMEOUT)
    }

    /// A sender giving each delivery at most `timeout`.
    pub fn with_timeout(policy: DestinationPolicy, timeout: Duration) -> Result<Self, ClientBuildError> {
        let client = crate::tls::http_client()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            // A redirect could lead anywhere, including addresses check_url never saw.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy our resolver would only see the proxy's name, never the target's.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self { client, policy })
    }

    /// Posts to an already checked URL; the resolver still vets the addresses it connects to.
    async fn post(&self, url: Url, webhook: &OutgoingWebhook) -> Result<u16, DeliveryError> {
        let response = self
            .client
            .post(url)
            .headers(header_map(&webhook.headers)?)
            .body(webhook.body.clone())
            .send()
            .await
            .map_err(delivery_error)?;
        // The body is dropped unread: only the status matters, and a hostile receiver
        // could send an endless one.
        let status = response.status();
        if status.is_success() { Ok(status.as_u16()) } else { Err(DeliveryError::Status(status.as_u16())) }
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, webhook: &OutgoingWebhook) -> Result<u16, DeliveryError> {
        let url = self.policy.check_url(&webhook.url)?;
        self.post(url, webhook).await
    }
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, DeliveryError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let invalid = || DeliveryError::Refused(format!("header `{name}` is not valid"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        map.append(name, value);
    }
    Ok(map)
}

/// Maps a reqwest failure to a short reason. reqwest's own message names the URL, which may
/// carry tokens in its path or query, so only the innermost cause is kept.
fn delivery_error(error: reqwest::Error) -> DeliveryError {
    let mut cause: Option<&(dyn StdError + 'static)> = error.source();
    let mut root = None;
    while let Some(err) = cause {
        if err.is::<AddressRefused>() {
            return DeliveryError::Refused(err.to_string());
        }
        root = Some(err);
        cause = err.source();
    }
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match root {
        Some(root) if !error.is_timeout() => DeliveryError::Unreachable(format!("{kind}: {root}")),
        _ => DeliveryError::Unreachable(kind.to_owned()),
    }
}

/// Every address the host resolved to is forbidden by the policy.
#[derive(Debug)]
struct AddressRefused;

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The addresses are not named: they would tell a tenant about our internal network.
        f.write_str("host does not resolve to a public address")
    }
}

impl StdError for AddressRefused {}

/// Resolves with the system resolver and drops the addresses the policy forbids, so the
/// connection goes only where the policy allows even if DNS changes after the URL was
/// checked (DNS rebinding).
struct GuardedResolver {
    policy: DestinationPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let permitted: Vec<SocketAddr> = resolved.filter(|addr| policy.permits(addr.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::str::FromStr;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::webhooks::signing::{self, WebhookHeaders, WebhookSecret};

    type Received = (HeaderMap, Bytes);

    /// Starts a receiver on a free loopback port answering `status` (after `delay`) and
    /// handing over every request it gets.
    async fn receiver(status: StatusCode, delay: Duration) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new()
            .route(
                "/hook",
                post(
                    move |State(tx): State<mpsc::UnboundedSender<Received>>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        tx.send((headers, body)).unwrap();
                        tokio::time::sleep(delay).await;
                        (status, [("location", "http://169.254.169.254/")])
                    },
                ),
            )
            .with_state(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, rx)
    }

    fn webhook(url: String, secret: &WebhookSecret, body: &[u8]) -> OutgoingWebhook {
        OutgoingWebhook {
            url,
            headers: signing::signed_headers(secret, "msg_1", jiff::Timestamp::now().as_second(), body),
            body: body.to_vec(),
        }
    }

    fn sender(policy: DestinationPolicy) -> HttpWebhookSender {
        HttpWebhookSender::new(policy).unwrap()
    }

    #[tokio::test]
    async fn delivers_a_signed_post_that_verifies() {
        let (addr, mut rx) = receiver(StatusCode::NO_CONTENT, Duration::ZERO).await;
        let secret = WebhookSecret::generate();
        let body = br#"{"type":"run.succeeded"}"#;

        let status = sender(DestinationPolicy::local_development())
            .send(&webhook(format!("http://{addr}/hook"), &secret, body))
            .await
            .unwrap();

        assert_eq!(status, 204);
        let (headers, received) = rx.recv().await.unwrap();
        assert_eq!(&received[..], body);
        let get = |name: &str| headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(get("content-type"), "application/json");
        assert!(get("user-agent").starts_with("Chorus-Webhooks/"));
        let signed = WebhookHeaders {
            id: get("webhook-id"),
            timestamp: get("webhook-timestamp"),
            signature: get("webhook-signature"),
        };
        signing::verify(&secret, &signed, &received, jiff::Timestamp::now(), signing::DEFAULT_TOLERANCE).unwrap();
    }

    #[tokio::test]
    async fn localhost_works_in_local_development() {
        let (addr, mut rx) = receiver(StatusCode::OK, Duration::ZERO).await;
        let url = format!("http://localhost:{}/hook", addr.port());
        let status = sender(DestinationPolicy::local_development())
            .send(&webhook(url, &WebhookSecret::generate(), b"{}"))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(rx.recv().await.is_some());
    }

    #[tokio::test]
    async fn production_refuses_loopback_urls() {
        let (addr, mut rx) = receiver(StatusCode::OK, Duration::ZERO).await;
        let secret = WebhookSecret::generate();
        let sender = sender(DestinationPolicy::production());
        for url in [
            format!("http://{addr}/hook"),
            format!("https://{addr}/hook"),
            format!("https://localhost:{}/hook", addr.port()),
        ] {
            let result = sender.send(&webhook(url.clone(), &secret, b"{}")).await;
            assert!(matches!(result, Err(DeliveryError::Refused(_))), "{url}: {result:?}");
        }
        assert!(rx.try_recv().is_err(), "nothing may reach the receiver");
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_forbidden_addresses() {
        // GIVEN a host name that passes the URL check but resolves to loopback (the URL check
        // would catch `localhost` by name, so go around it as a rebinding name would)
        let (addr, mut rx) = receiver(StatusCode::OK, Duration::ZERO).await;
        let policy = DestinationPolicy { allow_loopback: false, allow_private: false, require_https: false };
        let url = Url::parse(&format!("http://localhost:{}/hook", addr.port())).unwrap();

        // WHEN posting to it
        let result = sender(policy).post(url, &webhook(String::new(), &WebhookSecret::generate(), b"{}")).await;

        // THEN the connection is refused, and never made
        match result {
            Err(DeliveryError::Refused(reason)) => {
                assert_eq!(reason, "host does not resolve to a public address");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_permitted_addresses() {
        let resolver = GuardedResolver { policy: DestinationPolicy::production() };
        let refused = resolver.resolve(Name::from_str("localhost").unwrap()).await;
        assert!(refused.err().unwrap().is::<AddressRefused>());

        let resolver = GuardedResolver { policy: DestinationPolicy::local_development() };
        let addrs: Vec<SocketAddr> = resolver.resolve(Name::from_str("localhost").unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn error_statuses_are_reported() {
        let (addr, _rx) = receiver(StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
        let result = sender(DestinationPolicy::local_development())
            .send(&webhook(format!("http://{addr}/hook"), &WebhookSecret::generate(), b"{}"))
            .await;
        assert!(matches!(result, Err(DeliveryError::Status(500))), "{result:?}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (addr, _rx) = receiver(StatusCode::TEMPORARY_REDIRECT, Duration::ZERO).await;
        let result = sender(DestinationPolicy::local_development())
            .send(&webhook(format!("http://{addr}/hook"), &WebhookSecret::generate(), b"{}"))
            .await;
        assert!(matches!(result, Err(DeliveryError::Status(307))), "{result:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);

        let result = sender(DestinationPolicy::local_development())
            .send(&webhook(format!("http://{addr}/hook"), &WebhookSecret::generate(), b"{}"))
            .await;

        match result {
            Err(DeliveryError::Unreachable(reason)) => {
                assert!(reason.starts_with("connection failed: "), "{reason}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let (addr, _rx) = receiver(StatusCode::OK, Duration::from_secs(5)).await;
        let sender =
            HttpWebhookSender::with_timeout(DestinationPolicy::local_development(), Duration::from_millis(200))
                .unwrap();
        let result = sender.send(&webhook(format!("http://{addr}/hook"), &WebhookSecret::generate(), b"{}")).await;
        match result {
            Err(DeliveryError::Unreachable(reason)) => assert_eq!(reason, "timed out"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn invalid_headers_are_refused() {
        let mut hook = webhook("http://127.0.0.1:9/hook".to_owned(), &WebhookSecret::generate(), b"{}");
        hook.headers.push(("bad header".to_owned(), "x".to_owned()));
        let result = sender(DestinationPolicy::local_development()).send(&hook).await;
        assert!(matches!(result, Err(DeliveryError::Refused(_))), "{result:?}");
    }
}
