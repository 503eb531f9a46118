//! The soak's settings: one flag each, every flag also read from an environment variable, so
//! `make soak SOAK_RUNS=50` and `infra/local/soak.sh --runs 50` both work.

use std::path::PathBuf;
use std::time::Duration;

use crate::SoakError;

/// `chorus-soak`'s flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "chorus-soak",
    about = "A chaos soak on the running local AWS stack (infra/local/soak.sh starts one): runs many \
             diamond workflows while faults are injected, then checks that every run ended, each \
             step's result was committed once and every run was notified exactly once"
)]
pub struct SoakArgs {
    /// Runs to submit.
    #[arg(long, env = "SOAK_RUNS", default_value_t = 200)]
    pub runs: usize,

    /// Submissions per second.
    #[arg(long, env = "SOAK_SUBMIT_RATE", default_value_t = 4.0)]
    pub submit_rate: f64,

    /// Share of runs submitted twice with the same Idempotency-Key (half of them racing).
    #[arg(long, env = "SOAK_RESUBMIT_SHARE", default_value_t = 0.1)]
    pub resubmit_share: f64,

    /// Share of runs that get a duplicate step message sent straight to the steps queue.
    #[arg(long, env = "SOAK_DUPLICATE_SHARE", default_value_t = 0.1)]
    pub duplicate_share: f64,

    /// Share of provider requests the mock fails (500, 429 with Retry-After, 529/503
    /// overloaded, slow past the attempt timeout, malformed JSON).
    #[arg(long, env = "SOAK_PROVIDER_FAULT_RATE", default_value_t = 0.2)]
    pub provider_fault_rate: f64,

    /// SIGKILL the worker's runtime process this often while runs are in flight (0s: never).
    #[arg(long, env = "SOAK_KILL_EVERY", default_value = "5s", value_parser = parse_duration)]
    pub kill_every: Duration,

    /// Start a burst of DynamoDB/SQS errors in the functions this often (0s: never).
    #[arg(long, env = "SOAK_BURST_EVERY", default_value = "20s", value_parser = parse_duration)]
    pub burst_every: Duration,

    /// How long each burst lasts.
    #[arg(long, env = "SOAK_BURST_FOR", default_value = "5s", value_parser = parse_duration)]
    pub burst_for: Duration,

    /// Share of the functions' DynamoDB/SQS requests failed during a burst. The SDK retries
    /// each failure (3 attempts), so at 0.5 about one operation in eight reaches Chorus as an
    /// error; at 0.3 only one in 40 does.
    #[arg(long, env = "SOAK_BURST_RATE", default_value_t = 0.5)]
    pub burst_rate: f64,

    /// Every run must have ended this long after the soak started.
    #[arg(long, env = "SOAK_DEADLINE", default_value = "15m", value_parser = parse_duration)]
    pub deadline: Duration,

    /// After the last run ended (with faults off), how long to wait for missing notifications
    /// and listen for extra ones.
    #[arg(long, env = "SOAK_NOTIFY_GRACE", default_value = "45s", value_parser = parse_duration)]
    pub notify_grace: Duration,

    /// Seed for which runs are re-submitted or duplicated and which providers they use
    /// (default: random, printed in the report).
    #[arg(long, env = "SOAK_SEED")]
    pub seed: Option<u64>,

    /// The intake function's base URL.
    #[arg(long, env = "CHORUS_URL", default_value = "http://127.0.0.1:9000/lambda-url/intake")]
    pub api_url: String,

    /// The mock provider server the functions call.
    #[arg(long, env = "CHORUS_MOCK_URL", default_value = "http://127.0.0.1:8090")]
    pub mock_url: String,

    /// The AWS chaos rate file the functions read (`chorus::adapters::chaos`); `chorus local
    /// up` must have been started with the same CHORUS_AWS_CHAOS_FILE.
    #[arg(long, env = "CHORUS_AWS_CHAOS_FILE")]
    pub chaos_file: Option<PathBuf>,

