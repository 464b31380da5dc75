//! The OTLP/gRPC export pipeline of `telemetry.otlp_endpoint`: the tonic
//! exporter on a small runtime of its own, the SDK's batch span processor,
//! the parent-based ratio sampler, and the flush as the process exits.
//!
//! Nothing here is on a request's path but the processor's `on_end`, a
//! non-blocking `try_send` into a bounded queue: a slow or dead collector
//! fills the queue and further spans are dropped, requests never wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::Telemetry;

/// Why tracing could not be set up (`authgate run` refuses to start: a
/// configured endpoint that silently traced nothing would be worse).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter's runtime thread could not be started.
    #[error("telemetry.otlp_endpoint: cannot start the exporter's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The OTLP exporter refused its configuration.
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The process's pipeline, once `install` ran.
static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

struct Pipeline {
    provider: SdkTracerProvider,
    /// Runs the tonic channel's connection tasks for the whole process
    /// (Pingora's runtimes come and go with their services); kept here so
    /// it is never dropped.
    _runtime: tokio::runtime::Runtime,
}

/// Whether [`install`] ran: the one check the request path makes.
#[inline]
pub(super) fn installed() -> bool {
    PIPELINE.get().is_some()
}

/// Builds the pipeline for the collector at `endpoint` (`scheme://host:port`,
/// validated by the config) and returns the tracer the `tracing` bridge
/// uses. The collector is not contacted here: the channel connects on the
/// first export, so a collector that is down at start-up costs spans, not
/// the start. Call once per process; a second call returns the first
/// pipeline's tracer.
///
/// # Errors
/// [`TraceError`] when the runtime thread or the exporter cannot be built.
pub fn install(endpoint: &str, t: &Telemetry) -> Result<SdkTracer, TraceError> {
    if let Some(p) = PIPELINE.get() {
        return Ok(tracer(&p.provider));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authgate-otlp")
        .enable_all()
        .build()?;
    let exporter = {
        // tonic spawns the channel's worker on the runtime it is built in.
        let _inside = runtime.enter();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint);
        if endpoint.starts_with("https://") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots());
        }
        builder.build()?
    };
    // Parent-based: a sampled incoming parent is kept and an unsampled one
    // is not, whatever the ratio; the ratio decides new traces only.
    let root = if t.sample_ratio >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(t.sample_ratio)
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Reporting::new(exporter, endpoint))
        .with_sampler(Sampler::ParentBased(Box::new(root)))
        .with_resource(
            Resource::builder()
                .with_service_name(t.service_name.clone())
                .build(),
        )
        .build();
    let tracer = tracer(&provider);
    let _ = PIPELINE.set(Pipeline {
        provider,
        _runtime: runtime,
    });
    Ok(tracer)
}

fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer_with_scope(
        InstrumentationScope::builder("authgate")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

/// The OTLP exporter, logging an outage once: the first failed export at
/// `warn` (the spans of failed batches are dropped), the recovery at `info`.
#[derive(Debug)]
struct Reporting {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    failing: AtomicBool,
}

impl Reporting {
    fn new(inner: opentelemetry_otlp::SpanExporter, endpoint: &str) -> Self {
        Reporting {
            inner,
            endpoint: endpoint.to_owned(),
            failing: AtomicBool::new(false),
        }
    }
}

impl SpanExporter for Reporting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "OTLP trace export works again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %e,
                        spans,
                        "OTLP trace export failed; spans are dropped until the collector answers (logged once per outage)"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Exports the spans still queued, waiting at most `within`, and stops the
/// pipeline (spans ended later are dropped). Called once, as the process
/// exits after its drain (`server::drain`: every request's span has ended
/// by then); a no-op when tracing is off. Blocks the calling thread: the
/// export runs on the pipeline's own threads, never on the caller's runtime.
pub fn flush(within: Duration) {
    let Some(p) = PIPELINE.get() else {
        return;
    };
    match p.provider.shutdown_with_timeout(within) {
        Ok(()) => tracing::debug!("trace spans flushed"),
        Err(e) => tracing::warn!(error = %e, "trace spans not flushed before exit"),
    }
}
