//! The processes `chorus local up` leaves running (the emulator through its script,
//! `cargo lambda watch`, the bridge), and the state file `chorus local down` stops them from.
//! Background processes get their own process group, so a Ctrl-C in the terminal that ran `up`
//! does not reach them and `down` can stop a process together with its children.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
#[cfg(unix)]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where `up` keeps its state and logs, under the repository root (gitignored).
pub const STATE_DIR: &str = ".chorus/local";
const STATE_FILE: &str = "state.json";
/// The emulator script, relative to the repository root.
pub const EMULATOR_SCRIPT: &str = "infra/local/emulator.sh";
/// A stopped process gets this long to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a process could not be started, found or stopped.
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("no Cargo.toml with [workspace] in {} or above it (use --repo)", start.display())]
    NoRepo { start: PathBuf },
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}){}", stderr_hint(stderr))]
    Failed { command: String, status: String, stderr: String },
    #[error("cannot use {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a state file this version understands", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn stderr_hint(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
}

/// The repository root: the nearest directory at or above `start` whose `Cargo.toml` declares
/// a `[workspace]`.
pub fn find_repo_root(start: &Path) -> Result<PathBuf, ProcessError> {
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.lines().any(|line| line.trim() == "[workspace]")
        {
            return Ok(dir.to_path_buf());
        }
    }
    Err(ProcessError::NoRepo { start: start.to_path_buf() })
}

/// Runs `infra/local/emulator.sh <action>` in `repo`, its progress going to our stderr, and
/// returns the variables of the `export` lines it prints.
pub fn emulator_script(
    repo: &Path,
    action: &str,
    extra_env: &[(&str, &str)],
) -> Result<BTreeMap<String, String>, ProcessError> {
    let script = repo.join(EMULATOR_SCRIPT);
    let command = format!("{} {action}", script.display());
    let output = Command::new("bash")
        .arg(&script)
        .arg(action)
        .current_dir(repo)
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| ProcessError::Spawn { command: command.clone(), source })?;
    if !output.status.success() {
        return Err(ProcessError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(parse_exports(&String::from_utf8_lossy(&output.stdout)))
}

/// `export A=1 B='two words' C="x"` lines → variables. Other lines are ignored, so a script may
/// print anything else too. Quoting is the subset shells print for `export -p`/`printf %q`-free
/// output: single quotes, double quotes with backslash escapes, or bare words.
pub fn parse_exports(text: &str) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("export ") else { continue };
        for word in shell_words(rest) {
            if let Some((name, value)) = word.split_once('=')
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                variables.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    variables
}

fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Quotes a value for an `export` line a user pastes into a shell.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c)) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Starts `command` in the background: its own process group, stdin closed, stdout and stderr
/// to `log` (replaced, so it holds this run only). Returns its pid (which is also its process group id).
pub fn spawn_detached(mut command: Command, log: &Path) -> Result<u32, ProcessError> {
    let file = |source| ProcessError::File { path: log.to_path_buf(), source };
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(file)?;
    }
    let out = File::create(log).map_err(file)?;
    let err = out.try_clone().map_err(file)?;
    let description = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| ProcessError::Spawn { command: description, source })?;
    // Not waited for: the process outlives this one; `down` stops it by its pid.
    Ok(child.id())
}

