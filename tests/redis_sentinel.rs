//! Redis Sentinel for real (issue 10): a master, a replica and three
//! sentinels (Debian's `redis-server` / `redis-sentinel`, loopback, free
//! ports, passwords on both the data nodes and the sentinels), in front of
//! which the real authgate keeps a signed-in user working across
//! `SENTINEL FAILOVER` and across the master being killed: every request
//! during the switch gets 200 or a clear 503 — never a 302 to the IdP or a
//! 401 — and a sign-out made right after the failover stays signed out
//! when the old master rejoins.

use crate::redis_servers;

use std::time::{Duration, Instant};

use crate::support::fleet::{login_retrying, sign_out_retrying, status, Load, Seen};
use crate::support::*;
use redis_servers::{wait_for, SentinelTopology};

const MASTER_PW: &str = "master-secret";
const SENTINEL_PW: &str = "sentinel-secret";
/// The longest any switch may take here (down-after is 1 s).
const SWITCH_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_sentinel_failover_and_master_loss_and_sign_outs_stay_done() {
    if !redis_servers::available() {
        panic!(
            "redis-server, redis-sentinel and redis-cli are needed: ./dev.sh test installs them"
        );
    }
    let mut topo =
        SentinelTopology::start(MASTER_PW, Some(SENTINEL_PW), None, SWITCH_DEADLINE).await;
    let first_master = topo.master_port().unwrap();
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let yaml = format!(
        "{}session:\n  store: redis\n  redis:\n    url: \"{}\"\n    sentinel_password: \"{SENTINEL_PW}\"\n",
        cfg.yaml(),
        topo.url()
    );
    let gate = Authgate::run_yaml(&cfg, &yaml).await;

    let alice = login_retrying(&gate, "alice", SWITCH_DEADLINE).await;
    let leaving = login_retrying(&gate, "alice", SWITCH_DEADLINE).await;
    assert_eq!(status(&gate, &alice, "/app/page").await, 200);
    assert_eq!(status(&gate, &leaving, "/app/page").await, 200);
    // Both sessions are on the replica before the switch.
    let replica_port = topo.nodes[1].port;
    wait_for(SWITCH_DEADLINE, "the sessions replicated", || {
        topo.node(replica_port)
            .try_cmd(&["--scan", "--pattern", "authgate:session:*"])
            .is_some_and(|keys| keys.lines().count() == 2)
    })
    .await;

    // --- SENTINEL FAILOVER: the old master stays up (and is demoted later).
    let load = Load::start(&gate, &alice);
    let started = Instant::now();
    topo.failover();
    let t = topo.wait_master(replica_port, SWITCH_DEADLINE).await;
    let announced = started.elapsed();
    let retries = sign_out_retrying(&gate, &leaving, SWITCH_DEADLINE).await;
    let signed_out_at = started.elapsed();
    // The old master rejoins as a replica of the new one, resyncing: the
    // sign-out must stay done through that, and a new login must work.
    let old = first_master;
    let mut replays = 0;
    let end = Instant::now() + SWITCH_DEADLINE;
    loop {
        let s = status(&gate, &leaving, "/app/page").await;
        assert!(matches!(s, 302 | 503), "a signed-out cookie answered {s}");
        replays += 1;
        let rejoined = topo
            .node(old)
            .try_cmd(&["INFO", "replication"])
            .is_some_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"));
        if rejoined {
            break;
        }
        assert!(
            Instant::now() < end,
            "the old master never rejoined as a replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejoined_at = started.elapsed();
    let Seen {
        sent,
        ok,
        unavailable,
        window,
    } = load.finish("SENTINEL FAILOVER").await;
    assert_eq!(status(&gate, &alice, "/app/page").await, 200);
    assert_eq!(status(&gate, &leaving, "/app/page").await, 302);
    let bob_like = login_retrying(&gate, "alice", SWITCH_DEADLINE).await;
    assert_eq!(status(&gate, &bob_like, "/app/page").await, 200);
    println!(
        "SENTINEL FAILOVER: switch announced after {announced:?} (sentinels' view {t:?}); \
         sign-out done {signed_out_at:?} after the command ({retries} x 503 first); \
         old master rejoined after {rejoined_at:?}; {replays} replays of the signed-out cookie, none 200; \
         load: {sent} requests, {ok} x 200, {unavailable} x 503, 503 window {window:?}"
    );

    // --- The master (the old replica) is killed: the old master is promoted.
    let load = Load::start(&gate, &alice);
    let killed = Instant::now();
    topo.node_mut(replica_port).kill();
    topo.wait_master(old, SWITCH_DEADLINE).await;
    let promoted = killed.elapsed();
    // Clients see the switch end at their first 200 after it.
    eventually(
        SWITCH_DEADLINE,
        "alice served after the master died",
        || async { (status(&gate, &alice, "/app/page").await == 200).then_some(()) },
    )
    .await;
    let served = killed.elapsed();
    let Seen {
        sent,
        ok,
        unavailable,
        window,
    } = load.finish("master killed").await;
    let after = login_retrying(&gate, "alice", SWITCH_DEADLINE).await;
    assert_eq!(status(&gate, &after, "/app/page").await, 200);
    sign_out_retrying(&gate, &after, SWITCH_DEADLINE).await;
    assert_eq!(status(&gate, &after, "/app/page").await, 302);
    assert_eq!(status(&gate, &leaving, "/app/page").await, 302);
    println!(
        "master killed: sentinels promoted the replica after {promoted:?}, alice served again \
         after {served:?}; load: {sent} requests, {ok} x 200, {unavailable} x 503, 503 window {window:?}"
    );
    drop(gate);
    drop(topo);
}
