//! Upstream host names without DNS at load time (issue 10): `check` makes
//! no network call, `run` starts while an upstream host does not resolve
//! (that route answers 502, counted; the others serve), and host names that
//! do resolve are used from the first request.

use std::process::Command;
use std::time::Duration;

use crate::support::{bin, client, eventually, metric, Authgate, GateConfig, TestServer};

/// RFC 6761: `.invalid` never resolves, on any network.
const NOWHERE: &str = "http://upstream.nowhere.invalid:3000";

/// `cfg`'s config with one more upstream at `path`.
fn with_upstream(cfg: &GateConfig, path: &str, url: &str) -> String {
    format!("{}  - path: {path}\n    url: {url}\n", cfg.yaml())
}

#[test]
fn check_accepts_cluster_service_names_without_dns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.yaml");
    let cfg = GateConfig::new(1, &[("/", 8080)]);
    std::fs::write(
        &path,
        with_upstream(
            &cfg,
            "/grafana",
            "http://grafana.monitoring.svc.cluster.local:3000",
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"));
}

#[tokio::test]
async fn run_starts_with_an_unresolvable_upstream_which_answers_502() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", app.port())]);
    let yaml = with_upstream(&cfg, "/public/missing", NOWHERE);
    // `/ready` is 200: it depends on the IdP (and Redis), not on upstreams.
    let gate = Authgate::run_yaml(&cfg, &yaml).await;
    let c = client();

    let r = c.get(gate.url("/public/missing/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let r = c.get(gate.url("/public/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200, "other routes serve");
    assert_eq!(
        c.get(gate.url("/ready")).send().await.unwrap().status(),
        200
    );

    let errors = r#"authgate_upstream_errors_total"#;
    eventually(Duration::from_secs(10), "the 502 counted", || async {
        (metric(&gate.metrics().await, errors).unwrap_or(0.0) >= 1.0).then_some(())
    })
    .await;
    assert!(
        gate.output().contains("upstream.nowhere.invalid"),
        "the unresolvable host is logged:\n{}",
        gate.output()
    );
}

#[tokio::test]
async fn an_upstream_named_by_host_name_serves_from_the_first_request() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[]);
    let yaml = with_upstream(&cfg, "/", &format!("http://localhost:{}", app.port()));
    let gate = Authgate::run_yaml(&cfg, &yaml).await;
    let r = client().get(gate.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.seen().len(), 1);
}
