//! What a use case can fail with, in terms the HTTP edge and the Lambda handlers map to
//! status codes and retries.

use thiserror::Error;

use crate::domain::Problem;
use crate::ports::PortError;

#[derive(Debug, Error)]
pub enum EngineError {
    /// The request is wrong in these places; nothing was stored.
    #[error("the request is invalid ({} problems)", .0.len())]
    Invalid(Vec<Problem>),
    /// No such run (or step) for this tenant.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. approving a finished step).
    #[error("{0}")]
    Conflict(String),
    /// A backend failed; retrying later may succeed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// Work handed to the blocking pool did not finish (the runtime is shutting down).
    #[error("work on the blocking pool was interrupted")]
    Interrupted(#[source] tokio::task::JoinError),
}
