//! `session.redis.url` parsed into the typed topology: every form, the
//! problems for forms the client cannot use, and a `Debug` print of a loaded
//! config that shows none of its secrets.

use super::*;
use crate::config::validate::session::{parse_redis_url, RedisUrlError};

fn node(host: &str, port: u16) -> RedisNode {
    RedisNode {
        host: host.into(),
        port,
    }
}

fn password(redis: &Redis) -> Option<&str> {
    redis.password.as_ref().map(|p| p.expose().as_str())
}

#[test]
fn single_server_urls_carry_host_port_db_credentials_and_tls() {
    let r = parse_redis_url(" rediss://alice:p%40ss%3Aw@Redis.Example.com:6380/4 ").unwrap();
    assert_eq!(
        r.topology,
        // Host names are kept as written (DNS is case-insensitive), as the
        // redis client itself did with the URL.
        RedisTopology::Single(RedisAddr::Tcp(node("Redis.Example.com", 6380)))
    );
    assert!(r.tls);
    assert_eq!(r.db, 4);
    assert_eq!(r.username.as_deref(), Some("alice"));
    assert_eq!(password(&r), Some("p@ss:w"));
    assert_eq!(r.protocol, RedisProtocol::Resp2);

    let r = parse_redis_url("redis://[::1]?protocol=resp3").unwrap();
    assert_eq!(
        r.topology,
        RedisTopology::Single(RedisAddr::Tcp(node("::1", 6379)))
    );
    assert!(!r.tls);
    assert_eq!((r.db, r.username, r.password), (0, None, None));
    assert_eq!(r.protocol, RedisProtocol::Resp3);

    let r = parse_redis_url("redis://:only-pw@h/").unwrap();
    assert_eq!(r.username, None);
    assert_eq!(password(&r), Some("only-pw"));
}

#[test]
fn upper_case_schemes_are_the_same_url() {
    assert_eq!(
        parse_redis_url("REDIS://h:1/2"),
        parse_redis_url("redis://h:1/2")
    );
    let r = parse_redis_url("Rediss+Sentinel://s1,s2:5000/mymaster/3").unwrap();
    assert!(r.tls);
    assert_eq!(r.db, 3);
    assert_eq!(
        r.topology,
        RedisTopology::Sentinel {
            sentinels: vec![node("s1", 6379), node("s2", 5000)],
            master: "mymaster".into(),
        }
    );
}

#[test]
fn sentinel_and_cluster_credentials_apply_to_the_data_nodes() {
    let r = parse_redis_url("redis+sentinel://u:p%2Fw@10.0.0.1:26379,[::1]:26380/m").unwrap();
    assert_eq!(
        r.topology,
        RedisTopology::Sentinel {
            sentinels: vec![node("10.0.0.1", 26379), node("::1", 26380)],
            master: "m".into(),
        }
    );
    assert_eq!(r.username.as_deref(), Some("u"));
    assert_eq!(password(&r), Some("p/w"));

    let r = parse_redis_url("rediss+cluster://:pw@n1:7000,,n2/0?protocol=3").unwrap();
    assert_eq!(
        r.topology,
        RedisTopology::Cluster {
            nodes: vec![node("n1", 7000), node("n2", 6379)],
        }
    );
    assert!(r.tls);
    assert_eq!(password(&r), Some("pw"));
    assert_eq!(r.protocol, RedisProtocol::Resp3);
}

#[test]
fn unix_sockets_take_db_and_credentials_from_the_query() {
    let r = parse_redis_url("unix:///run/redis.sock?db=2&user=u&pass=pw").unwrap();
    assert_eq!(
        r.topology,
        RedisTopology::Single(RedisAddr::Unix("/run/redis.sock".into()))
    );
    assert_eq!(r.db, 2);
    assert_eq!(r.username.as_deref(), Some("u"));
    assert_eq!(password(&r), Some("pw"));
    assert!(parse_redis_url("redis+unix:///tmp/r.sock").is_ok());
}

#[test]
fn forms_the_client_cannot_use_are_refused_with_a_reason() {
    use RedisUrlError::*;
    for (url, expected) in [
        ("", Empty),
        ("redis-host:6379", NotAUrl),
        ("http://redis:6379", Scheme),
        ("redis+sentinel://", NoHosts),
        ("redis+cluster://u:p@/0", NoHosts),
        ("redis:///0", NoHost),
        ("redis+sentinel://h1:26379", NoMaster),
        ("redis+sentinel://h1:26379/", NoMaster),
        ("redis+sentinel://h1:notaport/m", BadHost(1)),
        ("redis+cluster://n1,n 2", BadHost(2)),
        ("redis+sentinel://h/m/0/extra", ExtraPath),
        ("redis+cluster://n1/0/1", ExtraPath),
        ("redis+sentinel://h/m/x", BadDb),
        ("redis://h/0/1", BadDb),
        ("redis://h/-1", BadDb),
        ("unix:///r.sock?db=x", BadDb),
        ("redis+cluster://n1/3", ClusterDb),
        ("redis://h?protocol=resp4", BadProtocol),
        ("rediss://h:6380/#insecure", Fragment),
        ("redis+cluster://n1#x", Fragment),
        ("unix://relative.sock", SocketPath),
        ("redis://h:99999", Invalid(url::ParseError::InvalidPort)),
    ] {
        assert_eq!(parse_redis_url(url), Err(expected), "{url}");
    }
    assert_eq!(
        parse_redis_url("redis://h?timeout=1"),
        Err(UnknownParam("timeout".into(), "protocol"))
    );
}

#[test]
fn redis_problems_name_the_key_and_never_the_password() {
    let p = problems(&with(
        "session: { store: redis, redis: { url: 'redis+sentinel://u:hunter2@h1:26379' } }",
    ));
    assert_eq!(
        p,
        ["session.redis.url: a sentinel URL must name the master: redis+sentinel://h1:26379,h2:26379/<master>[/<db>]"]
    );
    let p = problems(&with(
        "session: { store: redis, redis: { url: 'redis+cluster://u:hunter2@n1,bad host' } }",
    ));
    assert_eq!(
        p,
        ["session.redis.url: host #2 of the list is not host[:port]"]
    );
}

#[test]
fn debug_of_a_loaded_config_shows_no_secret() {
    let cookie_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let c = load_ok(&with(&format!(
        "provider: {{ client_secret: 'client-hunter2' }}
cookie: {{ secret: '{cookie_key}' }}
session: {{ store: redis, redis: {{ url: 'rediss://user:redis-hunter2@r.example.com:6380/1' }} }}"
    )));
    let printed = format!("{c:?}");
    for secret in ["client-hunter2", cookie_key, "redis-hunter2"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    // The decoded cookie key (bytes 0..32) must not show as a list either.
    assert!(!printed.contains("[0, 1, 2, 3"), "{printed}");
    assert!(printed.contains("[redacted]"));
    // The values are all there for the code that needs them.
    assert_eq!(c.provider.client_secret.expose(), "client-hunter2");
    assert_eq!(c.cookie.secret.expose().len(), 32);
    let Session::Redis(redis) = &c.session else {
        panic!("not the redis store");
    };
    assert_eq!(password(redis), Some("redis-hunter2"));
}
