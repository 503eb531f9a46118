//! The composition root: the one place that turns settings into wired services. On AWS each
//! Lambda function gets what it needs and nothing more (`for_intake`, `for_worker`,
//! `for_webhook`, `for_notifier`); `Embedded` wires the memory adapters into one process for
//! `chorus dev` and tests. Which providers exist, with their prices, routes and rate limits,
//! comes from the environment and `providers.toml` ([`router_from_env`]).

#[cfg(feature = "aws")]
mod aws;
mod embedded;
mod providers;
mod settings;

use thiserror::Error;

#[cfg(feature = "aws")]
pub use self::aws::{
    IntakeServices, NotifierServices, for_intake, for_notifier, for_webhook, for_worker, s3_client, sdk_config,
    tenant_secrets_key,
};
pub use self::embedded::{Embedded, EmbeddedOptions};
pub use self::providers::{CatalogError, CredentialLoading, ProviderConfig, WITHHELD, default_router, router_from_env};
pub use self::settings::{DEFAULT_INVOCATION_BUDGET, Settings};
use crate::webhooks::ClientBuildError;

/// A process could not start: its configuration is missing or wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {detail}")]
    Invalid { name: &'static str, detail: String },
    #[error(transparent)]
    WebhookClient(#[from] ClientBuildError),
    #[error(transparent)]
    Providers(#[from] CatalogError),
}
