//! `telemetry`: the per-request decision log and the OpenTelemetry settings
//! (the OTLP/gRPC collector, `service.name`, the sampling ratio). The
//! collector URL is checked here without any network I/O: a collector that
//! is down at start-up only costs the spans (`crate::telemetry::trace`).

use super::Validator;
use crate::config::file::TelemetryFile;
use crate::config::model::Telemetry;

impl Validator {
    pub(super) fn telemetry(&mut self, t: &TelemetryFile) -> Option<Telemetry> {
        let mut ok = true;
        let otlp_endpoint = match otlp_origin(&t.otlp_endpoint) {
            Ok(origin) => origin,
            Err(why) => {
                self.problem("telemetry.otlp_endpoint", &why);
                ok = false;
                None
            }
        };
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
            otlp_endpoint,
            service_name: service_name.to_string(),
            sample_ratio: t.sample_ratio,
        })
    }
}

/// The collector's `scheme://host:port` for an `otlp_endpoint`; None when it
/// is empty (no tracing). gRPC needs only the origin, so a path, query,
/// fragment or credentials are refused rather than silently dropped; the
/// port must be written out (OTLP/gRPC is 4317, not HTTP's default 80).
fn otlp_origin(raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(raw).map_err(|e| {
        format!("not a URL ({e}); write the collector's OTLP/gRPC address, e.g. http://otel-collector:4317")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?}: OTLP/gRPC is http:// (plaintext h2c) or https://",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("names no host".into());
    };
    let Some(port) = url.port() else {
        return Err(format!(
            "names no port; OTLP/gRPC listens on 4317, e.g. {}://{host}:4317",
            url.scheme()
        ));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must be scheme://host:port only: OTLP/gRPC has a fixed path (use the collector's \
gRPC port, not the OTLP/HTTP /v1/traces URL)"
                .into(),
        );
    }
    Ok(Some(format!("{}://{host}:{port}", url.scheme())))
}

#[cfg(test)]
mod tests {
    use super::otlp_origin;

    #[test]
    fn an_empty_endpoint_is_no_tracing_and_a_full_one_is_its_origin() {
        assert_eq!(otlp_origin(""), Ok(None));
        assert_eq!(otlp_origin("  "), Ok(None));
        assert_eq!(
            otlp_origin("http://otel-collector.observability:4317"),
            Ok(Some("http://otel-collector.observability:4317".into()))
        );
        assert_eq!(
            otlp_origin("https://collector.example.com:4317/"),
            Ok(Some("https://collector.example.com:4317".into()))
        );
        assert_eq!(
            otlp_origin("http://[::1]:4317"),
            Ok(Some("http://[::1]:4317".into()))
        );
    }

    #[test]
    fn a_loaded_config_carries_the_origin_and_a_fractional_ratio() {
        let yaml = "
provider:
  issuer_url: https://idp.example.com/realms/demo
  client_id: authgate
cookie:
  secret: 0123456789abcdef
upstreams:
  - path: /
    url: http://127.0.0.1:8080
telemetry:
  otlp_endpoint: http://otel-collector.observability:4317/
  service_name: edge-auth
  sample_ratio: 0.25
";
        let t = crate::config::load_str(yaml).unwrap().telemetry;
        assert_eq!(
            t.otlp_endpoint.as_deref(),
            Some("http://otel-collector.observability:4317")
        );
        assert_eq!(t.service_name, "edge-auth");
        assert!((t.sample_ratio - 0.25).abs() < f64::EPSILON);
        let off = crate::config::load_str(
            &yaml
                .replace("0.25", "1")
                .replace("http://otel-collector.observability:4317/", "\"\""),
        )
        .unwrap()
        .telemetry;
        assert_eq!(off.otlp_endpoint, None);
        assert!((off.sample_ratio - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn anything_but_an_http_origin_with_a_port_is_refused() {
        for bad in [
            "otel-collector:4317",
            "grpc://collector:4317",
            "http://collector",
            "https://collector",
            "http://collector:4318/v1/traces",
            "http://user:pw@collector:4317",
            "http://collector:4317/?x=1",
            "http://:4317",
            "not a url",
        ] {
            assert!(otlp_origin(bad).is_err(), "{bad} accepted");
        }
    }
}
