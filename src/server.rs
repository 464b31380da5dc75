//! Assembles the Pingora server: the proxy on `listen`, the ext_authz
//! listeners, `/metrics`, and the background tasks (IdP upkeep, Redis upkeep,
//! readiness on shutdown). `main` stays synchronous; Pingora owns the runtimes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::apps::HttpServerOptions;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::config::Config;
use crate::extauthz;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::proxy::upstream::{KICK_PAUSE, REFRESH_EVERY};
use crate::proxy::{AuthProxy, HeadDeadline};
use crate::reload::{GateHandle, ReloadMetrics, Reloader};

/// What `authgate run` adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file, re-read on `SIGHUP`; None: no reload (the demo).
    pub config_path: Option<PathBuf>,
}

/// Builds a ready-to-run server without reload (`authgate demo` adds its
/// own services to it).
///
/// # Errors
/// As [`build_with`].
pub fn build(cfg: Config) -> anyhow::Result<(Server, GateHandle)> {
    build_with(cfg, &RunOptions::default())
}

/// Builds a ready-to-run server: every listener, the upkeep, and the
/// `SIGHUP` reload of `opts.config_path`.
///
/// # Errors
/// A gate that cannot be built, a listener that cannot bind.
pub fn build_with(cfg: Config, opts: &RunOptions) -> anyhow::Result<(Server, GateHandle)> {
    let metrics = Metrics::new()?;
    let reload_metrics = ReloadMetrics::new(&metrics)?;
    let cfg = Arc::new(cfg);
    let gate = Gate::new(cfg.clone(), metrics.clone())?;
    start_up(&gate, opts.config_path.is_some());
    let handle = GateHandle::new(gate);

    let grace = cfg.server.shutdown_grace.as_secs().max(1);
    let conf = ServerConf {
        threads: cfg.server.threads.max(1),
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace),
        // Pingora writes these only when asked to daemonize or upgrade.
        pid_file: std::env::temp_dir()
            .join("authgate.pid")
            .to_string_lossy()
            .into_owned(),
        upgrade_sock: std::env::temp_dir()
            .join("authgate_upgrade.sock")
            .to_string_lossy()
            .into_owned(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let tls = cfg.server.tls.is_some();
    let mut app =
        pingora::proxy::http_proxy(&server.configuration, AuthProxy::new(handle.clone(), tls));
    if !tls {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    // Pingora bounds each read of a head, not the head: see HeadDeadline.
    let mut proxy = Service::new("authgate proxy".to_owned(), HeadDeadline::new(app));
    let listen = cfg.server.listen.to_string();
    match &cfg.server.tls {
        Some(t) => {
            let cert = t.cert_file.to_string_lossy();
            let key = t.key_file.to_string_lossy();
            proxy
                .add_tls(&listen, &cert, &key)
                .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?;
        }
        None => proxy.add_tcp(&listen),
    }
    server.add_service(proxy);

    if let Some(addr) = cfg.server.ext_authz_http {
        // Every listener bounds its request heads (see HeadDeadline).
        let mut svc = Service::new(
            "authgate ext_authz http".to_owned(),
            HeadDeadline::new(extauthz::http::ExtAuthzHttp::new(handle.clone())),
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    if let Some(addr) = cfg.server.ext_authz_grpc {
        let svc = extauthz::grpc::GrpcService::bind(handle.clone(), addr)
            .map_err(|e| anyhow::anyhow!("server.ext_authz_grpc: cannot listen on {addr}: {e}"))?;
        server.add_service(background_service("authgate ext_authz grpc", svc));
    }
    if let Some(addr) = cfg.server.metrics {
        let mut svc = Service::new(
            "authgate metrics".to_owned(),
            HeadDeadline::new(MetricsApp(metrics.clone())),
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    server.add_service(background_service(
        "authgate upkeep",
        Upkeep(handle.clone()),
    ));
    if let Some(path) = &opts.config_path {
        let reloader = Reloader::new(handle.clone(), path.clone(), reload_metrics);
        server.add_service(background_service("authgate reload", reloader));
    }
    Ok((server, handle))
}

/// Builds every service from `cfg` and serves until SIGTERM/SIGINT.
///
/// Errors: a listener that cannot bind, a gate that cannot be built.
pub fn run(cfg: Config, opts: &RunOptions) -> anyhow::Result<()> {
    let (server, _) = build_with(cfg, opts)?;
    tracing::info!("authgate starting");
    server.run_forever()
}

/// `GET /metrics` in the Prometheus text format.
struct MetricsApp(Metrics);

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let mut resp = Response::new(Vec::new());
        if path == "/metrics" {
            *resp.body_mut() = self.0.render();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
        } else {
            *resp.status_mut() = StatusCode::NOT_FOUND;
        }
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        resp
    }
}

/// Keeps the IdP, Redis and upstream addresses current (following config
/// reloads) and flips `/ready` to 503 as soon as shutdown starts, so load
/// balancers stop sending first.
struct Upkeep(GateHandle);

#[async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let handle = &self.0;
        // The Redis store is the same across reloads (`session` needs a
        // restart), so the first gate's is the one to keep up.
        let first = handle.load();
        let redis = async {
            match first.store.redis() {
                Some(r) => r.maintain().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = maintain_provider(handle) => {}
            _ = redis => {}
            _ = maintain_dns(handle) => {}
            _ = shutdown.changed() => {
                handle.load().start_draining();
                tracing::info!("shutting down: draining in-flight requests");
            }
        }
    }
}

/// Keeps the current provider discovered; a reload that changes the
/// provider settings starts over with the new one.
async fn maintain_provider(handle: &GateHandle) {
    let mut swaps = handle.subscribe();
    loop {
        let provider = handle.load().provider.clone();
        let maintain = provider.maintain();
        tokio::pin!(maintain);
        loop {
            tokio::select! {
                _ = &mut maintain => return,
                changed = swaps.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !Arc::ptr_eq(&handle.load().provider, &provider) {
                        break;
                    }
                }
            }
        }
    }
}

/// How long start-up waits for the first lookups of upstream host names
/// before serving anyway (those still unresolved answer 502 until the
/// background lookup finds them).
const START_LOOKUP_BUDGET: Duration = Duration::from_secs(3);

/// Before the listeners open: catch `SIGHUP` (when reloading) so an early
/// one cannot kill the process, and one bounded round of upstream lookups
/// so a resolvable name serves from the first request. Runs on a throw-away
/// runtime: Pingora's runtimes do not exist yet.
fn start_up(gate: &Gate, reload: bool) {
    if !reload && !gate.upstreams.has_names() {
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "start-up runtime unavailable; resolving upstreams in the background");
            return;
        }
    };
    if reload {
        crate::reload::catch_sighup_early(&rt);
    }
    if gate.upstreams.has_names() {
        // The timer must be made inside the runtime.
        let round =
            async { tokio::time::timeout(START_LOOKUP_BUDGET, gate.upstreams.resolve_all()).await };
        if let Ok(unresolved) = rt.block_on(round) {
            for host in unresolved {
                tracing::warn!(host = %host, "upstream host does not resolve yet: its routes answer 502 until it does");
            }
        }
    }
    // A lookup stuck in getaddrinfo must not hold start-up.
    rt.shutdown_background();
}

/// Re-resolves upstream host names every `REFRESH_EVERY`, and soon after a
/// connect failure or a request for a name that has no address yet; always
/// the current config's names.
async fn maintain_dns(handle: &GateHandle) {
    loop {
        let gate = handle.load();
        gate.upstreams.resolve_all().await;
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
            _ = gate.upstreams.kicked() => tokio::time::sleep(KICK_PAUSE).await,
        }
    }
}
