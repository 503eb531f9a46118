//! The local AWS stack the test command started (`make test` runs `infra/local/emulator.sh`
//! and `chorus local up`): SDK configuration and resource names from the environment. Tests
//! that need it are `#[ignore]`d, so a plain `cargo test` lists them as ignored; `make test`
//! runs them with the stack up. Run without it, [`emulator`] fails the test: a test that
//! needs the stack never passes without having used it.

use std::sync::Arc;

use aws_config::SdkConfig;
use chorus::adapters::DynamoSigningSecrets;
use chorus::adapters::sealing::{LOCAL_STAND_IN_KEY, Sealer, SealingKey};

/// Where the emulator's resources are.
pub struct Emulator {
    pub config: SdkConfig,
    pub table: String,
    pub bucket: String,
    /// What seals tenants' signing secrets, as the notifier opens them:
    /// `CHORUS_TENANT_SECRETS_KEY`, by default the stand-in key `chorus local up` gives the
    /// functions (the emulators run no KMS).
    pub tenant_secrets_key: String,
}

impl Emulator {
    /// Tenants' signing secrets in the table, sealed as the notifier expects: where tests
    /// register the tenants they use.
    pub fn signing_secrets(&self) -> DynamoSigningSecrets {
        let key = SealingKey::parse(&self.tenant_secrets_key).expect("CHORUS_TENANT_SECRETS_KEY names a key");
        let sealer = Arc::new(Sealer::new(key, &self.config));
        DynamoSigningSecrets::new(aws_sdk_dynamodb::Client::new(&self.config), &self.table, sealer)
    }
}

/// The emulator from the environment; fails the test, saying how to start one, when there is
/// none.
pub async fn emulator() -> Emulator {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "this test needs the local AWS stack, and AWS_ENDPOINT_URL is not set. `make test` starts \
         the stack and runs it; by hand: `chorus local up`, export the environment it prints, \
         then run the ignored tests (cargo test -- --ignored, or cargo nextest run --run-ignored only)"
    );
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    Emulator {
        config: chorus::startup::sdk_config().await,
        table: var("CHORUS_TABLE", "chorus-table"),
        bucket: var("CHORUS_BUCKET", "chorus-bucket"),
        tenant_secrets_key: var("CHORUS_TENANT_SECRETS_KEY", LOCAL_STAND_IN_KEY),
    }
}
