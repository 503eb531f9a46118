//! The AWS composition: each Lambda function's services, built once per cold start from its
//! [`Settings`], over DynamoDB, SQS, S3, SSM and (the notifier's tenants' secrets) KMS.

use crate::engine::TenantQuota;
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use super::providers::{CredentialLoading, router_from_env};
use super::{ConfigError, Settings};
use crate::adapters::chaos::{self, AwsChaos};
use crate::adapters::sealing::{Sealer, SealingKey};
use crate::adapters::{
    DynamoRateLimiter, DynamoRunStore, DynamoSigningSecrets, DynamoTenantDirectory, DynamoWorkflowRegistry,
    S3BlobStore, SqsQueue, SsmSecretStore,
};
use crate::domain::Limits;
use crate::engine::{DeliverySchedule, Engine, EngineParts, Notifier};
use crate::ports::{Clock, SystemClock, TenantDirectory};
use crate::webhooks::HttpWebhookSender;

/// The AWS SDK configuration from the standard sources (`AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_<SERVICE>`, the function's role), so the same code runs against AWS and
/// a local emulator.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client. Path-style addressing works on AWS and on every emulator, where
/// virtual-hosted names (`bucket.127.0.0.1`) cannot resolve.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// What the intake function serves the HTTP API with.
pub struct IntakeServices {
    pub engine: Arc<Engine>,
    pub tenants: Arc<dyn TenantDirectory>,
}

/// What the notifier function handles its three triggers with.
pub struct NotifierServices {
    pub engine: Arc<Engine>,
    pub notifier: Arc<Notifier>,
    /// The steps dead-letter queue: its records are step messages, not notifications.
    pub steps_dlq_arn: String,
}

/// The intake function: it validates submissions against the providers the environment
/// enables, but calls none, so it never reads their secrets.
pub async fn for_intake() -> Result<IntakeServices, ConfigError> {
    let aws = Aws::from_env().await?;
    let engine = aws.engine(CredentialLoading::OnFirstUse).await?;
    Ok(IntakeServices { engine, tenants: Arc::new(DynamoTenantDirectory::new(aws.dynamodb, &aws.settings.table)) })
}

/// The worker function: it runs steps, so it reads every provider credential at start.
pub async fn for_worker() -> Result<Arc<Engine>, ConfigError> {
    Aws::from_env().await?.engine(CredentialLoading::AtStart).await
}

/// The webhook function: it verifies providers' signatures with their secrets.
pub async fn for_webhook() -> Result<Arc<Engine>, ConfigError> {
    Aws::from_env().await?.engine(CredentialLoading::AtStart).await
}

/// The notifier function: deliveries, dead letters and the sweep (which polls provider jobs).
/// The only function that opens tenants' signing secrets, with the key
/// `CHORUS_TENANT_SECRETS_KEY` names.
pub async fn for_notifier() -> Result<NotifierServices, ConfigError> {
    let aws = Aws::from_env().await?;
    let engine = aws.engine(CredentialLoading::AtStart).await?;
    let sealer = Arc::new(Sealer::new(tenant_secrets_key(&|name| std::env::var(name).ok())?, &aws.config));
    let notifier = Arc::new(Notifier {
        store: aws.store.clone(),
        secrets: Arc::new(DynamoSigningSecrets::new(aws.dynamodb.clone(), &aws.settings.table, sealer)),
        sender: Arc::new(HttpWebhookSender::new(aws.settings.destinations)?),
        queue: Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.settings.notifications_queue_url)),
        clock: aws.clock.clone(),
        schedule: DeliverySchedule::default(),
    });
    Ok(NotifierServices { engine, notifier, steps_dlq_arn: aws.settings.steps_dlq_arn })
}

/// `CHORUS_TENANT_SECRETS_KEY`: the KMS key that seals tenants' webhook signing secrets
/// (the template's `TenantSecretsKey`), or `local:<base64>` on the local emulators.
pub fn tenant_secrets_key(lookup: &dyn Fn(&str) -> Option<String>) -> Result<SealingKey, ConfigError> {
    let name = "CHORUS_TENANT_SECRETS_KEY";
    let setting = lookup(name).ok_or(ConfigError::Missing(name))?;
    SealingKey::parse(&setting).map_err(|err| ConfigError::Invalid { name, detail: err.to_string() })
}

/// The clients every function shares.
struct Aws {
    settings: Settings,
    config: SdkConfig,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    blobs: Arc<S3BlobStore>,
    store: Arc<DynamoRunStore>,
    clock: Arc<dyn Clock>,
}

impl Aws {
    async fn from_env() -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let config = sdk_config().await;
        // The soak's AWS errors on demand: only when CHORUS_AWS_CHAOS_FILE is set.
        let chaos = AwsChaos::from_env();
        let dynamodb = chaos::dynamodb_client(&config, chaos.as_ref());
        let blobs = Arc::new(S3BlobStore::new(s3_client(&config), &settings.bucket));
        let store = Arc::new(DynamoRunStore::new(dynamodb.clone(), &settings.table, blobs.clone(), settings.retention));
        Ok(Self {
            sqs: chaos::sqs_client(&config, chaos.as_ref()),
            clock: Arc::new(SystemClock),
            settings,
            config,
            dynamodb,
            blobs,
            store,
        })
    }

    /// The engine, with the providers the environment configures; one rate-limit bucket per
    /// provider in the table, shared by every concurrent function.
    async fn engine(&self, loading: CredentialLoading) -> Result<Arc<Engine>, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let limiter = Arc::new(DynamoRateLimiter::new(self.dynamodb.clone(), &self.settings.table, self.clock.clone()));
        let secrets = Arc::new(SsmSecretStore::new(aws_sdk_ssm::Client::new(&self.config)));
        let quota = TenantQuota {
            requests: self.settings.tenant_requests,
            steps: self.settings.tenant_steps,
            ..TenantQuota::new(limiter.clone())
        };
        let router = router_from_env(&lookup, limiter, Some(secrets), loading).await?;
        Ok(Arc::new(Engine::new(EngineParts {
            store: self.store.clone(),
            steps: Arc::new(SqsQueue::new(self.sqs.clone(), &self.settings.steps_queue_url)),
            notifications: Arc::new(SqsQueue::new(self.sqs.clone(), &self.settings.notifications_queue_url)),
            router: Arc::new(router),
            blobs: self.blobs.clone(),
            clock: self.clock.clone(),
            // Registered workflows, on the same table: intake registers them and resolves the
            // names submissions give.
            registry: Arc::new(DynamoWorkflowRegistry::new(self.dynamodb.clone(), &self.settings.table)),
            destinations: self.settings.destinations,
            limits: Limits::default(),
            public_url: self.settings.public_url.clone(),
            invocation_budget: Some(self.settings.invocation_budget),
            quota: Some(quota),
        })))
    }
}