/// Whether `pid` is alive and its command line contains `expected` (a guard against a pid that
/// was reused by an unrelated process since the state file was written).
pub fn is_running(pid: u32, expected: &str) -> bool {
    Command::new("ps")
        .args(["-o", "stat=,command=", "-p", &pid.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .is_some_and(|output| {
            let line = String::from_utf8_lossy(&output.stdout);
            // A zombie (`Z`) has exited; only its parent has not reaped it yet.
            !line.trim_start().starts_with('Z') && line.contains(expected)
        })
}

/// Sends SIGTERM to the process group `pgid`, waits up to [`STOP_GRACE`] for its leader to go,
/// then SIGKILLs the group. Returns whether anything was running.
pub async fn stop_group(pgid: u32, expected: &str) -> bool {
    if !is_running(pgid, expected) {
        return false;
    }
    signal_group(pgid, "TERM");
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while is_running(pgid, expected) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if is_running(pgid, expected) {
        tracing::warn!(pgid, "still running after SIGTERM; sending SIGKILL");
        signal_group(pgid, "KILL");
    }
    true
}

/// Sends `signal` (a name such as `KILL`) to process `pid`, through `kill(1)` as
/// [`signal_group`] does. A process that is already gone is not an error worth reporting.
pub fn kill_process(pid: u32, signal: &str) {
    let sent = Command::new("kill").args([format!("-{signal}"), pid.to_string()]).stderr(Stdio::null()).status();
    if let Err(err) = sent {
        tracing::warn!(pid, signal, error = %err, "cannot run kill");
    }
}

/// Through `kill(1)`: the standard library cannot signal a process group and this workspace
/// takes no libc bindings for two calls.
fn signal_group(pgid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    if let Err(err) = sent {
        tracing::warn!(pgid, signal, error = %err, "cannot run kill");
    }
}

/// The last `lines` lines of a log, for an error message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(log) else { return String::new() };
    // Only the end matters and a build log can be large.
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)));
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What `up` started, for `down`. Written after each step, so `down` also cleans up after an
/// `up` that failed half-way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// `localstack` or `moto`, as given to `up`.
    pub emulator: String,
    /// Whether `up` started the emulator (rather than using one from `AWS_ENDPOINT_URL`):
    /// `down` stops only what `up` started.
    #[serde(default)]
    pub owns_emulator: bool,
    /// The variables the emulator script exported.
    pub emulator_env: BTreeMap<String, String>,
    /// The functions' resolved environment.
    pub function_env: BTreeMap<String, String>,
    pub lambda: Option<Started>,
    pub bridge: Option<Started>,
    pub api_url: Option<String>,
}

/// A background process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    /// Also its process group id.
    pub pid: u32,
    /// A word of its command line, checked before it is signalled.
    pub expect: String,
    pub log: PathBuf,
}

impl State {
    pub fn path(repo: &Path) -> PathBuf {
        repo.join(STATE_DIR).join(STATE_FILE)
    }

    /// The state file, or `None` when there is none.
    pub fn load(repo: &Path) -> Result<Option<Self>, ProcessError> {
        let path = Self::path(repo);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ProcessError::File { path, source }),
        };
        serde_json::from_str(&text).map(Some).map_err(|source| ProcessError::State { path, source })
    }

    pub fn save(&self, repo: &Path) -> Result<(), ProcessError> {
        let path = Self::path(repo);
        let file = |source| ProcessError::File { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(file)?;
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|source| ProcessError::State { path: path.clone(), source })?;
        std::fs::write(&path, text).map_err(file)
    }

    pub fn remove(repo: &Path) -> Result<(), ProcessError> {
        let path = Self::path(repo);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ProcessError::File { path, source: err }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_are_parsed_and_other_output_ignored() {
        let text = "starting moto on 4566...\n\
                    export AWS_ENDPOINT_URL=http://127.0.0.1:4566\n\
                    export AWS_REGION='us-east-1' AWS_DEFAULT_REGION=\"us-east-1\"\n\
                    export A='it'\\''s' B=\"say \\\"hi\\\"\" # a comment\n\
                    exported=no\n";
        let env = parse_exports(text);
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:4566");
        assert_eq!(env["AWS_REGION"], "us-east-1");
        assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1");
        assert_eq!(env["A"], "it's");
        assert_eq!(env["B"], "say \"hi\"");
        assert_eq!(env.len(), 5);
    }

    #[test]
    fn quoted_values_survive_a_shell_round_trip() {
        for value in ["plain", "http://127.0.0.1:4566/x", "two words", "it's", ""] {
            let line = format!("export X={}", shell_quote(value));
            assert_eq!(parse_exports(&line)["X"], value, "{line}");
        }
    }

    #[test]
    fn the_repo_root_is_the_workspace_manifest_above() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let root = find_repo_root(&here).unwrap();
        assert!(root.join("cli").is_dir() && root.join("shared").is_dir(), "{}", root.display());
        assert!(find_repo_root(Path::new("/")).is_err());
    }
}
