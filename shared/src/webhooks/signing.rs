//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): signing the run
//! notifications we send and verifying the webhooks providers send us about their jobs.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::digest::Key;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::{Digest, Sha256};
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id, stable across retries so receivers can deduplicate.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the send time in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// How far a message's timestamp may be from now before it is refused as a replay.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const SECRET_PREFIX: &str = "whsec_";
const SECRET_LEN: usize = 32;
const SIGNATURE_VERSION: &str = "v1";

/// A Standard Webhooks signing secret. Never printed: `Debug` redacts it.
#[derive(Clone)]
pub struct WebhookSecret {
    key: SecretSlice<u8>,
    /// The keyed HMAC state, derived once so signing cannot fail and skips re-deriving it.
    mac: HmacSha256,
}

/// A secret string that is not `whsec_` followed by base64.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidSecret {
    #[error("webhook secret must start with `whsec_`")]
    MissingPrefix,
    #[error("webhook secret is not valid base64 after `whsec_`")]
    NotBase64,
    #[error("webhook secret is empty")]
    Empty,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`; padding is optional since some issuers drop it.
    pub fn parse(raw: &str) -> Result<Self, InvalidSecret> {
        let encoded = raw.trim().strip_prefix(SECRET_PREFIX).ok_or(InvalidSecret::MissingPrefix)?;
        let key = STANDARD_PAD_INDIFFERENT.decode(encoded).map_err(|_| InvalidSecret::NotBase64)?;
        if key.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        Ok(Self::from_key(key))
    }

    /// A fresh random 32-byte secret.
    pub fn generate() -> Self {
        // rand's thread RNG is a CSPRNG seeded from the OS, as a signing key needs.
        let mut key = vec![0_u8; SECRET_LEN];
        rand::fill(&mut key[..]);
        Self::from_key(key)
    }

    /// The secret in its shareable `whsec_<base64>` form.
    pub fn to_whsec(&self) -> SecretString {
        SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(self.key.expose_secret())))
    }

    fn from_key(key: Vec<u8>) -> Self {
        Self { mac: keyed_mac(&key), key: SecretSlice::from(key) }
    }

    /// The MAC over `{id}.{timestamp}.{body}`, ready to finalize or verify.
    fn mac_for(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// HMAC-SHA256 keyed with `key` of any length.
fn keyed_mac(key: &[u8]) -> HmacSha256 {
    // `new_from_slice` never fails for HMAC but is typed fallible; preparing the block-sized
    // key ourselves as RFC 2104 does (hash if longer than a block, then zero-pad) lets us use
    // the infallible constructor instead of unwrapping.
    let mut block = Key::<HmacSha256>::default();
    if key.len() > block.len() {
        let digest = Sha256::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    HmacSha256::new(&block)
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// Signs a message: `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp_secs}.{body}">`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = secret.mac_for(msg_id, &timestamp_secs.to_string(), body).finalize().into_bytes();
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
}

