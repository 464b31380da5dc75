//! The Redis store against URL forms and a throwaway local `redis-server`.

use super::*;

/// `session.redis` of a config whose only unusual value is `url`, as
/// `authgate check` would load it (no environment, no DNS); the problems
/// when refused.
fn redis_config(url: &str) -> Result<config::Redis, Vec<config::Problem>> {
    let yaml = format!(
        "provider: {{ issuer_url: 'https://idp.example.com', client_id: a }}\n\
         cookie: {{ secret: 0123456789abcdef }}\n\
         upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]\n\
         session: {{ store: redis, redis: {{ url: '{url}' }} }}\n"
    );
    match config::load_str_with_env(&yaml, &|_| None) {
        Ok(cfg) => match cfg.session {
            config::Session::Redis(redis) => Ok(redis),
            config::Session::Cookie => panic!("{url}: loaded as the cookie store"),
        },
        Err(err) => Err(err.problems().to_vec()),
    }
}

/// Every Redis URL form used anywhere in the tests, `conf/` and the
/// README, plus the forms that used to pass `check` and fail at `run`:
/// `true` when `check` must accept it.
const URL_FORMS: &[(&str, bool)] = &[
    // src/config tests, src/session tests
    ("redis://127.0.0.1:6379/0", true),
    ("rediss://user:pw@redis.example.com:6380", true),
    ("redis+sentinel://s1:26379,s2:26379/mymaster", true),
    ("redis+cluster://n1:6379,n2:6379", true),
    ("rediss+cluster://n1:6379", true),
    ("rediss://u:p@r.example.com:6380/1", true),
    ("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000", true),
    (
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2",
        true,
    ),
    ("http://redis:6379", false),
    ("redis-host:6379", false),
    ("redis+sentinel://10.0.0.1:26379", false),
    ("http://x", false),
    // conf/authgate.yaml, tests/e2e/lib/redis.js
    ("redis://redis.authgate.svc.cluster.local:6379/0", true),
    ("redis://127.0.0.1:46379/0", true),
    // README
    ("redis://user:password@host/3", true),
    ("redis+sentinel://h1:26379,h2:26379/mymaster/0", true),
    ("redis+cluster://h1:6379,h2:6379", true),
    // Forms `check` used to accept and `run` refused (issue 8) …
    ("REDIS+SENTINEL://h1:26379,h2:26379", false),
    ("redis+sentinel://h1:notaport/mymaster", false),
    ("redis+sentinel://h1/mymaster/x", false),
    ("redis://h/0/1", false),
    ("rediss://h:6380/#insecure", false),
    // … or accepted by both while meaning something else
    ("redis+cluster://n1:6379/3", false),
    ("redis://h:6379/0?timeout=5", false),
    // Upper-case schemes: `check` accepted, `run` refused; now both accept.
    ("REDIS://127.0.0.1:6379/0", true),
    ("Rediss+Sentinel://s1,s2/mymaster", true),
    ("REDIS+CLUSTER://n1,n2", true),
    // Other forms the redis client supports
    ("redis://:p%40ss@[::1]:6380/2?protocol=resp3", true),
    ("unix:///run/redis.sock?db=1&pass=pw", true),
    ("redis+unix:///run/redis.sock", true),
    ("redis+cluster://n1,n2/0", true),
    ("", false),
    ("redis:///0", false),
    ("redis+cluster:///0", false),
    ("unix://relative.sock", false),
];

#[test]
fn check_and_run_agree_on_every_redis_url_form() {
    for &(url, accepted) in URL_FORMS {
        match redis_config(url) {
            Ok(cfg) => {
                assert!(accepted, "{url}: check accepted a form it must refuse");
                // What `run` does with it, short of connecting.
                let store = RedisStore::new(&cfg, Metrics::new().unwrap())
                    .unwrap_or_else(|e| panic!("{url}: check accepted, run refused: {e}"));
                assert!(!store.is_up(), "{url}: connected");
            }
            Err(problems) => {
                assert!(!accepted, "{url}: check refused {problems:?}");
                assert_eq!(problems.len(), 1, "{url}: {problems:?}");
                assert_eq!(problems[0].key, "session.redis.url", "{url}");
            }
        }
    }
}

