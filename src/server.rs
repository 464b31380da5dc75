//! Assembles the Pingora server: the proxy on `listen`, the ext_authz
//! listeners, `/metrics`, and the background tasks (IdP upkeep, Redis upkeep,
//! the drain on shutdown), and, with `--upgrade`, the take-over of a running
//! process's listening sockets. `main` stays synchronous; Pingora owns the
//! runtimes.

mod drain;
mod quiesce;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;
use pingora::services::{ServiceHandle, ServiceReadyNotifier};

use crate::config::Config;
use crate::extauthz;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::proxy::upstream::{KICK_PAUSE, REFRESH_EVERY};
use crate::proxy::{AuthProxy, HeadDeadline};
use crate::reload::{GateHandle, ReloadMetrics, Reloader};
use drain::{Connections, Counted, Drain, Signals};
use tls::CertStore;

/// What `authgate run` adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file, re-read on `SIGHUP`; None: no reload (the demo).
    pub config_path: Option<PathBuf>,
    /// `--upgrade`: take the listening sockets over from the running
    /// process through `server.upgrade_sock` instead of binding them.
    pub upgrade: bool,
}

/// How long an `--upgrade` process waits for its own readiness (provider
/// discovered, Redis answering) before it takes the sockets anyway.
const WARM_UP_BUDGET: Duration = Duration::from_secs(30);

/// Builds a ready-to-run server without reload (`authgate demo` adds its
/// own services to it).
///
/// # Errors
/// As [`build_with`].
pub fn build(cfg: Config) -> anyhow::Result<(Server, GateHandle)> {
    build_with(cfg, &RunOptions::default())
}

