//! The workflow domain: definitions, validation, the DAG, templates and run state.
//! No I/O and no AWS here; the engine brings the world in through ports.

pub mod budget;
pub mod cost;
pub mod dag;
pub mod definition;
pub mod event;
pub mod ids;
pub mod output;
pub mod rate;
pub mod registry;
pub mod rerun;
pub mod run;
pub mod schema;
pub mod step;
pub mod template;
pub mod transition;
pub mod validation;

#[cfg(test)]
pub(crate) mod properties;

pub use budget::{BudgetLedger, Reservation, Reserved, Settled, Settlement};
pub use cost::Cost;
pub use dag::Plan;
pub use definition::{StepDefinition, Task, Tolerance, WorkflowDefinition};
pub use event::{EventKind, RunEvent};
pub use ids::{InvalidId, RunId, StepId, TenantId, WorkflowName};
pub use output::{FinishReason, OutputError, TaskOutput};
pub use rate::{Bucket, RateLimit};
pub use registry::{RegistryLimits, WorkflowRef, WorkflowSelector, definition_hash};
pub use rerun::{RerunPlan, RunRetry, Start, StepReset};
pub use run::{ForkedFrom, MAX_CHILD_STEPS, MAX_RUN_DEPTH, NotifyTarget, ParentRef, Run, RunStatus};
pub use step::{
    Attempt, ErrorKind, JobRef, Lease, MAX_IDLE_REQUEUES, MAX_STEP_CLAIMS, MapProgress, StepControl, StepError,
    StepProgress, StepState, StepStatus, Usage,
};
pub use template::{MapItem, TemplateContext, Templates};
pub use transition::{Change, StepTransition, StepUpdate, UpdateError};
pub use validation::{Limits, ModelCatalog, Problem};
