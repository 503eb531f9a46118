//! The library half of the `chorus` command: what the binary and the integration tests share.
//! `local` is the local AWS stack (template reading, resources, the SQS → Lambda bridge), which
//! `tests/tests/local_bridge.rs` drives directly against an emulator.

pub mod local;
pub mod mock;

pub use chorus::error::error_chain;
use secrecy::SecretString;

/// A new random API key (`ck_` + 32 hex digits), from the operating system's CSPRNG.
pub fn generate_api_key() -> SecretString {
    let mut bytes = [0_u8; 16];
    rand::fill(&mut bytes[..]);
    SecretString::from(format!("ck_{}", hex::encode(bytes)))
}

/// Resolves on Ctrl-C, or SIGTERM on Unix (what `docker stop` and process managers send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
