//! Envelope encryption for secrets kept at rest (tenants' webhook signing secrets). Each value
//! is encrypted with AES-256-GCM under a fresh 256-bit data key, and only that data key is
//! encrypted by the key-encryption key: a KMS key on AWS (`GenerateDataKey`, `Decrypt`), or,
//! on the local emulators, which run no KMS here, a stand-in key given in the setting itself
//! (see [`SealingKey`]). What is stored ([`Sealed`]) is the ciphertext, the encrypted data key
//! and the nonce; the plaintext data key never leaves the process, and is wiped after use.
//!
//! A [`SealContext`] (what the value is, and whose) is bound into both layers, as the AEAD's
//! associated data and as the KMS encryption context: a value copied onto another tenant's
//! item does not open, and the KMS key policy can allow decrypting one purpose only.

mod keys;
#[cfg(test)]
mod kms_tests;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_config::SdkConfig;
use secrecy::zeroize::Zeroizing;
use thiserror::Error;

use self::keys::{DataKey, KeyEncryptionKey};
pub use self::keys::{InvalidSealingKey, KeyKind, LOCAL_STAND_IN_KEY, SealingKey};

/// AES-GCM's standard nonce length: 96 bits, random per seal (a data key seals one value).
const NONCE_LEN: usize = 12;
/// AES-256.
const DATA_KEY_LEN: usize = 32;

/// Seals and opens values with one key-encryption key.
pub struct Sealer {
    key: KeyEncryptionKey,
}

/// What a sealed value is and whose: bound into the ciphertext and the KMS request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext<'a> {
    /// What the value is, e.g. `tenant-webhook-secrets`.
    pub purpose: &'static str,
    /// Whose it is, e.g. the tenant's id.
    pub owner: &'a str,
}

impl SealContext<'_> {
    /// The AEAD's associated data.
    fn associated_data(&self) -> Vec<u8> {
        format!("chorus/{}/{}", self.purpose, self.owner).into_bytes()
    }
}

/// A sealed value as stored: nothing in it opens without the key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    /// The data key, encrypted by the key-encryption key.
    pub data_key: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Which kind of key-encryption key sealed it.
    pub sealed_with: KeyKind,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("sealed_with", &self.sealed_with).finish_non_exhaustive()
    }
}

/// Why a value could not be sealed or opened. Never carries a plaintext or a key.
#[derive(Debug, Error)]
pub enum SealError {
    #[error("KMS {operation} failed")]
    Kms {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("KMS {operation} answered without {missing}")]
    KmsIncomplete { operation: &'static str, missing: &'static str },
    #[error("sealed with the {sealed_with} key, but this process holds the {holds} key")]
    WrongKey { sealed_with: KeyKind, holds: KeyKind },
    #[error("the sealed value does not open: altered, sealed for another owner, or by another key")]
    Unopenable,
    #[error("the sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("the value could not be encrypted")]
    Encrypt,
}

impl SealError {
    /// Whether trying again later may succeed (KMS unreachable or throttling) rather than
    /// the stored value or the configuration being wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, SealError::Kms { .. })
    }
}

impl Sealer {
    /// A sealer with `key`; `config` is used for KMS.
    pub fn new(key: SealingKey, config: &SdkConfig) -> Self {
        let key = match key {
            SealingKey::Kms { key_id } => KeyEncryptionKey::Kms { client: aws_sdk_kms::Client::new(config), key_id },
            SealingKey::Local(local) => KeyEncryptionKey::Local(local),
        };
        Self { key }
    }

    /// Which kind of key this sealer seals with.
    pub fn kind(&self) -> KeyKind {
        self.key.kind()
    }

    /// Encrypts `plaintext` under a fresh data key.
    pub async fn seal(&self, plaintext: &[u8], context: &SealContext<'_>) -> Result<Sealed, SealError> {
        let DataKey { plaintext: data_key, encrypted } = self.key.new_data_key(context).await?;
        let mut nonce = [0_u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let ciphertext = aead_seal(&data_key, &nonce, plaintext, &context.associated_data())?;
        Ok(Sealed { ciphertext, data_key: encrypted, nonce: nonce.to_vec(), sealed_with: self.kind() })
    }

    /// Decrypts what [`Sealer::seal`] sealed with this key and `context`.
    pub async fn open(&self, sealed: &Sealed, context: &SealContext<'_>) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.sealed_with != self.kind() {
            return Err(SealError::WrongKey { sealed_with: sealed.sealed_with, holds: self.kind() });
        }
        let data_key = self.key.open_data_key(&sealed.data_key, context).await?;
        aead_open(&data_key, &sealed.nonce, &sealed.ciphertext, &context.associated_data())
    }
}

