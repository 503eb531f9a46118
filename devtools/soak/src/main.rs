//! `chorus-soak`: the chaos soak against a running local stack (see the library's docs and
//! `infra/local/soak.sh`, which `make soak` runs). Prints the report; exits 1 when a promise
//! broke, 2 when the soak could not run.

use std::process::ExitCode;

use chorus::error::error_chain;
use chorus_soak::{SoakArgs, run};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = SoakArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    chorus::tls::install_crypto_provider();
    match run(&args).await {
        Ok(report) => {
            let text = report.markdown();
            println!("{text}");
            if let Some(path) = &args.report
                && let Err(err) = std::fs::write(path, &text)
            {
                eprintln!("chorus-soak: cannot write {}: {err}", path.display());
            }
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(err) => {
            eprintln!("chorus-soak: {}", error_chain(&err));
            ExitCode::from(2)
        }
    }
}
