//! Shared AWS SDK configuration: one rustls (ring) HTTP client, the region,
//! an optional endpoint override (moto in tests and the dev stack) and
//! credentials from settings or the standard provider chain.
//!
//! SDK-level retries are off: the Temporal activity retry policy owns retries,
//! so every attempt is visible in the workflow history. For the same reason
//! every SDK error becomes a classified `Failure` here, by the provider's own
//! error table, in one place for all AWS adapters.

use super::{ErrorRule, Failure, FailureClass, classify};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
// Every AWS SDK crate re-exports these same smithy types; any one will do.
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// Where and as whom the AWS clients talk.
#[derive(Clone, Default)]
pub struct AwsSettings {
    pub region: String,
    /// e.g. `http://127.0.0.1:5000` for moto; `None` for real AWS.
    pub endpoint_url: Option<String>,
    /// Static keys (dev/test); `None` uses the default chain (env, profile, IMDS, ECS, web identity).
    pub static_credentials: Option<(String, String)>,
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

pub async fn sdk_config(settings: &AwsSettings) -> aws_config::SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.region.clone()))
        .http_client(http_client)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(15))
                .build(),
        );
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((key_id, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            key_id,
            secret,
            None,
            None,
            "busflow-settings",
        ));
    }
    loader.load().await
}

/// Turns an AWS SDK error into a `Failure`: a service error by its code in
/// `table` (unknown codes retry), anything on the way there (timeout,
/// connection, unreadable response) as `Retry`. The reason is AWS's message,
/// which never echoes credentials.
pub fn classify_sdk_error<E: ProvideErrorMetadata, R: std::fmt::Debug>(
    provider: &'static str,
    table: &[ErrorRule],
    err: &SdkError<E, R>,
) -> Failure {
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let reason = service
                .err()
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("no message from {provider}"));
            Failure {
                provider,
                class: classify(table, &code),
                code,
                reason,
                retry_after: None,
            }
        }
        SdkError::TimeoutError(_) => transport_failure(
            provider,
            "Timeout",
            format!("{provider} did not answer in time"),
        ),
        SdkError::DispatchFailure(_) => transport_failure(
            provider,
            "Unreachable",
            format!("{provider} endpoint could not be reached"),
        ),
        SdkError::ResponseError(_) => transport_failure(
            provider,
            "BadResponse",
            format!("{provider} answered with an unreadable response"),
        ),
        _ => transport_failure(
            provider,
            "Unknown",
            format!("{provider} request failed before it was sent"),
        ),
    }
}

fn transport_failure(provider: &'static str, code: &str, reason: String) -> Failure {
    Failure {
        provider,
        class: FailureClass::Retry,
        code: code.into(),
        reason,
        retry_after: None,
    }
}
