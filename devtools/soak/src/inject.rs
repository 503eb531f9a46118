//! The faults the soak injects while runs are in flight, each switched from the outside:
//! - provider faults: the mock fails a share of every provider's requests (its random mode);
//! - worker kills: SIGKILL of the worker's runtime process every few seconds;
//! - AWS bursts: the functions' DynamoDB/SQS error rate (the file `chorus::adapters::chaos`
//!   reads) raised for a few seconds now and then.
//!
//! Duplicate step messages are tied to each run, so `soak.rs` sends them. The loops run until
//! their stop signal and then say what they did; a burst in progress is always switched off.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chorus::adapters::chaos::INJECTED_LOG;
use chorus::error::error_chain;
use chorus_mock_providers::{ANY_PROVIDER, RandomFaults, Stats};
use tokio::sync::watch;

use crate::{SoakError, pids};

/// Sets the share of every provider's requests the mock fails (0: none), drawn from the
/// mock's default kinds: 500, 429 with Retry-After, overloaded (Anthropic's 529), slow past
/// the attempt timeout, malformed JSON.
pub async fn set_provider_faults(http: &reqwest::Client, mock_url: &str, rate: f64) -> Result<(), SoakError> {
    let url = format!("{}/_mock/faults/{ANY_PROVIDER}", mock_url.trim_end_matches('/'));
    let body = RandomFaults { rate, kinds: RandomFaults::DEFAULT_KINDS.to_vec() };
    let response = http.post(&url).json(&body).send().await;
    match response {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(SoakError::Mock(format!("POST {url} answered {}", response.status()))),
        Err(err) => Err(SoakError::Mock(format!("POST {url}: {}", error_chain(&err)))),
    }
}

/// The mock's request and fault counts so far.
pub async fn mock_stats(http: &reqwest::Client, mock_url: &str) -> Result<Stats, SoakError> {
    let url = format!("{}/_mock/stats", mock_url.trim_end_matches('/'));
    let response =
        http.get(&url).send().await.map_err(|err| SoakError::Mock(format!("GET {url}: {}", error_chain(&err))))?;
    if !response.status().is_success() {
        return Err(SoakError::Mock(format!("GET {url} answered {}", response.status())));
    }
    response.json().await.map_err(|err| SoakError::Mock(format!("GET {url}: {}", error_chain(&err))))
}

/// What the kill loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kills {
    /// Processes SIGKILLed.
    pub killed: u64,
    /// Times it looked and found no runtime process (between a kill and the next invocation).
    pub none_running: u64,
}

/// SIGKILLs `function`'s runtime processes in the stack of `repo` every `every` until `stop`.
pub async fn kill_loop(function: String, repo: PathBuf, every: Duration, mut stop: watch::Receiver<bool>) -> Kills {
    let mut kills = Kills::default();
    while !*stop.borrow() {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(every) => {}
        }
        let found = pids::function_pids(&repo, &function);
        if found.is_empty() {
            kills.none_running += 1;
        }
        for pid in found {
            if pids::kill(pid) {
                tracing::info!(function, pid, "killed with SIGKILL");
                kills.killed += 1;
            }
        }
    }
    kills
}

/// What the burst loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bursts {
    pub bursts: u64,
    /// Time spent with the error rate raised.
    pub raised_for: Duration,
}

/// Raises the AWS error rate in `file` to `rate` for `length` every `every`, until `stop`;
/// leaves it at 0.
pub async fn burst_loop(
    file: PathBuf,
    every: Duration,
    length: Duration,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> Result<Bursts, SoakError> {
    let mut bursts = Bursts::default();
    set_aws_error_rate(&file, 0.0)?;
    while !*stop.borrow() {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(every.saturating_sub(length)) => {}
        }
        set_aws_error_rate(&file, rate)?;
        tracing::info!(rate, seconds = length.as_secs_f64(), "AWS error burst");
        bursts.bursts += 1;
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(length) => {}
        }
        bursts.raised_for += started.elapsed();
        set_aws_error_rate(&file, 0.0)?;
    }
    set_aws_error_rate(&file, 0.0)?;
    Ok(bursts)
}

/// Writes the share of the functions' DynamoDB/SQS requests to fail.
pub fn set_aws_error_rate(file: &Path, rate: f64) -> Result<(), SoakError> {
    std::fs::write(file, format!("{rate}\n")).map_err(|source| SoakError::File { path: file.to_path_buf(), source })
}

/// Where each log in a directory ends now, to count from there later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogMark {
    ends: BTreeMap<PathBuf, u64>,
}

/// Marks where every `*.log` in `dir` ends now (a log created later is read from its start).
pub fn mark_logs(dir: &Path) -> LogMark {
    let ends =
        logs_in(dir).into_iter().map(|log| (log.clone(), std::fs::metadata(&log).map_or(0, |m| m.len()))).collect();
    LogMark { ends }
}

/// The AWS errors the functions injected since `mark`, over every `*.log` in `dir` (`None`
/// when there is no log to read: then nobody knows).
pub fn injected_aws_errors(dir: &Path, mark: &LogMark) -> Option<u64> {
    let logs = logs_in(dir);
    if logs.is_empty() {
        return None;
    }
    let mut injected = 0;
    for log in logs {
        let from = mark.ends.get(&log).copied().unwrap_or(0);
        injected += count_since(&log, from)?;
    }
    Some(injected)
}

fn logs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs
}

fn count_since(log: &Path, from: u64) -> Option<u64> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(text.lines().filter(|line| line.contains(INJECTED_LOG)).count() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("chorus-soak-{name}-{:016x}", fastrand::u64(..)))
    }

    #[test]
    fn injected_errors_are_counted_in_every_log_from_where_the_soak_started() {
        let dir = temp("logs");
        std::fs::create_dir_all(&dir).unwrap();
        let (lambda, worker) = (dir.join("lambda.log"), dir.join("worker.log"));
        std::fs::write(&lambda, format!("old: {INJECTED_LOG}\n")).unwrap();
        let mark = mark_logs(&dir);
        let more = format!("WARN x: {INJECTED_LOG} service=DynamoDB\nINFO other\nWARN {INJECTED_LOG}\n");
        std::fs::write(&lambda, format!("old: {INJECTED_LOG}\n{more}")).unwrap();
        // A replaced runtime's log, created after the mark, counts from its start.
        std::fs::write(&worker, format!("{INJECTED_LOG}\n")).unwrap();
        std::fs::write(dir.join("notes.txt"), format!("{INJECTED_LOG}\n")).unwrap();
        assert_eq!(injected_aws_errors(&dir, &mark), Some(3));
        assert_eq!(injected_aws_errors(&temp("missing"), &LogMark::default()), None);
    }

    #[tokio::test]
    async fn a_burst_raises_the_rate_and_stopping_leaves_it_at_zero() {
        let file = temp("rate");
        let (stop, stopped) = watch::channel(false);
        let bursts =
            tokio::spawn(burst_loop(file.clone(), Duration::from_millis(60), Duration::from_millis(40), 0.5, stopped));
        let mut seen = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen |= std::fs::read_to_string(&file).is_ok_and(|text| text.trim() == "0.5");
        }
        stop.send(true).unwrap();
        let bursts = bursts.await.unwrap().unwrap();
        assert!(seen && bursts.bursts >= 1, "{bursts:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "0");
    }
}
