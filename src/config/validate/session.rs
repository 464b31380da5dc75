//! `session`: the store, and the Redis URL parsed once into a typed
//! [`Redis`] (topology, TLS, db, credentials) that the session layer only
//! consumes. Everything the redis client would refuse at `run` is refused
//! here, under `session.redis.url`, so `check` and `run` agree.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

use super::Validator;
use crate::config::file::SessionFile;
use crate::config::model::{Redis, RedisAddr, RedisNode, RedisProtocol, RedisTopology, Session};
use crate::domain::Secret;

/// Redis's own default port, for every host written without one (the
/// redis crate's rule, sentinels included).
const DEFAULT_PORT: u16 = 6379;

/// The schemes accepted in `session.redis.url` (case-insensitive).
const SCHEMES: [&str; 8] = [
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
    "redis+unix",
    "unix",
];

/// Why a Redis URL was refused. Messages never echo the URL: it may carry a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::config) enum RedisUrlError {
    /// Empty text.
    #[error("must not be empty when session.store is redis")]
    Empty,
    /// No `scheme://`.
    #[error("must be a URL such as redis://host:6379/0")]
    NotAUrl,
    /// A scheme outside [`SCHEMES`].
    #[error("scheme must be one of {}", SCHEMES.join(", "))]
    Scheme,
    /// A sentinel or cluster URL with no host.
    #[error("must name at least one host")]
    NoHosts,
    /// A single-server URL with no host.
    #[error("must name a host")]
    NoHost,
    /// Not parseable as a URL at all.
    #[error("invalid URL: {0}")]
    Invalid(url::ParseError),
    /// One entry of a sentinel or cluster host list is not `host[:port]`.
    #[error("host #{0} of the list is not host[:port]")]
    BadHost(usize),
    /// `redis+sentinel://…` without `/<master>`.
    #[error(
        "a sentinel URL must name the master: redis+sentinel://h1:26379,h2:26379/<master>[/<db>]"
    )]
    NoMaster,
    /// Path segments after the database number.
    #[error("unexpected path after the database number")]
    ExtraPath,
    /// The database is not a number from 0.
    #[error("the database must be a number from 0 (e.g. /0)")]
    BadDb,
    /// A database other than 0 on a cluster.
    #[error("a Redis Cluster has only database 0 (drop the path)")]
    ClusterDb,
    /// `?protocol=` other than 2, 3, resp2, resp3.
    #[error("protocol must be resp2 or resp3")]
    BadProtocol,
    /// A query parameter the client does not read.
    #[error("unknown query parameter `{0}` (supported: {1})")]
    UnknownParam(String, &'static str),
    /// `#insecure` or any other fragment.
    #[error(
        "a #fragment is not supported (#insecure, TLS without certificate checks, is not available)"
    )]
    Fragment,
    /// User name or password not UTF-8 after percent-decoding.
    #[error("the user name and password must be UTF-8 after percent-decoding")]
    Credentials,
    /// A Unix socket URL whose path is not an absolute file path.
    #[error("a unix socket URL needs an absolute path: unix:///run/redis.sock")]
    SocketPath,
}

impl Validator {
    /// `session.store`, and `session.redis.url` only when the store is Redis
    /// (an unused section is accepted as is, as the contract says).
    pub(super) fn session(&mut self, s: SessionFile) -> Option<Session> {
        match s.store.trim().to_ascii_lowercase().as_str() {
            "cookie" => Some(Session::Cookie),
            "redis" => {
                let sentinel_password = self.secret_twin(
                    "session.redis.sentinel_password",
                    &s.redis.sentinel_password,
                    "session.redis.sentinel_password_file",
                    &s.redis.sentinel_password_file,
                );
                let redis = match parse_redis_url(&s.redis.url) {
                    Ok(redis) => redis,
                    Err(err) => {
                        self.problem("session.redis.url", err.to_string());
                        return None;
                    }
                };
                let sentinel_password = sentinel_password?;
                if !sentinel_password.is_empty()
                    && !matches!(redis.topology, RedisTopology::Sentinel { .. })
                {
                    // A password that would be silently ignored is a mistake.
                    self.problem(
                        "session.redis.sentinel_password",
                        "only applies to a redis+sentinel:// URL",
                    );
                    return None;
                }
                Some(Session::Redis(Redis {
                    sentinel_password: (!sentinel_password.is_empty())
                        .then(|| Secret::new(sentinel_password)),
                    ..redis
                }))
            }
            _ => {
                self.problem("session.store", "must be cookie or redis");
                None
            }
        }
    }
}

