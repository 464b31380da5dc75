//! `cookie.secret` rotation through `SIGHUP`, against the real binary: a
//! session sealed with the old secret (now in `cookie.previous_secrets`)
//! still opens and its response re-seals it with the new secret; once the
//! old secret is dropped from the file, the old cookie is no session while
//! the re-sealed one still is. With the cookie store and with Redis (where
//! the cookie carries a sealed ticket).

use crate::redis_servers;

use std::time::Duration;

use crate::support::*;

const RELOADS_OK: &str = r#"authgate_config_reloads_total{result="ok"}"#;
/// The new secret (32 bytes); the old one is `COOKIE_SECRET`.
const SECRET_B: &str = "rotated-cookie-secret-0123456789";

/// Writes `yaml` over the running config, sends `SIGHUP` and waits until
/// `n` reloads succeeded.
async fn reload(gate: &Authgate, yaml: &str, n: f64) {
    std::fs::write(gate.config_path(), yaml).unwrap();
    gate.signal(libc::SIGHUP);
    eventually(Duration::from_secs(20), "the reload counted", || async {
        (metric(&gate.metrics().await, RELOADS_OK).unwrap_or(0.0) >= n).then_some(())
    })
    .await;
}

/// `cfg`'s file with `secret` as `cookie.secret`, `previous` as
/// `cookie.previous_secrets`, then `tail` (e.g. a `session:` section).
fn with_secrets(cfg: &GateConfig, secret: &str, previous: &[&str], tail: &str) -> String {
    let old_line = format!("  secret: \"{COOKIE_SECRET}\"\n");
    let base = cfg.yaml();
    assert!(base.contains(&old_line), "{base}");
    let list = previous
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let new_line = format!("  secret: \"{secret}\"\n  previous_secrets: [{list}]\n");
    format!("{}{tail}", base.replacen(&old_line, &new_line, 1))
}

/// GET `/app` as an API client with `jar`'s cookies.
async fn app(c: &reqwest::Client, gate: &Authgate, jar: &Jar) -> reqwest::Response {
    c.get(gate.url("/app"))
        .header("accept", "application/json")
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
}

/// The session cookie values (name=value, chunks in name order) of `jar`.
fn session_values(jar: &Jar) -> Vec<String> {
    jar.session_names()
        .into_iter()
        .map(|n| format!("{n}={}", jar.0[&n]))
        .collect()
}

/// The whole rotation for one session store (`tail` appended to the file).
async fn rotation(tail: &str) {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    let gate = Authgate::run_yaml(&cfg, &with_secrets(&cfg, COOKIE_SECRET, &[], tail)).await;
    let c = client();

    // Signed in under secret A.
    let mut old = Jar::default();
    let cb = login(&c, &mut old, &gate.url("/"), "alice").await;
    assert_eq!(cb.status(), 302);
    assert!(
        !old.session_names().is_empty(),
        "no session cookie: {old:?}"
    );
    let r = app(&c, &gate, &old).await;
    assert_eq!(r.status(), 200);
    assert!(
        set_cookies(&r).is_empty(),
        "a current cookie is not re-sealed: {:?}",
        set_cookies(&r)
    );

    // Secret B, A kept as a previous secret: the old cookie opens and is
    // re-sealed on that very response.
    reload(
        &gate,
        &with_secrets(&cfg, SECRET_B, &[COOKIE_SECRET], tail),
        1.0,
    )
    .await;
    let r = app(&c, &gate, &old).await;
    assert_eq!(r.status(), 200, "the A-sealed session opens under B + [A]");
    let lines = set_cookies(&r);
    assert!(
        lines.iter().any(|l| l.starts_with("_oauth2_proxy")),
        "no re-sealing Set-Cookie: {lines:?}"
    );
    let mut resealed = old.clone();
    resealed.update(&r);
    assert!(!resealed.session_names().is_empty(), "{lines:?}");
    assert_ne!(
        session_values(&resealed),
        session_values(&old),
        "the re-sealed cookie differs from the old one"
    );
    let r = app(&c, &gate, &resealed).await;
    assert_eq!(r.status(), 200, "the re-sealed cookie is a session");
    assert!(
        set_cookies(&r).is_empty(),
        "a re-sealed cookie is current: {:?}",
        set_cookies(&r)
    );

    // Secret B alone: A-sealed values are no session any more.
    reload(&gate, &with_secrets(&cfg, SECRET_B, &[], tail), 2.0).await;
    assert_eq!(
        app(&c, &gate, &old).await.status(),
        401,
        "the A-sealed cookie no longer opens"
    );
    let browser = c
        .get(gate.url("/app"))
        .header("accept", "text/html")
        .header("cookie", old.header())
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 302, "a browser is sent to sign in");
    assert_eq!(app(&c, &gate, &resealed).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_survive_a_secret_rotation_by_re_sealing() {
    rotation("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tickets_survive_a_secret_rotation_by_re_sealing() {
    if !redis_servers::available() {
        panic!("redis-server is needed: ./dev.sh test installs it");
    }
    let redis = redis_servers::RedisProc::server(&[]).await;
    rotation(&format!(
        "session:\n  store: redis\n  redis:\n    url: \"redis://127.0.0.1:{}/0\"\n",
        redis.port
    ))
    .await;
}
