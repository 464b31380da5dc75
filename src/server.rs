//! Assembles the Pingora server: the proxy on `listen`, the ext_authz
//! listeners, `/metrics`, and the background tasks (IdP upkeep, Redis upkeep,
//! readiness on shutdown). `main` stays synchronous; Pingora owns the runtimes.

use std::sync::Arc;

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
use crate::proxy::{AuthProxy, HeadDeadline};

/// Builds a ready-to-run server. `extra` lets `authgate demo` add its own
/// services to the same process.
pub fn build(cfg: Config) -> anyhow::Result<(Server, Arc<Gate>)> {
    let metrics = Metrics::new()?;
    let cfg = Arc::new(cfg);
    let gate = Gate::new(cfg.clone(), metrics.clone())?;

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
        pingora::proxy::http_proxy(&server.configuration, AuthProxy::new(gate.clone(), tls));
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
        let mut svc = Service::new(
            "authgate ext_authz http".to_owned(),
            extauthz::http::ExtAuthzHttp::new(gate.clone()),
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    if let Some(addr) = cfg.server.ext_authz_grpc {
        let svc = extauthz::grpc::GrpcService::bind(gate.clone(), addr)
            .map_err(|e| anyhow::anyhow!("server.ext_authz_grpc: cannot listen on {addr}: {e}"))?;
        server.add_service(background_service("authgate ext_authz grpc", svc));
    }
    if let Some(addr) = cfg.server.metrics {
        let mut svc = Service::new("authgate metrics".to_owned(), MetricsApp(metrics.clone()));
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    server.add_service(background_service("authgate upkeep", Upkeep(gate.clone())));
    Ok((server, gate))
}

/// Builds every service from `cfg` and serves until SIGTERM/SIGINT.
///
/// Errors: a listener that cannot bind, a gate that cannot be built.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let (server, _) = build(cfg)?;
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

/// Keeps the IdP and Redis connections healthy and flips `/ready` to 503 as
/// soon as shutdown starts, so load balancers stop sending first.
struct Upkeep(Arc<Gate>);

#[async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let gate = &self.0;
        let idp = gate.provider.maintain();
        let redis = async {
            match gate.store.redis() {
                Some(r) => r.maintain().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = idp => {}
            _ = redis => {}
            _ = shutdown.changed() => {
                gate.start_draining();
                tracing::info!("shutting down: draining in-flight requests");
            }
        }
    }
}
