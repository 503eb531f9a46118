//! The soak from start to verdict: connect, start the receiver and the fault injectors, submit
//! the planned runs at a steady rate (re-submissions and duplicate step messages included),
//! wait until every run has ended or the deadline passes, switch the faults off, give the
//! notifications a grace period, read every run's history, and judge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chorus::domain::{RunId, RunStatus, StepId};
use chorus::ports::StepMessage;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::SoakError;
use crate::args::SoakArgs;
use crate::evidence;
use crate::inject::{self, Bursts, Kills};
use crate::plan::{self, Resubmit, RunPlan};
use crate::receiver::{self, Inbox};
use crate::report::{Report, human};
use crate::stack::{ApiFailure, Stack};
use crate::verify::{self, Resubmission, RunRecord, Violation};

/// How often the run listing is polled while waiting for runs to end.
const POLL_EVERY: Duration = Duration::from_secs(3);
/// Attempts at one submission (or one read) when the API answers 5xx or not at all.
const API_ATTEMPTS: u32 = 10;
/// Histories read at once at the end.
const READ_CONCURRENCY: usize = 4;
/// After the last notification was due, how long to keep listening for extra ones.
const LISTEN_FOR_EXTRA: Duration = Duration::from_secs(10);

/// What one planned run's submission produced.
struct Submitted {
    index: usize,
    run_id: Result<RunId, String>,
    resubmission: Option<Resubmission>,
    duplicate_sent: bool,
}

