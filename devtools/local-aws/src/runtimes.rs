//! The functions' processes on a local stack, found in `/proc`: which process is a function's
//! runtime (the built binary answering invocations), which are building it (`cargo run` and the
//! compilers under it), and what it takes to start a runtime again exactly as `cargo lambda watch`
//! started it.
//!
//! `chorus local up` marks its `cargo lambda watch` with [`STACK_VARIABLE`] (the repository's
//! path), which every process it starts inherits, and `cargo lambda watch` gives each function's
//! processes `AWS_LAMBDA_FUNCTION_NAME`. Those two variables identify a function's processes, so
//! a stack in another checkout on the same machine is never confused with this one.
//!
//! This is also the interface for tests and chaos harnesses: [`function_pids`] (or
//! `chorus local pids <function>`) lists the PIDs of a function's runtime processes, to SIGKILL
//! them and watch the stack recover.
//!
//! Linux only (it reads `/proc`); elsewhere nothing is found, and the local stack then recovers
//! from a crashed function only through the bridge's invocation deadlines.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Set on `cargo lambda watch` (and so inherited by every function process) to the stack's
/// repository path: which stack a process belongs to.
pub const STACK_VARIABLE: &str = "CHORUS_LOCAL_STACK";
/// `cargo lambda watch` sets it on the processes it starts for a function (the build, then the
/// runtime it execs into).
const FUNCTION_VARIABLE: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// What the kernel appends to `/proc/<pid>/exe` when the binary was replaced or removed, as a
/// rebuild does.
const DELETED_SUFFIX: &str = " (deleted)";

/// What a function's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The function's own binary: it answers invocations.
    Runtime,
    /// Anything else started for the function: `cargo run` building it, rustc, the linker.
    Build,
}

/// One process of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionProcess {
    pub pid: u32,
    pub function: String,
    pub role: Role,
}

/// How to start a process again as it was started: program, arguments, the whole environment
/// and the working directory, read from `/proc` while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

/// The value of [`STACK_VARIABLE`] for the stack in `repo`: its canonical path, so the same
/// checkout reached through a symlink or a relative path is still the same stack.
pub fn stack_id(repo: &Path) -> String {
    std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf()).display().to_string()
}

/// The PIDs of `function`'s runtime processes in the stack of `repo` (normally one; none while
/// it is being built or before its first invocation). Meant for tests and chaos harnesses:
/// SIGKILL one of them and the stack replaces it (see the `supervisor` module).
pub fn function_pids(repo: &Path, function: &str) -> Vec<u32> {
    let stack = stack_id(repo);
    scan(&stack).into_iter().filter(|p| p.role == Role::Runtime && p.function == function).map(|p| p.pid).collect()
}

/// Every function process of the stack `stack` (see [`stack_id`]), in PID order.
pub fn scan(stack: &str) -> Vec<FunctionProcess> {
    Scanner::new(stack).scan()
}

/// [`scan`] over and over, cheaply: a process's environment is read once per executable it
/// runs (the environment cannot change without an exec), so a scan of an unchanged machine
/// costs one `readlink` per process.
#[derive(Debug)]
pub struct Scanner {
    stack: String,
    /// By pid: the executable last seen and what it made of the process.
    known: HashMap<u32, Seen>,
}

/// One process as last scanned: its executable, and which function's it is, in what role.
#[derive(Debug)]
struct Seen {
    exe: Option<PathBuf>,
    classified: Option<(String, Role)>,
}

impl Scanner {
    pub fn new(stack: &str) -> Self {
        Self { stack: stack.to_owned(), known: HashMap::new() }
    }

    /// The stack's function processes now, in PID order.
    pub fn scan(&mut self) -> Vec<FunctionProcess> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        let pids: HashSet<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
            .collect();
        self.known.retain(|pid, _| pids.contains(pid));
        let mut found = Vec::new();
        for pid in pids {
            // Another user's process has no readable link; it is not ours either.
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let classified = match self.known.get(&pid) {
                Some(seen) if seen.exe == exe => seen.classified.clone(),
                _ => {
                    // A process that ends while being read is skipped, and read again if not.
                    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
                    // In the middle of an exec the new executable shows before its environment
                    // is set up (empty): read it again next time rather than remember "not ours".
                    if environ.is_empty() {
                        continue;
                    }
                    let classified = classify(&environ, exe.as_deref(), &self.stack);
                    self.known.insert(pid, Seen { exe, classified: classified.clone() });
                    classified
                }
            };
            if let Some((function, role)) = classified {
                found.push(FunctionProcess { pid, function, role });
            }
        }
        found.sort_by_key(|process| process.pid);
        found
    }
}

/// How process `pid` was started, or `None` when it is gone or unreadable.
pub fn launch_of(pid: u32) -> Option<Launch> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    Some(Launch {
        program: without_deleted(&exe),
        // argv[0] is the program itself.
        args: nul_separated(&cmdline).skip(1).map(os_string).collect(),
        env: nul_separated(&environ)
            .filter_map(|entry| {
                let split = entry.iter().position(|&b| b == b'=')?;
                Some((os_string(&entry[..split]), os_string(&entry[split + 1..])))
            })
            .collect(),
        cwd,
    })
}

