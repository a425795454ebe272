//! Shared AWS SDK configuration: one rustls (ring) HTTP client, the region,
//! an optional endpoint override (moto in tests and the dev stack) and
//! credentials from settings or the standard provider chain.
//!
//! SDK-level retries are off: the Temporal activity retry policy owns retries,
//! so every attempt is visible in the workflow history.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
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
