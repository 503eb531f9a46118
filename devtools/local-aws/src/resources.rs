//! Creates the template's table, queues and bucket wherever the standard AWS environment points
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_REGION`...): an emulator locally.
//! Creating is idempotent, so `chorus local up` can run against resources that already exist.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use chorus::adapters::sealing::LOCAL_STAND_IN_KEY;
use thiserror::Error;

use crate::template::{self, LocalResources, QueueSpec, TableSpec, Template, local_name};

/// How long a new table may take to become ACTIVE (emulators: at once; AWS: seconds).
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The region S3 creates buckets in without a `LocationConstraint`.
const S3_DEFAULT_REGION: &str = "us-east-1";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a resource could not be created or found.
#[derive(Debug, Error)]
pub enum ResourceError {
    #[error("cannot {action}")]
    Aws {
        action: String,
        #[source]
        source: BoxError,
    },
    #[error("no AWS region is configured (set AWS_REGION)")]
    NoRegion,
    #[error("{action}: the response has no {field}")]
    Incomplete { action: String, field: &'static str },
    #[error("table {0} did not become ACTIVE within {TABLE_ACTIVE_TIMEOUT:?}")]
    TableNotActive(String),
}

/// How the local resources are named and tuned.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Resource names are `<prefix>-<kebab-case logical id>`; the contract's prefix is `chorus`.
    pub prefix: String,
    /// Replaces every queue's `VisibilityTimeout`. The template's values (360-720 s, six times
    /// the consuming function's timeout, as AWS advises) are also how long a failed message
    /// stays hidden before its next try; locally one wants to watch a message fail, come back
    /// and reach its dead-letter queue within seconds, not an hour.
    pub visibility_timeout: Option<u32>,
}

/// Creates (or finds) every resource and returns what the template's references mean.
pub async fn create(
    config: &SdkConfig,
    template: &Template,
    options: &CreateOptions,
) -> Result<LocalResources, ResourceError> {
    let region = config.region().map(ToString::to_string).ok_or(ResourceError::NoRegion)?;
    let mut resources = LocalResources::default();
    ensure_queues(config, template, options, &mut resources).await?;
    ensure_table(config, &template.table, &options.prefix, &mut resources).await?;
    ensure_bucket(config, template, &options.prefix, &region, &mut resources).await?;
    add_pseudo_parameters(template, &options.prefix, &region, &mut resources);
    Ok(resources)
}

/// Finds the resources [`create`] made, without creating or changing anything: what a second
/// process (the bridge) needs to resolve queue URLs and ARNs.
pub async fn locate(config: &SdkConfig, template: &Template, prefix: &str) -> Result<LocalResources, ResourceError> {
    let region = config.region().map(ToString::to_string).ok_or(ResourceError::NoRegion)?;
    let mut resources = LocalResources::default();
    let sqs = aws_sdk_sqs::Client::new(config);
    for queue in &template.queues {
        let name = local_name(prefix, &queue.logical_id);
        let url = queue_url(&sqs, &name).await?;
        record_queue(&sqs, queue, &name, &url, &mut resources).await?;
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let table = local_name(prefix, &template.table.logical_id);
    let arn = describe_table(&dynamodb, &table).await?.1;
    record_table(&template.table, &table, arn, &mut resources);
    let bucket = local_name(prefix, &template.bucket.logical_id);
    chorus::startup::s3_client(config)
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|err| aws(format!("find bucket {bucket}"), err))?;
    record_bucket(template, &bucket, &mut resources);
    add_pseudo_parameters(template, prefix, &region, &mut resources);
    Ok(resources)
}

async fn ensure_queues(
    config: &SdkConfig,
    template: &Template,
    options: &CreateOptions,
    resources: &mut LocalResources,
) -> Result<(), ResourceError> {
    let sqs = aws_sdk_sqs::Client::new(config);
    for queue in template.queues_dead_letter_first() {
        let name = local_name(&options.prefix, &queue.logical_id);
        let mut attributes = HashMap::new();
        if let Some(seconds) = options.visibility_timeout.or(queue.visibility_timeout) {
            attributes.insert(QueueAttributeName::VisibilityTimeout, seconds.to_string());
        }
        if let Some(seconds) = queue.message_retention_period {
            attributes.insert(QueueAttributeName::MessageRetentionPeriod, seconds.to_string());
        }
        if let Some(redrive) = &queue.redrive {
            // Dead-letter queues were created first, so the target's ARN is known.
            let target = resources.attribute(&redrive.target, "Arn").ok_or_else(|| ResourceError::Incomplete {
                action: format!("redrive {name} to {}", redrive.target),
                field: "dead-letter queue ARN",
            })?;
            let policy =
                serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": redrive.max_receive_count });
            attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        // Created bare, then configured: CreateQueue refuses an existing queue whose attributes
        // differ from the request (e.g. after another --visibility-timeout), SetQueueAttributes
        // does not.
        let url = match sqs.create_queue().queue_name(&name).send().await {
            Ok(created) => created.queue_url.ok_or_else(|| ResourceError::Incomplete {
                action: format!("create queue {name}"),
                field: "QueueUrl",
            })?,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_queue_name_exists()) => {
                queue_url(&sqs, &name).await?
            }
            Err(err) => return Err(aws(format!("create queue {name}"), err)),
        };
        if !attributes.is_empty() {
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|err| aws(format!("configure queue {name}"), err))?;
        }
        record_queue(&sqs, queue, &name, &url, resources).await?;
    }
    Ok(())
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, ResourceError> {
    let action = || format!("find queue {name}");
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|err| aws(action(), err))?
        .queue_url
        .ok_or_else(|| ResourceError::Incomplete { action: action(), field: "QueueUrl" })
}

async fn record_queue(
    sqs: &aws_sdk_sqs::Client,
    queue: &QueueSpec,
    name: &str,
    url: &str,
    resources: &mut LocalResources,
) -> Result<(), ResourceError> {
    let action = || format!("read the ARN of queue {name}");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|err| aws(action(), err))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| ResourceError::Incomplete { action: action(), field: "QueueArn" })?;
    resources.insert_ref(&queue.logical_id, url);
    resources.insert_attribute(&queue.logical_id, "QueueUrl", url);
    resources.insert_attribute(&queue.logical_id, "QueueName", name);
    resources.insert_attribute(&queue.logical_id, "Arn", arn);
    Ok(())
}

async fn ensure_table(
    config: &SdkConfig,
    spec: &TableSpec,
    prefix: &str,
    resources: &mut LocalResources,
) -> Result<(), ResourceError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let name = local_name(prefix, &spec.logical_id);
    let build = |source| aws(format!("build the request for table {name}"), source);
    let attributes = spec
        .attributes
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(scalar_type(a.attribute_type))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(build)?;
    let indexes = spec
        .indexes
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(projection_type(index.projection.projection_type))
                        .set_non_key_attributes(
                            Some(index.projection.non_key_attributes.clone()).filter(|names| !names.is_empty()),
                        )
                        .build(),
                )
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(build)?;
    // Billing and encryption do not change what the functions see; PAY_PER_REQUEST needs no
    // capacity numbers, which is why the template uses it too.
    let created = dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&spec.key_schema).map_err(build)?))
        .set_global_secondary_indexes(Some(indexes).filter(|indexes| !indexes.is_empty()))
        .send()
        .await;
    let existed = match created {
        Ok(_) => false,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => true,
        Err(err) => return Err(aws(format!("create table {name}"), err)),
    };
    let arn = wait_until_active(&dynamodb, &name).await?;
    if existed {
        warn_if_schema_differs(&dynamodb, spec, &name).await?;
    }
    if let Some(attribute) = &spec.ttl_attribute {
        ensure_ttl(&dynamodb, &name, attribute).await?;
    }
    record_table(spec, &name, arn, resources);
    Ok(())
}

fn key_schema(elements: &[template::KeyElement]) -> Result<Vec<KeySchemaElement>, aws_sdk_dynamodb::error::BuildError> {
    elements
        .iter()
        .map(|element| {
            let key_type = match element.key_type {
                template::KeyType::Hash => KeyType::Hash,
                template::KeyType::Range => KeyType::Range,
            };
            KeySchemaElement::builder().attribute_name(&element.attribute_name).key_type(key_type).build()
        })
        .collect()
}

fn scalar_type(attribute_type: template::AttributeType) -> ScalarAttributeType {
    match attribute_type {
        template::AttributeType::S => ScalarAttributeType::S,
        template::AttributeType::N => ScalarAttributeType::N,
        template::AttributeType::B => ScalarAttributeType::B,
    }
}

fn projection_type(projection: template::ProjectionType) -> ProjectionType {
    match projection {
        template::ProjectionType::All => ProjectionType::All,
        template::ProjectionType::KeysOnly => ProjectionType::KeysOnly,
        template::ProjectionType::Include => ProjectionType::Include,
    }
}

/// Status and ARN of a table.
async fn describe_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(Option<TableStatus>, String), ResourceError> {
    let action = || format!("describe table {name}");
    let table = dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|err| aws(action(), err))?
        .table
        .ok_or_else(|| ResourceError::Incomplete { action: action(), field: "Table" })?;
    let arn = table.table_arn.ok_or_else(|| ResourceError::Incomplete { action: action(), field: "TableArn" })?;
    Ok((table.table_status, arn))
}

async fn wait_until_active(dynamodb: &aws_sdk_dynamodb::Client, name: &str) -> Result<String, ResourceError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        let (status, arn) = describe_table(dynamodb, name).await?;
        if status == Some(TableStatus::Active) {
            return Ok(arn);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ResourceError::TableNotActive(name.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An emulator that keeps its data (or a table made by an older template) may hold a table
/// whose keys or indexes no longer match; the functions would then fail in confusing ways.
async fn warn_if_schema_differs(
    dynamodb: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
    name: &str,
) -> Result<(), ResourceError> {
    let table = dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|err| aws(format!("describe table {name}"), err))?
        .table;
    let Some(table) = table else { return Ok(()) };
    let keys: Vec<(String, String)> =
        table.key_schema().iter().map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned())).collect();
    let wanted: Vec<(String, String)> = spec
        .key_schema
        .iter()
        .map(|k| {
            let key_type = if k.key_type == template::KeyType::Hash { "HASH" } else { "RANGE" };
            (k.attribute_name.clone(), key_type.to_owned())
        })
        .collect();
    let mut indexes: Vec<&str> = table.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
    let mut wanted_indexes: Vec<&str> = spec.indexes.iter().map(|i| i.index_name.as_str()).collect();
    indexes.sort_unstable();
    wanted_indexes.sort_unstable();
    if keys != wanted || indexes != wanted_indexes {
        tracing::warn!(
            table = name,
            ?keys,
            ?indexes,
            "the existing table does not match the template; `chorus local down` and `up` again to recreate it"
        );
    }
    Ok(())
}

async fn ensure_ttl(dynamodb: &aws_sdk_dynamodb::Client, name: &str, attribute: &str) -> Result<(), ResourceError> {
    let current = dynamodb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|err| aws(format!("read the TTL of table {name}"), err))?
        .time_to_live_description;
    let enabled = current.is_some_and(|ttl| {
        matches!(ttl.time_to_live_status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
            && ttl.attribute_name.as_deref() == Some(attribute)
    });
    // Enabling TTL twice is an error in DynamoDB, hence the check first.
    if !enabled {
        let specification = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|err| aws(format!("build the TTL request for table {name}"), err))?;
        dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(specification)
            .send()
            .await
            .map_err(|err| aws(format!("enable TTL on table {name}"), err))?;
    }
    Ok(())
}

fn record_table(spec: &TableSpec, name: &str, arn: String, resources: &mut LocalResources) {
    resources.insert_ref(&spec.logical_id, name);
    resources.insert_attribute(&spec.logical_id, "Arn", arn);
}

/// The bucket's encryption, lifecycle and public-access settings are not applied: they do not
/// change what the functions can do with objects, and emulators implement them unevenly.
async fn ensure_bucket(
    config: &SdkConfig,
    template: &Template,
    prefix: &str,
    region: &str,
    resources: &mut LocalResources,
) -> Result<(), ResourceError> {
    let name = local_name(prefix, &template.bucket.logical_id);
    let mut request = chorus::startup::s3_client(config).create_bucket().bucket(&name);
    if region != S3_DEFAULT_REGION {
        let location = BucketLocationConstraint::from(region);
        request = request
            .create_bucket_configuration(CreateBucketConfiguration::builder().location_constraint(location).build());
    }
    match request.send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()) => {}
        Err(err) => return Err(aws(format!("create bucket {name}"), err)),
    }
    record_bucket(template, &name, resources);
    Ok(())
}

fn record_bucket(template: &Template, name: &str, resources: &mut LocalResources) {
    resources.insert_ref(&template.bucket.logical_id, name);
    resources.insert_attribute(&template.bucket.logical_id, "Arn", format!("arn:aws:s3:::{name}"));
}

/// `AWS::Region` and friends, plus the functions themselves (`!Ref WorkerFunction` is the
/// function's name, which locally is its binary), and the KMS keys. The account comes from a
/// queue ARN, so it is whatever the endpoint uses (`123456789012` for moto, `000000000000` for
/// LocalStack). The emulators run no KMS here: a key is the public stand-in
/// ([`LOCAL_STAND_IN_KEY`]), which the functions take, as `!Ref`/`!GetAtt Key.Arn`, for
/// `local:<key>` rather than a KMS key's id (see `chorus::adapters::sealing`).
fn add_pseudo_parameters(template: &Template, prefix: &str, region: &str, resources: &mut LocalResources) {
    let account = template
        .queues
        .iter()
        .find_map(|queue| resources.attribute(&queue.logical_id, "Arn"))
        .and_then(|arn| arn.split(':').nth(4))
        .unwrap_or("000000000000")
        .to_owned();
    resources.insert_ref("AWS::Region", region);
    resources.insert_ref("AWS::AccountId", &account);
    resources.insert_ref("AWS::Partition", "aws");
    resources.insert_ref("AWS::URLSuffix", "amazonaws.com");
    resources.insert_ref("AWS::StackName", prefix);
    // No API Gateway locally: `chorus local up` replaces CHORUS_PUBLIC_URL, the one variable
    // built from it, with the webhook function's `cargo lambda watch` URL.
    resources.insert_ref("HttpApi", "local");
    for key in &template.kms_keys {
        resources.insert_ref(key, LOCAL_STAND_IN_KEY);
        resources.insert_attribute(key, "Arn", LOCAL_STAND_IN_KEY);
    }
    for function in &template.functions {
        resources.insert_ref(&function.logical_id, &function.binary);
        resources.insert_attribute(
            &function.logical_id,
            "Arn",
            format!("arn:aws:lambda:{region}:{account}:function:{}", function.binary),
        );
    }
}

fn aws(action: String, source: impl Into<BoxError>) -> ResourceError {
    ResourceError::Aws { action, source: source.into() }
}
