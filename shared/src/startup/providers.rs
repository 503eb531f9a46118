//! Which providers a process offers, built once at start (Lambda cold start, `chorus dev`):
//! `local` always, and each hosted provider whose credentials are in the environment. Prices
//! and routes come from `providers.toml` (built in; `CHORUS_PROVIDERS_FILE` replaces it).
//!
//! A credential is the value itself, or a reference read once through the [`SecretStore`]
//! (AWS Systems Manager): `ssm:/chorus/openai-key` (a SecureString parameter) or
//! `secretsmanager:chorus/openai-key` (a Secrets Manager secret, through SSM's
//! `/aws/reference/secretsmanager/` bridge), or `withheld`: the provider is on, but this
//! process is not given its credential because it never uses it (the template gives the
//! intake function every provider so, to validate models against). When a stored one is read
//! is the caller's choice ([`CredentialLoading`]). Values never reach logs or errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::sync::Mutex;

use http::HeaderName;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use thiserror::Error;

use crate::domain::RateLimit;
use crate::ports::{RateLimiter, SecretStore};
use crate::providers::anthropic::AnthropicProvider;
use crate::providers::cohere::CohereProvider;
use crate::providers::gemini::GeminiProvider;
use crate::providers::huggingface::HuggingFaceProvider;
use crate::providers::openai::{AuthHeader, OpenAiProvider};
use crate::providers::replicate::ReplicateProvider;
use crate::providers::{Credential, CredentialError, LocalProvider, Provider, http_call};
use crate::routing::{PriceTable, ProviderRouter, RateLimits, RetryPolicy, Route};
use crate::webhooks::WebhookSecret;

/// The built-in `providers.toml`.
const BUILT_IN: &str = include_str!("../../providers.toml");
/// A credential setting's value for "the provider is on, but this process does not get the
/// credential".
pub const WITHHELD: &str = "withheld";

/// Reads one environment variable (a map in tests).
pub type Lookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// Why the providers could not be set up. Names the variable, never its value.
#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("{name}: {detail}")]
    Invalid { name: String, detail: String },
    #[error(transparent)]
    Secret(#[from] CredentialError),
}

/// `providers.toml`: prices and routes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    #[serde(default)]
    pub prices: PriceTable,
    #[serde(default)]
    pub routes: BTreeMap<String, Route>,
    /// Requests per provider, shared across every worker.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimit>,
}

impl ProviderConfig {
    /// The built-in file, or the one `CHORUS_PROVIDERS_FILE` names.
    pub fn load(lookup: Lookup<'_>) -> Result<Self, CatalogError> {
        let name = "CHORUS_PROVIDERS_FILE";
        let text = match lookup(name) {
            Some(path) => std::fs::read_to_string(&path).map_err(|err| CatalogError::Invalid {
                name: name.to_owned(),
                detail: format!("cannot read `{path}`: {err}"),
            })?,
            None => BUILT_IN.to_owned(),
        };
        toml::from_str(&text).map_err(|err| CatalogError::Invalid { name: name.to_owned(), detail: err.to_string() })
    }
}

/// The router `chorus validate` and the tests use: the `local` provider with the built-in
/// prices and routes.
pub fn default_router() -> ProviderRouter {
    let config = toml::from_str::<ProviderConfig>(BUILT_IN).unwrap_or_default();
    ProviderRouter::new(vec![Arc::new(LocalProvider::new())], config.routes, RetryPolicy::default(), config.prices)
}

/// When the providers' stored credentials are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialLoading {
    /// All at start-up, so a wrong reference fails the cold start (processes that call
    /// providers or verify their webhooks).
    AtStart,
    /// When a call first needs one: never, in a process that calls no provider (intake,
    /// `chorus validate`).
    OnFirstUse,
}

/// Builds the router from the environment: `local`, plus every provider configured there,
/// taking tokens from `limiter` for the providers `providers.toml` limits. Credentials given
/// as `ssm:`/`secretsmanager:` references are read from `secrets`, when `loading` says.
pub async fn router_from_env(
    lookup: Lookup<'_>,
    limiter: Arc<dyn RateLimiter>,
    secrets: Option<Arc<dyn SecretStore>>,
    loading: CredentialLoading,
) -> Result<ProviderRouter, CatalogError> {
    let config = ProviderConfig::load(lookup)?;
    let env = Env { lookup, secrets, stored: Mutex::new(Vec::new()) };
    let providers = hosted_providers(&env).await?;
    if loading == CredentialLoading::AtStart {
        env.load_stored().await?;
    }
    let mut all: Vec<Arc<dyn Provider>> = vec![Arc::new(LocalProvider::new())];
    all.extend(providers);
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    tracing::info!(providers = ?names, prices = %config.prices.version, "providers configured");
    let limits = RateLimits { limiter, limits: config.rate_limits };
    Ok(ProviderRouter::new(all, config.routes, RetryPolicy::default(), config.prices).with_rate_limits(limits))
}

