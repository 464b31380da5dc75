//! Configuration reload on `SIGHUP`: the one handle the front ends read the
//! gate through ([`GateHandle`]), and the background service that re-reads
//! the config file (and the TLS certificate and key), keeps what needs a
//! restart, and swaps the new gate in atomically for new requests (a
//! request in flight keeps the gate it started with).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::server::tls::{self, CertStore};

/// The current gate, swapped whole on reload. Cheap to clone (one `Arc`);
/// [`GateHandle::load`] is one atomic load and a reference-count increment.
#[derive(Clone)]
pub struct GateHandle {
    current: Arc<ArcSwap<Gate>>,
    /// Counts swaps, so background tasks can follow them.
    generation: Arc<watch::Sender<u64>>,
}

impl GateHandle {
    /// A handle starting at `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        GateHandle {
            current: Arc::new(ArcSwap::new(gate)),
            generation: Arc::new(watch::channel(0).0),
        }
    }

    /// The gate for one request: keep it for the whole request, so a reload
    /// meanwhile does not change the rules half-way.
    pub fn load(&self) -> Arc<Gate> {
        self.current.load_full()
    }

    /// Makes `gate` the current one for every request that starts from now.
    pub fn store(&self, gate: Arc<Gate>) {
        self.current.store(gate);
        self.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that sees each [`GateHandle::store`] (as a changed
    /// generation number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl From<Arc<Gate>> for GateHandle {
    fn from(gate: Arc<Gate>) -> Self {
        GateHandle::new(gate)
    }
}

/// Why a reload left the running configuration in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not validate: every problem, each under its key.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// The new gate could not be built (e.g. an unreadable CA file).
    #[error("{0}")]
    Gate(#[from] crate::gate::GateError),
    /// The TLS certificate or key could not be loaded (the running pair stays).
    #[error("server.tls: {0}")]
    Tls(#[from] crate::server::tls::CertError),
}

/// The settings of `new` that cannot change without a restart, each set
/// back to `running`'s value; returns the keys that differed.
pub fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    let (old, next) = (&running.server, &mut new.server);
    macro_rules! keep {
        ($key:literal, $($field:tt)+) => {
            if old.$($field)+ != next.$($field)+ {
                kept.push($key);
                next.$($field)+ = old.$($field)+.clone();
            }
        };
    }
    keep!("server.listen", listen);
    keep!("server.ext_authz_http", ext_authz_http);
    keep!("server.ext_authz_grpc", ext_authz_grpc);
    keep!("server.metrics", metrics);
    keep!("server.threads", threads);
    keep!("server.shutdown_grace", shutdown_grace);
    keep!("server.upgrade_sock", upgrade_sock);
    let tls_paths = |s: &config::Server| {
        s.tls
            .as_ref()
            .map(|t| (t.cert_file.clone(), t.key_file.clone()))
    };
    if tls_paths(old) != tls_paths(next) {
        kept.push("server.tls");
        next.tls = old.tls.clone();
    }
    let same_session = match (&running.session, &new.session) {
        (config::Session::Cookie, config::Session::Cookie) => true,
        (config::Session::Redis(a), config::Session::Redis(b)) => a == b,
        _ => false,
    };
    if !same_session {
        kept.push("session");
        new.session = running.session.clone();
    }
    // The tracer is installed once per process (`telemetry::init_run`).
    let (old, next) = (&running.telemetry, &mut new.telemetry);
    if old.otlp_endpoint != next.otlp_endpoint {
        kept.push("telemetry.otlp_endpoint");
        next.otlp_endpoint = old.otlp_endpoint.clone();
    }
    if old.service_name != next.service_name {
        kept.push("telemetry.service_name");
        next.service_name = old.service_name.clone();
    }
    if old.sample_ratio != next.sample_ratio {
        kept.push("telemetry.sample_ratio");
        next.sample_ratio = old.sample_ratio;
    }
    kept
}

/// The reload counters (`authgate_config_reloads_total{result}` and
/// `authgate_config_last_reload_success_timestamp_seconds`).
#[derive(Clone)]
pub struct ReloadMetrics {
    reloads: IntCounterVec,
    last_success: IntGauge,
}

impl ReloadMetrics {
    /// Registers the reload families in `metrics`' registry, both results
    /// at zero and the timestamp at start-up (the config loaded then).
    ///
    /// # Errors
    /// Registered twice (a bug).
    pub fn new(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "authgate_config_reloads_total",
                "Configuration reloads (SIGHUP) by result (ok, error).",
            ),
            &["result"],
        )?;
        let last_success = IntGauge::new(
            "authgate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start-up or reload).",
        )?;
        metrics.register(Box::new(reloads.clone()))?;
        metrics.register(Box::new(last_success.clone()))?;
        for r in ["ok", "error"] {
            reloads.with_label_values(&[r]);
        }
        let m = ReloadMetrics {
            reloads,
            last_success,
        };
        m.stamp();
        Ok(m)
    }

    fn stamp(&self) {
        let now = i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX);
        self.last_success.set(now);
    }

    fn count(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&[result]).inc();
        if ok {
            self.stamp();
        }
    }
}

/// Re-reads the config file on each `SIGHUP` (see the module doc).
pub struct Reloader {
    handle: GateHandle,
    path: PathBuf,
    metrics: ReloadMetrics,
    tls: Option<CertStore>,
}

