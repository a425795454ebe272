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
use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{ConnectorError, ProvideErrorMetadata, SdkError};
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
/// `table` (unknown codes retry). On the way there, what never left
/// (construction, a refused or timed-out connection) retries, and what may
/// have been accepted (a timeout or a lost connection after the request was
/// written, a 2xx that cannot be read) is `Unknown`. The reason is AWS's
/// message, which never echoes credentials.
pub fn classify_sdk_error<E: ProvideErrorMetadata>(
    provider: &'static str,
    table: &[ErrorRule],
    err: &SdkError<E, HttpResponse>,
) -> Failure {
    match err {
        // A 2xx the SDK could not read comes back as an unhandled service error.
        SdkError::ServiceError(service) if service.raw().status().is_success() => {
            transport_failure(
                provider,
                FailureClass::Unknown,
                "BadResponse",
                format!("{provider} accepted the request with an answer that cannot be read"),
            )
        }
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
            FailureClass::Unknown,
            "Timeout",
            format!("{provider} did not answer in time; the request may have been accepted"),
        ),
        SdkError::DispatchFailure(dispatch) if never_left(dispatch.as_connector_error()) => {
            transport_failure(
                provider,
                FailureClass::Retry,
                "Unreachable",
                format!("{provider} endpoint could not be reached"),
            )
        }
        SdkError::DispatchFailure(_) => transport_failure(
            provider,
            FailureClass::Unknown,
            "ConnectionLost",
            format!(
                "the connection to {provider} failed while the request was under way; it may have been accepted"
            ),
        ),
        SdkError::ResponseError(response) if response.raw().status().is_success() => {
            transport_failure(
                provider,
                FailureClass::Unknown,
                "BadResponse",
                format!("{provider} accepted the request with an answer that cannot be read"),
            )
        }
        SdkError::ResponseError(_) => transport_failure(
            provider,
            FailureClass::Retry,
            "BadResponse",
            format!("{provider} refused the request with an answer that cannot be read"),
        ),
        _ => transport_failure(
            provider,
            FailureClass::Retry,
            "RequestNotSent",
            format!("{provider} request failed before it was sent"),
        ),
    }
}

/// A dispatch failure whose request cannot have reached the provider: the
/// connection timed out (the only SDK timeout short of the whole attempt is
/// the connect timeout) or was refused.
fn never_left(connector: Option<&ConnectorError>) -> bool {
    let Some(connector) = connector else {
        return false;
    };
    if connector.is_timeout() || connector.is_user() {
        return true;
    }
    let mut source = std::error::Error::source(connector);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn transport_failure(
    provider: &'static str,
    class: FailureClass,
    code: &str,
    reason: String,
) -> Failure {
    Failure {
        provider,
        class,
        code: code.into(),
        reason,
        retry_after: None,
    }
}

/// A send that returned 2xx without the id the provider always gives.
pub fn no_message_id(provider: &'static str) -> Failure {
    transport_failure(
        provider,
        FailureClass::Unknown,
        "NoMessageId",
        format!("{provider} accepted the request but returned no MessageId"),
    )
}
