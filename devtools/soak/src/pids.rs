//! Finding and killing a function's runtime processes. `cargo lambda watch` runs each function
//! as its own binary (`target/debug/worker`), so a process whose program is that binary is
//! the function's runtime. Found through `/proc` (Linux); everything goes through
//! [`function_pids`], to switch to the local stack's own answer once it offers one.

use std::path::Path;
use std::process::{Command, Stdio};

/// The pids of the processes running `function`'s binary (zombies excluded).
pub fn function_pids(function: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            runs_binary(&cmdline, function) && !is_zombie(*pid)
        })
        .collect();
    pids.sort_unstable();
    pids
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
    fn this_test_finds_itself_and_a_killed_child_is_gone() {
        let me = std::env::current_exe().ok();
        let name = me.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
        assert!(function_pids(name).contains(&std::process::id()), "{name}");

        let Ok(mut child) = Command::new("sleep").arg("30").spawn() else { return };
        assert!(function_pids("sleep").contains(&child.id()));
        assert!(kill(child.id()));
        let status = child.wait().ok();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }
}