/// Builds a ready-to-run server: every listener, the upkeep, the drain,
/// and the `SIGHUP` reload of `opts.config_path`.
///
/// # Errors
/// A gate that cannot be built, a TLS pair that cannot be loaded, a gRPC
/// listener that cannot bind.
pub fn build_with(cfg: Config, opts: &RunOptions) -> anyhow::Result<(Server, GateHandle)> {
    let metrics = Metrics::new()?;
    let reload_metrics = ReloadMetrics::new(&metrics)?;
    let cfg = Arc::new(cfg);
    let gate = Gate::new(cfg.clone(), metrics.clone())?;
    start_up(&gate, opts.config_path.is_some());
    let handle = GateHandle::new(gate);
    let certs = match &cfg.server.tls {
        Some(t) => Some(CertStore::open(t).map_err(|e| anyhow::anyhow!("server.tls: {e}"))?),
        None => None,
    };

    // The drain (see `drain`) ends the process within the grace; Pingora's
    // own timers are only the fallback should it not run.
    let grace = cfg.server.shutdown_grace.as_secs().max(1);
    let conf = ServerConf {
        threads: cfg.server.threads.max(1),
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(1),
        // Pingora writes this only when asked to daemonize.
        pid_file: std::env::temp_dir()
            .join("authgate.pid")
            .to_string_lossy()
            .into_owned(),
        upgrade_sock: cfg.server.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = opts.upgrade.then(|| Opt {
        upgrade: true,
        ..Opt::default()
    });
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // With --upgrade the sockets come from the running process, once this
    // one is ready to serve (the old one keeps serving meanwhile).
    let bootstrap = if opts.upgrade {
        let warm = server.add_service(background_service(
            "authgate warm-up",
            WarmUp(handle.clone()),
        ));
        let bootstrap = server.bootstrap_as_a_service();
        bootstrap.add_dependency(&warm);
        Some(bootstrap)
    } else {
        server.bootstrap();
        None
    };
    let after_bootstrap = |svc: ServiceHandle| {
        if let Some(b) = &bootstrap {
            svc.add_dependency(b);
        }
    };
    let open = Connections::default();

    let tls = certs.is_some();
    let mut app =
        pingora::proxy::http_proxy(&server.configuration, AuthProxy::new(handle.clone(), tls));
    if !tls {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    // Pingora bounds each read of a head, not the head: see HeadDeadline.
    let mut proxy = Service::new(
        "authgate proxy".to_owned(),
        Counted::new(HeadDeadline::new(app), &open),
    );
    let listen = cfg.server.listen.to_string();
    match &certs {
        Some(store) => {
            // The certificate is asked for on each handshake, so a reload
            // that re-reads the files takes effect for new connections.
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?;
            settings.set_cert_resolver(store.resolver());
            proxy.add_tls_with_settings(&listen, None, settings);
        }
        None => proxy.add_tcp(&listen),
    }
    after_bootstrap(server.add_service(proxy));

    if let Some(addr) = cfg.server.ext_authz_http {
        // Every listener bounds its request heads (see HeadDeadline).
        let mut svc = Service::new(
            "authgate ext_authz http".to_owned(),
            Counted::new(
                HeadDeadline::new(extauthz::http::ExtAuthzHttp::new(handle.clone())),
                &open,
            ),
        );
        svc.add_tcp(&addr.to_string());
        after_bootstrap(server.add_service(svc));
    }
    if let Some(addr) = cfg.server.ext_authz_grpc {
        if !opts.upgrade {
            // A taken port fails start-up now (Pingora would retry for 30 s
            // and then give up inside its service).
            std::net::TcpListener::bind(addr).map_err(|e| {
                anyhow::anyhow!("server.ext_authz_grpc: cannot listen on {addr}: {e}")
            })?;
        }
        let mut svc = Service::new(
            "authgate ext_authz grpc".to_owned(),
            Counted::new(extauthz::grpc::GrpcApp::new(handle.clone()), &open),
        );
        svc.add_tcp(&addr.to_string());
        after_bootstrap(server.add_service(svc));
    }
    if let Some(addr) = cfg.server.metrics {
        let mut svc = Service::new(
            "authgate metrics".to_owned(),
            Counted::new(HeadDeadline::new(MetricsApp(metrics.clone())), &open),
        );
        // Scrapes are rare: one worker thread, not `server.threads`.
        svc.threads = Some(1);
        svc.add_tcp(&addr.to_string());
        after_bootstrap(server.add_service(svc));
    }
    server.add_service(one_thread(background_service(
        "authgate upkeep",
        Upkeep(handle.clone()),
    )));
    server.add_service(one_thread(background_service(
        "authgate drain",
        Drain {
            gate: handle.clone(),
            open,
            grace: cfg.server.shutdown_grace,
        },
    )));
    if let Some(path) = &opts.config_path {
        let reloader = Reloader::new(handle.clone(), path.clone(), reload_metrics).with_tls(certs);
        server.add_service(one_thread(background_service("authgate reload", reloader)));
    }
    Ok((server, handle))
}

/// A background service on a runtime of one worker thread: Pingora gives
/// every service its own runtime of `server.threads` workers, and upkeep,
/// drain and reload only wait on timers, sockets and signals.
fn one_thread<S>(mut svc: GenBackgroundService<S>) -> GenBackgroundService<S> {
    svc.threads = Some(1);
    svc
}

/// Builds every service from `cfg` and serves until `SIGTERM` (drain),
/// `SIGQUIT` (hand the sockets to a waiting `--upgrade` process, then
/// drain) or `SIGINT`.
///
/// Errors: a listener that cannot bind, a gate that cannot be built.
pub fn run(cfg: Config, opts: &RunOptions) -> anyhow::Result<()> {
    let upgrade_sock = cfg.server.upgrade_sock.clone();
    let listeners = [
        Some(cfg.server.listen),
        cfg.server.ext_authz_http,
        cfg.server.ext_authz_grpc,
        cfg.server.metrics,
    ]
    .into_iter()
    .flatten()
    .collect();
    let (server, gate) = build_with(cfg, opts)?;
    tracing::info!(upgrade = opts.upgrade, "authgate starting");
    // Returns once Pingora's runtimes stopped; normally the drain ends the
    // process sooner (see `drain`).
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            upgrade_sock,
            listeners,
            gate,
        }),
    });
    Ok(())
}

/// `--upgrade`: ready (the sockets may be taken over) once the gate is
/// ready to serve, or after [`WARM_UP_BUDGET`] whatever its state (the
/// running process would not serve better).
struct WarmUp(GateHandle);

#[async_trait]
impl BackgroundService for WarmUp {
    async fn start_with_ready_notifier(
        &self,
        _shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let end = tokio::time::Instant::now() + WARM_UP_BUDGET;
        while !self.0.load().is_ready() {
            if tokio::time::Instant::now() >= end {
                tracing::warn!(
                    "not ready within {WARM_UP_BUDGET:?}: taking the sockets over anyway"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("ready: waiting for the running process's sockets (send it SIGQUIT)");
        ready.notify_ready();
    }
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
