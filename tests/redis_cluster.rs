//! Redis Cluster for real (issue 10): three masters with a replica each
//! (`redis-cli --cluster create … --cluster-replicas 1`), the real authgate
//! on `redis+cluster://`: many users' sessions land on different slots and
//! nodes and all work, and back-channel logout's `sid` and `sub` indexes
//! work across slots — a logout ends exactly the sessions it names,
//! whichever node holds them, and no other user's. A master failover in the
//! cluster behaves like the Sentinel case: across `CLUSTER FAILOVER` and
//! across `kill -9` of the master holding a user's session, her requests
//! get 200 or 503 — never a 302 to the IdP or a 401 — and a sign-out
//! acknowledged around the switch stays done.

use crate::redis_servers;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::fleet::{login_retrying, sign_out_retrying, status as status_of, Load};
use crate::support::*;
use redis_servers::{assert_spread, seed_list, start_cluster, wait_for, RedisProc};

const DEADLINE: Duration = Duration::from_secs(30);

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
    let nodes = start_cluster(3, 1, 2000, None, DEADLINE).await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    // Any signed-in user (bob is not in `admins`).
    cfg.authorization = vec!["  email_domains: [\"*\"]".into()];
    let seeds = seed_list(&nodes[..3]);
    let yaml = format!(
        "{}headers:\n  pass_authorization: true\nsession:\n  store: redis\n  redis:\n    url: \"redis+cluster://{}\"\n",
        cfg.yaml(),
        seeds
    );
    let gate = Authgate::run_yaml(&cfg, &yaml).await;

    let mut browsers = Vec::new();
    for i in 0..16 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        browsers.push(sign_in(&gate, user).await);
    }
    let spread = sessions_per_node(&nodes);
    assert_spread(&spread, 16, "master");
    for b in &browsers {
        assert_eq!(
            status_of(&gate, &b.cookie, "/app/page").await,
            200,
            "{}'s session",
            b.user
        );
    }

    // A logout token naming one sid ends that IdP session only.
    let target = &browsers[0];
    let token = logout_token(idp.port(), Some("demo-user-alice"), Some(&target.sid)).await;
    assert_eq!(backchannel_logout(&gate, &token).await, 200);
    assert_eq!(status_of(&gate, &target.cookie, "/app/page").await, 302);
    for b in &browsers[1..] {
        assert_eq!(
            status_of(&gate, &b.cookie, "/app/page").await,
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
        assert_eq!(
            status_of(&gate, &b.cookie, "/app/page").await,
            want,
            "{}'s session",
            b.user
        );
    }
    let left = sessions_per_node(&nodes);
    assert_eq!(
        left.iter().sum::<usize>(),
        8,
        "bob's 8 sessions remain: {left:?}"
    );
    println!("cluster: 16 sessions over the masters as {spread:?}; after the logouts {left:?}");
}

// === Failover: `CLUSTER FAILOVER` and `kill -9` of a master ===

/// The longest any switch may take here (`cluster-node-timeout` 2 s).
const SWITCH_DEADLINE: Duration = Duration::from_secs(20);

fn is_master(n: &RedisProc) -> bool {
    n.try_cmd(&["ROLE"])
        .is_some_and(|r| r.starts_with("master"))
}

/// Whether `n` replicates the node on `master_port` with its link up.
fn replicates(n: &RedisProc, master_port: u16) -> bool {
    n.try_cmd(&["INFO", "replication"]).is_some_and(|i| {
        let has = |line: &str| i.lines().any(|l| l.trim() == line);
        has("role:slave")
            && has(&format!("master_port:{master_port}"))
            && has("master_link_status:up")
    })
}

