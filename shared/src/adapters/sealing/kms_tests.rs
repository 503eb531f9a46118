//! The KMS side of the sealer against a fake KMS endpoint (an HTTP connector answering as
//! KMS does), since the local emulators run no KMS: which requests are made, with what
//! encryption context, and what is stored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// The data key the fake hands out, and what it says the key encrypts to.
const DATA_KEY: [u8; 32] = [7; 32];
const WRAPPED: &[u8] = b"data key wrapped by the fake KMS";

/// Answers `GenerateDataKey` and `Decrypt` as KMS would for one key, recording each request
/// as (operation, JSON body).
#[derive(Debug, Clone, Default)]
struct FakeKms {
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl HttpConnector for FakeKms {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request.headers().get("x-amz-target").unwrap_or_default().to_owned();
        let body: Value = serde_json::from_slice(request.body().bytes().unwrap_or_default()).unwrap();
        self.requests.lock().unwrap().push((operation.clone(), body.clone()));
        let (status, answer) = match operation.as_str() {
            "TrentService.GenerateDataKey" => (
                200,
                json!({"KeyId": KEY_ARN, "Plaintext": STANDARD.encode(DATA_KEY), "CiphertextBlob": STANDARD.encode(WRAPPED)}),
            ),
            // KMS checks the blob and the encryption context it was made with.
            "TrentService.Decrypt"
                if body["CiphertextBlob"] == STANDARD.encode(WRAPPED)
                    && body["EncryptionContext"]["owner"] == "acme" =>
            {
                (200, json!({"KeyId": KEY_ARN, "Plaintext": STANDARD.encode(DATA_KEY)}))
            }
            "TrentService.Decrypt" => (400, json!({"__type": "InvalidCiphertextException", "message": "nope"})),
            _ => (400, json!({"__type": "UnsupportedOperationException", "message": operation})),
        };
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(answer.to_string()));
        response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

fn kms_sealer(kms: &FakeKms) -> Sealer {
    let connector = SharedHttpConnector::new(kms.clone());
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, None, "test")))
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .build();
    Sealer::new(SealingKey::parse(KEY_ARN).unwrap(), &config)
}

fn context(owner: &str) -> SealContext<'_> {
    SealContext { purpose: "tenant-webhook-secrets", owner }
}

#[tokio::test]
async fn kms_makes_the_data_key_under_the_context_and_only_its_encrypted_form_is_kept() {
    let kms = FakeKms::default();
    let sealer = kms_sealer(&kms);
    let sealed = sealer.seal(b"whsec_secret", &context("acme")).await.unwrap();
    assert_eq!(sealed.sealed_with, KeyKind::Kms);
    assert_eq!(sealed.data_key, WRAPPED, "what KMS encrypted, never the data key");
    assert_eq!(&sealer.open(&sealed, &context("acme")).await.unwrap()[..], b"whsec_secret");

    let requests = kms.requests.lock().unwrap().clone();
    let operations: Vec<&str> = requests.iter().map(|(operation, _)| operation.as_str()).collect();
    assert_eq!(operations, ["TrentService.GenerateDataKey", "TrentService.Decrypt"]);
    let context = json!({"purpose": "tenant-webhook-secrets", "owner": "acme"});
    let generate = &requests[0].1;
    assert_eq!((&generate["KeyId"], &generate["KeySpec"]), (&json!(KEY_ARN), &json!("AES_256")));
    assert_eq!(generate["EncryptionContext"], context);
    let decrypt = &requests[1].1;
    assert_eq!((&decrypt["KeyId"], &decrypt["EncryptionContext"]), (&json!(KEY_ARN), &context));
    assert!(!requests.iter().any(|(_, body)| body.to_string().contains("whsec_")), "no secret goes to KMS");
}

#[tokio::test]
async fn a_blob_kms_refuses_does_not_open_and_is_not_worth_retrying() {
    let kms = FakeKms::default();
    let sealer = kms_sealer(&kms);
    let sealed = sealer.seal(b"whsec_secret", &context("acme")).await.unwrap();
    // Copied onto another tenant: KMS refuses the context.
    let err = sealer.open(&sealed, &context("globex")).await.unwrap_err();
    assert!(matches!(err, SealError::Unopenable), "{err:?}");
    assert!(!err.is_transient());
}