/// Which function a process with this environment and executable is for, and its role; `None`
/// when it is not a function process of `stack`.
fn classify(environ: &[u8], exe: Option<&Path>, stack: &str) -> Option<(String, Role)> {
    let mut in_stack = false;
    let mut function = None;
    for entry in nul_separated(environ) {
        let entry = String::from_utf8_lossy(entry);
        if let Some(value) = entry.strip_prefix(STACK_VARIABLE).and_then(|rest| rest.strip_prefix('=')) {
            in_stack = value == stack;
        } else if let Some(value) = entry.strip_prefix(FUNCTION_VARIABLE).and_then(|rest| rest.strip_prefix('=')) {
            function = Some(value.to_owned());
        }
    }
    let function = function.filter(|name| in_stack && !name.is_empty())?;
    // `cargo run` execs into the binary, so the runtime is the process whose executable is the
    // function's binary (named as the function under `cargo lambda watch`).
    let runs_binary = exe.map(without_deleted).is_some_and(|exe| exe.file_name().is_some_and(|n| *n == *function));
    Some((function, if runs_binary { Role::Runtime } else { Role::Build }))
}

fn nul_separated(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == 0).filter(|part| !part.is_empty())
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).to_os_string()
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    OsString::from(String::from_utf8_lossy(bytes).into_owned())
}

/// `/proc/<pid>/exe` of a binary a rebuild replaced reads `<path> (deleted)`; the path itself
/// then holds the new build, which is what a restart should run.
fn without_deleted(exe: &Path) -> PathBuf {
    let text = exe.to_string_lossy();
    match text.strip_suffix(DELETED_SUFFIX) {
        Some(path) => PathBuf::from(path),
        None => exe.to_path_buf(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn environ(entries: &[&str]) -> Vec<u8> {
        entries.iter().flat_map(|entry| entry.bytes().chain([0])).collect()
    }

    #[test]
    fn a_function_process_is_told_by_its_stack_and_function_variables() {
        let env = environ(&["PATH=/bin", "CHORUS_LOCAL_STACK=/repo", "AWS_LAMBDA_FUNCTION_NAME=worker"]);
        let runtime = classify(&env, Some(Path::new("/repo/target/debug/worker")), "/repo");
        assert_eq!(runtime, Some(("worker".to_owned(), Role::Runtime)));
        let build = classify(&env, Some(Path::new("/usr/bin/cargo")), "/repo");
        assert_eq!(build, Some(("worker".to_owned(), Role::Build)));
        // A binary replaced by a rebuild is still the runtime.
        let replaced = classify(&env, Some(Path::new("/repo/target/debug/worker (deleted)")), "/repo");
        assert_eq!(replaced, Some(("worker".to_owned(), Role::Runtime)));
    }

    #[test]
    fn processes_of_another_stack_or_of_no_function_are_not_ours() {
        let other = environ(&["CHORUS_LOCAL_STACK=/elsewhere", "AWS_LAMBDA_FUNCTION_NAME=worker"]);
        assert_eq!(classify(&other, Some(Path::new("/x/worker")), "/repo"), None);
        let unmarked = environ(&["AWS_LAMBDA_FUNCTION_NAME=worker"]);
        assert_eq!(classify(&unmarked, Some(Path::new("/x/worker")), "/repo"), None);
        // The watch process itself: in the stack, but no function.
        let watch = environ(&["CHORUS_LOCAL_STACK=/repo"]);
        assert_eq!(classify(&watch, Some(Path::new("/x/cargo-lambda")), "/repo"), None);
        // A prefix of the variable's name is another variable.
        let prefixed = environ(&["CHORUS_LOCAL_STACK_X=/repo", "AWS_LAMBDA_FUNCTION_NAME=worker"]);
        assert_eq!(classify(&prefixed, Some(Path::new("/x/worker")), "/repo"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_can_be_read_back_as_a_launch() {
        let launch = launch_of(std::process::id()).unwrap();
        assert_eq!(launch.program, std::env::current_exe().unwrap());
        assert_eq!(launch.cwd, std::env::current_dir().unwrap());
        assert!(launch.env.iter().any(|(name, _)| name == "PATH"));
        assert_eq!(launch.args, std::env::args_os().skip(1).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_is_found_for_a_stack_that_does_not_run() {
        assert!(function_pids(Path::new("/nonexistent/stack"), "worker").is_empty());
    }

    /// `sleep` started as the function `sleep` (its runtime) and as the function `other` (whose
    /// binary it is not, so a build), in a stack of this test's own.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_scan_finds_a_stacks_runtimes_and_builds_and_forgets_them_when_they_end() {
        let repo = PathBuf::from(format!("/nonexistent/stack-{}", std::process::id()));
        let stack = stack_id(&repo);
        let start = |function: &str| {
            std::process::Command::new("sleep")
                .arg("30")
                .env(STACK_VARIABLE, &stack)
                .env(FUNCTION_VARIABLE, function)
                .spawn()
                .unwrap()
        };
        let (mut runtime, mut build) = (start("sleep"), start("other"));
        // `spawn` returns once the child is forked; until it has exec'd `sleep` it is a copy
        // of this test without the variables, and a scan then rightly does not see it.
        for child in [&runtime, &build] {
            let exe = format!("/proc/{}/exe", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_link(&exe).map_or(true, |path| !path.ends_with("sleep")) {
                assert!(std::time::Instant::now() < deadline, "sleep did not start");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let mut scanner = Scanner::new(&stack);
        let mut expected = vec![
            FunctionProcess { pid: runtime.id(), function: "sleep".to_owned(), role: Role::Runtime },
            FunctionProcess { pid: build.id(), function: "other".to_owned(), role: Role::Build },
        ];
        expected.sort_by_key(|process| process.pid);
        // A child still setting up its exec is seen by a later scan, never remembered wrongly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = scanner.scan();
        while found != expected && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = scanner.scan();
        }
        assert_eq!(found, expected);
        assert_eq!(scanner.scan(), expected, "the same from what it remembers");
        assert_eq!(function_pids(&repo, "sleep"), [runtime.id()]);
        assert!(function_pids(&repo, "other").is_empty(), "a build is no runtime");

        for child in [&mut runtime, &mut build] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert_eq!(scanner.scan(), []);
    }
}
