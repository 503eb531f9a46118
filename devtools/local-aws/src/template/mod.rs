//! What the local stack needs from `infra/template.yaml`, read from the template itself so the
//! local resources, the SQS → Lambda routes and the functions' environment cannot drift from
//! what `sam deploy` creates. Only the parts that matter locally are typed; the rest (IAM,
//! alarms, encryption) is ignored. This module reads the template's outline; `storage` the
//! table, queues and bucket, `functions` the functions and their environment, `events` their
//! SQS and schedule events, `intrinsics` the CloudFormation values (`!Ref`, `!GetAtt`,
//! `!Sub`, `!If`) in between, and `conditions` the conditions `!If` asks about.
//!
//! KMS keys (`AWS::KMS::Key`) are only listed: the emulators run no KMS here, so locally a
//! key stands for the public stand-in key ([`chorus::adapters::sealing::LOCAL_STAND_IN_KEY`]),
//! which is what a function's `!GetAtt Key.Arn` resolves to (see `resources`).

mod conditions;
mod events;
mod functions;
mod intrinsics;
mod storage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;
use thiserror::Error;

pub use self::events::{ScheduleSpec, SqsEventSpec};
pub use self::functions::FunctionSpec;
use self::functions::{RawEnvironment, SAM_DEFAULT_TIMEOUT_SECS, parse_function, parse_variables};
use self::intrinsics::scalar_text;
pub use self::intrinsics::{Expr, LocalResources};
pub use self::storage::{
    AttributeDefinition, AttributeType, BucketSpec, GlobalSecondaryIndex, KeyElement, KeyType, Projection,
    ProjectionType, QueueSpec, Redrive, TableSpec,
};
use self::storage::{parse_queue, parse_table};

/// Why the template could not be read or does not describe what the local stack can run.
#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid template", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("resource {logical_id} has an unexpected shape")]
    Shape {
        logical_id: String,
        #[source]
        source: serde_norway::Error,
    },
    #[error("the template has no {0} resource")]
    Missing(&'static str),
    #[error("the template has two {kind} resources ({first} and {second}); the local stack supports one")]
    Duplicate { kind: &'static str, first: String, second: String },
    #[error("{context}: {message}")]
    Expression { context: String, message: String },
    #[error("function {function} has no Metadata.BuildProperties.Binary (which cargo binary it runs)")]
    NoBinary { function: String },
    #[error("event {event} of {function} reads {queue}, which is not a queue of this template")]
    UnknownQueue { function: String, event: String, queue: String },
    #[error("functions disagree on {variable} ({first:?} and {second:?}); one `cargo lambda watch` gives all the same")]
    ConflictingVariable { variable: String, first: String, second: String },
}

/// The parts of the template the local stack runs.
#[derive(Debug, Clone)]
pub struct Template {
    pub table: TableSpec,
    pub bucket: BucketSpec,
    /// In logical-id order.
    pub queues: Vec<QueueSpec>,
    /// In logical-id order.
    pub functions: Vec<FunctionSpec>,
    /// The `AWS::KMS::Key` resources' logical ids, in order.
    pub kms_keys: Vec<String>,
    /// Parameter defaults, which is what `!Ref <Parameter>` means locally.
    parameters: BTreeMap<String, String>,
    /// `Conditions`, as written (evaluated when an `!If` asks).
    conditions: BTreeMap<String, Value>,
    /// `Globals.Function.Environment.Variables`.
    global_environment: BTreeMap<String, Expr>,
}

/// The local name of a resource: `prefix` + `-` + the logical id in kebab case
/// (`StepsDeadLetterQueue` → `chorus-steps-dead-letter-queue`), per the shared contract.
pub fn local_name(prefix: &str, logical_id: &str) -> String {
    let chars: Vec<char> = logical_id.chars().collect();
    let mut kebab = String::with_capacity(logical_id.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let previous = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            // `HttpApi` → http-api, and `SQSQueue` → sqs-queue (an acronym ends before the
            // capital that starts the next word).
            if previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next_is_lower)
            {
                kebab.push('-');
            }
        }
        kebab.push(c.to_ascii_lowercase());
    }
    format!("{prefix}-{kebab}")
}

