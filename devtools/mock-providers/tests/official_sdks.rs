//! The providers' official Python SDKs (pinned in `infra/local/requirements/sdks.in`, installed
//! into `.tools/sdks` by `infra/local/tools.sh`) against the mock, served in-process on a free
//! port: `sdk-check/check_sdks.py` makes each SDK's default calls and checks that the answers
//! parse. Ignored by a plain `cargo test`, which has no such venv; `make test`
//! (`infra/local/test.sh`) installs it and runs this test by name. Without the venv it fails: it
//! never passes without having run the SDKs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_mock_providers::{DEFAULT_WEBHOOK_SECRET, MockState, app};

/// Seven calls against a local server take seconds; this only stops a hung SDK.
const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs .tools/sdks (infra/local/tools.sh): run by make test"]
async fn the_official_sdks_default_calls_are_answered_by_the_mock() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = crate_dir.join("../../.tools/sdks/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run infra/local/tools.sh (make test does) to install the SDKs",
        python.display()
    );
    let script = crate_dir.join("sdk-check/check_sdks.py");

    // GIVEN the mock on a free port
    let state = MockState::new(DEFAULT_WEBHOOK_SECRET);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    // WHEN every SDK makes its default calls against it. The child gets an empty environment
    // and home: no provider key, base URL, proxy or config file of this machine's may steer an
    // SDK away from its defaults.
    let scratch = std::env::temp_dir().join(format!("chorus-sdk-check-{}", addr.port()));
    std::fs::create_dir_all(&scratch).unwrap();
    let log_path = scratch.join("check_sdks.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}"))
        .env_clear()
        .env("HOME", &scratch)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", python.display()));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);

    // THEN the script passed, and every provider's routes were the ones that answered
    let status = status.unwrap_or_else(|| panic!("check_sdks.py did not finish within {TIMEOUT:?}:\n{output}"));
    assert!(status.success(), "check_sdks.py failed ({status}):\n{output}");
    let requests = state.faults.requests();
    for (provider, calls) in [("openai", 3), ("anthropic", 1), ("gemini", 2), ("cohere", 2)] {
        let seen = requests.get(provider).copied().unwrap_or_default();
        assert!(seen >= calls, "{provider}: {seen} requests reached the mock, expected {calls}: {requests:?}");
    }
}
