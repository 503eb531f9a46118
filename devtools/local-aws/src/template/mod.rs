//! What the local stack needs from `infra/template.yaml`, read from the template itself so the
//! local resources, the SQS → Lambda routes and the functions' environment cannot drift from
//! what `sam deploy` creates. Only the parts that matter locally are typed; the rest (IAM,
//! alarms, encryption) is ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;
use thiserror::Error;

/// SAM's default function timeout, for a function that sets none (neither itself nor in Globals).
const SAM_DEFAULT_TIMEOUT_SECS: u32 = 3;
/// SAM's default `BatchSize` for SQS events.
const SAM_DEFAULT_BATCH_SIZE: u32 = 10;
/// Variables whose deployed value would be wrong locally. `CHORUS_CALLBACKS=production` refuses
/// callback URLs on loopback and private networks; locally the receiver is usually on 127.0.0.1.
const LOCAL_OVERRIDES: &[(&str, &str)] = &[("CHORUS_CALLBACKS", "local")];

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
    /// Parameter defaults, which is what `!Ref <Parameter>` means locally.
    parameters: BTreeMap<String, String>,
    /// `Globals.Function.Environment.Variables`.
    global_environment: BTreeMap<String, Expr>,
}

/// The `AWS::DynamoDB::Table`.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub logical_id: String,
    pub attributes: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeyElement>,
    pub indexes: Vec<GlobalSecondaryIndex>,
    /// The attribute DynamoDB's TTL reads, when TTL is enabled.
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: AttributeType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AttributeType {
    S,
    N,
    B,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: KeyType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyType {
    Hash,
    Range,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlobalSecondaryIndex {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: Projection,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    pub projection_type: ProjectionType,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProjectionType {
    All,
    KeysOnly,
    Include,
}

/// The `AWS::S3::Bucket`. Its encryption, lifecycle and access settings do not change what the
/// functions see, so only its name matters locally.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub logical_id: String,
}

/// An `AWS::SQS::Queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    pub visibility_timeout: Option<u32>,
    pub message_retention_period: Option<u32>,
    pub redrive: Option<Redrive>,
}

/// Where a queue moves a message after `max_receive_count` receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Logical id of the dead-letter queue.
    pub target: String,
    pub max_receive_count: u32,
}

/// An `AWS::Serverless::Function`.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The cargo binary, which is also the function's name under `cargo lambda watch`.
    pub binary: String,
    pub timeout: Duration,
    pub sqs_events: Vec<SqsEventSpec>,
    pub schedules: Vec<ScheduleSpec>,
    environment: BTreeMap<String, Expr>,
}

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

/// A value that may be a CloudFormation intrinsic: what the functions' environment is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Literal(String),
    /// `!Ref X` / `{Ref: X}`.
    Ref(String),
    /// `!GetAtt X.Attr` / `!GetAtt [X, Attr]` / `{Fn::GetAtt: ...}`.
    GetAtt {
        resource: String,
        attribute: String,
    },
    /// `!Sub "...${X}...${X.Attr}..."` (the one-argument form).
    Sub(String),
}

/// What the template's references mean locally: `!Ref X` and `!GetAtt X.Attr` for each
/// resource created, plus pseudo parameters such as `AWS::Region`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalResources {
    refs: BTreeMap<String, String>,
    /// Keyed `Logical.Attribute`, as `!GetAtt` writes it.
    attributes: BTreeMap<String, String>,
}

impl LocalResources {
    pub fn insert_ref(&mut self, logical_id: &str, value: impl Into<String>) {
        self.refs.insert(logical_id.to_owned(), value.into());
    }

    pub fn insert_attribute(&mut self, logical_id: &str, attribute: &str, value: impl Into<String>) {
        self.attributes.insert(format!("{logical_id}.{attribute}"), value.into());
    }

    /// What `!Ref logical_id` is locally.
    pub fn reference(&self, logical_id: &str) -> Option<&str> {
        self.refs.get(logical_id).map(String::as_str)
    }

