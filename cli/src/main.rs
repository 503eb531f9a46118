//! The `chorus` command. `chorus dev` runs the whole service (HTTP API, worker, notifier)
//! in one process over the memory adapters and the offline `local` models; `chorus validate`
//! checks a workflow file the way `POST /v1/runs` would, without a server; `chorus local` runs
//! the Lambda functions on a local AWS emulator (`chorus_local_aws` does the work);
//! `chorus mock-providers` stands in for every hosted AI provider (`chorus_mock_providers`).

mod dev;
mod mock_providers;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use chorus::error::error_chain;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "chorus", version, about = "Multi-step, multi-provider AI workflows")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API, worker and notifier in this process: no AWS, no provider keys.
    // Boxed: its options (two parsed signing secrets among them) dwarf the other commands'.
    Dev(Box<dev::DevArgs>),
    /// Check a workflow file (a `POST /v1/runs` body or a bare workflow) and list every problem.
    Validate(validate::ValidateArgs),
    /// The Lambda functions on a local AWS emulator: `up`, `down`, and the SQS → Lambda `bridge`.
    #[cfg(feature = "aws")]
    Local(chorus_local_aws::LocalArgs),
    /// The Lambda functions on a local AWS emulator (needs a build with the `aws` feature:
    /// `make build`, or `cargo build -p chorus-cli --features aws`).
    #[cfg(not(feature = "aws"))]
    #[command(disable_help_flag = true)]
    Local {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Serve mock OpenAI, Anthropic, Gemini, Cohere, Hugging Face, Replicate and Bedrock APIs
    /// with deterministic answers and faults on demand.
    MockProviders(mock_providers::MockArgs),
}

/// Why a command could not do its job (as opposed to finding problems it reports).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Dev(#[from] dev::DevError),
    #[error(transparent)]
    Validate(#[from] validate::ValidateError),
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Local(#[from] chorus_local_aws::LocalError),
    #[cfg(not(feature = "aws"))]
    #[error(
        "this chorus was built without AWS support, which `chorus local` needs: \
         run `make build` (or `cargo build -p chorus-cli --features aws`) and use target/debug/chorus"
    )]
    NoAws,
    #[error("the mock provider server failed")]
    Mock(#[from] std::io::Error),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Dev(args) => dev::run(*args).await.map_err(CliError::from),
        Command::Validate(args) => validate::run(&args).await.map_err(CliError::from),
        #[cfg(feature = "aws")]
        Command::Local(args) => chorus_local_aws::run(args, shutdown_signal()).await.map_err(CliError::from),
        #[cfg(not(feature = "aws"))]
        Command::Local { .. } => Err(CliError::NoAws),
        Command::MockProviders(args) => mock_providers::run(args).await.map_err(CliError::from),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Human-readable logs on stderr. `CHORUS_LOG` wins over `RUST_LOG` so the service can be
/// tuned without touching the log level of other Rust tools in the same shell.
fn init_tracing() {
    let filter = ["CHORUS_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|value| !value.trim().is_empty()))
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes help a person at a terminal; in a file or a CI log they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves on Ctrl-C, or SIGTERM on Unix (what `docker stop` and process managers send): when
/// `dev`, `mock-providers` and `local bridge` stop serving.
async fn shutdown_signal() {
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