/// The hosted providers whose settings are present. One HTTP client serves them all.
async fn hosted_providers(env: &Env<'_>) -> Result<Vec<Arc<dyn Provider>>, CatalogError> {
    let http = http_call::client()
        .map_err(|err| CatalogError::Invalid { name: "HTTP client".to_owned(), detail: err.to_string() })?;
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    if let Some(key) = env.credential("OPENAI_API_KEY")? {
        let mut openai = OpenAiProvider::new(http.clone(), key, env.get("OPENAI_BASE_URL"));
        if let Some(header) = env.get("OPENAI_AUTH_HEADER") {
            let name = HeaderName::from_bytes(header.as_bytes()).map_err(|err| CatalogError::Invalid {
                name: "OPENAI_AUTH_HEADER".to_owned(),
                detail: err.to_string(),
            })?;
            openai = openai.with_auth_header(AuthHeader::Header(name));
        }
        if env.get("OPENAI_STRUCTURED_OUTPUT").is_some() && !env.enabled("OPENAI_STRUCTURED_OUTPUT") {
            openai = openai.with_structured_output(false);
        }
        providers.push(Arc::new(openai));
    }
    if let Some(key) = env.credential("ANTHROPIC_API_KEY")? {
        providers.push(Arc::new(AnthropicProvider::new(http.clone(), key, env.get("ANTHROPIC_BASE_URL"))));
    }
    if let Some(key) = env.credential("GEMINI_API_KEY")? {
        providers.push(Arc::new(GeminiProvider::new(http.clone(), key, env.get("GEMINI_BASE_URL"))));
    }
    if let Some(key) = env.credential("COHERE_API_KEY")? {
        providers.push(Arc::new(CohereProvider::new(http.clone(), key, env.get("COHERE_BASE_URL"))));
    }
    if let Some(token) = env.credential("HF_TOKEN")? {
        providers.push(Arc::new(HuggingFaceProvider::new(http.clone(), token, env.get("HF_BASE_URL"))));
    }
    if let Some(token) = env.credential("REPLICATE_API_TOKEN")? {
        let is_whsec: ValueCheck = Box::new(|value| WebhookSecret::parse(value).map(|_| ()).map_err(|e| e.to_string()));
        let webhook_secret = env.checked_credential("REPLICATE_WEBHOOK_SECRET", Some(is_whsec))?;
        let base_url = env.get("REPLICATE_BASE_URL");
        providers.push(Arc::new(ReplicateProvider::new(http.clone(), token, webhook_secret, base_url)));
    }
    if env.enabled("BEDROCK_ENABLED") {
        providers.push(bedrock().await?);
    }
    Ok(providers)
}

/// Bedrock, through the process's AWS configuration (the Lambda role).
#[cfg(feature = "aws")]
async fn bedrock() -> Result<Arc<dyn Provider>, CatalogError> {
    let client = aws_sdk_bedrockruntime::Client::new(&crate::startup::sdk_config().await);
    Ok(Arc::new(crate::providers::bedrock::BedrockProvider::new(client)))
}

/// Without the AWS SDK there is no Bedrock client: say so rather than ignore the setting.
#[cfg(not(feature = "aws"))]
async fn bedrock() -> Result<Arc<dyn Provider>, CatalogError> {
    Err(CatalogError::Invalid {
        name: "BEDROCK_ENABLED".to_owned(),
        detail: "this build has no AWS support; build with the `aws` feature to use Bedrock".to_owned(),
    })
}

/// A check of a credential's value, run once the value is known.
type ValueCheck = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The environment, and the stored credentials it handed out (to load at start-up).
struct Env<'a> {
    lookup: Lookup<'a>,
    secrets: Option<Arc<dyn SecretStore>>,
    stored: Mutex<Vec<(&'static str, Credential, Option<ValueCheck>)>>,
}

