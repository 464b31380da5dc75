//! Redis Sentinel for real (issue 10): a master, a replica and three
//! sentinels (Debian's `redis-server` / `redis-sentinel`, loopback, free
//! ports, passwords on both the data nodes and the sentinels), in front of
//! which the real authgate keeps a signed-in user working across
//! `SENTINEL FAILOVER` and across the master being killed: every request
//! during the switch gets 200 or a clear 503 — never a 302 to the IdP or a
//! 401 — and a sign-out made right after the failover stays signed out
//! when the old master rejoins.

use crate::redis_servers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use parking_lot::Mutex;
use redis_servers::{wait_for, RedisProc};

const MASTER_PW: &str = "master-secret";
const SENTINEL_PW: &str = "sentinel-secret";
/// The longest any switch may take here (down-after is 1 s).
const SWITCH_DEADLINE: Duration = Duration::from_secs(30);

struct Topology {
    nodes: Vec<RedisProc>,
    sentinels: Vec<RedisProc>,
}

impl Topology {
    async fn start() -> Topology {
        let auth = [
            format!("requirepass {MASTER_PW}"),
            format!("masterauth {MASTER_PW}"),
        ];
        let master = RedisProc::server(&auth).await;
        let mut replica_conf = auth.to_vec();
        replica_conf.push(format!("replicaof 127.0.0.1 {}", master.port));
        let replica = RedisProc::server(&replica_conf).await;
        let sentinel_conf = [
            format!("requirepass {SENTINEL_PW}"),
            format!("sentinel sentinel-pass {SENTINEL_PW}"),
            format!("sentinel auth-pass mymaster {MASTER_PW}"),
        ];
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(RedisProc::sentinel(master.port, &sentinel_conf).await);
        }
        wait_for(SWITCH_DEADLINE, "the replica in sync", || {
            replica
                .try_cmd(&["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        for s in &sentinels {
            wait_for(
                SWITCH_DEADLINE,
                "each sentinel to know the replica and the others",
                || {
                    let replicas = s
                        .try_cmd(&["SENTINEL", "replicas", "mymaster"])
                        .unwrap_or_default();
                    let others = s
                        .try_cmd(&["SENTINEL", "sentinels", "mymaster"])
                        .unwrap_or_default();
                    replicas.contains("master-link-status\nok")
                        && others.lines().filter(|l| *l == "name").count() == 2
                },
            )
            .await;
        }
        Topology {
            nodes: vec![master, replica],
            sentinels,
        }
    }

    /// The master's port as the first sentinel that answers names it.
    fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = s.try_cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"])?;
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    fn node(&self, port: u16) -> &RedisProc {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisProc {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis+sentinel://:{MASTER_PW}@{}/mymaster/0",
            hosts.join(",")
        )
    }
}

/// A browser's session as a `Cookie` header, replayed as is.
async fn status(gate: &Authgate, cookie: &str, path: &str) -> u16 {
    client()
        .get(gate.url(path))
        .header("accept", "text/html")
        .header("cookie", cookie)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Signs `user` in, retrying while the store answers 503 (a switch).
async fn login_retrying(gate: &Authgate, user: &str) -> String {
    let c = client();
    let end = Instant::now() + SWITCH_DEADLINE;
    loop {
        let mut jar = Jar::default();
        let back = login(&c, &mut jar, &gate.url("/app/page"), user).await;
        if back.status() == 302 && !jar.session_names().is_empty() {
            return jar.header();
        }
        assert_eq!(back.status(), 503, "login answered neither success nor 503");
        assert!(
            Instant::now() < end,
            "no login succeeded within {SWITCH_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs out with `cookie`, retrying while the store answers 503.
async fn sign_out_retrying(gate: &Authgate, cookie: &str) -> usize {
    let end = Instant::now() + SWITCH_DEADLINE;
    let mut unavailable = 0;
    loop {
        let s = status(gate, cookie, "/oauth2/sign_out").await;
        if s == 302 {
            return unavailable;
        }
        assert_eq!(s, 503, "sign-out answered {s}");
        unavailable += 1;
        assert!(Instant::now() < end, "sign-out never succeeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests with one session, back to back, until stopped: every status
/// with the time it was answered.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(gate: &Authgate, cookie: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (url, cookie) = (gate.url("/app/page"), cookie.to_owned());
        let (s, r) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let c = client();
            while !s.load(Ordering::Relaxed) {
                let st = c
                    .get(&url)
                    .header("accept", "text/html")
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                r.lock().push((Instant::now(), st));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load { stop, seen, task }
    }

    /// Stops; asserts only 200 and 503 were seen; returns (sent, 200s,
    /// 503s, time from the first to the last 503).
    async fn finish(self, what: &str) -> (usize, usize, usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let seen = self.seen.lock().clone();
        let bad: Vec<u16> = seen
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| !matches!(s, 200 | 503))
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: answers other than 200/503: {bad:?}"
        );
        let unavailable: Vec<Instant> = seen
            .iter()
            .filter(|(_, s)| *s == 503)
            .map(|(t, _)| *t)
            .collect();
        let window = match (unavailable.first(), unavailable.last()) {
            (Some(a), Some(b)) => *b - *a,
            _ => Duration::ZERO,
        };
        (
            seen.len(),
            seen.len() - unavailable.len(),
            unavailable.len(),
            window,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_sentinel_failover_and_master_loss_and_sign_outs_stay_done() {
    if !redis_servers::available() {
        panic!(
            "redis-server, redis-sentinel and redis-cli are needed: ./dev.sh test installs them"
        );
    }
    let mut topo = Topology::start().await;
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

    let alice = login_retrying(&gate, "alice").await;
    let leaving = login_retrying(&gate, "alice").await;
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
    assert_eq!(
        topo.sentinels[0].cmd(&["SENTINEL", "FAILOVER", "mymaster"]),
        "OK"
    );
    let t = topo_wait_master(&topo, replica_port).await;
    let announced = started.elapsed();
    let retries = sign_out_retrying(&gate, &leaving).await;
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
    let (sent, ok, unavailable, window) = load.finish("SENTINEL FAILOVER").await;
    assert_eq!(status(&gate, &alice, "/app/page").await, 200);
    assert_eq!(status(&gate, &leaving, "/app/page").await, 302);
    let bob_like = login_retrying(&gate, "alice").await;
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
    topo_wait_master(&topo, old).await;
    let promoted = killed.elapsed();
    // Clients see the switch end at their first 200 after it.
    eventually(
        SWITCH_DEADLINE,
        "alice served after the master died",
        || async { (status(&gate, &alice, "/app/page").await == 200).then_some(()) },
    )
    .await;
    let served = killed.elapsed();
    let (sent, ok, unavailable, window) = load.finish("master killed").await;
    let after = login_retrying(&gate, "alice").await;
    assert_eq!(status(&gate, &after, "/app/page").await, 200);
    sign_out_retrying(&gate, &after).await;
    assert_eq!(status(&gate, &after, "/app/page").await, 302);
    assert_eq!(status(&gate, &leaving, "/app/page").await, 302);
    println!(
        "master killed: sentinels promoted the replica after {promoted:?}, alice served again \
         after {served:?}; load: {sent} requests, {ok} x 200, {unavailable} x 503, 503 window {window:?}"
    );
    drop(gate);
    drop(topo);
}

/// Waits until the sentinels name `port` as the master; how long it took.
async fn topo_wait_master(topo: &Topology, port: u16) -> Duration {
    let start = Instant::now();
    loop {
        if topo.master_port() == Some(port) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < SWITCH_DEADLINE,
            "the sentinels never switched to {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
