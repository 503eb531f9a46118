//! The key-encryption keys: KMS, or the local stand-in, and the setting that names one
//! (`CHORUS_TENANT_SECRETS_KEY`).

use std::collections::HashMap;
use std::fmt;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{DATA_KEY_LEN, NONCE_LEN, SealContext, SealError, aead_open, aead_seal};

/// The stand-in key `chorus local up` gives the functions (and the tests use) on the local
/// emulators, which run no KMS here. It is public, so it protects nothing: it only keeps the
/// local stack on the same sealed format and code path as AWS. Never use it on AWS.
pub const LOCAL_STAND_IN_KEY: &str = "local:Y2hvcnVzLWxvY2FsLXN0YW5kLWluLWtleS1wdWJsaWM=";

const LOCAL_PREFIX: &str = "local:";

/// The key-encryption key a setting names: a KMS key (id, ARN, alias name or alias ARN), or
/// `local:<base64 of 32 bytes>`, a stand-in for the local emulators.
pub enum SealingKey {
    Kms { key_id: String },
    Local(LocalKey),
}

/// A 256-bit stand-in key-encryption key, held in the process. Never printed.
#[derive(Clone)]
pub struct LocalKey(Zeroizing<Vec<u8>>);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealingKey::Kms { key_id } => f.debug_struct("Kms").field("key_id", key_id).finish(),
            SealingKey::Local(_) => f.write_str("Local([REDACTED])"),
        }
    }
}

/// A setting that names no usable key. Never quotes a `local:` value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidSealingKey {
    #[error("is empty: name a KMS key (id, ARN or alias), or `local:<base64>` on the local emulators")]
    Empty,
    #[error("`local:` must be followed by the base64 of 32 bytes")]
    BadLocalKey,
}

impl SealingKey {
    pub fn parse(setting: &str) -> Result<Self, InvalidSealingKey> {
        let setting = setting.trim();
        if setting.is_empty() {
            return Err(InvalidSealingKey::Empty);
        }
        let Some(encoded) = setting.strip_prefix(LOCAL_PREFIX) else {
            return Ok(SealingKey::Kms { key_id: setting.to_owned() });
        };
        let key = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| InvalidSealingKey::BadLocalKey)?);
        if key.len() != DATA_KEY_LEN {
            return Err(InvalidSealingKey::BadLocalKey);
        }
        Ok(SealingKey::Local(LocalKey(key)))
    }
}

/// Which kind of key-encryption key sealed a value; stored beside it, so that a value is
/// never handed to the wrong kind of key (a local value read by a deployed function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Kms,
    Local,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Kms => "kms",
            KeyKind::Local => "local",
        })
    }
}

/// A fresh data key: to encrypt with, and encrypted, to store.
pub(super) struct DataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub encrypted: Vec<u8>,
}

/// The key-encryption key in use.
pub(super) enum KeyEncryptionKey {
    Kms { client: aws_sdk_kms::Client, key_id: String },
    Local(LocalKey),
}

impl KeyEncryptionKey {
    pub fn kind(&self) -> KeyKind {
        match self {
            KeyEncryptionKey::Kms { .. } => KeyKind::Kms,
            KeyEncryptionKey::Local(_) => KeyKind::Local,
        }
    }

    /// A new 256-bit data key: KMS `GenerateDataKey`, or random bytes wrapped by the local key.
    pub async fn new_data_key(&self, context: &SealContext<'_>) -> Result<DataKey, SealError> {
        match self {
            KeyEncryptionKey::Kms { client, key_id } => {
                let operation = "GenerateDataKey";
                let answer = client
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(Some(encryption_context(context)))
                    .send()
                    .await
                    .map_err(|err| SealError::Kms { operation, source: Box::new(err) })?;
                let plaintext = answer.plaintext.ok_or(SealError::KmsIncomplete { operation, missing: "a key" })?;
                let encrypted = answer
                    .ciphertext_blob
                    .ok_or(SealError::KmsIncomplete { operation, missing: "the encrypted key" })?;
                Ok(DataKey { plaintext: Zeroizing::new(plaintext.into_inner()), encrypted: encrypted.into_inner() })
            }
            KeyEncryptionKey::Local(LocalKey(key)) => {
                let mut plaintext = Zeroizing::new(vec![0_u8; DATA_KEY_LEN]);
                rand::fill(&mut plaintext[..]);
                let mut nonce = [0_u8; NONCE_LEN];
                rand::fill(&mut nonce[..]);
                // Stored as nonce then ciphertext: one field, like KMS's opaque blob.
                let mut encrypted = nonce.to_vec();
                encrypted.extend(aead_seal(key, &nonce, &plaintext, &context.associated_data())?);
                Ok(DataKey { plaintext, encrypted })
            }
        }
    }

    /// The plaintext of a data key [`Self::new_data_key`] made with this key and `context`.
    pub async fn open_data_key(
        &self,
        encrypted: &[u8],
        context: &SealContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match self {
            KeyEncryptionKey::Kms { client, key_id } => {
                let operation = "Decrypt";
                let answer = client
                    .decrypt()
                    .key_id(key_id)
                    .ciphertext_blob(Blob::new(encrypted))
                    .set_encryption_context(Some(encryption_context(context)))
                    .send()
                    .await
                    .map_err(|err| match err.as_service_error() {
                        // The blob or its context is not what this key sealed: not worth retrying.
                        Some(service) if service.is_invalid_ciphertext_exception() => SealError::Unopenable,
                        _ => SealError::Kms { operation, source: Box::new(err) },
                    })?;
                let plaintext = answer.plaintext.ok_or(SealError::KmsIncomplete { operation, missing: "the key" })?;
                Ok(Zeroizing::new(plaintext.into_inner()))
            }
            KeyEncryptionKey::Local(LocalKey(key)) => {
                if encrypted.len() < NONCE_LEN {
                    return Err(SealError::Malformed("the encrypted data key is too short"));
                }
                let (nonce, ciphertext) = encrypted.split_at(NONCE_LEN);
                aead_open(key, nonce, ciphertext, &context.associated_data())
            }
        }
    }
}

/// The KMS encryption context: KMS binds it to the blob, CloudTrail logs it, and key policies
/// can require it (`kms:EncryptionContext:purpose`).
fn encryption_context(context: &SealContext<'_>) -> HashMap<String, String> {
    HashMap::from([("purpose".to_owned(), context.purpose.to_owned()), ("owner".to_owned(), context.owner.to_owned())])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_setting_names_a_kms_key_or_a_local_stand_in_and_never_echoes_a_local_key() {
        assert!(
            matches!(SealingKey::parse(" alias/chorus "), Ok(SealingKey::Kms { key_id }) if key_id == "alias/chorus")
        );
        assert!(matches!(SealingKey::parse(LOCAL_STAND_IN_KEY), Ok(SealingKey::Local(_))));
        assert_eq!(SealingKey::parse("").unwrap_err(), InvalidSealingKey::Empty);
        for bad in ["local:", "local:c2hvcnQ=", "local:not base64!"] {
            let err = SealingKey::parse(bad).unwrap_err();
            assert_eq!(err, InvalidSealingKey::BadLocalKey, "{bad}");
        }
        let local = SealingKey::parse(LOCAL_STAND_IN_KEY).unwrap();
        assert_eq!(format!("{local:?}"), "Local([REDACTED])");
    }
}
