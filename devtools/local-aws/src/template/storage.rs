//! The storage resources: the DynamoDB table (keys, indexes, TTL), the SQS queues with their
//! redrive policies, and the S3 bucket.

use serde::Deserialize;
use serde_norway::Value;

use super::intrinsics::Expr;
use super::{TemplateError, shape};

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

pub(super) fn parse_table(logical_id: &str, properties: Value) -> Result<TableSpec, TemplateError> {
    let raw: RawTable = serde_norway::from_value(properties).map_err(shape(logical_id))?;
    Ok(TableSpec {
        logical_id: logical_id.to_owned(),
        attributes: raw.attribute_definitions,
        key_schema: raw.key_schema,
        indexes: raw.global_secondary_indexes,
        ttl_attribute: raw.time_to_live_specification.filter(|ttl| ttl.enabled).map(|ttl| ttl.attribute_name),
    })
}

pub(super) fn parse_queue(logical_id: String, properties: Value) -> Result<QueueSpec, TemplateError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::template::tests::real_template;

    #[test]
    fn the_real_template_describes_the_contracts_table() {
        let table = real_template().table;
        assert_eq!(table.logical_id, "Table");
        let key = |name: &str, key_type| KeyElement { attribute_name: name.to_owned(), key_type };
        assert_eq!(table.key_schema, vec![key("pk", KeyType::Hash), key("sk", KeyType::Range)]);
        let attribute = |name: &str| table.attributes.iter().find(|a| a.attribute_name == name).unwrap().attribute_type;
        assert_eq!(attribute("due_at"), AttributeType::N);
        assert_eq!(attribute("tenant_pk"), AttributeType::S);
        assert_eq!(table.attributes.len(), 6);
        let runs = table.indexes.iter().find(|i| i.index_name == "runs_by_tenant").unwrap();
        assert_eq!(runs.key_schema, vec![key("tenant_pk", KeyType::Hash), key("created_sk", KeyType::Range)]);
        assert_eq!(runs.projection.projection_type, ProjectionType::Include);
        assert!(runs.projection.non_key_attributes.contains(&"status".to_owned()));
        let due = table.indexes.iter().find(|i| i.index_name == "reconcile_by_due").unwrap();
        assert_eq!(due.projection.projection_type, ProjectionType::KeysOnly);
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
}
