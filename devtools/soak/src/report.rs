//! The soak's summary: a short Markdown table a person can paste into the README, then every
//! violation grouped by the check it breaks (the first few of each, then a count).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::inject::{Bursts, Kills};
use crate::verify::{Tally, Violation};

/// Violations listed per check before the rest are only counted.
const LISTED_PER_CHECK: usize = 10;

/// Everything the soak measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub runs: usize,
    pub seed: u64,
    /// The fault settings, in words.
    pub settings: String,
    pub deadline: Duration,
    pub tally: Tally,
    pub violations: Vec<Violation>,
    /// Requests the mock answered during the soak.
    pub provider_requests: u64,
    /// Faults the mock handed out during the soak, by kind.
    pub provider_faults: BTreeMap<String, u64>,
    pub duplicates_sent: u64,
    pub kills: Kills,
    pub bursts: Bursts,
    /// AWS requests the functions failed on purpose (`None`: their log was unreadable).
    pub aws_errors_injected: Option<u64>,
    /// From the first submission until the last run ended (`None`: some never did).
    pub all_ended_after: Option<Duration>,
    pub wall_time: Duration,
}

impl Report {
    /// Whether every promise held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Provider calls the mock answered that no run's history records: calls made again
    /// because the worker died (or failed to store the result) after the call went out.
    pub fn calls_made_again(&self) -> i64 {
        let answered = i64::try_from(self.provider_requests).unwrap_or(i64::MAX);
        answered.saturating_sub(i64::try_from(self.tally.recorded_calls).unwrap_or(i64::MAX))
    }

    fn count(&self, check: &str) -> usize {
        self.violations.iter().filter(|v| v.check() == check).count()
    }

    /// The summary table and the violations, in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        let _ = writeln!(out, "### Chaos soak: {} runs, {verdict}\n", self.runs);
        let _ = writeln!(out, "| | |\n|---|---|");
        let row = |out: &mut String, name: &str, value: String| {
            let _ = writeln!(out, "| {name} | {value} |");
        };
        let statuses = self.tally.by_status.iter().map(|(status, n)| format!("{n} {status}")).collect::<Vec<_>>();
        row(&mut out, "runs by final status", statuses.join(", "));
        let ended = match self.all_ended_after {
            Some(after) => format!("yes, the last after {}", human(after)),
            None => format!(
                "**no**: {} not ended after {}",
                self.count("run not ended by the deadline"),
                human(self.deadline)
            ),
        };
        row(&mut out, "every run ended", ended);
        let twice = self.count("step result committed more than once");
        let never = self.count("step of an ended run never committed");
        row(&mut out, "step results committed more than once / never", format!("{twice} / {never}"));
        let silent = self.count("ended run never notified");
        let doubled = self.count("run notified under more than one webhook-id");
        row(&mut out, "runs notified 0 times / under 2+ webhook-ids", format!("{silent} / {doubled}"));
        let signatures = self.violations.iter().find_map(|v| match v {
            Violation::BadSignatures { count } => Some(*count),
            _ => None,
        });
        row(&mut out, "bad signatures", signatures.unwrap_or(0).to_string());
        row(
            &mut out,
            "notifications (redeliveries of one id)",
            format!("{} ({})", self.tally.notifications, self.tally.redeliveries),
        );
        row(
            &mut out,
            "idempotent re-submissions with the same run",
            format!("{} of {}", self.tally.resubmissions_same_run, self.tally.resubmissions),
        );
        let faults = self.provider_faults.values().sum::<u64>();
        let kinds = self.provider_faults.iter().map(|(kind, n)| format!("{n} {kind}")).collect::<Vec<_>>();
        let kinds = if kinds.is_empty() { String::new() } else { format!(": {}", kinds.join(", ")) };
        row(&mut out, "provider faults injected", format!("{faults} of {} requests{kinds}", self.provider_requests));
        row(&mut out, "steps answered by their fallback", self.tally.fallbacks_used.to_string());
        row(&mut out, "duplicate step messages sent", self.duplicates_sent.to_string());
        row(&mut out, "worker SIGKILLs", self.kills.killed.to_string());
        let aws = self.aws_errors_injected.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        row(
            &mut out,
            "AWS error bursts (requests failed)",
            format!("{} over {} ({aws})", self.bursts.bursts, human(self.bursts.raised_for)),
        );
        row(
            &mut out,
            "provider calls answered / in histories / made again",
            format!("{} / {} / {}", self.provider_requests, self.tally.recorded_calls, self.calls_made_again()),
        );
        row(&mut out, "wall time", human(self.wall_time));
        let _ = writeln!(out, "\nSettings: {}; seed {}.", self.settings, self.seed);
        if !self.passed() {
            let _ = writeln!(out, "\n#### Violations ({})\n", self.violations.len());
            let mut by_check: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
            for violation in &self.violations {
                by_check.entry(violation.check()).or_default().push(violation);
            }
            for (check, violations) in by_check {
                let _ = writeln!(out, "- {check}: {}", violations.len());
                for violation in violations.iter().take(LISTED_PER_CHECK) {
                    let _ = writeln!(out, "  - {violation}");
                }
                if violations.len() > LISTED_PER_CHECK {
                    let _ = writeln!(out, "  - … and {} more", violations.len() - LISTED_PER_CHECK);
                }
            }
        }
        out
    }
}

