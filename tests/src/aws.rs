//! The local AWS stack the test command started (`make test` runs `infra/local/emulator.sh`
//! and `chorus local up`): SDK configuration and resource names from the environment. Tests
//! that need it are `#[ignore]`d, so a plain `cargo test` lists them as ignored; `make test`
//! runs them with the stack up. Run without it, [`emulator`] fails the test: a test that
//! needs the stack never passes without having used it.

use aws_config::SdkConfig;

/// Where the emulator's resources are.
pub struct Emulator {
    pub config: SdkConfig,
    pub table: String,
    pub bucket: String,
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
    }
}