#[test]
fn typed_forms_build_the_matching_client() {
    let topology = |url| build_topology(&redis_config(url).unwrap()).unwrap();
    assert!(matches!(
        topology("redis://127.0.0.1:6379/0"),
        Topology::Single(_)
    ));
    assert!(matches!(
        topology("unix:///run/redis.sock"),
        Topology::Single(_)
    ));
    assert!(matches!(
        topology("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000"),
        Topology::Cluster(_)
    ));
    assert!(matches!(
        topology("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2"),
        Topology::Sentinel(_)
    ));
    let Topology::Single(client) = topology("rediss://u:p%3Aw@r.example.com:6380/1") else {
        panic!("not a single client");
    };
    let info = client.get_connection_info();
    assert_eq!(
        info.addr,
        redis::ConnectionAddr::TcpTls {
            host: "r.example.com".into(),
            port: 6380,
            insecure: false,
            tls_params: None,
        }
    );
    assert_eq!(info.redis.db, 1);
    assert_eq!(info.redis.username.as_deref(), Some("u"));
    assert_eq!(info.redis.password.as_deref(), Some("p:w"));
}

#[test]
fn index_keys_do_not_embed_idp_strings() {
    let k = index_key("sub", "a:b*c");
    assert!(k.starts_with("authgate:sub:"));
    assert!(!k.contains('*'));
    assert_eq!(k.len(), "authgate:sub:".len() + 64);
}

/// A throwaway `redis-server` on a free loopback port, killed on drop.
pub(crate) struct LocalRedis {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// None (with a note) when `redis-server` is not installed.
pub(crate) fn local_redis() -> Option<LocalRedis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let spawned = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some(LocalRedis { child, port }),
        Err(e) => {
            println!("skipped: redis-server not runnable ({e})");
            None
        }
    }
}

pub(crate) async fn connected_store(port: u16) -> Arc<RedisStore> {
    let cfg = redis_config(&format!("redis://127.0.0.1:{port}/0")).unwrap();
    let store = Arc::new(RedisStore::new(&cfg, Metrics::new().unwrap()).unwrap());
    let bg = store.clone();
    // The prober runs for the test's life, as it does for the process's.
    tokio::spawn(async move { bg.maintain().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !store.is_up() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store
}

#[tokio::test]
async fn back_channel_revoke_takes_only_the_sid_when_named_else_every_session_of_the_sub() {
    let Some(redis) = local_redis() else {
        return;
    };
    let store = connected_store(redis.port).await;
    let (a, b, c, other) = ([1u8; 16], [2u8; 16], [3u8; 16], [4u8; 16]);
    store
        .put(&a, "sealed-a", 600, Some("sid-1"), "alice")
        .await
        .unwrap();
    store
        .put(&b, "sealed-b", 600, Some("sid-2"), "alice")
        .await
        .unwrap();
    store.put(&c, "sealed-c", 600, None, "alice").await.unwrap();
    store
        .put(&other, "sealed-o", 600, Some("sid-9"), "bob")
        .await
        .unwrap();

    // A logout token naming a sid ends that IdP session only.
    assert_eq!(store.revoke(Some("sid-1"), Some("alice")).await.unwrap(), 1);
    assert_eq!(store.get(&a).await.unwrap(), None);
    assert_eq!(store.get(&b).await.unwrap().as_deref(), Some("sealed-b"));
    assert_eq!(store.get(&c).await.unwrap().as_deref(), Some("sealed-c"));

    // Without a sid, every session of the sub goes; others stay.
    assert_eq!(store.revoke(None, Some("alice")).await.unwrap(), 2);
    assert_eq!(store.get(&b).await.unwrap(), None);
    assert_eq!(store.get(&c).await.unwrap(), None);
    assert_eq!(
        store.get(&other).await.unwrap().as_deref(),
        Some("sealed-o")
    );
    assert_eq!(store.revoke(None, None).await.unwrap(), 0);
}

/// Session keys are the id in lower-case hex after the prefix: keys written
/// by an earlier release (formatted byte by byte) are found by this one.
#[test]
fn session_keys_are_the_id_in_lower_case_hex() {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&[0x0f, 0xa0, 0x00, 0x09, 0x7f, 0xde]);
    id[15] = 0xff;
    assert_eq!(
        session_key(&id),
        "authgate:session:0fa000097fde000000000000000000ff"
    );
}
