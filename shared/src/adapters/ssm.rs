//! [`SecretStore`] on AWS Systems Manager Parameter Store: SecureString parameters, and
//! Secrets Manager secrets through SSM's `/aws/reference/secretsmanager/` bridge, so one
//! client serves both.

use async_trait::async_trait;
use secrecy::SecretString;

use crate::ports::{PortError, SecretStore};

/// Reads parameters with decryption.
pub struct SsmSecretStore {
    client: aws_sdk_ssm::Client,
}

impl SsmSecretStore {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretStore for SsmSecretStore {
    async fn read(&self, parameter: &str) -> Result<SecretString, PortError> {
        let answer = self
            .client
            .get_parameter()
            .name(parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|err| PortError::Unavailable { what: "AWS Systems Manager", source: Box::new(err) })?;
        let value = answer.parameter.and_then(|p| p.value).ok_or_else(|| PortError::Corrupt {
            what: "AWS Systems Manager",
            detail: format!("parameter `{parameter}` has no value"),
        })?;
        Ok(SecretString::from(value))
    }
}
