//! `telemetry`: the per-request decision log and the OpenTelemetry settings.
//! The decision log is built (`crate::access_log`); OTLP export is not, so
//! an endpoint is refused by name rather than silently ignored.

use super::Validator;
use crate::config::file::TelemetryFile;
use crate::config::model::Telemetry;

impl Validator {
    pub(super) fn telemetry(&mut self, t: &TelemetryFile) -> Option<Telemetry> {
        let mut ok = true;
        if !t.otlp_endpoint.trim().is_empty() {
            self.problem(
                "telemetry.otlp_endpoint",
                "OpenTelemetry (OTLP) export is not supported by this build yet; leave it empty",
            );
            ok = false;
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            self.problem("telemetry.sample_ratio", "must be between 0.0 and 1.0");
            ok = false;
        }
        let service_name = t.service_name.trim();
        if service_name.is_empty() {
            self.problem("telemetry.service_name", "must not be empty");
            ok = false;
        }
        ok.then(|| Telemetry {
            access_log: t.access_log,
            service_name: service_name.to_string(),
            sample_ratio: t.sample_ratio,
        })
    }
}
