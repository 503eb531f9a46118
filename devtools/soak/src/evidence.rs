//! What each run that broke a promise looked like, for whoever fixes it: one JSON file per run
//! in the evidence directory, with the violations, the run's view (`GET /v1/runs/{id}`, its
//! steps' statuses, attempts and errors), its history and the notifications heard. The
//! stack's state is gone once `soak.sh` stops it, so this is all that is left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chorus::domain::{RunEvent, RunId};
use serde_json::{Value, json};

use crate::SoakError;
use crate::receiver::Inbox;
use crate::stack::Stack;
use crate::verify::Violation;

/// Files written at most: enough to see the patterns, not a copy of the table.
const MOST: usize = 50;

/// Writes `<dir>/<run id>.json` for each run a violation names (the directory is emptied first).
pub async fn write(
    stack: &Stack,
    dir: &Path,
    violations: &[Violation],
    histories: &BTreeMap<RunId, Result<Vec<RunEvent>, String>>,
    inbox: &Inbox,
) -> Result<(), SoakError> {
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SoakError::File { path, source }
    };
    if dir.is_dir() {
        std::fs::remove_dir_all(dir).map_err(file_error(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(file_error(dir))?;
    let runs: BTreeSet<&str> = violations.iter().filter_map(Violation::run).collect();
    for run in runs.into_iter().take(MOST) {
        let Ok(run_id) = RunId::parse(run) else { continue };
        let broken: Vec<String> = violations.iter().filter(|v| v.run() == Some(run)).map(ToString::to_string).collect();
        let view = stack.run_view(&run_id).await.unwrap_or_else(|err| json!({"unreadable": err.to_string()}));
        let history = match histories.get(&run_id) {
            Some(Ok(events)) => serde_json::to_value(events).unwrap_or(Value::Null),
            Some(Err(error)) => json!({"unreadable": error}),
            None => Value::Null,
        };
        let heard = inbox.heard(run);
        let record = json!({
            "run_id": run,
            "violations": broken,
            "view": view,
            "events": history,
            "notifications": {
                "webhook_ids": heard.webhook_ids,
                "deliveries": heard.deliveries,
                "statuses": heard.statuses,
            },
        });
        let path = dir.join(format!("{run}.json"));
        let text = serde_json::to_string_pretty(&record).unwrap_or_default();
        std::fs::write(&path, text).map_err(file_error(&path))?;
    }
    Ok(())
}
