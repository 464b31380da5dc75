//! Redis Cluster for real (issue 10): three masters with a replica each
//! (`redis-cli --cluster create … --cluster-replicas 1`), the real authgate
//! on `redis+cluster://`: many users' sessions land on different slots and
//! nodes and all work, and back-channel logout's `sid` and `sub` indexes
//! work across slots — a logout ends exactly the sessions it names,
//! whichever node holds them, and no other user's.

use crate::redis_servers;

use std::time::Duration;

use crate::support::*;
use redis_servers::{wait_for, RedisProc};

const DEADLINE: Duration = Duration::from_secs(30);

async fn start_cluster() -> Vec<RedisProc> {
    let conf = [
        "cluster-enabled yes".to_owned(),
        "cluster-config-file nodes.conf".to_owned(),
        "cluster-node-timeout 2000".to_owned(),
    ];
    let mut nodes = Vec::new();
    for _ in 0..6 {
        nodes.push(RedisProc::server(&conf).await);
    }
    let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
    args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
    args.extend([
        "--cluster-replicas".into(),
        "1".into(),
        "--cluster-yes".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    nodes[0].cmd(&args);
    for n in &nodes {
        wait_for(DEADLINE, "cluster_state:ok on every node", || {
            n.try_cmd(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        })
        .await;
    }
    nodes
}

/// How many session keys each master holds.
fn sessions_per_node(nodes: &[RedisProc]) -> Vec<usize> {
    nodes
        .iter()
        .filter(|n| {
            n.try_cmd(&["ROLE"])
                .is_some_and(|r| r.starts_with("master"))
        })
        .map(|n| {
            n.try_cmd(&["--scan", "--pattern", "authgate:session:*"])
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .collect()
}

async fn status(gate: &Authgate, cookie: &str) -> u16 {
    client()
        .get(gate.url("/app/page"))
        .header("accept", "text/html")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One signed-in browser: its cookie header and its IdP session's `sid`
/// (read from the ID token the upstream receives).
struct Browser {
    user: &'static str,
    cookie: String,
    sid: String,
}

async fn sign_in(gate: &Authgate, user: &'static str) -> Browser {
    let c = client();
    let mut jar = Jar::default();
    let back = login(&c, &mut jar, &gate.url("/app/page"), user).await;
    assert_eq!(back.status(), 302, "login of {user}");
    let r = get(&c, &mut jar, &gate.url("/app/page"), "application/json").await;
    assert_eq!(r.status(), 200);
    let echo = echo_json(&r.text().await.unwrap());
    let auth = echoed_header(&echo, "authorization");
    let id_token = auth[0].strip_prefix("Bearer ").unwrap();
    let sid = jwt_claims(id_token)["sid"].as_str().unwrap().to_owned();
    Browser {
        user,
        cookie: jar.header(),
        sid,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_cluster_slots_and_logouts_end_exactly_theirs() {
    if !redis_servers::available() {
        panic!("redis-server and redis-cli are needed: ./dev.sh test installs them");
    }
    let nodes = start_cluster().await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    // Any signed-in user (bob is not in `admins`).
    cfg.authorization = vec!["  email_domains: [\"*\"]".into()];
    let seeds: Vec<String> = nodes
        .iter()
        .take(3)
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let yaml = format!(
        "{}headers:\n  pass_authorization: true\nsession:\n  store: redis\n  redis:\n    url: \"redis+cluster://{}\"\n",
        cfg.yaml(),
        seeds.join(",")
    );
    let gate = Authgate::run_yaml(&cfg, &yaml).await;

    let mut browsers = Vec::new();
    for i in 0..16 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        browsers.push(sign_in(&gate, user).await);
    }
    let spread = sessions_per_node(&nodes);
    assert_eq!(
        spread.iter().sum::<usize>(),
        16,
        "sessions per master: {spread:?}"
    );
    assert!(
        spread.iter().filter(|n| **n > 0).count() >= 2,
        "sessions all on one node: {spread:?}"
    );
    for b in &browsers {
        assert_eq!(status(&gate, &b.cookie).await, 200, "{}'s session", b.user);
    }

    // A logout token naming one sid ends that IdP session only.
    let target = &browsers[0];
    let token = logout_token(idp.port(), Some("demo-user-alice"), Some(&target.sid)).await;
    assert_eq!(backchannel_logout(&gate, &token).await, 200);
    assert_eq!(status(&gate, &target.cookie).await, 302);
    for b in &browsers[1..] {
        assert_eq!(
            status(&gate, &b.cookie).await,
            200,
            "{} lost a session",
            b.user
        );
    }

    // A logout token naming only the sub ends all of alice's sessions,
    // whichever node holds them, and none of bob's.
    let token = logout_token(idp.port(), Some("demo-user-alice"), None).await;
    assert_eq!(backchannel_logout(&gate, &token).await, 200);
    for b in &browsers {
        let want = if b.user == "alice" { 302 } else { 200 };
        assert_eq!(status(&gate, &b.cookie).await, want, "{}'s session", b.user);
    }
    let left = sessions_per_node(&nodes);
    assert_eq!(
        left.iter().sum::<usize>(),
        8,
        "bob's 8 sessions remain: {left:?}"
    );
    println!("cluster: 16 sessions over the masters as {spread:?}; after the logouts {left:?}");
}
