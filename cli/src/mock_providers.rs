//! `chorus mock-providers`: serves the mock provider APIs (`chorus_mock_providers`) until Ctrl-C
//! and prints the environment that points Chorus's adapters at them.

use std::net::SocketAddr;
use std::process::ExitCode;

use chorus::webhooks::WebhookSecret;
use chorus_mock_providers::{self as mock, MockState};
use secrecy::ExposeSecret;

use crate::shutdown_signal;

#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090", env = "CHORUS_MOCK_ADDR")]
    addr: SocketAddr,

    /// The `whsec_` secret async job webhooks are signed with (Replicate's
    /// REPLICATE_WEBHOOK_SECRET on the Chorus side).
    #[arg(long, value_name = "whsec_...", default_value = mock::DEFAULT_WEBHOOK_SECRET, value_parser = WebhookSecret::parse)]
    webhook_secret: WebhookSecret,
}

pub async fn run(args: MockArgs) -> Result<ExitCode, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    let secret = args.webhook_secret.to_whsec();
    eprintln!("mock providers on http://{addr}; point Chorus at them with:\n");
    for (name, value) in mock::base_urls(&format!("http://{addr}")) {
        let value = if name == "REPLICATE_WEBHOOK_SECRET" { secret.expose_secret().to_owned() } else { value };
        println!("export {name}={value}");
    }
    eprintln!("\nfaults: a model named `fault-<kind>` ({}) always fails that way;", kinds());
    eprintln!(
        "        POST /_mock/faults/<provider> {{\"fault\": \"server-error\", \"times\": 3}} scripts the next requests;"
    );
    eprintln!(
        "        POST /_mock/faults/<provider or *> {{\"rate\": 0.2}} fails that share at random (GET /_mock/stats counts)."
    );
    let state = MockState::new(secret.expose_secret());
    axum::serve(listener, mock::app(state)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn kinds() -> String {
    mock::Fault::ALL.iter().map(|fault| fault.name()).collect::<Vec<_>>().join(", ")
}
