//! `chorus validate FILE`: runs the same checks as `POST /v1/runs` or `PUT /v1/workflows/{name}`
//! (against the models `chorus dev` offers) and lists every problem, so a workflow can be
//! fixed before a server is involved. Registered workflows that `workflow` steps name are
//! not looked up: a server checks them.

use std::path::PathBuf;
use std::process::ExitCode;

use chorus::domain::validation::validate_submission;
use chorus::domain::{Limits, Templates};
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A JSON file: a `POST /v1/runs` body (`{"workflow": ..., "input": ...}`), a
    /// `PUT /v1/workflows/{name}` body (`{"workflow": ...}`) or a bare workflow definition
    /// (without an input, the input is not checked).
    file: PathBuf,
}

/// The file could not be checked at all.
#[derive(Debug, Error)]
pub enum ValidateError {
    #[error(transparent)]
    Providers(#[from] chorus::startup::CatalogError),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Prints `ok` or the problems; the exit code is 1 when there are problems.
/// Validates against the providers this environment enables, as `chorus dev` would.
pub async fn run(args: &ValidateArgs) -> Result<ExitCode, ValidateError> {
    let path = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).map_err(|source| ValidateError::Read { path: path.clone(), source })?;
    let body: Value =
        serde_json::from_str(&text).map_err(|source| ValidateError::Json { path: path.clone(), source })?;

    let (workflow, input, bare) = match body {
        Value::Object(mut fields) if fields.contains_key("workflow") => {
            let workflow = fields.remove("workflow").unwrap_or_default();
            // A registration body has no input to check.
            let bare = !fields.contains_key("input");
            let input = fields.remove("input").filter(|v| !v.is_null()).unwrap_or(Value::Object(Map::new()));
            (workflow, input, bare)
        }
        workflow => (workflow, Value::Object(Map::new()), true),
    };

    let lookup = |name: &str| std::env::var(name).ok();
    // Validation calls nothing, so the limiter is never asked.
    let limiter =
        std::sync::Arc::new(chorus::adapters::MemoryRateLimiter::new(std::sync::Arc::new(chorus::ports::SystemClock)));
    let loading = chorus::startup::CredentialLoading::OnFirstUse;
    let router = chorus::startup::router_from_env(&lookup, limiter, None, loading).await?;
    let problems = match validate_submission(&workflow, &input, &router, &Templates::default(), Limits::default()) {
        Ok(validated) => {
            println!("{path}: ok ({} steps)", validated.definition.steps.len());
            return Ok(ExitCode::SUCCESS);
        }
        // A bare workflow comes without input, so complaints about the input are noise.
        Err(problems) => {
            problems.into_iter().filter(|p| !(bare && p.pointer.starts_with("/input"))).collect::<Vec<_>>()
        }
    };
    if problems.is_empty() {
        println!("{path}: ok (input not checked)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{path}: {} problem(s)", problems.len());
    for problem in problems {
        println!("  {}: {}", problem.pointer, problem.detail);
    }
    Ok(ExitCode::FAILURE)
}
