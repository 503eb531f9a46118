//! The functions (`AWS::Serverless::Function`): which cargo binary each runs (its
//! `Metadata.BuildProperties.Binary`), its timeout, and its environment as it runs locally:
//! Globals merged in, references resolved to the local resources, local overrides applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use super::events::{RawEvent, ScheduleSpec, SqsEventSpec, parse_events};
use super::intrinsics::{Expr, LocalResources};
use super::{Template, TemplateError, shape};

/// SAM's default function timeout, for a function that sets none (neither itself nor in Globals).
pub(super) const SAM_DEFAULT_TIMEOUT_SECS: u32 = 3;
/// Variables whose deployed value would be wrong locally. `CHORUS_NOTIFY_URLS=production` refuses
/// notification URLs on loopback and private networks; locally the receiver is usually on 127.0.0.1.
const LOCAL_OVERRIDES: &[(&str, &str)] = &[("CHORUS_NOTIFY_URLS", "local")];

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

impl Template {
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
}

pub(super) fn parse_variables(
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

pub(super) fn parse_function(
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
    let (sqs_events, schedules) = parse_events(&logical_id, raw.events)?;
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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawEnvironment {
    #[serde(default)]
    variables: BTreeMap<String, Value>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::template::tests::{fake_resources, real_template};

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
        assert_eq!(env["CHORUS_NOTIFY_URLS"], "local");
        // Provider credentials default to empty (off); `up` fills them from the shell.
        assert_eq!(env["OPENAI_API_KEY"], "");
        assert_eq!(env["REPLICATE_WEBHOOK_SECRET"], "");
        assert_eq!(env["BEDROCK_ENABLED"], "false");
        // No KMS on the emulators: the notifier opens tenants' secrets with the stand-in key.
        assert_eq!(env["CHORUS_TENANT_SECRETS_KEY"], chorus::adapters::sealing::LOCAL_STAND_IN_KEY);
    }

    /// With credentials given (as defaults here), each function gets those it uses, `withheld`
    /// for a provider it offers without calling, and nothing else; intake gets no credential.
    #[test]
    fn each_function_gets_only_the_credentials_it_uses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        let mut text = std::fs::read_to_string(path).unwrap();
        for (parameter, value) in
            [("OpenAiApiKey", "sk-test"), ("ReplicateApiToken", "r8-test"), ("ReplicateWebhookSecret", "whsec-test")]
        {
            let empty = format!("  {parameter}:\n    Type: String\n    Default: \"\"");
            assert!(text.contains(&empty), "{parameter} defaults to empty");
            text = text.replace(&empty, &format!("  {parameter}:\n    Type: String\n    Default: {value}"));
        }
        let template = Template::parse(&text).unwrap();
        let resources = fake_resources(&template);
        let env = |binary: &str| {
            let function = template.functions.iter().find(|f| f.binary == binary).unwrap();
            template.function_environment(function, &resources).unwrap()
        };
        let (intake, worker, webhook, notifier) = (env("intake"), env("worker"), env("webhook"), env("notifier"));
        let get = |env: &BTreeMap<String, String>, name: &str| env.get(name).cloned();
        let withheld = Some("withheld".to_owned());

        assert_eq!(
            (get(&intake, "OPENAI_API_KEY"), get(&intake, "REPLICATE_API_TOKEN")),
            (withheld.clone(), withheld.clone())
        );
        assert_eq!(get(&intake, "ANTHROPIC_API_KEY").as_deref(), Some(""), "a provider that is off stays off");
        assert_eq!(get(&worker, "OPENAI_API_KEY").as_deref(), Some("sk-test"));
        assert_eq!(get(&worker, "REPLICATE_API_TOKEN").as_deref(), Some("r8-test"));
        assert_eq!(get(&worker, "REPLICATE_WEBHOOK_SECRET"), withheld);
        assert_eq!(get(&webhook, "REPLICATE_WEBHOOK_SECRET").as_deref(), Some("whsec-test"));
        assert_eq!(get(&webhook, "REPLICATE_API_TOKEN"), withheld);
        assert_eq!(get(&notifier, "REPLICATE_API_TOKEN").as_deref(), Some("r8-test"));
        assert_eq!(get(&notifier, "REPLICATE_WEBHOOK_SECRET"), withheld);
        for (name, env) in [("intake", &intake), ("worker", &worker), ("webhook", &webhook), ("notifier", &notifier)] {
            let values: Vec<&String> = env.values().collect();
            let expected: &[&str] = match name {
                "worker" => &["sk-test", "r8-test"],
                "webhook" => &["whsec-test"],
                "notifier" => &["r8-test"],
                _ => &[],
            };
            for secret in ["sk-test", "r8-test", "whsec-test"] {
                let has = values.iter().any(|value| value.as_str() == secret);
                assert_eq!(has, expected.contains(&secret), "{name} and {secret}");
            }
            let opens_secrets = env.contains_key("CHORUS_TENANT_SECRETS_KEY");
            assert_eq!(opens_secrets, name == "notifier", "only the notifier opens tenants' secrets");
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