/// Parses `session.redis.url` into the typed model:
/// - `redis[s]://[user[:password]@]host[:port][/db][?protocol=resp3]`
/// - `redis[s]+sentinel://[user[:password]@]s1[:port],s2[:port]/<master>[/db]`
/// - `redis[s]+cluster://[user[:password]@]n1[:port],n2[:port][/0]`
/// - `unix:///path?db=N&user=U&pass=P` or `redis+unix:///path?…`
///
/// The scheme is case-insensitive; credentials are percent-decoded.
///
/// # Errors
/// [`RedisUrlError`] for anything the redis client could not use.
pub(in crate::config) fn parse_redis_url(text: &str) -> Result<Redis, RedisUrlError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RedisUrlError::Empty);
    }
    let (scheme, rest) = text.split_once("://").ok_or(RedisUrlError::NotAUrl)?;
    let scheme = scheme.to_ascii_lowercase();
    let tls = scheme.starts_with("rediss");
    match scheme.as_str() {
        "redis" | "rediss" => single(&format!("{scheme}://{rest}"), tls),
        "redis+unix" | "unix" => unix(&format!("{scheme}://{rest}")),
        "redis+sentinel" | "rediss+sentinel" => multi(rest, tls, true),
        "redis+cluster" | "rediss+cluster" => multi(rest, tls, false),
        _ => Err(RedisUrlError::Scheme),
    }
}

/// `redis://` and `rediss://`: one server over TCP.
fn single(text: &str, tls: bool) -> Result<Redis, RedisUrlError> {
    let url = Url::parse(text).map_err(RedisUrlError::Invalid)?;
    let node = node_of(&url).ok_or(RedisUrlError::NoHost)?;
    if url.fragment().is_some() {
        return Err(RedisUrlError::Fragment);
    }
    let protocol = query(&url, &["protocol"], "protocol")?.protocol;
    let (username, password) = credentials(url.username(), url.password())?;
    Ok(Redis {
        topology: RedisTopology::Single(RedisAddr::Tcp(node)),
        tls,
        db: db_number(url.path().trim_matches('/'))?,
        username,
        password,
        protocol,
        sentinel_password: None,
    })
}

/// `unix:///path` and `redis+unix:///path`, credentials and db in the query
/// (the redis crate's form).
fn unix(text: &str) -> Result<Redis, RedisUrlError> {
    let url = Url::parse(text).map_err(RedisUrlError::Invalid)?;
    let path = url.to_file_path().map_err(|()| RedisUrlError::SocketPath)?;
    if url.fragment().is_some() {
        return Err(RedisUrlError::Fragment);
    }
    let q = query(
        &url,
        &["db", "user", "pass", "protocol"],
        "db, user, pass, protocol",
    )?;
    Ok(Redis {
        topology: RedisTopology::Single(RedisAddr::Unix(path)),
        tls: false,
        db: q.db.as_deref().map_or(Ok(0), db_number)?,
        username: q.user,
        password: q.pass.map(Secret::new),
        protocol: q.protocol,
        sentinel_password: None,
    })
}

/// Sentinel and cluster URLs: `[auth@]h1,h2[/path][?query]`, which `Url`
/// cannot parse whole (several hosts), so the host list is split here and
/// each host parsed on its own.
fn multi(rest: &str, tls: bool, sentinel: bool) -> Result<Redis, RedisUrlError> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err(RedisUrlError::NoHosts);
    }
    let nodes = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            Url::parse(&format!("redis://{host}"))
                .ok()
                .as_ref()
                .and_then(node_of)
                .ok_or(RedisUrlError::BadHost(i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let (user, pass) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, pass)) => (user, Some(pass)),
            None => (info, None),
        },
        None => ("", None),
    };
    let (username, password) = credentials(user, pass)?;

    // The path, query and fragment, parsed against a stand-in host.
    let tail = Url::parse(&format!("redis://stand-in{tail}")).map_err(RedisUrlError::Invalid)?;
    if tail.fragment().is_some() {
        return Err(RedisUrlError::Fragment);
    }
    let protocol = query(&tail, &["protocol"], "protocol")?.protocol;
    let mut segments = tail.path().trim_start_matches('/').split('/');
    let first = segments.next().filter(|s| !s.is_empty());
    let second = segments.next().filter(|s| !s.is_empty());
    if segments.any(|s| !s.is_empty()) {
        return Err(RedisUrlError::ExtraPath);
    }

    let (topology, db) = if sentinel {
        let master = first.ok_or(RedisUrlError::NoMaster)?;
        let db = second.map_or(Ok(0), db_number)?;
        let topology = RedisTopology::Sentinel {
            sentinels: nodes,
            master: master.to_owned(),
        };
        (topology, db)
    } else {
        if second.is_some() {
            return Err(RedisUrlError::ExtraPath);
        }
        if first.map_or(Ok(0), db_number)? != 0 {
            return Err(RedisUrlError::ClusterDb);
        }
        (RedisTopology::Cluster { nodes }, 0)
    };
    Ok(Redis {
        topology,
        tls,
        db,
        username,
        password,
        protocol,
        sentinel_password: None,
    })
}