/// `6 min 12 s`, `45 s`, `800 ms`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 {
        format!("{} min {} s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{secs} s")
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(violations: Vec<Violation>) -> Report {
        let mut tally = Tally::default();
        tally.by_status.insert("succeeded".to_owned(), 2);
        tally.recorded_calls = 9;
        Report {
            runs: 2,
            seed: 42,
            settings: "test".to_owned(),
            deadline: Duration::from_secs(60),
            tally,
            violations,
            provider_requests: 11,
            provider_faults: BTreeMap::from([("slow".to_owned(), 2)]),
            duplicates_sent: 1,
            kills: Kills { killed: 3, none_running: 0 },
            bursts: Bursts { bursts: 1, raised_for: Duration::from_secs(4) },
            aws_errors_injected: Some(17),
            all_ended_after: Some(Duration::from_secs(75)),
            wall_time: Duration::from_secs(372),
        }
    }

    #[test]
    fn a_clean_report_is_one_table_with_the_counts() {
        let text = report(Vec::new()).markdown();
        assert!(text.starts_with("### Chaos soak: 2 runs, passed"), "{text}");
        assert!(text.contains("| runs by final status | 2 succeeded |"), "{text}");
        assert!(text.contains("| every run ended | yes, the last after 1 min 15 s |"), "{text}");
        assert!(text.contains("| provider calls answered / in histories / made again | 11 / 9 / 2 |"), "{text}");
        assert!(text.contains("| AWS error bursts (requests failed) | 1 over 4 s (17) |"), "{text}");
        assert!(text.contains("| wall time | 6 min 12 s |"), "{text}");
        assert!(!text.contains("Violations"), "{text}");
    }

    #[test]
    fn violations_are_grouped_and_long_lists_cut() {
        let silent = (0..12).map(|i| Violation::NotNotified { run: format!("run_{i}") });
        let report = report(silent.chain([Violation::BadSignatures { count: 2 }]).collect());
        let text = report.markdown();
        assert!(!report.passed());
        assert!(text.contains("FAILED") && text.contains("#### Violations (13)"), "{text}");
        assert!(text.contains("- ended run never notified: 12") && text.contains("… and 2 more"), "{text}");
        assert!(text.contains("| runs notified 0 times / under 2+ webhook-ids | 12 / 0 |"), "{text}");
        assert!(text.contains("| bad signatures | 2 |"), "{text}");
    }
}
