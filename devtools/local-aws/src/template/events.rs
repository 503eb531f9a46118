//! A function's events: the SQS event sources the local bridge polls on the function's behalf,
//! and the `Schedule` events it fires (`rate(...)` ones; `cron(...)` is recognised but not run).
//! HTTP events need nothing here: `cargo lambda watch` serves every function under
//! /lambda-url/<binary>/.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use super::intrinsics::Expr;
use super::{TemplateError, shape};

/// SAM's default `BatchSize` for SQS events.
const SAM_DEFAULT_BATCH_SIZE: u32 = 10;

/// An SQS event source: what the local bridge polls on the function's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsEventSpec {
    pub name: String,
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: u32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`: the function's `batchItemFailures`
    /// decide what is deleted. Without it any successful invocation deletes the whole batch.
    pub report_batch_item_failures: bool,
    pub maximum_concurrency: Option<u32>,
}

/// A `Schedule` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub name: String,
    /// The expression as written, e.g. `rate(1 minute)`.
    pub expression: String,
    /// The period of a `rate(...)` expression; `None` for `cron(...)`, which the local stack does
    /// not run.
    pub every: Option<Duration>,
    pub enabled: bool,
}

/// The SQS and schedule events of the function `logical_id`, disabled SQS events left out.
pub(super) fn parse_events(
    logical_id: &str,
    events: BTreeMap<String, RawEvent>,
) -> Result<(Vec<SqsEventSpec>, Vec<ScheduleSpec>), TemplateError> {
    let mut sqs_events = Vec::new();
    let mut schedules = Vec::new();
    for (name, event) in events {
        match event.kind.as_str() {
            "SQS" => {
                let sqs: RawSqsEvent = serde_norway::from_value(event.properties).map_err(shape(logical_id))?;
                if !sqs.enabled {
                    continue;
                }
                let queue = match Expr::parse(&sqs.queue) {
                    Ok(Expr::GetAtt { resource, attribute }) if attribute == "Arn" => resource,
                    _ => {
                        return Err(TemplateError::Expression {
                            context: format!("{logical_id}.Events.{name}.Queue"),
                            message: "the local stack expects !GetAtt <Queue>.Arn".to_owned(),
                        });
                    }
                };
                sqs_events.push(SqsEventSpec {
                    name,
                    queue,
                    batch_size: sqs.batch_size.unwrap_or(SAM_DEFAULT_BATCH_SIZE),
                    report_batch_item_failures: sqs
                        .function_response_types
                        .iter()
                        .any(|t| t == "ReportBatchItemFailures"),
                    maximum_concurrency: sqs.scaling_config.and_then(|scaling| scaling.maximum_concurrency),
                });
            }
            "Schedule" => {
                let schedule: RawScheduleEvent =
                    serde_norway::from_value(event.properties).map_err(shape(logical_id))?;
                let every = parse_rate(&schedule.schedule).map_err(|message| TemplateError::Expression {
                    context: format!("{logical_id}.Events.{name}.Schedule"),
                    message,
                })?;
                let enabled = schedule.enabled.unwrap_or(true) && schedule.state.as_deref() != Some("DISABLED");
                schedules.push(ScheduleSpec { name, expression: schedule.schedule, every, enabled });
            }
            // HTTP events are served by `cargo lambda watch` itself, under /lambda-url/<binary>/.
            _ => {}
        }
    }
    Ok((sqs_events, schedules))
}

/// `rate(5 minutes)` → 5 min; `cron(...)` → `None` (valid, but not run locally).
fn parse_rate(expression: &str) -> Result<Option<Duration>, String> {
    let expression = expression.trim();
    if expression.starts_with("cron(") {
        return Ok(None);
    }
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| format!("{expression:?} is neither rate(...) nor cron(...)"))?;
    let (count, unit) = inner.trim().split_once(' ').ok_or_else(|| format!("{expression:?} has no unit"))?;
    let count: u64 = count.parse().map_err(|_| format!("{expression:?} does not start with a whole number"))?;
    let unit_secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        other => return Err(format!("unknown unit {other:?} in {expression:?}")),
    };
    if count == 0 {
        return Err(format!("{expression:?} has a zero period"));
    }
    Ok(Some(Duration::from_secs(count.saturating_mul(unit_secs))))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawEvent {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawSqsEvent {
    queue: Value,
    #[serde(default)]
    batch_size: Option<u32>,
    #[serde(default)]
    function_response_types: Vec<String>,
    #[serde(default)]
    scaling_config: Option<RawScalingConfig>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawScalingConfig {
    #[serde(default)]
    maximum_concurrency: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawScheduleEvent {
    schedule: String,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    state: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::template::tests::real_template;

    #[test]
    fn the_real_template_routes_queues_and_the_schedule_to_functions() {
        let template = real_template();
        let function = |binary: &str| template.functions.iter().find(|f| f.binary == binary).unwrap();
        let worker = function("worker");
        assert_eq!(worker.logical_id, "WorkerFunction");
        assert_eq!(worker.timeout, Duration::from_secs(120));
        assert_eq!(
            worker.sqs_events,
            vec![SqsEventSpec {
                name: "Steps".to_owned(),
                queue: "StepsQueue".to_owned(),
                batch_size: 1,
                report_batch_item_failures: true,
                maximum_concurrency: Some(50),
            }]
        );
        let notifier = function("notifier");
        let mut queues: Vec<&str> = notifier.sqs_events.iter().map(|e| e.queue.as_str()).collect();
        queues.sort_unstable();
        assert_eq!(queues, ["NotificationsQueue", "StepsDeadLetterQueue"]);
        assert!(notifier.sqs_events.iter().all(|e| e.report_batch_item_failures && e.batch_size == 10));
        assert_eq!(notifier.schedules.len(), 1);
        assert_eq!(notifier.schedules[0].every, Some(Duration::from_secs(60)));
        assert!(notifier.schedules[0].enabled);
        for http in ["intake", "webhook"] {
            assert!(function(http).sqs_events.is_empty() && function(http).schedules.is_empty());
            assert_eq!(function(http).timeout, Duration::from_secs(29));
        }
    }

    #[test]
    fn rates_parse_and_cron_is_recognised_but_not_run() {
        assert_eq!(parse_rate("rate(1 minute)").unwrap(), Some(Duration::from_secs(60)));
        assert_eq!(parse_rate("rate(2 hours)").unwrap(), Some(Duration::from_secs(7200)));
        assert_eq!(parse_rate("cron(0 12 * * ? *)").unwrap(), None);
        for bad in ["rate(0 minutes)", "rate(1 fortnight)", "every minute", "rate(x minutes)"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