/// The host and port of a `redis://host[:port]` URL; None without a host.
/// IPv6 addresses lose their brackets, as the client resolves them.
fn node_of(url: &Url) -> Option<RedisNode> {
    let host = match url.host()? {
        url::Host::Domain(d) if !d.is_empty() => d.to_owned(),
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some(RedisNode {
        host,
        port: url.port().unwrap_or(DEFAULT_PORT),
    })
}

/// A database number (`SELECT` index): a whole number from 0.
fn db_number(text: &str) -> Result<i64, RedisUrlError> {
    if text.is_empty() {
        return Ok(0);
    }
    match text.parse::<i64>() {
        Ok(db) if db >= 0 => Ok(db),
        _ => Err(RedisUrlError::BadDb),
    }
}

/// Percent-decoded user name and password; empty means unset.
type Credentials = (Option<String>, Option<Secret<String>>);

fn credentials(user: &str, pass: Option<&str>) -> Result<Credentials, RedisUrlError> {
    let decode = |s: &str| -> Result<String, RedisUrlError> {
        percent_decode_str(s)
            .decode_utf8()
            .map(Cow::into_owned)
            .map_err(|_| RedisUrlError::Credentials)
    };
    let username = match user {
        "" => None,
        user => Some(decode(user)?),
    };
    let password = pass.map(decode).transpose()?.map(Secret::new);
    Ok((username, password))
}

/// The query parameters the redis client reads.
#[derive(Default)]
struct Query {
    protocol: RedisProtocol,
    db: Option<String>,
    user: Option<String>,
    pass: Option<String>,
}

/// Reads `allowed` parameters; any other is refused rather than ignored.
fn query(url: &Url, allowed: &[&str], listed: &'static str) -> Result<Query, RedisUrlError> {
    let mut q = Query::default();
    for (name, value) in url.query_pairs() {
        if !allowed.contains(&name.as_ref()) {
            return Err(RedisUrlError::UnknownParam(name.into_owned(), listed));
        }
        match name.as_ref() {
            "protocol" => {
                q.protocol = match value.as_ref() {
                    "2" | "resp2" => RedisProtocol::Resp2,
                    "3" | "resp3" => RedisProtocol::Resp3,
                    _ => return Err(RedisUrlError::BadProtocol),
                }
            }
            "db" => q.db = Some(value.into_owned()),
            "user" => q.user = Some(value.into_owned()),
            _ => q.pass = Some(value.into_owned()),
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use crate::config::{self, Problem, Session};

    fn load(redis: &str) -> Result<config::Redis, Vec<Problem>> {
        let yaml = format!(
            "provider: {{ issuer_url: 'https://idp.example.com', client_id: a }}\n\
             cookie: {{ secret: 0123456789abcdef }}\n\
             upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]\n\
             session: {{ store: redis, redis: {{ {redis} }} }}\n"
        );
        match config::load_str_with_env(&yaml, &|_| None) {
            Ok(cfg) => match cfg.session {
                Session::Redis(r) => Ok(r),
                Session::Cookie => panic!("cookie store"),
            },
            Err(e) => Err(e.problems().to_vec()),
        }
    }

    const SENTINEL: &str = "url: 'redis+sentinel://:m@s1:26379,s2:26379/mymaster/0'";

    #[test]
    fn sentinel_password_is_kept_apart_from_the_masters() {
        let r = load(&format!("{SENTINEL}, sentinel_password: sp")).unwrap();
        assert_eq!(
            r.sentinel_password.as_ref().map(|p| p.expose().as_str()),
            Some("sp")
        );
        assert_eq!(r.password.as_ref().map(|p| p.expose().as_str()), Some("m"));
        assert!(load(SENTINEL).unwrap().sentinel_password.is_none());
    }

    #[test]
    fn sentinel_password_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sp");
        std::fs::write(&path, "from-file\n").unwrap();
        let r = load(&format!(
            "{SENTINEL}, sentinel_password_file: '{}'",
            path.display()
        ))
        .unwrap();
        assert_eq!(
            r.sentinel_password.as_ref().map(|p| p.expose().as_str()),
            Some("from-file")
        );
        let both = load(&format!(
            "{SENTINEL}, sentinel_password: x, sentinel_password_file: '{}'",
            path.display()
        ))
        .unwrap_err();
        assert_eq!(both[0].key, "session.redis.sentinel_password_file");
    }

    #[test]
    fn sentinel_password_without_sentinels_is_refused() {
        let p = load("url: 'redis://h:6379/0', sentinel_password: sp").unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "session.redis.sentinel_password");
    }
}
