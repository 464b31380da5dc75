//! Logging to stderr, `RUST_LOG`-style filtering, text or JSON. Pingora logs
//! through the `log` crate; those records are bridged into the same output.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The decision log is switched by `telemetry.access_log`, not by the
    // level: a quieter `RUST_LOG` keeps it unless it names its target.
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains(crate::access_log::TARGET));
    if !named {
        if let Ok(directive) = format!("{}=info", crate::access_log::TARGET).parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
