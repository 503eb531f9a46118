//! Standard Webhooks (<https://www.standardwebhooks.com>), both ways: signing what we send and
//! verifying what providers send us (`signing`), which destinations an outgoing webhook may
//! reach (`destination`, the SSRF policy for clients' notification URLs) and the HTTP client
//! that enforces it (`sender`).

pub mod destination;
pub mod sender;
pub mod signing;

pub use destination::DestinationPolicy;
pub use sender::{ClientBuildError, HttpWebhookSender};
pub use signing::{
    InvalidSecret, VerifyError, WebhookHeaders, WebhookSecret, sign, sign_with_each, signed_headers,
    signed_headers_with_each, verify,
};