    /// What `!GetAtt logical_id.attribute` is locally.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> Option<&str> {
        self.attributes.get(&format!("{logical_id}.{attribute}")).map(String::as_str)
    }
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
            parameters,
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

    /// One function's environment as it runs locally: Globals merged with the function's own
    /// variables, references resolved against `resources`, [`LOCAL_OVERRIDES`] applied.
    pub fn function_environment(
        &self,
        function: &FunctionSpec,
        resources: &LocalResources,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        let mut variables = self.global_environment.clone();
        variables.extend(function.environment.clone());
        let mut resolved = BTreeMap::new();
        for (name, expr) in variables {
            let value = self.resolve(&expr, resources).map_err(|message| TemplateError::Expression {
                context: format!("{}: {name}", function.logical_id),
                message,
            })?;
            resolved.insert(name, value);
        }
        for (name, value) in LOCAL_OVERRIDES {
            resolved.insert((*name).to_owned(), (*value).to_owned());
        }
        Ok(resolved)
    }

    /// The environment every function gets locally. One `cargo lambda watch` process runs all
    /// functions with one environment, so variables that differ between functions are refused
    /// rather than silently given one function's value.
    pub fn local_environment(&self, resources: &LocalResources) -> Result<BTreeMap<String, String>, TemplateError> {
        let mut merged: BTreeMap<String, String> = BTreeMap::new();
        for function in &self.functions {
            for (name, value) in self.function_environment(function, resources)? {
                match merged.get(&name) {
                    Some(first) if *first != value => {
                        return Err(TemplateError::ConflictingVariable {
                            variable: name,
                            first: first.clone(),
                            second: value,
                        });
                    }
                    _ => {
                        merged.insert(name, value);
                    }
                }
            }
        }
        Ok(merged)
    }

    fn resolve(&self, expr: &Expr, resources: &LocalResources) -> Result<String, String> {
        match expr {
            Expr::Literal(text) => Ok(text.clone()),
            Expr::Ref(name) => self.reference(name, resources),
            Expr::GetAtt { resource, attribute } => resources
                .attribute(resource, attribute)
                .map(str::to_owned)
                .ok_or_else(|| format!("!GetAtt {resource}.{attribute} has no local value")),
            Expr::Sub(text) => self.substitute(text, resources),
        }
    }

    fn reference(&self, name: &str, resources: &LocalResources) -> Result<String, String> {
        self.parameters
            .get(name)
            .map(String::as_str)
            .or_else(|| resources.reference(name))
            .map(str::to_owned)
            .ok_or_else(|| format!("!Ref {name} has no local value"))
    }

    /// `${Name}` is a `!Ref`, `${Name.Attr}` a `!GetAtt`, `${!Literal}` stays `${Literal}`.
    fn substitute(&self, text: &str, resources: &LocalResources) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in !Sub {text:?}"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some((resource, attribute)) = name.split_once('.') {
                let value = resources
                    .attribute(resource, attribute)
                    .ok_or_else(|| format!("${{{name}}} in !Sub has no local value"))?;
                out.push_str(value);
            } else {
                out.push_str(&self.reference(name, resources)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Expr {
    /// Reads a scalar or an intrinsic, in short (`!Ref X`) or long (`{Ref: X}`) form.
    fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                Self::intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(mapping) if mapping.len() == 1 => {
                let Some((Value::String(key), argument)) = mapping.iter().next() else {
                    return Err("a one-key mapping that is not an intrinsic function".to_owned());
                };
                let name = if key == "Ref" { key.as_str() } else { key.strip_prefix("Fn::").unwrap_or(key) };
                Self::intrinsic(name, argument)
            }
            other => scalar_text(other).map(Expr::Literal).ok_or_else(|| format!("unsupported value {other:?}")),
        }
    }

    fn intrinsic(name: &str, argument: &Value) -> Result<Self, String> {
        match (name, argument) {
            ("Ref", Value::String(target)) => Ok(Expr::Ref(target.clone())),
            ("GetAtt", Value::String(path)) => match path.split_once('.') {
                Some((resource, attribute)) => {
                    Ok(Expr::GetAtt { resource: resource.to_owned(), attribute: attribute.to_owned() })
                }
                None => Err(format!("!GetAtt {path} names no attribute")),
            },
            ("GetAtt", Value::Sequence(items)) => match items.as_slice() {
                [Value::String(resource), Value::String(attribute)] => {
                    Ok(Expr::GetAtt { resource: resource.clone(), attribute: attribute.clone() })
                }
                _ => Err("!GetAtt takes [resource, attribute]".to_owned()),
            },
            ("Sub", Value::String(text)) => Ok(Expr::Sub(text.clone())),
            _ => Err(format!("!{name} in this form is not supported by the local stack")),
        }
    }
}

