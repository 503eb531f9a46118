//! Keeps the functions' runtimes alive, which `cargo lambda watch` does not do by itself: when a
//! function's runtime process dies (a crash, a SIGKILL), its watcher logs `command killed` (or
//! `command exited`) with `outcome=DoNothing`, keeps the dead instance in its pool, starts no
//! other, and the invocation the runtime held and every later one wait forever. Only a change
//! to a watched file makes it start the function again.
//!
//! So the supervisor does what AWS does with a crashed execution environment. Every [`TICK`] it
//! lists the stack's function processes ([`runtimes::scan`]) and, per function:
//! - remembers how its runtime was started (program, arguments, environment, directory);
//! - when a runtime process is gone, tells the bridge ([`InFlight::runtime_died`]), so the
//!   invocation it held fails at once and its batch comes back after the visibility timeout;
//! - when the function has had no process at all for [`DEATH_GRACE`] and the last thing seen of
//!   it was its runtime (not a build, whose failure `cargo lambda watch` reports and retries
//!   itself), starts the same binary again with the same environment. It reaches `cargo lambda
//!   watch`'s runtime API like the original and serves the queued and later invocations; the
//!   rest of the stack keeps running. Its output goes to `.chorus/local/<function>.log`;
//! - when `cargo lambda watch` builds the function again (a source change), stops that
//!   replacement, since the watcher's own instance comes back with the new code;
//! - when the bridge reports the function hung (an invocation past the function's `Timeout`
//!   with no answer since it was sent, see [`crate::inflight`]), kills its runtime, which is
//!   then replaced as above.
//!
//! Bounded: a replacement that exits by itself within [`QUICK_EXIT`] of its start (a crash
//! loop, not a kill) delays the next one, doubling from one second; after [`MAX_QUICK_EXITS`] in
//! a row the supervisor gives up on that function and says so. A runtime `cargo lambda watch`
//! starts again (after a fix) resets this.

use std::collections::{BTreeSet, HashMap};
use std::fs::OpenOptions;
#[cfg(unix)]
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::inflight::InFlight;
use crate::processes;
use crate::runtimes::{self, FunctionProcess, Launch, Role, Scanner};

/// How often the function processes are listed: detection within this plus [`DEATH_GRACE`].
/// Measured on an idle stack, scanning twice a second adds about half a percent of a core to
/// the bridge.
pub const TICK: Duration = Duration::from_millis(500);
/// How long a function must have no process at all before its runtime counts as dead: when
/// `cargo lambda watch` rebuilds a function it stops the runtime and runs `cargo metadata`
/// before the build process (`cargo run`) appears.
pub const DEATH_GRACE: Duration = Duration::from_millis(1500);
/// A replacement that exits by itself sooner than this after its start is crash-looping.
pub const QUICK_EXIT: Duration = Duration::from_secs(10);
/// After this many quick exits in a row the function is no longer replaced.
pub const MAX_QUICK_EXITS: u32 = 6;
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Exit signals that mean someone stopped the process rather than it failing by itself.
const STOP_SIGNALS: [i32; 3] = [9, 15, 2];

/// Where the supervisor works.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The stack's [`runtimes::stack_id`].
    pub stack: String,
    /// `cargo lambda watch`'s pid, which is also its process group: replacements join it, so
    /// `chorus local down` stops them with it.
    pub watch_pid: u32,
    /// A word of the watch's command line, checked before trusting its pid.
    pub watch_expect: String,
    /// Where each replacement's output goes, as `<function>.log`.
    pub log_dir: PathBuf,
}

/// The supervisor of one stack's functions. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    config: SupervisorConfig,
    in_flight: InFlight,
    hangs: mpsc::UnboundedReceiver<String>,
    scanner: Scanner,
    functions: HashMap<String, Watched>,
}

/// What the supervisor knows of one function.
#[derive(Debug, Default)]
struct Watched {
    /// The runtime pids of the last tick.
    runtimes: BTreeSet<u32>,
    /// What was seen last while anything of the function ran.
    last_seen: Option<Role>,
    /// How the most recent runtime was started.
    launch: Option<Launch>,
    /// Since when the function has had no process at all.
    absent_since: Option<Instant>,
    replacement: Option<Replacement>,
    /// Runtimes killed because they hung: the invocation each held has already failed at its
    /// deadline, so their end fails no other.
    hung_kills: BTreeSet<u32>,
    quick_exits: u32,
    /// No replacement before this.
    not_before: Option<Instant>,
    gave_up: bool,
}

#[derive(Debug)]
struct Replacement {
    child: Child,
    started: Instant,
}

/// One tick's processes of one function.
#[derive(Debug, Default)]
struct Sample {
    runtimes: BTreeSet<u32>,
    building: bool,
}

