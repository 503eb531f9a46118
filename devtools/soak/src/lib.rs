//! The chaos soak (`make soak`, `chorus-soak`): proves from the outside, on the real local
//! AWS stack, that under faults every run ends, each step's result is committed once and
//! every client hears exactly once.
//!
//! `infra/local/soak.sh` brings up the stack (emulator, the functions under `cargo lambda
//! watch`, the bridge) with the mock providers and the AWS chaos file, then runs the binary,
//! which: registers a tenant of its own, starts a notification receiver, submits diamond
//! workflows across the mock providers (some twice with the same Idempotency-Key), and while
//! they run injects provider faults, duplicate step messages, SIGKILLs of the worker and
//! bursts of DynamoDB/SQS errors; then it checks every run's status, history and
//! notifications and prints a report. It exits non-zero on any violation.
//!
//! Modules: `args` (settings), `plan` (what to submit, from a seed), `stack` (the API and the
//! queue), `receiver` (notifications), `inject` and `pids` (the faults), `soak` (the sequence),
//! `verify` (the verdict), `report` (the table), `evidence` (what each broken run looked like).

pub mod args;
pub mod evidence;
pub mod inject;
pub mod pids;
pub mod plan;
pub mod receiver;
pub mod report;
pub mod soak;
pub mod stack;
pub mod verify;

use std::path::PathBuf;

use thiserror::Error;

pub use args::SoakArgs;
pub use report::Report;
pub use soak::run;

/// Why the soak could not run (as opposed to what it found, which is in the [`Report`]).
#[derive(Debug, Error)]
pub enum SoakError {
    #[error("{0}")]
    Settings(String),
    #[error(
        "the local stack is not there: {0} (infra/local/soak.sh starts it; by hand: `chorus local up`, then export what it prints)"
    )]
    NoStack(String),
    #[error("the mock providers: {0} (is `chorus mock-providers` running at --mock-url / CHORUS_MOCK_URL?)")]
    Mock(String),
    #[error("AWS: {0}")]
    Aws(String),
    #[error("cannot build an HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("cannot start the notification receiver")]
    Receiver(#[source] std::io::Error),
    #[error("cannot write {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a soak task failed: {0}")]
    Task(String),
}
