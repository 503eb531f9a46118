//! Finding and killing a function's runtime processes. The local stack knows its own
//! processes, replacements of killed runtimes included
//! ([`chorus_local_aws::runtimes::function_pids`]: only this checkout's stack, whose
//! processes carry its path); this module only sends the signal.

use std::path::Path;
use std::process::{Command, Stdio};

/// The pids of `function`'s runtime processes in the stack `chorus local up` started in `repo`.
pub fn function_pids(repo: &Path, function: &str) -> Vec<u32> {
    chorus_local_aws::runtimes::function_pids(repo, function)
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_process_is_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep runs");
        assert!(kill(child.id()));
        let status = child.wait().expect("it ends");
        assert!(!status.success(), "killed, not finished");
    }
}