impl Supervisor {
    /// A supervisor that reports deaths to `in_flight` and takes hang reports from it.
    pub fn new(config: SupervisorConfig, in_flight: InFlight) -> Self {
        let hangs = in_flight.reporting_hangs();
        let scanner = Scanner::new(&config.stack);
        Self { config, in_flight, hangs, scanner, functions: HashMap::new() }
    }

    /// Supervises until `stop` turns true (or its sender is gone). Replacements keep running
    /// after that: they belong to the stack, and `chorus local down` stops them.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(stack = self.config.stack, "supervising the functions' runtimes");
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.tick(),
                Some(function) = self.hangs.recv() => self.hung(&function),
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
    }

    fn tick(&mut self) {
        let mut samples: HashMap<String, Sample> = HashMap::new();
        for FunctionProcess { pid, function, role } in self.scanner.scan() {
            let sample = samples.entry(function).or_default();
            match role {
                Role::Runtime => {
                    sample.runtimes.insert(pid);
                }
                Role::Build => sample.building = true,
            }
        }
        let names: BTreeSet<String> = samples.keys().chain(self.functions.keys()).cloned().collect();
        for name in names {
            let sample = samples.remove(&name).unwrap_or_default();
            self.observe(&name, &sample);
        }
    }

    fn observe(&mut self, function: &str, sample: &Sample) {
        let now = Instant::now();
        let watched = self.functions.entry(function.to_owned()).or_default();
        reap(function, watched, now);

        for &pid in watched.runtimes.difference(&sample.runtimes) {
            // A rebuild ends runtimes too; only a replacement (below) says it was a crash.
            tracing::info!(function, pid, "a runtime process of the function ended");
            if watched.hung_kills.remove(&pid) {
                continue;
            }
            if self.in_flight.runtime_died(function, now) {
                tracing::warn!(
                    function,
                    pid,
                    "the invocation it held fails now; its batch comes back after the visibility timeout"
                );
            }
        }
        let ours = watched.replacement.as_ref().map(|replacement| replacement.child.id());
        for &pid in sample.runtimes.difference(&watched.runtimes) {
            if Some(pid) == ours {
                continue;
            }
            // `cargo lambda watch` started this one: the function works again as it was built,
            // whatever happened to earlier replacements.
            if let Some(launch) = runtimes::launch_of(pid) {
                watched.launch = Some(launch);
            }
            watched.quick_exits = 0;
            watched.not_before = None;
            watched.gave_up = false;
        }
        watched.runtimes.clone_from(&sample.runtimes);

        if sample.building
            && let Some(mut replacement) = watched.replacement.take()
        {
            tracing::info!(
                function,
                pid = replacement.child.id(),
                "cargo lambda watch builds the function again; stopping its replacement runtime"
            );
            // Already gone is fine: then there is nothing to stop.
            let _ = replacement.child.kill();
            let _ = replacement.child.wait();
        }

        if !sample.runtimes.is_empty() {
            watched.last_seen = Some(Role::Runtime);
            watched.absent_since = None;
            return;
        }
        if sample.building {
            watched.last_seen = Some(Role::Build);
            watched.absent_since = None;
            return;
        }
        let absent_since = *watched.absent_since.get_or_insert(now);
        if now.duration_since(absent_since) < DEATH_GRACE {
            return;
        }
        let (last_seen, replacing) = (watched.last_seen, watched.replacement.is_some());
        match last_seen {
            Some(Role::Runtime) if !replacing => self.replace(function, now),
            Some(Role::Build) => {
                tracing::warn!(
                    function,
                    "the function's build ended without a runtime (a compile error?); cargo lambda watch tries again on the next change"
                );
                // Said once: nothing more is expected of this function until it runs again.
                watched.last_seen = None;
            }
            _ => {}
        }
    }

    /// Starts a replacement runtime for `function`, unless it is backing off or given up.
    fn replace(&mut self, function: &str, now: Instant) {
        let Some(watched) = self.functions.get_mut(function) else { return };
        if watched.not_before.is_some_and(|not_before| now < not_before) {
            return;
        }
        // Without a launch the function never ran: `cargo lambda watch` starts it on its first
        // invocation. Either way nothing is expected of it until it runs again.
        let launch = match watched.launch.clone() {
            Some(launch) if !watched.gave_up => launch,
            _ => {
                watched.last_seen = None;
                return;
            }
        };
        if !processes::is_running(self.config.watch_pid, &self.config.watch_expect) {
            tracing::error!(
                function,
                watch_pid = self.config.watch_pid,
                "cargo lambda watch is gone, so its functions cannot be served; run `chorus local down` and `chorus local up` again"
            );
            watched.gave_up = true;
            watched.last_seen = None;
            return;
        }
        let log = self.config.log_dir.join(format!("{function}.log"));
        match spawn(&launch, self.config.watch_pid, &log) {
            Ok(child) => {
                tracing::warn!(
                    function,
                    pid = child.id(),
                    program = %launch.program.display(),
                    log = %log.display(),
                    "the function's runtime died; started a replacement (what AWS does with a crashed execution environment)"
                );
                watched.replacement = Some(Replacement { child, started: now });
                watched.absent_since = None;
            }
            Err(err) => {
                tracing::error!(function, error = %err, "cannot start a replacement runtime");
                quick_exit(function, watched, now);
            }
        }
    }

    /// The bridge saw an invocation of `function` reach its deadline with no answer since it was
    /// sent: unless the function is being built, its runtime is stuck; kill it so it is replaced.
    fn hung(&mut self, function: &str) {
        let processes: Vec<FunctionProcess> =
            self.scanner.scan().into_iter().filter(|p| p.function == function).collect();
        if processes.iter().any(|p| p.role == Role::Build) {
            tracing::info!(function, "an invocation ran out of time while cargo lambda watch builds the function");
            return;
        }
        let watched = self.functions.entry(function.to_owned()).or_default();
        for process in processes.iter().filter(|p| p.role == Role::Runtime) {
            tracing::warn!(
                function,
                pid = process.pid,
                "the runtime answered nothing for the function's whole Timeout; killing it to be replaced, as AWS does"
            );
            watched.hung_kills.insert(process.pid);
            match watched.replacement.as_mut().filter(|replacement| replacement.child.id() == process.pid) {
                // Its status is read (and the zombie reaped) on the next tick.
                Some(replacement) => drop(replacement.child.kill()),
                None => processes::kill_process(process.pid, "KILL"),
            }
        }
    }
}