/// A YAML scalar as the string CloudFormation would pass on (`30` → "30").
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn duplicate(kind: &'static str, first: &str, second: String) -> TemplateError {
    TemplateError::Duplicate { kind, first: first.to_owned(), second }
}

fn shape(logical_id: &str) -> impl FnOnce(serde_norway::Error) -> TemplateError + '_ {
    move |source| TemplateError::Shape { logical_id: logical_id.to_owned(), source }
}

fn parse_variables(
    context: &str,
    environment: Option<RawEnvironment>,
) -> Result<BTreeMap<String, Expr>, TemplateError> {
    let variables = environment.map(|environment| environment.variables).unwrap_or_default();
    variables
        .into_iter()
        .map(|(name, value)| {
            Expr::parse(&value)
                .map(|expr| (name.clone(), expr))
                .map_err(|message| TemplateError::Expression { context: format!("{context}: {name}"), message })
        })
        .collect()
}

fn parse_table(logical_id: &str, properties: Value) -> Result<TableSpec, TemplateError> {
    let raw: RawTable = serde_norway::from_value(properties).map_err(shape(logical_id))?;
    Ok(TableSpec {
        logical_id: logical_id.to_owned(),
        attributes: raw.attribute_definitions,
        key_schema: raw.key_schema,
        indexes: raw.global_secondary_indexes,
        ttl_attribute: raw.time_to_live_specification.filter(|ttl| ttl.enabled).map(|ttl| ttl.attribute_name),
    })
}

fn parse_queue(logical_id: String, properties: Value) -> Result<QueueSpec, TemplateError> {
    let raw: RawQueue = serde_norway::from_value(properties).map_err(shape(&logical_id))?;
    let redrive = match raw.redrive_policy {
        None => None,
        Some(policy) => match Expr::parse(&policy.dead_letter_target_arn) {
            Ok(Expr::GetAtt { resource, attribute }) if attribute == "Arn" => {
                Some(Redrive { target: resource, max_receive_count: policy.max_receive_count })
            }
            _ => {
                return Err(TemplateError::Expression {
                    context: format!("{logical_id}.RedrivePolicy.deadLetterTargetArn"),
                    message: "the local stack expects !GetAtt <Queue>.Arn".to_owned(),
                });
            }
        },
    };
    Ok(QueueSpec {
        logical_id,
        visibility_timeout: raw.visibility_timeout,
        message_retention_period: raw.message_retention_period,
        redrive,
    })
}