/// AES-256-GCM encryption of `plaintext` under `key` (32 bytes) and `nonce` (12 bytes).
fn aead_seal(key: &[u8], nonce: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
    let (cipher, nonce) = cipher_and_nonce(key, nonce)?;
    cipher.encrypt(&nonce, Payload { msg: plaintext, aad }).map_err(|_| SealError::Encrypt)
}

/// AES-256-GCM decryption; fails unless key, nonce, associated data and ciphertext all match.
fn aead_open(key: &[u8], nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let (cipher, nonce) = cipher_and_nonce(key, nonce)?;
    cipher.decrypt(&nonce, Payload { msg: ciphertext, aad }).map(Zeroizing::new).map_err(|_| SealError::Unopenable)
}

fn cipher_and_nonce(
    key: &[u8],
    nonce: &[u8],
) -> Result<(Aes256Gcm, Nonce<aes_gcm::aes::cipher::consts::U12>), SealError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::Malformed("the data key is not 256 bits"))?;
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| SealError::Malformed("the nonce is not 96 bits"))?;
    Ok((cipher, Nonce::from(nonce)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn local_sealer(setting: &str) -> Sealer {
        let config = SdkConfig::builder().build();
        Sealer::new(SealingKey::parse(setting).unwrap(), &config)
    }

    fn context(owner: &str) -> SealContext<'_> {
        SealContext { purpose: "tenant-webhook-secrets", owner }
    }

    #[tokio::test]
    async fn a_sealed_value_opens_with_its_key_and_context_and_shows_no_plaintext() {
        let sealer = local_sealer(LOCAL_STAND_IN_KEY);
        let secret = b"[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]";
        let sealed = sealer.seal(secret, &context("acme")).await.unwrap();
        assert_eq!(sealed.sealed_with, KeyKind::Local);
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert_eq!(sealed.ciphertext.len(), secret.len() + 16, "the plaintext and GCM's 16-byte tag");
        let stored = [&sealed.ciphertext[..], &sealed.data_key[..]].concat();
        assert!(!stored.windows(8).any(|w| secret.windows(8).any(|s| s == w)), "no plaintext run survives");
        assert_eq!(&sealer.open(&sealed, &context("acme")).await.unwrap()[..], secret);
        assert!(!format!("{sealed:?}").contains("ciphertext"));
    }

    #[tokio::test]
    async fn each_seal_uses_a_fresh_data_key_and_nonce() {
        let sealer = local_sealer(LOCAL_STAND_IN_KEY);
        let (a, b) = (
            sealer.seal(b"same", &context("acme")).await.unwrap(),
            sealer.seal(b"same", &context("acme")).await.unwrap(),
        );
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.data_key, b.data_key);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[tokio::test]
    async fn another_owner_another_key_or_an_altered_byte_does_not_open() {
        let sealer = local_sealer(LOCAL_STAND_IN_KEY);
        let sealed = sealer.seal(b"secret", &context("acme")).await.unwrap();
        assert!(matches!(sealer.open(&sealed, &context("globex")).await, Err(SealError::Unopenable)));
        let other = local_sealer("local:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(matches!(other.open(&sealed, &context("acme")).await, Err(SealError::Unopenable)));
        for field in 0..3 {
            let mut altered = sealed.clone();
            let bytes = match field {
                0 => &mut altered.ciphertext,
                1 => &mut altered.data_key,
                _ => &mut altered.nonce,
            };
            bytes[0] ^= 1;
            assert!(matches!(sealer.open(&altered, &context("acme")).await, Err(SealError::Unopenable)), "{field}");
        }
        let mut truncated = sealed.clone();
        truncated.nonce.pop();
        assert!(matches!(sealer.open(&truncated, &context("acme")).await, Err(SealError::Malformed(_))));
    }

    #[tokio::test]
    async fn a_value_sealed_by_kms_is_not_opened_with_the_local_key() {
        let sealer = local_sealer(LOCAL_STAND_IN_KEY);
        let mut sealed = sealer.seal(b"secret", &context("acme")).await.unwrap();
        sealed.sealed_with = KeyKind::Kms;
        let err = sealer.open(&sealed, &context("acme")).await.unwrap_err();
        assert_eq!(err.to_string(), "sealed with the kms key, but this process holds the local key");
        assert!(!err.is_transient());
    }
}