/// Runs the soak against the running stack.
pub async fn run(args: &SoakArgs) -> Result<Report, SoakError> {
    args.check()?;
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let stack = Arc::new(Stack::connect(&args.api_url, &args.table, &args.steps_queue).await?);
    let (notify_url, inbox) = receiver::start(stack.secret.clone()).await?;
    let plans = plan::plan(args.runs, args.resubmit_share, args.duplicate_share, seed, &notify_url);
    eprintln!("soak: {} runs for tenant {} (seed {seed}), notifications to {notify_url}", plans.len(), stack.tenant);

    let mock_before = inject::mock_stats(&stack.http, &args.mock_url).await?;
    inject::set_provider_faults(&stack.http, &args.mock_url, args.provider_fault_rate).await?;
    let log_mark = inject::mark_logs(&args.function_logs);
    let (stop, stopped) = watch::channel(false);
    let killing = if args.kill_every.is_zero() {
        None
    } else {
        let (function, repo) = (args.kill_function.clone(), args.repo.clone());
        Some(tokio::spawn(inject::kill_loop(function, repo, args.kill_every, stopped.clone())))
    };
    let bursting = match (&args.chaos_file, args.bursts()) {
        (Some(file), true) => Some(tokio::spawn(inject::burst_loop(
            file.clone(),
            args.burst_every,
            args.burst_for,
            args.burst_rate,
            stopped.clone(),
        ))),
        _ => None,
    };

    let submitted = submit_all(&stack, plans, args.submit_rate).await;
    let run_ids: Vec<RunId> = submitted.iter().filter_map(|s| s.run_id.as_ref().ok().cloned()).collect();
    eprintln!("soak: {} runs submitted ({} s); waiting for them to end", run_ids.len(), started.elapsed().as_secs());
    let (statuses, all_ended_after) = wait_for_end(&stack, &run_ids, started, args.deadline).await;

    // Faults off before the grace period: what is late now is late for good.
    let _ = stop.send(true);
    let kills = match killing {
        Some(task) => task.await.unwrap_or_default(),
        None => Kills::default(),
    };
    let bursts = match bursting {
        Some(task) => task.await.map_err(|err| SoakError::Task(err.to_string()))??,
        None => Bursts::default(),
    };
    inject::set_provider_faults(&stack.http, &args.mock_url, 0.0).await?;

    let ended: Vec<&RunId> = run_ids.iter().filter(|id| statuses.get(*id).is_some_and(|s| s.is_terminal())).collect();
    await_notifications(&inbox, &ended, args.notify_grace).await;
    let histories = read_histories(&stack, &run_ids).await;
    let open: Vec<&RunId> = run_ids.iter().filter(|id| !ended.contains(id)).collect();
    let views = read_views(&stack, &open).await;
    let mock_after = inject::mock_stats(&stack.http, &args.mock_url).await?;
    let aws_errors_injected = inject::injected_aws_errors(&args.function_logs, &log_mark);

    let mut submit_failures = Vec::new();
    let mut records = Vec::new();
    let mut duplicates_sent = 0;
    for submitted in submitted {
        duplicates_sent += u64::from(submitted.duplicate_sent);
        let run_id = match submitted.run_id {
            Ok(run_id) => run_id,
            Err(error) => {
                submit_failures.push((submitted.index, error));
                continue;
            }
        };
        records.push(RunRecord {
            index: submitted.index,
            status: statuses.get(&run_id).copied(),
            events: histories.get(&run_id).cloned().unwrap_or_else(|| Err("not read".to_owned())),
            heard: inbox.heard(run_id.as_str()),
            resubmission: submitted.resubmission,
            steps: views.get(&run_id).map(step_statuses).unwrap_or_default(),
            run_id: run_id.to_string(),
        });
    }
    let (tally, mut violations) = verify::judge(&records, &submit_failures, inbox.bad_signatures(), inbox.unreadable());
    let requests = |stats: &chorus_mock_providers::Stats| stats.requests.values().sum::<u64>();
    let provider_requests = requests(&mock_after).saturating_sub(requests(&mock_before));
    let mut provider_faults: BTreeMap<String, u64> = BTreeMap::new();
    for (provider, kinds) in &mock_after.faults {
        for (kind, after) in kinds {
            let before = mock_before.faults.get(provider).and_then(|k| k.get(kind)).copied().unwrap_or(0);
            *provider_faults.entry(kind.clone()).or_default() += after.saturating_sub(before);
        }
    }
    let injected = Injected {
        provider_requests,
        provider_faults: provider_faults.values().sum(),
        kills,
        bursts,
        aws_errors: aws_errors_injected,
    };
    violations.extend(faults_not_injected(args, &injected));
    if let Some(dir) = &args.evidence_dir {
        evidence::write(&stack, dir, &violations, &histories, &inbox).await?;
    }

    Ok(Report {
        runs: args.runs,
        seed,
        settings: settings(args),
        deadline: args.deadline,
        tally,
        violations,
        provider_requests,
        provider_faults,
        duplicates_sent,
        kills: injected.kills,
        bursts: injected.bursts,
        aws_errors_injected,
        all_ended_after,
        wall_time: started.elapsed(),
    })
}

/// What the injectors managed to do.
struct Injected {
    provider_requests: u64,
    provider_faults: u64,
    kills: Kills,
    bursts: Bursts,
    aws_errors: Option<u64>,
}

/// The faults that were asked for and never happened: the soak proved nothing about them, and
/// says so rather than pass. (The usual causes: functions built without the chaos interceptor,
/// CHORUS_AWS_CHAOS_FILE not reaching them, no worker process found, the mock not in the path.)
fn faults_not_injected(args: &SoakArgs, injected: &Injected) -> Vec<Violation> {
    let mut missing = Vec::new();
    let mut not = |fault: &str, why: String| missing.push(Violation::FaultNotInjected { fault: fault.to_owned(), why });
    // A few dozen requests at 20% make a fault all but certain; fewer prove little either way.
    if args.provider_fault_rate > 0.0 && injected.provider_requests >= 30 && injected.provider_faults == 0 {
        not("provider faults", format!("the mock failed none of {} requests", injected.provider_requests));
    }
    if args.provider_fault_rate > 0.0 && injected.provider_requests == 0 {
        not("provider faults", "the mock got no request: the functions do not call it".to_owned());
    }
    if !args.kill_every.is_zero() && injected.kills.killed == 0 && injected.kills.none_running > 0 {
        not(
            "worker kills",
            format!("no `{}` process was found below this stack's cargo lambda watch", args.kill_function),
        );
    }
    if args.bursts() && injected.bursts.bursts > 0 {
        match injected.aws_errors {
            Some(0) => not(
                "AWS errors",
                format!(
                    "{} bursts, but the functions' logs show no injected error: functions built without \
                     chorus::adapters::chaos (another checkout's build from a shared target dir?) or \
                     CHORUS_AWS_CHAOS_FILE not passed to them",
                    injected.bursts.bursts
                ),
            ),
            None => not("AWS errors", format!("no function log to read in {}", args.function_logs.display())),
            Some(_) => {}
        }
    }
    missing
}

