//! `SIGHUP` reloads the config file (issue 10), against the real binary:
//! new requests are decided by the new rules, routes and headers; a signed-in
//! cookie keeps working; an invalid file keeps the running config and the
//! process; settings that need a restart are named and kept; the reload
//! metrics count each attempt.

use std::time::Duration;

use crate::support::*;

const RELOADS_OK: &str = r#"authgate_config_reloads_total{result="ok"}"#;
const RELOADS_ERR: &str = r#"authgate_config_reloads_total{result="error"}"#;
const LAST_OK: &str = "authgate_config_last_reload_success_timestamp_seconds";

/// Writes `yaml` over the running config, sends `SIGHUP` and waits until the
/// reload is counted as `series` reaching `n`.
async fn reload(gate: &Authgate, yaml: &str, series: &str, n: f64) {
    std::fs::write(gate.config_path(), yaml).unwrap();
    gate.signal(libc::SIGHUP);
    eventually(Duration::from_secs(20), "the reload counted", || async {
        (metric(&gate.metrics().await, series).unwrap_or(0.0) >= n).then_some(())
    })
    .await;
}

async fn status(c: &reqwest::Client, url: String, cookie: Option<&Jar>) -> u16 {
    let mut req = c.get(url).header("accept", "application/json");
    if let Some(jar) = cookie {
        req = req.header("cookie", jar.header());
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_rules_routes_and_headers_and_keeps_the_signed_in_user() {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    let mut gate = Authgate::run(&cfg).await;
    let c = client();
    let m = gate.metrics().await;
    assert_eq!(metric(&m, RELOADS_OK), Some(0.0), "{m}");
    assert!(
        metric(&m, LAST_OK).unwrap_or(0.0) > 0.0,
        "start-up load stamped"
    );

    let mut jar = Jar::default();
    let cb = login(&c, &mut jar, &gate.url("/"), "alice").await;
    assert_eq!(cb.status(), 302);
    assert_eq!(status(&c, gate.url("/app"), Some(&jar)).await, 200);
    assert_eq!(status(&c, gate.url("/public/x"), None).await, 200);

    // 1: another skip route and another identity header name.
    cfg.authorization = vec![
        "  allowed_groups: [admins]".into(),
        "  skip_auth_routes: [\"^/open/\"]".into(),
    ];
    let yaml = format!(
        "{}headers:\n  identity:\n    - {{ name: X-Who, claim: preferred_username }}\n",
        cfg.yaml()
    );
    reload(&gate, &yaml, RELOADS_OK, 1.0).await;
    assert_eq!(status(&c, gate.url("/open/x"), None).await, 200);
    assert_eq!(
        status(&c, gate.url("/public/x"), None).await,
        401,
        "the old skip route is gone"
    );
    let seen_before = up.seen().len();
    let r = c
        .get(gate.url("/after-reload"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the session made before the reload still opens"
    );
    let echo = echo_json(&r.text().await.unwrap());
    assert_eq!(echoed_header(&echo, "x-who"), ["alice"]);
    assert!(echoed_header(&echo, "x-forwarded-email").is_empty());
    assert_eq!(up.seen().len(), seen_before + 1);

    // 2: alice (admins, devs) is no longer allowed: 403 (still signed in),
    // not a login.
    cfg.authorization = vec!["  allowed_groups: [users]".into()];
    reload(&gate, &cfg.yaml(), RELOADS_OK, 2.0).await;
    assert_eq!(status(&c, gate.url("/app"), Some(&jar)).await, 403);

    assert!(gate.is_running());
    let m = gate.metrics().await;
    assert_eq!(metric(&m, RELOADS_OK), Some(2.0));
    assert_eq!(metric(&m, RELOADS_ERR), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_keeps_the_running_config_and_restart_settings_are_kept() {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    let mut gate = Authgate::run(&cfg).await;
    let c = client();

    // Invalid: every problem is logged by key; nothing changes.
    let bad = cfg
        .yaml()
        .replace(COOKIE_SECRET, "short")
        .replace("^/public/", "^/other/(");
    reload(&gate, &bad, RELOADS_ERR, 1.0).await;
    assert!(gate.is_running(), "the process stays up");
    assert_eq!(status(&c, gate.url("/public/x"), None).await, 200);
    let log = gate.output();
    for key in ["cookie.secret", "authorization.skip_auth_routes[0]"] {
        assert!(log.contains(key), "{key} not logged:\n{log}");
    }

    // The listener address needs a restart: named, kept; the rest applies.
    let mut moved = GateConfig::new(idp.port(), &[("/", up.port())]);
    moved.metrics_port = cfg.metrics_port;
    moved.authorization = vec![
        "  allowed_groups: [admins]".into(),
        "  skip_auth_routes: [\"^/open/\"]".into(),
    ];
    reload(&gate, &moved.yaml(), RELOADS_OK, 1.0).await;
    assert!(gate.output().contains("needs a restart"));
    assert!(gate.output().contains("server.listen"));
    assert_eq!(status(&c, gate.url("/open/x"), None).await, 200);
    assert!(
        c.get(format!("http://127.0.0.1:{}/ping", moved.port))
            .send()
            .await
            .is_err(),
        "nothing listens on the new address"
    );
    let m = gate.metrics().await;
    assert_eq!(metric(&m, RELOADS_ERR), Some(1.0));
    assert_eq!(metric(&m, RELOADS_OK), Some(1.0));
}

/// An upstream that did not resolve serves once a reload points it at a
/// name that does (the "becomes resolvable" path, without touching DNS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_can_fix_an_unresolvable_upstream() {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[]);
    let with = |host: &str| {
        format!(
            "{}  - path: /\n    url: http://{host}:{}\n",
            cfg.yaml(),
            up.port()
        )
    };
    let gate = Authgate::run_yaml(&cfg, &with("upstream.nowhere.invalid")).await;
    let c = client();
    assert_eq!(status(&c, gate.url("/public/x"), None).await, 502);
    reload(&gate, &with("localhost"), RELOADS_OK, 1.0).await;
    assert_eq!(status(&c, gate.url("/public/x"), None).await, 200);
}