/// Reaps `function`'s replacement if it exited, and backs off if it exited by itself quickly.
fn reap(function: &str, watched: &mut Watched, now: Instant) {
    let Some(replacement) = watched.replacement.as_mut() else { return };
    let status = match replacement.child.try_wait() {
        Ok(Some(status)) => status,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(function, error = %err, "cannot read the replacement's status; forgetting it");
            watched.replacement = None;
            return;
        }
    };
    let lived = now.duration_since(replacement.started);
    watched.replacement = None;
    if stopped_by_someone(status) || lived >= QUICK_EXIT {
        tracing::info!(function, %status, ?lived, "the replacement runtime ended");
        watched.quick_exits = 0;
        watched.not_before = None;
    } else {
        tracing::warn!(function, %status, ?lived, "the replacement runtime exited by itself soon after its start");
        quick_exit(function, watched, now);
    }
}

/// Counts a quick exit: the next replacement waits twice as long as the last, up to
/// [`MAX_DELAY`], and after [`MAX_QUICK_EXITS`] there is none.
fn quick_exit(function: &str, watched: &mut Watched, now: Instant) {
    watched.quick_exits += 1;
    if watched.quick_exits >= MAX_QUICK_EXITS {
        watched.gave_up = true;
        tracing::error!(
            function,
            exits = watched.quick_exits,
            "the function's runtime keeps exiting right after its start; no more replacements (see its log; a source change makes cargo lambda watch start it again)"
        );
        return;
    }
    let delay = backoff(watched.quick_exits);
    watched.not_before = Some(now + delay);
    tracing::warn!(function, retry_in = ?delay, "backing off before the next replacement");
}

/// The delay before the replacement after `quick_exits` quick exits in a row.
fn backoff(quick_exits: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1 << quick_exits.saturating_sub(1).min(16)).min(MAX_DELAY)
}

/// Whether the process was killed or stopped from outside, not failing by itself.
fn stopped_by_someone(status: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        status.signal().is_some_and(|signal| STOP_SIGNALS.contains(&signal))
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        false
    }
}

/// Starts `launch` in process group `group`, its output appended to `log`. A group in another
/// session (a bridge started by hand in another terminal) cannot be joined; the replacement then
/// gets a group of its own, and still ends with the watch, whose runtime API it needs.
fn spawn(launch: &Launch, group: u32, log: &std::path::Path) -> Result<Child, std::io::Error> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let command = |group: u32| -> Result<Command, std::io::Error> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(name, value)| (name, value)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        #[cfg(unix)]
        command.process_group(i32::try_from(group).unwrap_or(0));
        Ok(command)
    };
    command(group)?.spawn().or_else(|err| {
        tracing::warn!(group, error = %err, "cannot join cargo lambda watch's process group; starting the replacement in its own");
        command(0)?.spawn()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_a_second_up_to_its_maximum() {
        let delays: Vec<u64> = (1..=7).map(|exits| backoff(exits).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_kill_is_not_a_crash_loop_but_an_exit_code_or_a_segfault_is() {
        assert!(stopped_by_someone(ExitStatus::from_raw(9)));
        assert!(stopped_by_someone(ExitStatus::from_raw(15)));
        assert!(!stopped_by_someone(ExitStatus::from_raw(11)));
        assert!(!stopped_by_someone(ExitStatus::from_raw(1 << 8)));
    }
}
