//! Finding and killing a function's runtime processes. `cargo lambda watch` runs each function
//! as its own binary (`cargo run --bin worker` → `target/debug/worker`), so a process whose
//! program is that binary, below this stack's `cargo lambda watch`, is the function's runtime.
//! Only processes below that watcher count: another checkout's stack may run the same binary
//! from the same target directory, and its processes are not ours to kill. Found through
//! `/proc` (Linux); everything goes through [`function_pids`], to switch to the local stack's
//! own answer once it offers one.

use std::path::Path;
use std::process::{Command, Stdio};

use chorus_local_aws::processes::State;

use crate::SoakError;

/// The pid of `cargo lambda watch` of the stack `chorus local up` started in `repo`.
pub fn stack_watcher(repo: &Path) -> Result<u32, SoakError> {
    let state = State::load(repo).map_err(|err| SoakError::NoStack(err.to_string()))?;
    state.and_then(|state| state.lambda).map(|lambda| lambda.pid).ok_or_else(|| {
        SoakError::NoStack(format!(
            "no `chorus local up` state in {} (needed to find the worker to kill)",
            repo.display()
        ))
    })
}

/// The pids of the processes running `function`'s binary below `ancestor` (zombies excluded).
pub fn function_pids(function: &str, ancestor: u32) -> Vec<u32> {
    let mut pids: Vec<u32> = all_pids()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            runs_binary(&cmdline, function) && !is_zombie(*pid) && descends_from(*pid, ancestor)
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
}

/// Whether `ancestor` is `pid` or one of its parents, grandparents, ….
fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    // Bounded: a pid reused while walking could otherwise make a cycle.
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        match parent(current) {
            Some(next) if next != 0 && next != current => current = next,
            _ => return false,
        }
    }
    false
}

/// The parent pid, the second field after the parenthesized command name of `/proc/<pid>/stat`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a `/proc/<pid>/cmdline` (NUL-separated arguments) runs the binary named `function`:
/// its program's file name is exactly that, so `cargo run --bin worker` or an editor open on
/// `worker.rs` does not count.
pub fn runs_binary(cmdline: &[u8], function: &str) -> bool {
    let program = cmdline.split(|byte| *byte == 0).next().unwrap_or_default();
    let program = String::from_utf8_lossy(program);
    Path::new(program.as_ref()).file_name().is_some_and(|name| name == function)
}

fn is_zombie(pid: u32) -> bool {
    // The state follows the command name, which is in parentheses and may contain spaces.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'))
}

/// Sends SIGKILL to `pid`, through `kill(1)` (this workspace takes no libc bindings and
/// forbids unsafe code). Whether the signal was delivered.
pub fn kill(pid: u32) -> bool {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binary_itself_counts_as_the_function() {
        assert!(runs_binary(b"/work/target/debug/worker\0", "worker"));
        assert!(runs_binary(b"target/debug/worker", "worker"));
        assert!(!runs_binary(b"cargo\0run\0--bin\0worker\0", "worker"));
        assert!(!runs_binary(b"/usr/bin/vim\0functions/worker/src/main.rs\0", "worker"));
        assert!(!runs_binary(b"/work/target/debug/worker-helper\0", "worker"));
        assert!(!runs_binary(b"", "worker"));
    }

    #[test]
    fn only_processes_below_the_ancestor_are_found_and_a_killed_one_is_gone() {
        let me = std::process::id();
        let name = std::env::current_exe().ok();
        let name = name.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(function_pids(name, me), [me], "{name}");
        assert!(parent(me).is_some_and(|parent| descends_from(me, parent)));

        let Ok(mut child) = Command::new("sleep").arg("30").spawn() else { return };
        // The kernel shows the new command line a moment after spawn returns.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = function_pids("sleep", me);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(found, [child.id()]);
        assert!(function_pids("sleep", child.id().saturating_add(100_000)).is_empty(), "not below that pid");
        assert!(kill(child.id()));
        let status = child.wait().ok();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }
}
