//! Several authgate replicas side by side (issue 10), the real binary
//! three times over one real `redis-server` and the demo IdP: a login on
//! one works on the others; sign-out and back-channel logout on one end the
//! session on all at the next request; a refresh falling due while parallel
//! requests of one session hit every replica makes ONE `refresh_token`
//! grant (a lock in Redis, the others reuse the winner's result). With the
//! cookie store, where replicas cannot coordinate, the replica that loses a
//! refresh race keeps the user signed in.

use crate::redis_servers;

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::support::*;
use redis_servers::RedisProc;

/// `cookie.refresh` in these tests (whole seconds: sessions count in seconds,
/// so a session refreshed late in a second falls due again up to a second
/// early; 3 s leaves a loaded machine two seconds to finish one round).
const REFRESH: Duration = Duration::from_secs(3);

struct Fleet {
    idp: authgate::demo::idp::DemoIdp,
    idp_server: TestServer,
    _echo: TestServer,
    gates: Vec<Authgate>,
}

/// `n` replicas with the same config (their own ports) and `session`.
async fn fleet(n: usize, session: &str) -> Fleet {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let idp = demo_idp(listener.local_addr().unwrap().port());
    let idp_server = TestServer::serve_idp(listener, &idp);
    let echo = TestServer::echo("app").await;
    let mut gates = Vec::new();
    for _ in 0..n {
        let cfg = GateConfig::new(idp_server.port(), &[("/", echo.port())]);
        let yaml = cfg.yaml().replacen(
            "  secure: false\n",
            &format!("  secure: false\n  refresh: {}s\n", REFRESH.as_secs()),
            1,
        );
        gates.push(Authgate::run_yaml(&cfg, &format!("{yaml}{session}")).await);
    }
    Fleet {
        idp,
        idp_server,
        _echo: echo,
        gates,
    }
}

fn redis_session(redis: &RedisProc) -> String {
    format!(
        "session:\n  store: redis\n  redis:\n    url: \"redis://127.0.0.1:{}/0\"\n",
        redis.port
    )
}

/// One request with a fixed cookie header: status and Set-Cookie lines.
async fn request(gate: &Authgate, cookie: &str) -> (u16, Vec<String>) {
    let r = client()
        .get(gate.url("/app/page"))
        .header("accept", "text/html")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), set_cookies(&r))
}

async fn sign_in(gate: &Authgate) -> Jar {
    let c = client();
    let mut jar = Jar::default();
    let back = login(&c, &mut jar, &gate.url("/app/page"), "alice").await;
    assert_eq!(back.status(), 302);
    jar
}

/// Waits until a session signed in now is due for refresh: `cookie.refresh`
/// counts whole seconds from the login's second, so this is a wait for the
/// clock, not for a condition another party makes true.
async fn until_refresh_due() {
    tokio::time::sleep(REFRESH + Duration::from_millis(1100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_sessions_sign_outs_and_one_refresh_grant() {
    if !redis_servers::available() {
        panic!("redis-server is needed: ./dev.sh test installs it");
    }
    let redis = RedisProc::server(&[]).await;
    let f = fleet(3, &redis_session(&redis)).await;
    let [a, b, c] = &f.gates[..] else {
        unreachable!()
    };

    // A login on one replica works on the others.
    let jar = sign_in(a).await;
    let cookie = jar.header();
    for g in &f.gates {
        assert_eq!(request(g, &cookie).await.0, 200);
    }

    // A refresh due while parallel requests hit every replica: one grant.
    for round in 1..=2 {
        until_refresh_due().await;
        let before = f.idp.token_requests();
        let mut parallel = Vec::new();
        for _ in 0..4 {
            for g in &f.gates {
                parallel.push(request(g, &cookie));
            }
        }
        let results = futures::future::join_all(parallel).await;
        let grants = f.idp.token_requests() - before;
        let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            grants, 1,
            "round {round}: refresh_token grants for 12 requests on 3 replicas"
        );
        // The Redis store updates the session in place: no new cookie.
        assert!(results.iter().all(|r| r.1.is_empty()));
        println!("refresh round {round}: 12 parallel requests over 3 replicas, {grants} refresh_token grant, all 200");
    }

    // Sign-out on one replica ends the session on all at the next request.
    let (status, _) = {
        let r = client()
            .get(b.url("/oauth2/sign_out"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 302);
    for g in &f.gates {
        assert_eq!(
            request(g, &cookie).await.0,
            302,
            "signed-out cookie on a replica"
        );
    }

    // Back-channel logout received by one replica ends it on all.
    let cookie = sign_in(a).await.header();
    assert_eq!(request(c, &cookie).await.0, 200);
    let token = logout_token(f.idp_server.port(), Some("demo-user-alice"), None).await;
    assert_eq!(backchannel_logout(c, &token).await, 200);
    for g in &f.gates {
        assert_eq!(
            request(g, &cookie).await.0,
            302,
            "logged-out cookie on a replica"
        );
    }

    // Every replica serves a session it opened before from its opened-session
    // cache; a deletion in Redis by anyone else (an operator's DEL) still
    // ends it at the very next request on each.
    let cookie = sign_in(b).await.header();
    for _ in 0..3 {
        for g in &f.gates {
            assert_eq!(request(g, &cookie).await.0, 200);
        }
    }
    let keys = redis.cmd(&["--scan", "--pattern", "authgate:session:*"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "one session stored: {keys:?}");
    assert_eq!(redis.cmd(&["DEL", keys[0]]), "1");
    for g in &f.gates {
        assert_eq!(
            request(g, &cookie).await.0,
            302,
            "a session deleted in Redis, on a replica that had it cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cookie_sessions_the_replica_losing_a_refresh_race_keeps_the_user_signed_in() {
    let f = fleet(2, "").await;
    let [a, b] = &f.gates[..] else { unreachable!() };
    let jar = sign_in(a).await;
    let cookie = jar.header();
    assert_eq!(request(b, &cookie).await.0, 200);

    until_refresh_due().await;
    let before = f.idp.token_requests();
    let (ra, rb) = tokio::join!(request(a, &cookie), request(b, &cookie));
    let grants = f.idp.token_requests() - before;
    // Both replicas redeem the same (rotating) refresh token: one wins.
    assert_eq!(grants, 2, "each replica asked the IdP once");
    assert_eq!((ra.0, rb.0), (200, 200), "both answers served the user");
    let winners: Vec<&Vec<String>> = [&ra.1, &rb.1]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly the winner sends a new session: {:?} / {:?}",
        ra.1,
        rb.1
    );
    // The loser neither cleared the cookie nor sent anything.
    let mut next = jar.clone();
    for line in winners[0] {
        let pair = cookie_pair(line);
        let (name, value) = pair.split_once('=').unwrap();
        next.0.insert(name.to_owned(), value.to_owned());
    }
    for g in &f.gates {
        assert_eq!(
            request(g, &next.header()).await.0,
            200,
            "the refreshed session"
        );
    }
    println!("cookie store: 2 replicas raced one refresh: {grants} grants (1 spent the token), both 200, one new cookie");
}
