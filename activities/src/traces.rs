//! OpenTelemetry traces of this service, off unless an OTLP endpoint is
//! configured ([`Traces::off`] is the default everywhere).
//!
//! A traced request runs in one trace from Hasura to the provider:
//! - the API continues the caller's trace (a W3C `traceparent` header, or
//!   the `trace_context` of a Hasura event) with a server span;
//! - the Temporal SDK's `OpenTelemetryPlugin` carries that context into the
//!   workflow in the `_tracer-data` header, and on to its activities;
//! - each provider call is a client span of its own
//!   ([`Traces::provider_call`]).
//!
//! Spans hold ids and outcomes only (tenant, message, channel, trigger,
//! workflow ids): never an address, a name or a text. They are exported
//! over OTLP/HTTP (protobuf) in batches, from a thread and runtime of their
//! own ([`crate::background`]), through this service's reqwest client.

use crate::background;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use std::future::Future;
use std::time::Duration;
use temporalio_sdk::opentelemetry::WorkflowIdGenerator;

/// The tracer spans are made with, or none.
#[derive(Clone, Debug, Default)]
pub struct Traces {
    tracer: Option<SdkTracer>,
}

/// Where traces go.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    /// The OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
    /// How long spans wait to be exported in a batch.
    pub batch_delay: Duration,
}

/// Owns the exporter: flushes what is left when the process ends.
#[derive(Debug)]
pub struct TracesGuard {
    provider: SdkTracerProvider,
}

impl TracesGuard {
    /// Exports every finished span now.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.provider
            .force_flush()
            .map_err(|e| anyhow::anyhow!("flushing traces: {e}"))
    }
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("stopping the trace exporter: {e}");
        }
    }
}

impl Traces {
    /// No tracing: every span is a no-op and costs nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// Traces exported over OTLP per `settings`. The provider gives
    /// workflow spans replay-safe ids (the SDK's `WorkflowIdGenerator`).
    pub fn otlp(settings: &OtlpSettings) -> anyhow::Result<(Self, TracesGuard)> {
        let (http, _) = background::runtime("otlp-traces", || async {
            Ok(OtlpHttp {
                client: crate::http::client(Duration::from_secs(10))?,
                runtime: tokio::runtime::Handle::current(),
            })
        })?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(http)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .build()
            .map_err(|e| {
                anyhow::anyhow!("the OTLP trace exporter for {}: {e}", settings.endpoint)
            })?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(settings.batch_delay)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_id_generator(WorkflowIdGenerator::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "busflow-comms");
        Ok((
            Self {
                tracer: Some(tracer),
            },
            TracesGuard { provider },
        ))
    }

    /// The tracer, when tracing is on (the Temporal plugin is built with it).
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer.as_ref()
    }

    /// A server span `name`, child of `parent` (the caller's context), as
    /// the context a request's handling runs in. With tracing off, `parent`.
    pub fn server_span(
        &self,
        name: String,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Context {
        match &self.tracer {
            Some(tracer) => {
                let span = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Server)
                    .with_attributes(attributes)
                    .start_with_context(tracer, parent);
                parent.with_span(span)
            }
            None => parent.clone(),
        }
    }

    /// Runs one provider call as a client span `name` under the current
    /// context; an error sets the span's status to what `describe` says of
    /// it (a provider's code, never a recipient or a text).
    pub async fn provider_call<T, E>(
        &self,
        name: &'static str,
        attributes: Vec<KeyValue>,
        describe: fn(&E) -> String,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let Some(tracer) = &self.tracer else {
            return call.await;
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &Context::current());
        let cx = Context::current_with_span(span);
        let result = call.with_context(cx.clone()).await;
        let span = cx.span();
        if let Err(e) = &result {
            span.set_status(Status::error(describe(e)));
        }
        span.end();
        result
    }
}

/// OTLP/HTTP through this service's reqwest client. The batch processor
/// exports from a thread tokio does not own, so each request runs on the
/// exporter's own runtime.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let mut answer = Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    answer = answer.header(name, value);
                }
                let body = response.bytes().await?;
                Ok::<_, HttpError>(answer.body(body)?)
            })
            .await?
    }
}
