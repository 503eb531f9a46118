//! The AWS emulator the test command started (`make test` runs `infra/local/emulator.sh`
//! and creates the template's resources): SDK configuration and resource names from the
//! environment. Without an emulator, AWS tests skip, unless `CHORUS_REQUIRE_EMULATOR=1`
//! (as in `make test`) makes that a failure.

use aws_config::SdkConfig;

/// Where the emulator's resources are.
pub struct Emulator {
    pub config: SdkConfig,
    pub table: String,
    pub bucket: String,
}

/// The emulator from the environment, or `None` (after saying so) when there is none.
pub async fn emulator() -> Option<Emulator> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        assert!(
            std::env::var("CHORUS_REQUIRE_EMULATOR").as_deref() != Ok("1"),
            "CHORUS_REQUIRE_EMULATOR=1 but AWS_ENDPOINT_URL is not set"
        );
        eprintln!("skipped: no AWS emulator (AWS_ENDPOINT_URL is unset); `make test` starts one");
        return None;
    }
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    Some(Emulator {
        config: chorus::startup::sdk_config().await,
        table: var("CHORUS_TABLE", "chorus-table"),
        bucket: var("CHORUS_BUCKET", "chorus-bucket"),
    })
}
