//! Logging to stderr, `RUST_LOG`-style filtering, text or JSON; and, for
//! `authgate run` with `telemetry.otlp_endpoint` set, the bridge that turns
//! the per-request spans into OpenTelemetry spans ([`trace`]). Pingora logs
//! through the `log` crate; those records are bridged into the same output.

mod pipeline;
pub mod trace;

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::LogFormat;
use crate::config::Telemetry;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// [`init`] for `authgate run`: the same log output, plus OpenTelemetry
/// tracing when `telemetry.otlp_endpoint` is set (see [`trace::install`]).
/// Without an endpoint it is exactly [`init`].
///
/// # Errors
/// The exporter could not be built (see [`trace::TraceError`]).
pub fn init_run(format: LogFormat, telemetry: &Telemetry) -> Result<(), trace::TraceError> {
    let Some(endpoint) = telemetry.otlp_endpoint.as_deref() else {
        init(format);
        return Ok(());
    };
    let tracer = trace::install(endpoint, telemetry)?;
    // Each layer filters for itself: the OpenTelemetry layer sees only the
    // spans of `trace::TARGET` (never a log event, so no log text becomes a
    // span event), and the log output never sees those spans (its lines
    // stay as they are without tracing).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_level(false)
        .with_target(false)
        .with_context_activation(false)
        .with_filter(Targets::new().with_target(trace::TARGET, LevelFilter::INFO));
    let mut logs = env_filter();
    if let Ok(off) = format!("{}=off", trace::TARGET).parse() {
        logs = logs.add_directive(off);
    }
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(fmt_layer(format).with_filter(logs))
        .try_init();
    Ok(())
}

/// `RUST_LOG`, else `info`; the decision log on whatever the level.
fn env_filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The decision log is switched by `telemetry.access_log`, not by the
    // level: a quieter `RUST_LOG` keeps it unless it names its target.
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains(crate::access_log::TARGET));
    if !named {
        if let Ok(directive) = format!("{}=info", crate::access_log::TARGET).parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The log lines of [`init`] as a layer.
fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    }
}