impl Env<'_> {
    /// A plain setting; blank counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// Whether a flag like `BEDROCK_ENABLED` is on.
    fn enabled(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }

    /// A credential: the value, or the secret an `ssm:`/`secretsmanager:` reference names
    /// (read later, from the secret store).
    fn credential(&self, name: &'static str) -> Result<Option<Credential>, CatalogError> {
        self.checked_credential(name, None)
    }

    /// A credential whose value must pass `check`: checked now when the value is given,
    /// when it is read for a stored one.
    fn checked_credential(
        &self,
        name: &'static str,
        check: Option<ValueCheck>,
    ) -> Result<Option<Credential>, CatalogError> {
        let Some(value) = self.get(name) else { return Ok(None) };
        if value == WITHHELD {
            return Ok(Some(Credential::withheld(name)));
        }
        let parameter = if let Some(path) = value.strip_prefix("ssm:") {
            path.to_owned()
        } else if let Some(id) = value.strip_prefix("secretsmanager:") {
            format!("/aws/reference/secretsmanager/{id}")
        } else {
            if let Some(check) = check {
                check(&value).map_err(|detail| CatalogError::Invalid { name: name.to_owned(), detail })?;
            }
            return Ok(Some(Credential::value(SecretString::from(value))));
        };
        let Some(store) = self.secrets.clone() else {
            return Err(CatalogError::Invalid {
                name: name.to_owned(),
                detail: "is a secret-store reference, but this process has no AWS secret store".to_owned(),
            });
        };
        let credential = Credential::stored(name, parameter, store);
        let mut stored = self.stored.lock().map_err(|_| CatalogError::Invalid {
            name: name.to_owned(),
            detail: "the credential list is unusable".to_owned(),
        })?;
        stored.push((name, credential.clone(), check));
        Ok(Some(credential))
    }

    /// Reads every stored credential handed out, and checks the values that have a check.
    async fn load_stored(&self) -> Result<(), CatalogError> {
        let stored = std::mem::take(&mut *self.stored.lock().map_err(|_| CatalogError::Invalid {
            name: "credentials".to_owned(),
            detail: "the credential list is unusable".to_owned(),
        })?);
        for (name, credential, check) in stored {
            let value = credential.get().await?;
            if let Some(check) = check {
                check(value.expose_secret())
                    .map_err(|detail| CatalogError::Invalid { name: name.to_owned(), detail })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn given_the_built_in_file_when_loaded_then_prices_are_versioned_and_routes_parse() {
        let config = ProviderConfig::load(&lookup(&[])).unwrap();
        assert!(!config.prices.version.is_empty());
        assert!(config.prices.price("openai:gpt-4o-mini").is_some());
        assert!(config.routes.contains_key("fast") && config.routes.contains_key("summaries"));
    }

    #[test]
    fn given_a_broken_replacement_file_when_loaded_then_the_error_names_the_variable() {
        let dir = std::env::temp_dir().join(format!("chorus-providers-{}.toml", std::process::id()));
        std::fs::write(&dir, "[routes.x]\nstrategy = \"random\"\n").unwrap();
        let err = ProviderConfig::load(&lookup(&[("CHORUS_PROVIDERS_FILE", dir.to_str().unwrap())])).unwrap_err();
        assert!(err.to_string().starts_with("CHORUS_PROVIDERS_FILE:"), "{err}");
        let err = ProviderConfig::load(&lookup(&[("CHORUS_PROVIDERS_FILE", "/nope.toml")])).unwrap_err();
        assert!(err.to_string().contains("cannot read `/nope.toml`"), "{err}");
    }

    #[tokio::test]
    async fn given_withheld_credentials_when_built_then_the_providers_are_offered_and_nothing_is_read() {
        let limiter = Arc::new(crate::adapters::MemoryRateLimiter::new(Arc::new(crate::ports::SystemClock)));
        let env = lookup(&[
            ("OPENAI_API_KEY", "withheld"),
            ("REPLICATE_API_TOKEN", "withheld"),
            // Checked as `whsec_…` when given; withheld, there is nothing to check.
            ("REPLICATE_WEBHOOK_SECRET", "withheld"),
        ]);
        let router = router_from_env(&env, limiter, None, CredentialLoading::AtStart).await.unwrap();
        let mut providers: Vec<String> = router.models().into_iter().map(|m| m.provider).collect();
        providers.dedup();
        assert!(providers.contains(&"openai".to_owned()) && providers.contains(&"replicate".to_owned()));
        assert!(router.provider("replicate").and_then(|p| p.jobs()).is_some(), "async jobs stay on");
    }

    #[tokio::test]
    async fn given_no_keys_when_built_then_only_local_is_offered_and_fast_still_works() {
        use crate::domain::{ModelCatalog, Task};
        let limiter = Arc::new(crate::adapters::MemoryRateLimiter::new(Arc::new(crate::ports::SystemClock)));
        let router = router_from_env(&lookup(&[]), limiter, None, CredentialLoading::AtStart).await.unwrap();
        assert!(router.models().iter().all(|m| m.provider == "local"));
        for task in [Task::Generate, Task::Summarize, Task::Classify, Task::Extract, Task::Embed] {
            assert_eq!(router.check_model("fast", task), Ok(()), "{task}");
        }
    }
}