    /// Where the functions log: `cargo lambda watch`'s `lambda.log` and the supervisor's
    /// `<function>.log` for runtimes it replaced. Injected AWS errors are counted in every
    /// `*.log` there.
    #[arg(long, env = "SOAK_FUNCTION_LOGS", default_value = ".chorus/local")]
    pub function_logs: PathBuf,

    /// The DynamoDB table, where the soak registers a tenant of its own.
    #[arg(long, env = "CHORUS_TABLE", default_value = "chorus-table")]
    pub table: String,

    /// The steps queue's name, for duplicate step messages.
    #[arg(long, env = "SOAK_STEPS_QUEUE", default_value = "chorus-steps-queue")]
    pub steps_queue: String,

    /// The repository whose `chorus local up` runs the stack (its state file names the
    /// `cargo lambda watch` whose worker is killed).
    #[arg(long, env = "SOAK_REPO", default_value = ".")]
    pub repo: PathBuf,

    /// The function whose runtime process is killed.
    #[arg(long, env = "SOAK_KILL_FUNCTION", default_value = "worker")]
    pub kill_function: String,

    /// Write what the soak saw of each run that broke a promise (its view, history and
    /// notifications) here, one JSON file per run.
    #[arg(long, env = "SOAK_EVIDENCE_DIR")]
    pub evidence_dir: Option<PathBuf>,

    /// Also write the report (a Markdown table) to this file.
    #[arg(long, env = "SOAK_REPORT")]
    pub report: Option<PathBuf>,
}

impl SoakArgs {
    /// Refuses settings that cannot mean what they say.
    pub fn check(&self) -> Result<(), SoakError> {
        let share = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(SoakError::Settings(format!("{name} must be from 0 to 1, not {value}")))
            }
        };
        share("--resubmit-share", self.resubmit_share)?;
        share("--duplicate-share", self.duplicate_share)?;
        share("--provider-fault-rate", self.provider_fault_rate)?;
        share("--burst-rate", self.burst_rate)?;
        if self.runs == 0 {
            return Err(SoakError::Settings("--runs must be at least 1".to_owned()));
        }
        if !(self.submit_rate > 0.0 && self.submit_rate.is_finite()) {
            return Err(SoakError::Settings("--submit-rate must be a positive number".to_owned()));
        }
        if self.bursts() && self.chaos_file.is_none() {
            return Err(SoakError::Settings(
                "AWS error bursts need CHORUS_AWS_CHAOS_FILE (or --chaos-file): the file the functions of \
                 `chorus local up` read their error rate from (infra/local/soak.sh sets it); \
                 --burst-rate 0 runs without bursts"
                    .to_owned(),
            ));
        }
        if self.bursts() && self.burst_for >= self.burst_every {
            return Err(SoakError::Settings("--burst-for must be shorter than --burst-every".to_owned()));
        }
        Ok(())
    }

    /// Whether AWS error bursts are on.
    pub fn bursts(&self) -> bool {
        self.burst_rate > 0.0 && !self.burst_every.is_zero() && !self.burst_for.is_zero()
    }
}

/// `5s`, `1m30s`, `15m`, `500ms` (jiff's friendly format) or ISO 8601 (`PT5S`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text.parse().map_err(|err| format!("{text:?} is not a duration: {err}"))?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn bursts_without_the_chaos_file_are_refused_and_can_be_turned_off() {
        let args = SoakArgs::try_parse_from(["chorus-soak", "--runs", "3"]).unwrap();
        if args.chaos_file.is_none() {
            assert!(
                matches!(args.check(), Err(SoakError::Settings(message)) if message.contains("CHORUS_AWS_CHAOS_FILE"))
            );
        }
        let args = SoakArgs::try_parse_from(["chorus-soak", "--burst-rate", "0"]).unwrap();
        assert!(args.check().is_ok());
        let args = SoakArgs::try_parse_from(["chorus-soak", "--burst-rate", "0", "--resubmit-share", "2"]).unwrap();
        assert!(args.check().is_err());
    }
}