fn parse_function(
    logical_id: String,
    properties: Value,
    metadata: Value,
    default_timeout: u32,
) -> Result<FunctionSpec, TemplateError> {
    let raw: RawFunction = serde_norway::from_value(properties).map_err(shape(&logical_id))?;
    let metadata: RawMetadata = serde_norway::from_value(metadata).map_err(shape(&logical_id))?;
    let binary = metadata
        .build_properties
        .and_then(|properties| properties.binary)
        .ok_or_else(|| TemplateError::NoBinary { function: logical_id.clone() })?;
    let mut sqs_events = Vec::new();
    let mut schedules = Vec::new();
    for (name, event) in raw.events {
        match event.kind.as_str() {
            "SQS" => {
                let sqs: RawSqsEvent = serde_norway::from_value(event.properties).map_err(shape(&logical_id))?;
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
                    serde_norway::from_value(event.properties).map_err(shape(&logical_id))?;
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
    let environment = parse_variables(&format!("{logical_id}.Environment"), raw.environment)?;
    Ok(FunctionSpec {
        logical_id,
        binary,
        timeout: Duration::from_secs(u64::from(raw.timeout.unwrap_or(default_timeout))),
        sqs_events,
        schedules,
        environment,
    })
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

// The template as written. Unknown keys (policies, alarms, encryption...) are ignored.

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTemplate {
    #[serde(default)]
    parameters: BTreeMap<String, RawParameter>,
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
struct RawEnvironment {
    #[serde(default)]
    variables: BTreeMap<String, Value>,
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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTable {
    attribute_definitions: Vec<AttributeDefinition>,
    key_schema: Vec<KeyElement>,
    #[serde(default)]
    global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    #[serde(default)]
    time_to_live_specification: Option<RawTimeToLive>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTimeToLive {
    attribute_name: String,
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawQueue {
    #[serde(default)]
    visibility_timeout: Option<u32>,
    #[serde(default)]
    message_retention_period: Option<u32>,
    #[serde(default)]
    redrive_policy: Option<RawRedrivePolicy>,
}

/// CloudFormation spells the redrive policy's keys in camel case, as SQS does.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRedrivePolicy {
    dead_letter_target_arn: Value,
    max_receive_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawFunction {
    #[serde(default)]
    timeout: Option<u32>,
    #[serde(default)]
    events: BTreeMap<String, RawEvent>,
    #[serde(default)]
    environment: Option<RawEnvironment>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawMetadata {
    #[serde(default)]
    build_properties: Option<RawBuildProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawBuildProperties {
    #[serde(default)]
    binary: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEvent {
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

    fn real_template() -> Template {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        Template::load(&path).unwrap_or_else(|err| panic!("{}: {err:?}", path.display()))
    }

    /// What `chorus local up` would create, with made-up URLs and ARNs.
    fn fake_resources(template: &Template) -> LocalResources {
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
        resources
    }

    #[test]
    fn local_names_are_kebab_case_logical_ids() {
        assert_eq!(local_name("chorus", "Table"), "chorus-table");
        assert_eq!(local_name("chorus", "StepsDeadLetterQueue"), "chorus-steps-dead-letter-queue");
        assert_eq!(local_name("chorus", "HttpApi"), "chorus-http-api");
        assert_eq!(local_name("x", "SQSQueue2"), "x-sqs-queue2");
    }

    #[test]
    fn the_real_template_describes_the_contracts_table() {
        let table = real_template().table;
        assert_eq!(table.logical_id, "Table");
        let key = |name: &str, key_type| KeyElement { attribute_name: name.to_owned(), key_type };
        assert_eq!(table.key_schema, vec![key("pk", KeyType::Hash), key("sk", KeyType::Range)]);
        let attribute = |name: &str| table.attributes.iter().find(|a| a.attribute_name == name).unwrap().attribute_type;
        assert_eq!(attribute("wait_deadline"), AttributeType::N);
        assert_eq!(attribute("tenant_pk"), AttributeType::S);
        assert_eq!(table.attributes.len(), 6);
        let runs = table.indexes.iter().find(|i| i.index_name == "runs_by_tenant").unwrap();
        assert_eq!(runs.key_schema, vec![key("tenant_pk", KeyType::Hash), key("created_sk", KeyType::Range)]);
        assert_eq!(runs.projection.projection_type, ProjectionType::Include);
        assert!(runs.projection.non_key_attributes.contains(&"status".to_owned()));
        let waits = table.indexes.iter().find(|i| i.index_name == "waits_by_deadline").unwrap();
        assert_eq!(waits.projection.projection_type, ProjectionType::KeysOnly);
        assert_eq!(table.ttl_attribute.as_deref(), Some("expires_at"));
    }

    #[test]
    fn the_real_template_redrives_both_work_queues() {
        let template = real_template();
        let steps = template.queue("StepsQueue").unwrap();
        assert_eq!(steps.visibility_timeout, Some(720));
        assert_eq!(steps.redrive, Some(Redrive { target: "StepsDeadLetterQueue".to_owned(), max_receive_count: 5 }));
        let notifications = template.queue("NotificationsQueue").unwrap();
        assert_eq!(notifications.redrive.as_ref().unwrap().target, "NotificationsDeadLetterQueue");
        assert_eq!(template.queue("StepsDeadLetterQueue").unwrap().message_retention_period, Some(1_209_600));
        // Dead-letter queues first, so their ARNs exist when the redrive policies are set.
        let order: Vec<&str> = template.queues_dead_letter_first().iter().map(|q| q.logical_id.as_str()).collect();
        for queue in &template.queues {
            if let Some(redrive) = &queue.redrive {
                let position = |id: &str| order.iter().position(|o| *o == id).unwrap();
                assert!(position(&redrive.target) < position(&queue.logical_id), "{order:?}");
            }
        }
    }

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
                batch_size: 10,
                report_batch_item_failures: true,
                maximum_concurrency: Some(10),
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
    fn the_real_templates_environment_resolves_to_local_resources() {
        let template = real_template();
        let env = template.local_environment(&fake_resources(&template)).unwrap();
        assert_eq!(env["CHORUS_TABLE"], "chorus-table");
        assert_eq!(env["CHORUS_BUCKET"], "chorus-bucket");
        assert_eq!(env["CHORUS_STEPS_QUEUE_URL"], "http://q/1/chorus-steps-queue");
        assert_eq!(env["CHORUS_NOTIFICATIONS_QUEUE_URL"], "http://q/1/chorus-notifications-queue");
        assert_eq!(env["CHORUS_STEPS_DLQ_ARN"], "arn:aws:sqs:us-east-1:1:chorus-steps-dead-letter-queue");
        assert_eq!(env["CHORUS_RETENTION_DAYS"], "30");
        assert_eq!(env["CHORUS_CALLBACKS"], "local");
        // Provider credentials default to empty (off); `up` fills them from the shell.
        assert_eq!(env["OPENAI_API_KEY"], "");
        assert_eq!(env["BEDROCK_ENABLED"], "false");
    }

    #[test]
    fn intrinsics_parse_in_short_and_long_form() {
        let yaml = r#"
            a: !Ref Table
            b: {Ref: Table}
            c: !GetAtt Queue.Arn
            d: !GetAtt [Queue, Arn]
            e: {"Fn::GetAtt": [Queue, Arn]}
            f: !Sub "${Bucket.Arn}/x/${Table}/${!Literal}"
            g: 42
            h: !If [c, a, b]
        "#;
        let values: BTreeMap<String, Value> = serde_norway::from_str(yaml).unwrap();
        let parse = |key: &str| Expr::parse(&values[key]);
        let get_att = Expr::GetAtt { resource: "Queue".to_owned(), attribute: "Arn".to_owned() };
        assert_eq!(parse("a").unwrap(), Expr::Ref("Table".to_owned()));
        assert_eq!(parse("b").unwrap(), Expr::Ref("Table".to_owned()));
        assert_eq!(parse("c").unwrap(), get_att);
        assert_eq!(parse("d").unwrap(), get_att);
        assert_eq!(parse("e").unwrap(), get_att);
        assert_eq!(parse("g").unwrap(), Expr::Literal("42".to_owned()));
        assert!(parse("h").unwrap_err().contains("!If"));

        let template = real_template();
        let resources = fake_resources(&template);
        assert_eq!(
            template.resolve(&parse("f").unwrap(), &resources).unwrap(),
            "arn:aws:s3:::chorus-bucket/x/chorus-table/${Literal}"
        );
        let unknown = Expr::Ref("Nope".to_owned());
        assert!(template.resolve(&unknown, &resources).unwrap_err().contains("Nope"));
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

    #[test]
    fn a_function_without_a_binary_is_refused() {
        let yaml = "
Resources:
  Table: {Type: AWS::DynamoDB::Table, Properties: {AttributeDefinitions: [], KeySchema: []}}
  Bucket: {Type: AWS::S3::Bucket}
  Fn: {Type: AWS::Serverless::Function, Properties: {Timeout: 3}}
";
        assert!(matches!(Template::parse(yaml), Err(TemplateError::NoBinary { .. })));
    }
}