impl Template {
    /// Reads and interprets the template at `path`.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|err| match err {
            TemplateError::Parse { source, .. } => TemplateError::Parse { path: path.into(), source },
            other => other,
        })
    }

    /// Interprets a template's text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let raw: RawTemplate =
            serde_norway::from_str(text).map_err(|source| TemplateError::Parse { path: PathBuf::new(), source })?;
        let parameters = raw
            .parameters
            .into_iter()
            .filter_map(|(name, parameter)| parameter.default.as_ref().and_then(scalar_text).map(|value| (name, value)))
            .collect();
        let global_environment = parse_variables("Globals.Function.Environment", raw.globals.function.environment)?;
        let default_timeout = raw.globals.function.timeout.unwrap_or(SAM_DEFAULT_TIMEOUT_SECS);

        let mut table: Option<TableSpec> = None;
        let mut bucket: Option<BucketSpec> = None;
        let mut queues = Vec::new();
        let mut functions = Vec::new();
        let mut kms_keys = Vec::new();
        for (logical_id, resource) in raw.resources {
            match resource.kind.as_str() {
                "AWS::DynamoDB::Table" => {
                    let spec = parse_table(&logical_id, resource.properties)?;
                    if let Some(first) = &table {
                        return Err(duplicate("AWS::DynamoDB::Table", &first.logical_id, logical_id));
                    }
                    table = Some(spec);
                }
                "AWS::S3::Bucket" => {
                    if let Some(first) = &bucket {
                        return Err(duplicate("AWS::S3::Bucket", &first.logical_id, logical_id));
                    }
                    bucket = Some(BucketSpec { logical_id });
                }
                "AWS::SQS::Queue" => queues.push(parse_queue(logical_id, resource.properties)?),
                "AWS::KMS::Key" => kms_keys.push(logical_id),
                "AWS::Serverless::Function" => {
                    functions.push(parse_function(
                        logical_id,
                        resource.properties,
                        resource.metadata,
                        default_timeout,
                    )?);
                }
                _ => {}
            }
        }
        for function in &functions {
            for event in &function.sqs_events {
                if !queues.iter().any(|queue| queue.logical_id == event.queue) {
                    return Err(TemplateError::UnknownQueue {
                        function: function.logical_id.clone(),
                        event: event.name.clone(),
                        queue: event.queue.clone(),
                    });
                }
            }
        }
        for queue in &queues {
            if let Some(redrive) = &queue.redrive
                && !queues.iter().any(|target| target.logical_id == redrive.target)
            {
                return Err(TemplateError::Expression {
                    context: format!("{}.RedrivePolicy", queue.logical_id),
                    message: format!("{} is not a queue of this template", redrive.target),
                });
            }
        }
        Ok(Self {
            table: table.ok_or(TemplateError::Missing("AWS::DynamoDB::Table"))?,
            bucket: bucket.ok_or(TemplateError::Missing("AWS::S3::Bucket"))?,
            queues,
            functions,
            kms_keys,
            parameters,
            conditions: raw.conditions,
            global_environment,
        })
    }

    pub fn queue(&self, logical_id: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|queue| queue.logical_id == logical_id)
    }

    /// The queues in an order where every dead-letter queue comes before the queues that
    /// redrive into it, so its ARN exists when their redrive policy is set.
    pub fn queues_dead_letter_first(&self) -> Vec<&QueueSpec> {
        let (plain, redriven): (Vec<&QueueSpec>, Vec<&QueueSpec>) =
            self.queues.iter().partition(|queue| queue.redrive.is_none());
        plain.into_iter().chain(redriven).collect()
    }
}

fn duplicate(kind: &'static str, first: &str, second: String) -> TemplateError {
    TemplateError::Duplicate { kind, first: first.to_owned(), second }
}

fn shape(logical_id: &str) -> impl FnOnce(serde_norway::Error) -> TemplateError + '_ {
    move |source| TemplateError::Shape { logical_id: logical_id.to_owned(), source }
}

// The template as written. Unknown keys (policies, alarms, encryption...) are ignored.

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTemplate {
    #[serde(default)]
    parameters: BTreeMap<String, RawParameter>,
    #[serde(default)]
    conditions: BTreeMap<String, Value>,
    #[serde(default)]
    globals: RawGlobals,
    resources: BTreeMap<String, RawResource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawParameter {
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawGlobals {
    #[serde(default)]
    function: RawGlobalFunction,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawGlobalFunction {
    #[serde(default)]
    timeout: Option<u32>,
    #[serde(default)]
    environment: Option<RawEnvironment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawResource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
    #[serde(default)]
    metadata: Value,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The repository's own template, which the sibling modules' tests read too.
    pub(super) fn real_template() -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        Template::load(&path).unwrap_or_else(|err| panic!("{}: {err:?}", path.display()))
    }

    /// What `chorus local up` would create, with made-up URLs and ARNs.
    pub(super) fn fake_resources(template: &Template) -> LocalResources {
        let mut resources = LocalResources::default();
        let table = local_name("chorus", &template.table.logical_id);
        resources.insert_ref(&template.table.logical_id, &table);
        resources.insert_attribute(
            &template.table.logical_id,
            "Arn",
            format!("arn:aws:dynamodb:us-east-1:1:table/{table}"),
        );
        let bucket = local_name("chorus", &template.bucket.logical_id);
        resources.insert_ref(&template.bucket.logical_id, &bucket);
        resources.insert_attribute(&template.bucket.logical_id, "Arn", format!("arn:aws:s3:::{bucket}"));
        for queue in &template.queues {
            let name = local_name("chorus", &queue.logical_id);
            resources.insert_ref(&queue.logical_id, format!("http://q/1/{name}"));
            resources.insert_attribute(&queue.logical_id, "Arn", format!("arn:aws:sqs:us-east-1:1:{name}"));
        }
        // As `resources::create` adds them.
        resources.insert_ref("AWS::Region", "us-east-1");
        resources.insert_ref("AWS::URLSuffix", "amazonaws.com");
        resources.insert_ref("HttpApi", "local");
        for key in &template.kms_keys {
            resources.insert_attribute(key, "Arn", chorus::adapters::sealing::LOCAL_STAND_IN_KEY);
        }
        resources
    }

    /// The notifier may decrypt only what was sealed for this purpose: the key policy's
    /// condition and the code's encryption context must name the same one.
    #[test]
    fn the_notifiers_kms_condition_names_the_purpose_secrets_are_sealed_for() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let condition = format!("kms:EncryptionContext:purpose: {}", chorus::adapters::dynamodb::SEAL_PURPOSE);
        assert!(text.contains(&condition), "the template's kms:Decrypt condition is not `{condition}`");
        assert_eq!(real_template().kms_keys, ["TenantSecretsKey"]);
    }

    #[test]
    fn local_names_are_kebab_case_logical_ids() {
        assert_eq!(local_name("chorus", "Table"), "chorus-table");
        assert_eq!(local_name("chorus", "StepsDeadLetterQueue"), "chorus-steps-dead-letter-queue");
        assert_eq!(local_name("chorus", "HttpApi"), "chorus-http-api");
        assert_eq!(local_name("x", "SQSQueue2"), "x-sqs-queue2");
    }
}