/// Signs a message with each secret, in order: the `webhook-signature` value during a key
/// rotation, one space-separated `v1,<base64>` per secret, so a receiver that knows either
/// the new or the old secret accepts the message.
pub fn sign_with_each(secrets: &[WebhookSecret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let signatures: Vec<String> = secrets.iter().map(|secret| sign(secret, msg_id, timestamp_secs, body)).collect();
    signatures.join(" ")
}

/// The headers of a signed webhook POST: id, timestamp, signature and JSON content type.
pub fn signed_headers(secret: &WebhookSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> Vec<(String, String)> {
    signed_headers_with_each(std::slice::from_ref(secret), msg_id, timestamp_secs, body)
}

/// [`signed_headers`] with one signature per secret (see [`sign_with_each`]).
pub fn signed_headers_with_each(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        (HEADER_ID.to_owned(), msg_id.to_owned()),
        (HEADER_TIMESTAMP.to_owned(), timestamp_secs.to_string()),
        (HEADER_SIGNATURE.to_owned(), sign_with_each(secrets, msg_id, timestamp_secs, body)),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

/// The three Standard Webhooks header values of a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`.
    pub id: &'a str,
    /// `webhook-timestamp`, Unix seconds.
    pub timestamp: &'a str,
    /// `webhook-signature`: space-separated `v1,<base64>` entries (several during key rotation).
    pub signature: &'a str,
}

/// Why a received webhook was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("webhook timestamp is not a whole number of seconds")]
    InvalidTimestamp,
    #[error("webhook timestamp is too old")]
    TooOld,
    #[error("webhook timestamp is in the future")]
    TooNew,
    #[error("no webhook signature matches")]
    NoMatchingSignature,
}

/// Checks a received webhook: the timestamp within `tolerance` of `now` (against replays)
/// and at least one `v1` signature matching, compared in constant time.
pub fn verify(
    secret: &WebhookSecret,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    now: jiff::Timestamp,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let timestamp: i64 = headers.timestamp.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now.as_second().saturating_sub(timestamp);
    if age > tolerance {
        return Err(VerifyError::TooOld);
    }
    if age < tolerance.saturating_neg() {
        return Err(VerifyError::TooNew);
    }

    let mac = secret.mac_for(headers.id, headers.timestamp.trim(), body);
    let matches = headers
        .signature
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        // Other versions (e.g. `v1a`, asymmetric) are not ours to check; skip them.
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        .any(|tag| mac.clone().verify_slice(&tag).is_ok());
    if matches { Ok(()) } else { Err(VerifyError::NoMatchingSignature) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // The test vector shared by the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    fn check(secret: &WebhookSecret, signature: &str, body: &[u8], now: i64) -> Result<(), VerifyError> {
        let timestamp = TIMESTAMP.to_string();
        let headers = WebhookHeaders { id: MSG_ID, timestamp: &timestamp, signature };
        verify(secret, &headers, body, at(now), DEFAULT_TOLERANCE)
    }

    #[test]
    fn signs_the_reference_vector() {
        assert_eq!(sign(&secret(), MSG_ID, TIMESTAMP, PAYLOAD), EXPECTED);
    }

    #[test]
    fn verifies_the_reference_vector() {
        assert_eq!(check(&secret(), EXPECTED, PAYLOAD, TIMESTAMP), Ok(()));
    }

    #[test]
    fn tampered_body_fails() {
        let result = check(&secret(), EXPECTED, br#"{"test": 2432232315}"#, TIMESTAMP);
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn wrong_secret_fails() {
        let other = WebhookSecret::generate();
        assert_eq!(check(&other, EXPECTED, PAYLOAD, TIMESTAMP), Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let five_minutes = 5 * 60;
        assert_eq!(check(&secret(), EXPECTED, PAYLOAD, TIMESTAMP + five_minutes), Ok(()));
        assert_eq!(check(&secret(), EXPECTED, PAYLOAD, TIMESTAMP + five_minutes + 1), Err(VerifyError::TooOld));
        assert_eq!(check(&secret(), EXPECTED, PAYLOAD, TIMESTAMP - five_minutes - 1), Err(VerifyError::TooNew));
    }

    #[test]
    fn one_matching_signature_among_several_passes() {
        let header = format!("v1,Zm9vYmFy v1a,{} not-a-signature {EXPECTED} v1,%%%", &EXPECTED[3..]);
        assert_eq!(check(&secret(), &header, PAYLOAD, TIMESTAMP), Ok(()));
    }

    #[test]
    fn only_v1_entries_count() {
        let header = format!("v2,{}", &EXPECTED[3..]);
        assert_eq!(check(&secret(), &header, PAYLOAD, TIMESTAMP), Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn garbage_timestamp_fails() {
        let headers = WebhookHeaders { id: MSG_ID, timestamp: "yesterday", signature: EXPECTED };
        let result = verify(&secret(), &headers, PAYLOAD, at(TIMESTAMP), DEFAULT_TOLERANCE);
        assert_eq!(result, Err(VerifyError::InvalidTimestamp));
    }

    #[test]
    fn signed_headers_verify() {
        let secret = WebhookSecret::generate();
        let pairs = signed_headers(&secret, "msg_1", TIMESTAMP, b"{}");
        let get = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("content-type"), "application/json");
        let headers =
            WebhookHeaders { id: get(HEADER_ID), timestamp: get(HEADER_TIMESTAMP), signature: get(HEADER_SIGNATURE) };
        assert_eq!(verify(&secret, &headers, b"{}", at(TIMESTAMP), DEFAULT_TOLERANCE), Ok(()));
    }

    #[test]
    fn two_secrets_give_two_signatures_each_verifiable_with_its_own_secret() {
        let (new, old) = (WebhookSecret::generate(), secret());
        let pairs = signed_headers_with_each(&[new.clone(), old.clone()], MSG_ID, TIMESTAMP, PAYLOAD);
        let header = pairs.iter().find(|(name, _)| name == HEADER_SIGNATURE).map(|(_, v)| v.as_str()).unwrap();
        let signatures: Vec<&str> = header.split(' ').collect();
        assert_eq!(signatures.len(), 2, "{header}");
        assert_eq!(signatures[1], EXPECTED, "newest first, then the previous secret's");
        for (secret, signature) in [(&new, signatures[0]), (&old, signatures[1])] {
            assert_eq!(check(secret, signature, PAYLOAD, TIMESTAMP), Ok(()));
            assert_eq!(check(secret, header, PAYLOAD, TIMESTAMP), Ok(()), "the whole header verifies too");
        }
        assert_eq!(check(&new, signatures[1], PAYLOAD, TIMESTAMP), Err(VerifyError::NoMatchingSignature));
        assert_eq!(check(&old, signatures[0], PAYLOAD, TIMESTAMP), Err(VerifyError::NoMatchingSignature));
        let stranger = WebhookSecret::generate();
        assert_eq!(check(&stranger, header, PAYLOAD, TIMESTAMP), Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn one_secret_gives_one_signature() {
        assert_eq!(sign_with_each(&[secret()], MSG_ID, TIMESTAMP, PAYLOAD), EXPECTED);
    }

    #[test]
    fn secret_round_trips_and_never_prints() {
        let secret = WebhookSecret::generate();
        let whsec = secret.to_whsec();
        assert!(whsec.expose_secret().starts_with("whsec_"));
        let again = WebhookSecret::parse(whsec.expose_secret()).unwrap();
        assert_eq!(sign(&again, "m", 1, b"x"), sign(&secret, "m", 1, b"x"));
        assert_eq!(format!("{secret:?}"), "WebhookSecret([REDACTED])");
        assert_eq!(self::secret().to_whsec().expose_secret(), SECRET);
    }

    #[test]
    fn keys_of_any_length_match_the_hmac_crate() {
        for len in [1, 24, 32, 63, 64, 65, 100, 200] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ours = keyed_mac(&key);
            let mut reference = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
            ours.update(b"message");
            reference.update(b"message");
            assert_eq!(ours.finalize().into_bytes(), reference.finalize().into_bytes(), "key length {len}");
        }
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(), InvalidSecret::MissingPrefix);
        assert_eq!(WebhookSecret::parse("whsec_not base64!").unwrap_err(), InvalidSecret::NotBase64);
        assert_eq!(WebhookSecret::parse("whsec_").unwrap_err(), InvalidSecret::Empty);
    }
}