fn session_keys(n: &RedisProc) -> BTreeSet<String> {
    n.try_cmd(&["--scan", "--pattern", "authgate:session:*"])
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn holds(n: &RedisProc, key: &str) -> bool {
    n.try_cmd(&["--scan", "--pattern", key])
        .is_some_and(|out| out.lines().any(|l| l == key))
}

/// The node's process id, as it reports it.
fn pid(n: &RedisProc) -> i32 {
    n.cmd(&["INFO", "server"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:")?.parse().ok())
        .unwrap()
}

/// Freezes the process `pid` (SIGSTOP) now and thaws it (SIGCONT) after
/// `pause`, from a task of its own: a node that can neither take nor ask
/// for anything meanwhile, kept short of `cluster-node-timeout` so the
/// cluster does not mark it failed.
fn freeze(pid: i32, pause: Duration) -> tokio::task::JoinHandle<()> {
    // SAFETY: kill(2) on a child process of this test; no memory involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    tokio::spawn(async move {
        tokio::time::sleep(pause).await;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    })
}

fn index_of(nodes: &[RedisProc], port: u16) -> usize {
    nodes.iter().position(|n| n.port == port).unwrap()
}

/// Signs `user` in and finds the master that took the session: the
/// cookie, the session's key and that master's port.
async fn login_anywhere(gate: &Authgate, nodes: &[RedisProc], user: &str) -> (String, String, u16) {
    let before: Vec<BTreeSet<String>> = nodes.iter().map(session_keys).collect();
    let cookie = login_retrying(gate, user, SWITCH_DEADLINE).await;
    for (n, before) in nodes.iter().zip(before) {
        if is_master(n) {
            if let Some(key) = session_keys(n).difference(&before).next() {
                return (cookie, key.clone(), n.port);
            }
        }
    }
    panic!("the new session is on no master");
}

/// Signs `user` in until the session lands on the master at `port`.
async fn login_on(gate: &Authgate, nodes: &[RedisProc], port: u16, user: &str) -> (String, String) {
    for _ in 0..60 {
        let (cookie, key, on) = login_anywhere(gate, nodes, user).await;
        if on == port {
            return (cookie, key);
        }
    }
    panic!("60 sessions and none on the master at {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_cluster_failover_and_master_loss_and_sign_outs_stay_done() {
    if !redis_servers::available() {
        panic!("redis-server and redis-cli are needed: ./dev.sh test installs them");
    }
    let mut nodes = start_cluster(3, 1, 2000, None, DEADLINE).await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let seeds = seed_list(&nodes);
    let yaml = format!(
        "{}session:\n  store: redis\n  redis:\n    url: \"redis+cluster://{}\"\n",
        cfg.yaml(),
        seeds
    );
    let gate = Authgate::run_yaml(&cfg, &yaml).await;

    // Alice's session, its master `m` and that master's replica `r`; a
    // second session of hers on `m` to sign out during the switch; a
    // bystander whose session another master holds.
    let (alice, alice_key, first) = login_anywhere(&gate, &nodes, "alice").await;
    let m = index_of(&nodes, first);
    wait_for(DEADLINE, "a replica of alice's master", || {
        nodes.iter().any(|n| replicates(n, first))
    })
    .await;
    let r = nodes.iter().position(|n| replicates(n, first)).unwrap();
    let (leaving, leaving_key) = login_on(&gate, &nodes, first, "alice").await;
    let other = nodes
        .iter()
        .find(|n| n.port != first && is_master(n))
        .unwrap()
        .port;
    let (bystander, _) = login_on(&gate, &nodes, other, "alice").await;
    wait_for(DEADLINE, "alice's sessions on the replica", || {
        holds(&nodes[r], &alice_key) && holds(&nodes[r], &leaving_key)
    })
    .await;

    // --- CLUSTER FAILOVER on the replica: the old master stays up and
    // follows the new one.
    let load = Load::start(&gate, &alice);
    let others = Load::start(&gate, &bystander);
    let started = Instant::now();
    assert_eq!(nodes[r].cmd(&["CLUSTER", "FAILOVER"]), "OK");
    wait_for(SWITCH_DEADLINE, "the replica promoted", || {
        is_master(&nodes[r])
    })
    .await;
    let promoted = started.elapsed();
    let retries = sign_out_retrying(&gate, &leaving, SWITCH_DEADLINE).await;
    let signed_out = started.elapsed();
    let mut replays = 0;
    loop {
        let s = status_of(&gate, &leaving, "/app/page").await;
        assert!(matches!(s, 302 | 503), "a signed-out cookie answered {s}");
        replays += 1;
        if replicates(&nodes[m], nodes[r].port) {
            break;
        }
        assert!(
            started.elapsed() < SWITCH_DEADLINE,
            "the old master never followed the new one"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejoined = started.elapsed();
    load.wait_more(20, SWITCH_DEADLINE).await;
    others.wait_more(20, SWITCH_DEADLINE).await;
    let hers = load.finish("CLUSTER FAILOVER, alice").await;
    let theirs = others.finish("CLUSTER FAILOVER, bystander").await;
    assert_eq!(status_of(&gate, &alice, "/app/page").await, 200);
    assert_eq!(status_of(&gate, &leaving, "/app/page").await, 302);
    let fresh = login_retrying(&gate, "alice", SWITCH_DEADLINE).await;
    assert_eq!(status_of(&gate, &fresh, "/app/page").await, 200);
    println!(
        "CLUSTER FAILOVER: replica promoted after {promoted:?}; sign-out done after \
         {signed_out:?} ({retries} x 503 first); old master following after {rejoined:?}, \
         {replays} replays of the signed-out cookie, none 200; alice's load {hers}; \
         bystander's load {theirs}"
    );

    // --- kill -9 of the master now holding alice's session (the promoted
    // replica): the old master takes over again. Just before, a sign-out
    // while the replica is cut off (its link dropped, the process frozen
    // for 0.6 s so it cannot reconnect): it may only be acknowledged once
    // the replica has it, or the crash undoes it.
    let (leaving, leaving_key) = login_on(&gate, &nodes, nodes[r].port, "alice").await;
    wait_for(DEADLINE, "alice's sessions on the replica", || {
        holds(&nodes[m], &alice_key) && holds(&nodes[m], &leaving_key)
    })
    .await;
    let load = Load::start(&gate, &alice);
    let others = Load::start(&gate, &bystander);
    let frozen = freeze(pid(&nodes[m]), Duration::from_millis(600));
    assert_eq!(nodes[r].cmd(&["CLIENT", "KILL", "TYPE", "replica"]), "1");
    let signing_out = Instant::now();
    let retries = sign_out_retrying(&gate, &leaving, SWITCH_DEADLINE).await;
    let sign_out_took = signing_out.elapsed();
    // Acknowledged means the replica has it, before any crash.
    assert!(
        !holds(&nodes[m], &leaving_key),
        "the sign-out was acknowledged while the replica still had the session \
         (after {sign_out_took:?}, {retries} x 503)"
    );
    let killed = Instant::now();
    nodes[r].kill();
    frozen.await.unwrap();
    wait_for(SWITCH_DEADLINE, "the old master promoted again", || {
        is_master(&nodes[m])
    })
    .await;
    let promoted = killed.elapsed();
    eventually(
        SWITCH_DEADLINE,
        "alice served after her master died",
        || async { (status_of(&gate, &alice, "/app/page").await == 200).then_some(()) },
    )
    .await;
    let served = killed.elapsed();
    load.wait_more(20, SWITCH_DEADLINE).await;
    others.wait_more(20, SWITCH_DEADLINE).await;
    let hers = load.finish("master killed, alice").await;
    let theirs = others.finish("master killed, bystander").await;
    assert_eq!(
        status_of(&gate, &leaving, "/app/page").await,
        302,
        "a sign-out acknowledged before the crash was undone"
    );
    let after = login_retrying(&gate, "alice", SWITCH_DEADLINE).await;
    assert_eq!(status_of(&gate, &after, "/app/page").await, 200);
    sign_out_retrying(&gate, &after, SWITCH_DEADLINE).await;
    assert_eq!(status_of(&gate, &after, "/app/page").await, 302);
    assert_eq!(status_of(&gate, &alice, "/app/page").await, 200);
    println!(
        "master killed: sign-out with the replica cut off acknowledged after \
         {sign_out_took:?} ({retries} x 503 first); \
         replica promoted {promoted:?} after the kill, alice served again after {served:?}; \
         alice's load {hers}; bystander's load {theirs}"
    );
    drop(gate);
    drop(nodes);
}