/// The fault settings, in words, for the report.
fn settings(args: &SoakArgs) -> String {
    let kills = if args.kill_every.is_zero() {
        "no kills".to_owned()
    } else {
        format!("worker killed every {}", human(args.kill_every))
    };
    let bursts = if args.bursts() {
        format!(
            "AWS errors at {:.0}% for {} every {}",
            args.burst_rate * 100.0,
            human(args.burst_for),
            human(args.burst_every)
        )
    } else {
        "no AWS bursts".to_owned()
    };
    format!(
        "{} submissions/s; {:.0}% re-submitted, {:.0}% with a duplicate step message; provider faults on {:.0}% of \
         requests; {kills}; {bursts}; deadline {}",
        args.submit_rate,
        args.resubmit_share * 100.0,
        args.duplicate_share * 100.0,
        args.provider_fault_rate * 100.0,
        human(args.deadline)
    )
}

/// Submits every plan at `rate` per second, each in its own task (so a slow answer does not
/// hold the next back), and returns what each got.
async fn submit_all(stack: &Arc<Stack>, plans: Vec<RunPlan>, rate: f64) -> Vec<Submitted> {
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = tokio::task::JoinSet::new();
    for plan in plans {
        let stack = stack.clone();
        tasks.spawn(async move { submit_one(&stack, plan).await });
        tokio::time::sleep(every).await;
    }
    let mut submitted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(one) => submitted.push(one),
            Err(err) => tracing::error!(error = %err, "a submission task failed"),
        }
    }
    submitted.sort_by_key(|s| s.index);
    submitted
}

async fn submit_one(stack: &Stack, plan: RunPlan) -> Submitted {
    let submit = || submit_with_retries(stack, &plan.body, &plan.idempotency_key);
    let (run_id, second) = match plan.resubmit {
        None => (submit().await, None),
        Some(Resubmit::After) => {
            let first = submit().await;
            let second = if first.is_ok() { Some(submit().await) } else { None };
            (first, second)
        }
        Some(Resubmit::Racing) => {
            let (first, second) = tokio::join!(submit(), submit());
            (first, Some(second))
        }
    };
    let resubmission = plan
        .resubmit
        .zip(second)
        .map(|(kind, answered)| Resubmission { kind, answered: answered.map(|id| id.to_string()) });
    let mut duplicate_sent = false;
    if let (Ok(run_id), Some(after)) = (&run_id, plan.duplicate_after) {
        tokio::time::sleep(after).await;
        duplicate_sent = send_duplicate(stack, run_id, plan.index).await;
    }
    Submitted { index: plan.index, run_id, resubmission, duplicate_sent }
}

