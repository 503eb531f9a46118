//! The service on a local AWS stack, behind `chorus local`. `up` starts the emulator
//! (`infra/local/emulator.sh`), creates the template's resources in it, serves the functions with
//! `cargo lambda watch` and bridges the template's SQS and Schedule events to them; `down` stops
//! all of it; `bridge` is the bridge on its own (what `up` runs in the background, with the
//! `supervisor` that replaces a function's runtime process when it dies); `pids` lists a
//! function's runtime processes, for tests and chaos harnesses ([`runtimes::function_pids`] is
//! the same as a library call).
//!
//! [`run`] is meant to be called by the `chorus` binary: `up` re-runs the current executable with
//! the same arguments (to inherit the emulator's environment) and starts the bridge as
//! `<current executable> local --repo <repo> bridge`, so the binary must mount [`LocalArgs`] as
//! its `local` subcommand. The commands' steps are in `stack`; `tests/tests/local_bridge.rs`
//! drives [`bridge`], [`resources`] and [`template`] directly against an emulator.

pub mod bridge;
pub mod inflight;
pub mod processes;
pub mod resources;
pub mod runtimes;
pub mod seed;
mod stack;
pub mod supervisor;
pub mod template;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use thiserror::Error;

use self::bridge::BridgeError;
use self::processes::ProcessError;
use self::resources::ResourceError;
use self::seed::SeedError;
use self::template::TemplateError;

/// The template, relative to the repository root.
pub const TEMPLATE: &str = "infra/template.yaml";
/// The contract's resource name prefix.
pub const DEFAULT_PREFIX: &str = "chorus";

/// `chorus local`'s arguments and subcommands, for the binary to mount as its `local` command.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// The repository root (default: the workspace around the current directory).
    #[arg(long, global = true, value_name = "DIR")]
    repo: Option<PathBuf>,

    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LocalCommand {
    /// Start the emulator, create the resources, serve the functions and bridge their events.
    Up(UpArgs),
    /// Stop what `up` started (safe to run twice).
    Down,
    /// Feed the template's SQS queues and schedules to the functions (until Ctrl-C).
    Bridge(BridgeArgs),
    /// Print the PIDs of a function's runtime processes under `up`, one per line (none, and
    /// exit status 1, while it is not running): for tests and chaos harnesses, e.g.
    /// `kill -9 $(chorus local pids worker)`.
    Pids(PidsArgs),
}

#[derive(Debug, clap::Args)]
struct PidsArgs {
    /// The function (its binary: intake, worker, webhook, notifier).
    function: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Emulator {
    /// LocalStack (SQS, S3) + DynamoDB Local.
    Localstack,
    /// moto server (SQS, S3, DynamoDB).
    Moto,
}

impl Emulator {
    fn name(self) -> &'static str {
        match self {
            Emulator::Localstack => "localstack",
            Emulator::Moto => "moto",
        }
    }
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// The emulator `infra/local/emulator.sh` starts (ignored when AWS_ENDPOINT_URL is set:
    /// then that endpoint is used).
    #[arg(long, value_enum, default_value = "localstack")]
    emulator: Emulator,

    /// Replace every queue's visibility timeout (seconds): how long a failed message waits
    /// before its next try. The template's 360-720 s suit AWS; a few seconds let you watch a
    /// failing message reach its dead-letter queue.
    #[arg(long, value_name = "SECS")]
    visibility_timeout: Option<u32>,

    /// Port of `cargo lambda watch` (the Invoke API and /lambda-url/<function>/).
    #[arg(long, default_value_t = 9000)]
    lambda_port: u16,

    /// How long to wait for the intake function to answer /healthz (the first start compiles
    /// the functions).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    wait_timeout: u64,

    #[command(flatten)]
    bridge: BridgeOptions,
}

#[derive(Debug, Clone, clap::Args)]
struct BridgeOptions {
    /// Resource names are <PREFIX>-<kebab-case logical id>.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,

    /// Pollers per queue at most (each with one batch in flight).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

#[derive(Debug, clap::Args)]
struct BridgeArgs {
    /// The Lambda Invoke API to call, e.g. `cargo lambda watch` at http://127.0.0.1:9000.
    #[arg(long, env = "AWS_ENDPOINT_URL_LAMBDA", value_name = "URL")]
    lambda_endpoint: Option<String>,

    /// Also supervise the functions of the stack `up` started (from its state file): replace a
    /// runtime process that dies, fail the invocation it held at once, kill a runtime that hangs
    /// past its function's Timeout. `up` starts the bridge with it.
    #[arg(long)]
    supervise: bool,

    #[command(flatten)]
    options: BridgeOptions,
}

/// Why a `chorus local` command failed.
#[derive(Debug, Error)]
pub enum LocalError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Resources(#[from] ResourceError),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error("the local stack already runs (see {}); `chorus local down` first", state.display())]
    AlreadyRunning { state: PathBuf },
    #[error("cannot find the current directory or executable")]
    Environment(#[source] std::io::Error),
    #[error("the emulator's environment did not reach the re-started `chorus local up`")]
    EnvironmentLost,
    #[error("cannot build an HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("`bridge --supervise` needs the stack `chorus local up` started; none runs (no {} with cargo lambda watch)", state.display())]
    NothingToSupervise { state: PathBuf },
    #[error("cargo lambda watch exited; last lines of {}:\n{tail}", log.display())]
    LambdaExited { log: PathBuf, tail: String },
    #[error("{url} did not answer 200 within {waited:?} (last: {last}); last lines of {}:\n{tail}", log.display())]
    NotHealthy { url: String, waited: Duration, last: String, log: PathBuf, tail: String },
}

/// Runs a `chorus local` command. `bridge` runs until `shutdown` resolves (the binary's Ctrl-C
/// and SIGTERM handling); `up` and `down` return when done.
pub async fn run(args: LocalArgs, shutdown: impl Future<Output = ()>) -> Result<ExitCode, LocalError> {
    let repo = match args.repo {
        Some(repo) => repo,
        None => processes::find_repo_root(&std::env::current_dir().map_err(LocalError::Environment)?)?,
    };
    match args.command {
        LocalCommand::Up(up_args) => stack::up(&repo, &up_args).await,
        LocalCommand::Down => stack::down(&repo).await,
        LocalCommand::Bridge(bridge_args) => stack::run_bridge(&repo, bridge_args, shutdown).await,
        LocalCommand::Pids(pids_args) => Ok(stack::print_pids(&repo, &pids_args.function)),
    }
}