impl Reloader {
    /// A reloader of the file at `path` into `handle`.
    pub fn new(handle: GateHandle, path: PathBuf, metrics: ReloadMetrics) -> Self {
        Reloader {
            handle,
            path,
            metrics,
            tls: None,
        }
    }

    /// Also re-reads `server.tls`'s certificate and key into `certs` on
    /// each reload.
    pub fn with_tls(mut self, certs: Option<CertStore>) -> Self {
        self.tls = certs;
        self
    }

    /// One reload: load and validate the file (re-reading `_file` secrets
    /// and the TLS pair), keep what needs a restart, build the new gate on
    /// the running one's state, resolve new upstream names, then swap the
    /// gate and the certificate.
    ///
    /// # Errors
    /// The file is invalid, the TLS pair cannot be loaded or the gate
    /// cannot be built; nothing changed.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| {
                config::ConfigError(vec![config::Problem::new(
                    "(reload)",
                    format!("loader failed: {e}"),
                )])
            })?;
        let mut cfg = loaded?;
        let running = self.handle.load();
        for key in keep_restart_only(&running.cfg, &mut cfg) {
            tracing::warn!(
                key,
                "changed in the file but needs a restart: kept as it was"
            );
        }
        let provider_kept = running.same_provider(&cfg);
        let certified = match (&self.tls, &cfg.server.tls) {
            (Some(_), Some(t)) => {
                let t = t.clone();
                let loaded = tokio::task::spawn_blocking(move || tls::load(&t))
                    .await
                    .map_err(|e| {
                        config::ConfigError(vec![config::Problem::new(
                            "server.tls",
                            format!("loader failed: {e}"),
                        )])
                    })?;
                Some(loaded?)
            }
            _ => None,
        };
        let gate = running.reloaded(Arc::new(cfg))?;
        // Names new to this config get their first lookup before requests
        // can reach them (bounded by the lookup timeout).
        for host in gate.upstreams.resolve_all().await {
            tracing::warn!(host = %host, "upstream host does not resolve yet: its routes answer 502 until it does");
        }
        if !provider_kept {
            tracing::info!("provider settings changed: discovering the provider again");
        }
        self.handle.store(Arc::new(gate));
        if let (Some(store), Some(certified)) = (&self.tls, certified) {
            store.set(certified);
            tracing::info!("TLS certificate re-read");
        }
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: reload disabled");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
            }
            tracing::info!(file = %self.path.display(), "SIGHUP: reloading the configuration");
            match self.reload().await {
                Ok(()) => {
                    self.metrics.count(true);
                    tracing::info!("configuration reloaded");
                }
                Err(ReloadError::Config(e)) => {
                    self.metrics.count(false);
                    for p in e.problems() {
                        tracing::error!(key = %p.key, problem = %p.message, "reload rejected: running configuration kept");
                    }
                }
                Err(e) => {
                    self.metrics.count(false);
                    tracing::error!(error = %e, "reload failed: running configuration kept");
                }
            }
        }
    }
}

/// Installs the `SIGHUP` disposition now, before the reload service runs,
/// so an early `SIGHUP` is ignored instead of killing the process (its
/// default action). Needs a runtime only for the call; the disposition
/// stays for the life of the process.
pub fn catch_sighup_early(rt: &tokio::runtime::Runtime) {
    let _guard = rt.enter();
    if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tracing::warn!(error = %e, "cannot catch SIGHUP at start");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "
provider: { issuer_url: 'https://idp.example.com', client_id: a }
cookie: { secret: 0123456789abcdef }
upstreams: [ { path: /, url: 'http://127.0.0.1:8080' } ]
server: { listen: '127.0.0.1:4180', threads: 1 }
";

    fn load(extra: &str) -> Config {
        config::load_str_with_env(&format!("{BASE}{extra}"), &|_| None).unwrap()
    }

    #[test]
    fn restart_only_settings_are_kept_and_named() {
        let running = load("");
        let mut next = config::load_str_with_env(
            "
provider: { issuer_url: 'https://idp.example.com', client_id: a }
cookie: { secret: 0123456789abcdef, name: other }
upstreams: [ { path: /, url: 'http://127.0.0.1:9090' } ]
server: { listen: '127.0.0.1:5000', threads: 4, metrics: '127.0.0.1:9100' }
session: { store: redis, redis: { url: 'redis://127.0.0.1:6379' } }
",
            &|_| None,
        )
        .unwrap();
        let kept = keep_restart_only(&running, &mut next);
        assert_eq!(
            kept,
            [
                "server.listen",
                "server.metrics",
                "server.threads",
                "session"
            ]
        );
        assert_eq!(next.server.listen, running.server.listen);
        assert_eq!(next.server.threads, 1);
        assert!(matches!(next.session, config::Session::Cookie));
        // What can change live does.
        assert_eq!(next.cookie.name, "other");
        assert_eq!(next.upstreams[0].addr.port(), 9090);
    }

    #[test]
    fn an_unchanged_file_needs_no_restart() {
        let running = load("");
        let mut next = load("");
        assert!(keep_restart_only(&running, &mut next).is_empty());
    }

    #[test]
    fn reload_metrics_start_at_zero_with_a_timestamp() {
        let m = Metrics::new().unwrap();
        let r = ReloadMetrics::new(&m).unwrap();
        r.count(false);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"authgate_config_reloads_total{result="ok"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"authgate_config_reloads_total{result="error"} 1"#),
            "{text}"
        );
        assert!(!text.contains("authgate_config_last_reload_success_timestamp_seconds 0"));
    }
}