/// Submits until an answer, retrying 5xx and dropped connections with the same key, as a
/// careful client does.
async fn submit_with_retries(stack: &Stack, body: &serde_json::Value, key: &str) -> Result<RunId, String> {
    let mut wait = Duration::from_millis(500);
    let mut last = String::new();
    for _ in 0..API_ATTEMPTS {
        match stack.submit(body, key).await {
            Ok((run_id, _replayed)) => return Ok(run_id),
            Err(ApiFailure::Refused(what)) => return Err(what),
            Err(ApiFailure::Transient(what)) => last = what,
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    Err(format!("no answer after {API_ATTEMPTS} attempts; last: {last}"))
}

/// Sends a copy of one of the run's step messages, as SQS sometimes delivers one twice: a
/// step the engine already queued (not one still pending, which no real message names).
async fn send_duplicate(stack: &Stack, run_id: &RunId, index: usize) -> bool {
    let view = match stack.run_view(run_id).await {
        Ok(view) => view,
        Err(err) => {
            tracing::warn!(run = %run_id, error = %err, "cannot read the run to duplicate a step message");
            return false;
        }
    };
    let queued: Vec<&str> = view["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter(|s| s["status"].as_str().is_some_and(|status| status != "pending"))
                .filter_map(|s| s["id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let Some(step) = queued.get(index % queued.len().max(1)) else { return false };
    let Ok(step_id) = StepId::parse(step) else { return false };
    match stack.send_step_message(&StepMessage { run_id: run_id.clone(), step_id }).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(run = %run_id, error = %err, "duplicate step message not sent");
            false
        }
    }
}

/// Polls the listing until every run has ended or `deadline` (from `started`) passes: each
/// run's last seen status, and when all had ended (if they did).
async fn wait_for_end(
    stack: &Stack,
    run_ids: &[RunId],
    started: Instant,
    deadline: Duration,
) -> (BTreeMap<RunId, RunStatus>, Option<Duration>) {
    let mut statuses: BTreeMap<RunId, RunStatus> = BTreeMap::new();
    let mut reported = Instant::now();
    loop {
        match stack.list_runs().await {
            Ok(listed) => statuses.extend(listed.into_iter().map(|run| (run.id, run.status))),
            // Expected during AWS bursts (the API answers 503); the next poll tries again.
            Err(err) => tracing::info!(error = %err, "cannot list the runs; trying again"),
        }
        let open = run_ids.iter().filter(|id| !statuses.get(*id).is_some_and(|s| s.is_terminal())).count();
        if open == 0 {
            return (statuses, Some(started.elapsed()));
        }
        if started.elapsed() >= deadline {
            eprintln!("soak: deadline passed with {open} runs not ended");
            return (statuses, None);
        }
        if reported.elapsed() >= Duration::from_secs(30) {
            reported = Instant::now();
            eprintln!("soak: {} s, {open} of {} runs not ended yet", started.elapsed().as_secs(), run_ids.len());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Runs' views (`GET /v1/runs/{id}`), a few at a time; the ones that could not be read are left out.
async fn read_views(stack: &Stack, run_ids: &[&RunId]) -> BTreeMap<RunId, serde_json::Value> {
    futures::stream::iter(run_ids.iter().map(|id| (*id).clone()))
        .map(|run_id| async move {
            let view = stack.run_view(&run_id).await;
            (run_id, view)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .filter_map(|(run_id, view)| async move { view.ok().map(|view| (run_id, view)) })
        .collect()
        .await
}

/// Step id → status, from a run's view.
fn step_statuses(view: &serde_json::Value) -> BTreeMap<String, String> {
    let steps = view["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    steps
        .iter()
        .filter_map(|step| Some((step["id"].as_str()?.to_owned(), step["status"].as_str()?.to_owned())))
        .collect()
}

/// Waits until every ended run has been notified, at most `grace`, then listens a little
/// longer for notifications that should not come.
async fn await_notifications(inbox: &Inbox, ended: &[&RunId], grace: Duration) {
    let waited = Instant::now();
    while waited.elapsed() < grace {
        let heard = inbox.runs();
        if ended.iter().all(|id| heard.contains_key(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(LISTEN_FOR_EXTRA.min(grace)).await;
}

/// Every run's history, read a few at a time with retries.
async fn read_histories(
    stack: &Stack,
    run_ids: &[RunId],
) -> BTreeMap<RunId, Result<Vec<chorus::domain::RunEvent>, String>> {
    futures::stream::iter(run_ids.iter().cloned())
        .map(|run_id| async move {
            let mut last = String::new();
            for _ in 0..API_ATTEMPTS {
                match stack.events(&run_id).await {
                    Ok(events) => return (run_id, Ok(events)),
                    Err(ApiFailure::Refused(what)) => return (run_id, Err(what)),
                    Err(ApiFailure::Transient(what)) => last = what,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (run_id, Err(last))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await
}
