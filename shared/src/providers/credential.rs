//! A provider's credential (API key, token, webhook secret): the value itself, or a reference
//! to a [`SecretStore`] read the first time a call needs it and kept for the life of the
//! process, or withheld: the process offers the provider (validates its models, knows it
//! takes async jobs) but is not given the credential, because it never uses it (the intake
//! function and every credential; the webhook function and Replicate's API token). Processes
//! that call providers read their stored credentials at start-up, so a wrong reference fails
//! the cold start rather than the first step.

use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::ports::{PortError, SecretStore};

/// A credential, cheap to clone (the value is read and cached once for every clone).
#[derive(Clone)]
pub struct Credential(Arc<Inner>);

struct Inner {
    source: Source,
    value: OnceCell<SecretString>,
}

enum Source {
    Value,
    /// Not given to this process; `variable` is the setting that said so.
    Withheld {
        variable: &'static str,
    },
    Stored {
        /// The setting that referenced it, for error messages.
        variable: &'static str,
        /// The parameter to read, e.g. `/chorus/openai-api-key`.
        parameter: String,
        store: Arc<dyn SecretStore>,
    },
}

/// A credential is not available; names the setting, never a value.
#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("{variable}: the secret could not be read from the secret store")]
    Unreadable {
        variable: &'static str,
        #[source]
        source: PortError,
    },
    #[error("{variable}: this process is not given the credential (`withheld`): it must not call the provider")]
    Withheld { variable: &'static str },
}

impl Credential {
    /// A credential whose value is known.
    pub fn value(secret: SecretString) -> Self {
        Self(Arc::new(Inner { source: Source::Value, value: OnceCell::new_with(Some(secret)) }))
    }

    /// A credential this process does not get: using it is an error. `variable` is the
    /// setting that withholds it.
    pub fn withheld(variable: &'static str) -> Self {
        Self(Arc::new(Inner { source: Source::Withheld { variable }, value: OnceCell::new() }))
    }

    /// Whether this process was not given the credential.
    pub fn is_withheld(&self) -> bool {
        matches!(self.0.source, Source::Withheld { .. })
    }

    /// A credential read from `store` under `parameter` on first use; `variable` is the
    /// setting that referenced it.
    pub fn stored(variable: &'static str, parameter: String, store: Arc<dyn SecretStore>) -> Self {
        Self(Arc::new(Inner { source: Source::Stored { variable, parameter, store }, value: OnceCell::new() }))
    }

    /// The secret, read from its store the first time. A failed read is tried again by the
    /// next caller.
    pub async fn get(&self) -> Result<&SecretString, CredentialError> {
        self.0
            .value
            .get_or_try_init(|| async {
                match &self.0.source {
                    // Unreachable in practice: a known value is set at construction.
                    Source::Value => Err(CredentialError::Unreadable {
                        variable: "credential",
                        source: PortError::Corrupt { what: "credential", detail: "no value".to_owned() },
                    }),
                    Source::Withheld { variable } => Err(CredentialError::Withheld { variable }),
                    Source::Stored { variable, parameter, store } => {
                        store.read(parameter).await.map_err(|source| CredentialError::Unreadable { variable, source })
                    }
                }
            })
            .await
    }
}

impl From<SecretString> for Credential {
    fn from(secret: SecretString) -> Self {
        Self::value(secret)
    }
}

impl From<&str> for Credential {
    fn from(secret: &str) -> Self {
        Self::value(SecretString::from(secret))
    }
}

impl fmt::Debug for Credential {
    // By hand: neither the value nor the parameter's name needs to reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.0.source {
            Source::Value => "value",
            Source::Withheld { .. } => "withheld",
            Source::Stored { .. } => "secret store",
        };
        f.debug_struct("Credential").field("source", &source).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use secrecy::ExposeSecret;

    use super::*;

    struct CountingStore(AtomicU32);

    #[async_trait]
    impl SecretStore for CountingStore {
        async fn read(&self, parameter: &str) -> Result<SecretString, PortError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                return Err(PortError::Unavailable { what: "store", source: "down".into() });
            }
            Ok(SecretString::from(format!("{parameter}-value")))
        }
    }

    #[tokio::test]
    async fn a_stored_credential_is_read_on_first_use_retried_after_a_failure_then_kept() {
        let store = Arc::new(CountingStore(AtomicU32::new(0)));
        let credential = Credential::stored("OPENAI_API_KEY", "/k".into(), store.clone());
        assert_eq!(store.0.load(Ordering::SeqCst), 0, "nothing is read before it is needed");
        let err = credential.get().await.unwrap_err();
        assert_eq!(err.to_string(), "OPENAI_API_KEY: the secret could not be read from the secret store");
        let clone = credential.clone();
        assert_eq!(clone.get().await.unwrap().expose_secret(), "/k-value");
        assert_eq!(credential.get().await.unwrap().expose_secret(), "/k-value");
        assert_eq!(store.0.load(Ordering::SeqCst), 2, "read once after the failure, for every clone");
        assert!(!format!("{credential:?}").contains("/k"));
    }

    #[tokio::test]
    async fn a_withheld_credential_is_never_available() {
        let credential = Credential::withheld("OPENAI_API_KEY");
        assert!(credential.is_withheld());
        let err = credential.get().await.unwrap_err();
        assert!(matches!(err, CredentialError::Withheld { variable: "OPENAI_API_KEY" }), "{err}");
        assert!(!crate::providers::ProviderError::from(err).is_retryable(), "no retry can bring it");
    }
}
