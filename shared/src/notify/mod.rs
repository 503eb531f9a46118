//! Telling clients a run ended: Standard Webhooks signing, the SSRF policy for callback URLs
//! and the HTTP sender that enforces it (DESIGN §6).

pub mod guard;
pub mod sender;
pub mod signing;

pub use guard::CallbackPolicy;
pub use sender::{ClientBuildError, HttpWebhookSender};
pub use signing::{InvalidSecret, VerifyError, WebhookHeaders, WebhookSecret, sign, signed_headers, verify};
