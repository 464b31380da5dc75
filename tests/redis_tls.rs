//! Redis over TLS for real (issue 10): Debian's `redis-server` listening
//! only with TLS (`port 0`, `tls-port`), its certificate signed by a private
//! CA (`tests/fixtures/redis-tls`) that authgate trusts through
//! `SSL_CERT_FILE`. `rediss://` keeps sessions in Redis and refuses a server
//! whose certificate that CA did not sign; `rediss+sentinel://` asks plain-TCP
//! sentinels and speaks verified TLS to the master they name, across
//! `SENTINEL FAILOVER`; `rediss+cluster://` works on a TLS cluster
//! (`tls-cluster yes`).

use crate::redis_servers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::fleet::{login_retrying, status, Load, Seen};
use crate::support::*;
use redis_servers::{assert_spread, start_cluster, wait_for, RedisProc, SentinelTopology, Tls};

const PW: &str = "tls-master-secret";
/// The longest any wait here may take.
const DEADLINE: Duration = Duration::from_secs(30);

fn fixture(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

/// The private CA authgate is told to trust.
fn ca() -> String {
    fixture("redis-tls", "ca.crt").display().to_string()
}

/// A node presenting the certificate `ca()` signed.
fn trusted() -> Tls {
    Tls {
        cert: fixture("redis-tls", "server.crt"),
        key: fixture("redis-tls", "server.key"),
        ca: fixture("redis-tls", "ca.crt"),
    }
}

/// A node presenting a self-signed certificate `ca()` did not sign (valid
/// for 127.0.0.1 otherwise, so only the signer is wrong).
fn untrusted() -> Tls {
    Tls {
        cert: fixture("tls", "a.crt"),
        key: fixture("tls", "a.key"),
        ca: fixture("tls", "a.crt"),
    }
}

fn redis_yaml(cfg: &GateConfig, url: &str) -> String {
    format!(
        "{}session:\n  store: redis\n  redis:\n    url: \"{url}\"\n",
        cfg.yaml()
    )
}

async fn gate_trusting_ca(cfg: &GateConfig, url: &str) -> Authgate {
    let ca = ca();
    let mut gate = Authgate::start_yaml_env(cfg, &redis_yaml(cfg, url), &[("SSL_CERT_FILE", &ca)]);
    gate.wait_until_ready().await;
    gate
}

fn require_redis() {
    if !redis_servers::available() {
        panic!(
            "redis-server, redis-sentinel and redis-cli are needed: ./dev.sh test installs them"
        );
    }
}

/// Session keys on `node` in database `db`.
fn session_keys(node: &RedisProc, db: u8) -> usize {
    node.try_cmd(&[
        "-n",
        &db.to_string(),
        "--scan",
        "--pattern",
        "authgate:session:*",
    ])
    .unwrap_or_default()
    .lines()
    .filter(|l| !l.is_empty())
    .count()
}

/// How many TLS handshakes `node` refused so far (its log's accept errors).
fn refused_handshakes(node: &RedisProc) -> usize {
    node.log()
        .lines()
        .filter(|l| l.contains("Error accepting a client connection"))
        .count()
}

/// A gate whose Redis connection cannot be verified: once the node has
/// refused a few of its handshakes, `/ready` is 503, the dependency gauge 0,
/// and a login's callback a 503 that sets no session — nothing reached Redis.
async fn assert_refused(gate: &mut Authgate, node: &RedisProc, what: &str) -> usize {
    gate.wait_ping().await;
    wait_for(DEADLINE, "the node to refuse authgate's handshakes", || {
        refused_handshakes(node) >= 2
    })
    .await;
    assert_eq!(status(gate, "", "/ready").await, 503, "{what}: /ready");
    let m = gate.metrics().await;
    assert_eq!(
        metric(&m, r#"authgate_dependency_up{dependency="redis"}"#),
        Some(0.0),
        "{what}: dependency gauge"
    );
    let c = client();
    let mut jar = Jar::default();
    let authorize = start_login(&c, &mut jar, &gate.url("/app/page")).await;
    let callback = login_at_idp(&c, &authorize, "alice").await;
    let back = get(&c, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(back.status(), 503, "{what}: the callback");
    assert!(
        jar.session_names().is_empty(),
        "{what}: a session cookie was set"
    );
    assert_eq!(session_keys(node, 0), 0, "{what}: a session reached Redis");
    refused_handshakes(node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_keeps_sessions_on_a_verified_server_and_refuses_an_unverified_one() {
    require_redis();
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);

    // Trusted: the certificate is signed by the CA in SSL_CERT_FILE.
    let node = RedisProc::server_tls(&[format!("requirepass {PW}")], &trusted()).await;
    let url = format!("rediss://:{PW}@127.0.0.1:{}/3", node.port);
    let gate = gate_trusting_ca(&cfg, &url).await;
    let c = client();
    let mut jar = Jar::default();
    let back = login(&c, &mut jar, &gate.url("/app/page"), "alice").await;
    assert_eq!(back.status(), 302);
    assert!(!jar.session_names().is_empty(), "no session cookie");
    let cookie = jar.header();
    assert_eq!(status(&gate, &cookie, "/app/page").await, 200);
    // The server (TLS-only: `port 0`) holds it, in the URL's database.
    assert_eq!(session_keys(&node, 3), 1, "the session in db 3");
    assert_eq!(session_keys(&node, 0), 0);
    assert_eq!(status(&gate, &cookie, "/oauth2/sign_out").await, 302);
    assert_eq!(session_keys(&node, 3), 0, "sign-out deleted the session");
    assert_eq!(status(&gate, &cookie, "/app/page").await, 302);
    drop(gate);

    // Untrusted: same address form, a certificate the CA did not sign.
    let bad = RedisProc::server_tls(&[format!("requirepass {PW}")], &untrusted()).await;
    let url = format!("rediss://:{PW}@127.0.0.1:{}/0", bad.port);
    let ca = ca();
    let mut gate =
        Authgate::start_yaml_env(&cfg, &redis_yaml(&cfg, &url), &[("SSL_CERT_FILE", &ca)]);
    let refused = assert_refused(&mut gate, &bad, "rediss:// to an unverified server").await;
    println!("rediss://: sign-in, session in db 3, sign-out deleted it; an unverified server: {refused} handshakes refused, /ready 503, callback 503, 0 keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sentinel_verifies_the_master_and_keeps_sessions_across_failover() {
    require_redis();
    let topo = SentinelTopology::start(PW, None, Some(&trusted()), DEADLINE).await;
    let first = topo.master_port().unwrap();
    let replica = topo.nodes.iter().find(|n| n.port != first).unwrap();
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);

    // The master the sentinels name is verified too: trusting another CA,
    // authgate never uses it.
    let other_ca = fixture("tls", "a.crt").display().to_string();
    let master = topo.nodes.iter().find(|n| n.port == first).unwrap();
    let before = refused_handshakes(master);
    let mut wrong = Authgate::start_yaml_env(
        &cfg,
        &redis_yaml(&cfg, &topo.url()),
        &[("SSL_CERT_FILE", &other_ca)],
    );
    wrong.wait_ping().await;
    wait_for(
        DEADLINE,
        "the master to refuse authgate's handshakes",
        || refused_handshakes(master) >= before + 2,
    )
    .await;
    assert_eq!(status(&wrong, "", "/ready").await, 503);
    drop(wrong);

    let gate = gate_trusting_ca(&cfg, &topo.url()).await;
    let alice = login_retrying(&gate, "alice", DEADLINE).await;
    assert_eq!(status(&gate, &alice, "/app/page").await, 200);
    wait_for(DEADLINE, "the session replicated over TLS", || {
        session_keys(replica, 0) == 1
    })
    .await;

    let load = Load::start(&gate, &alice);
    let started = Instant::now();
    topo.failover();
    topo.wait_master(replica.port, DEADLINE).await;
    let announced = started.elapsed();
    // A new login after the switch lands on the new master, over TLS.
    let bob = login_retrying(&gate, "alice", DEADLINE).await;
    let new_login = started.elapsed();
    assert_eq!(status(&gate, &bob, "/app/page").await, 200);
    eventually(DEADLINE, "alice served after the switch", || async {
        (status(&gate, &alice, "/app/page").await == 200).then_some(())
    })
    .await;
    let Seen {
        sent,
        ok,
        unavailable,
        window,
    } = load.finish("rediss+sentinel FAILOVER").await;
    assert_eq!(
        session_keys(replica, 0),
        2,
        "both sessions on the new master"
    );
    assert_eq!(status(&gate, &bob, "/oauth2/sign_out").await, 302);
    assert_eq!(status(&gate, &bob, "/app/page").await, 302);
    assert_eq!(status(&gate, &alice, "/app/page").await, 200);
    println!(
        "rediss+sentinel FAILOVER: switch announced after {announced:?}, new login done after \
         {new_login:?}; load: {sent} requests, {ok} x 200, {unavailable} x 503, 503 window {window:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_cluster_keeps_sessions_on_a_tls_cluster() {
    require_redis();
    let nodes = start_cluster(3, 0, 2000, Some(&trusted()), DEADLINE).await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.authorization = vec!["  email_domains: [\"*\"]".into()];
    let url = format!("rediss+cluster://{}", redis_servers::seed_list(&nodes));
    let gate = gate_trusting_ca(&cfg, &url).await;

    let c = client();
    let mut cookies = Vec::new();
    for i in 0..12 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let mut jar = Jar::default();
        let back = login(&c, &mut jar, &gate.url("/app/page"), user).await;
        assert_eq!(back.status(), 302, "login {i}");
        cookies.push(jar.header());
    }
    let spread: Vec<usize> = nodes.iter().map(|n| session_keys(n, 0)).collect();
    assert_spread(&spread, 12, "node");
    for cookie in &cookies {
        assert_eq!(status(&gate, cookie, "/app/page").await, 200);
    }
    assert_eq!(status(&gate, &cookies[0], "/oauth2/sign_out").await, 302);
    assert_eq!(status(&gate, &cookies[0], "/app/page").await, 302);
    let left: usize = nodes.iter().map(|n| session_keys(n, 0)).sum();
    assert_eq!(left, 11);
    println!("rediss+cluster: 12 sessions over 3 TLS masters as {spread:?}; sign-out left {left}");
}
