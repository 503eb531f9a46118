//! TLS for every HTTP client Chorus makes: rustls with the ring crypto provider. reqwest is
//! built without a provider of its own (its default, aws-lc-rs, takes a minute to compile),
//! so the provider is installed here, once per process, before the first client is built.

use std::sync::Once;

/// A `reqwest` client builder, with the process's crypto provider in place.
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// Installs ring as the process's rustls crypto provider, unless one is installed already
/// (by this function or by the embedding program: either serves).
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider was installed first; that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_can_be_built_after_the_provider_is_installed() {
        assert!(super::http_client().build().is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
