//! Upstream selection and addresses: longest path prefix wins; host names
//! are resolved in the background (at start, every [`REFRESH_EVERY`] and
//! soon after a connect failure), never on the request path. A route whose
//! name has not resolved yet answers 502; a changed address is used by new
//! connections (Pingora pools connections per address).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pingora::prelude::HttpPeer;
use pingora::upstreams::peer::Peer as _;
use tokio::sync::Notify;

use crate::config::{Upstream, UpstreamAddr};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often every upstream host name is looked up again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// The least time between two lookups triggered by connect failures, so a
/// dead backend does not turn every failed request into a DNS query.
pub const KICK_PAUSE: Duration = Duration::from_secs(1);
/// How long one lookup may take before it counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One route: the configured upstream and its current peer (None while its
/// host name has never resolved).
struct Route {
    upstream: Upstream,
    peer: ArcSwapOption<HttpPeer>,
    /// A connect to the current address failed since the last lookup: the
    /// next lookup moves on to another address of the answer, if any.
    failed: AtomicBool,
}

/// The configured upstreams, longest path prefix first, each with its peer.
pub struct Upstreams {
    /// Sorted by prefix length, longest first.
    routes: Vec<Route>,
    /// Wakes the background lookup after a connect failure; shared by every
    /// generation of the table across reloads.
    kick: Arc<Notify>,
}

/// Why a route has no peer to connect to.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No route with this index (a bug in the caller).
    #[error("no upstream selected")]
    NoRoute,
    /// The route's host name has not resolved yet.
    #[error("upstream host {0} does not resolve (yet)")]
    Unresolved(String),
}

impl Upstreams {
    /// Sorts `list` for longest-prefix selection. IP targets get their peer
    /// at once; a host name keeps the address `previous` (the table this one
    /// replaces on reload) already resolved for it, else waits for
    /// [`Upstreams::resolve_all`].
    pub fn new(list: &[Upstream], previous: Option<&Upstreams>) -> Self {
        let mut list = list.to_vec();
        list.sort_by_key(|u| std::cmp::Reverse(u.path.len()));
        let routes = list
            .into_iter()
            .map(|upstream| {
                let peer = match &upstream.addr {
                    UpstreamAddr::Ip(addr) => Some(Arc::new(build_peer(&upstream, *addr))),
                    UpstreamAddr::Name { .. } => previous.and_then(|p| p.known_peer(&upstream)),
                };
                Route {
                    upstream,
                    peer: ArcSwapOption::new(peer),
                    failed: AtomicBool::new(false),
                }
            })
            .collect();
        let kick = previous.map_or_else(Default::default, |p| p.kick.clone());
        Upstreams { routes, kick }
    }

    /// Index of the upstream for a path; None when no prefix matches (or,
    /// in an ext_authz-only deployment, none is configured).
    pub fn select(&self, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| path.starts_with(&r.upstream.path))
    }

    /// The `Host` header upstream `i` wants instead of the client's, if set.
    pub fn host_override(&self, i: usize) -> Option<&str> {
        self.routes.get(i).and_then(|r| r.upstream.host.as_deref())
    }

    /// A copy of upstream `i`'s current peer for one request.
    ///
    /// # Errors
    /// [`PeerError::Unresolved`] while the host name has no address yet
    /// (the caller answers 502); [`PeerError::NoRoute`] for a bad index.
    pub fn peer(&self, i: usize) -> Result<Box<HttpPeer>, PeerError> {
        let route = self.routes.get(i).ok_or(PeerError::NoRoute)?;
        match route.peer.load().as_deref() {
            Some(peer) => Ok(Box::new(peer.clone())),
            None => {
                // Traffic for a name that does not resolve yet asks for a
                // lookup soon rather than at the next periodic one.
                self.kick.notify_one();
                Err(PeerError::Unresolved(route.upstream.addr.to_string()))
            }
        }
    }

    /// A connection to `addr` failed: look the names using it up again soon
    /// (the backend may have moved, or the name has another address that
    /// works, e.g. IPv4 beside an unreachable IPv6).
    pub fn connect_failed(&self, addr: Option<SocketAddr>) {
        let mut named = false;
        for route in &self.routes {
            if !matches!(route.upstream.addr, UpstreamAddr::Name { .. }) {
                continue;
            }
            let current = route.peer.load().as_deref().and_then(peer_addr);
            if current.is_some() && current == addr {
                route.failed.store(true, Ordering::Relaxed);
                named = true;
            }
        }
        if named {
            self.kick.notify_one();
        }
    }

    /// Whether any route names a host (so there is something to resolve).
    pub fn has_names(&self) -> bool {
        self.routes
            .iter()
            .any(|r| matches!(r.upstream.addr, UpstreamAddr::Name { .. }))
    }

    /// Waits until a connect failure asks for a lookup.
    pub async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// Looks every host name up (concurrently, each bounded by
    /// [`LOOKUP_TIMEOUT`]) and installs changed addresses. A failed lookup
    /// keeps the last known address: a DNS blip must not take a working
    /// backend away. Returns the names that have no address at all.
    pub async fn resolve_all(&self) -> Vec<String> {
        let lookups = self
            .routes
            .iter()
            .filter_map(|route| match &route.upstream.addr {
                UpstreamAddr::Name { host, port } => Some(async move {
                    let found = tokio::time::timeout(
                        LOOKUP_TIMEOUT,
                        tokio::net::lookup_host((host.as_str(), *port)),
                    )
                    .await;
                    (route, host, found)
                }),
                UpstreamAddr::Ip(_) => None,
            });
        let mut unresolved = Vec::new();
        for (route, host, found) in futures::future::join_all(lookups).await {
            let current = route.peer.load_full();
            let addrs: Vec<SocketAddr> = match found {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(err)) => {
                    tracing::warn!(host = %host, error = %err, "upstream host does not resolve");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(host = %host, "upstream host lookup timed out");
                    Vec::new()
                }
            };
            let now = current.as_deref().and_then(peer_addr);
            let failed = route.failed.swap(false, Ordering::Relaxed);
            match choose(now, &addrs, failed) {
                Some(addr) if Some(addr) != now => {
                    tracing::info!(host = %host, address = %addr, "upstream host resolved");
                    route
                        .peer
                        .store(Some(Arc::new(build_peer(&route.upstream, addr))));
                }
                Some(_) => {}
                None if current.is_none() => unresolved.push(host.clone()),
                None => {}
            }
        }
        unresolved
    }

    /// The peer this table already has for an upstream with the same
    /// target and TLS settings, if resolved.
    fn known_peer(&self, u: &Upstream) -> Option<Arc<HttpPeer>> {
        self.routes
            .iter()
            .filter(|r| {
                r.upstream.addr == u.addr
                    && r.upstream.tls == u.tls
                    && r.upstream.url.host_str() == u.url.host_str()
            })
            .find_map(|r| r.peer.load_full())
    }
}

/// The address to use: the current one while the name still lists it (so a
/// round-robin answer does not churn the connection pool), the next one
/// after it when connecting to it `failed`, else the first.
fn choose(current: Option<SocketAddr>, found: &[SocketAddr], failed: bool) -> Option<SocketAddr> {
    let at = current.and_then(|c| found.iter().position(|a| *a == c));
    match at {
        Some(i) if failed => found.get((i + 1) % found.len()).copied(),
        Some(i) => found.get(i).copied(),
        None => found.first().copied(),
    }
}

fn peer_addr(peer: &HttpPeer) -> Option<SocketAddr> {
    peer.address().as_inet().copied()
}

fn build_peer(u: &Upstream, addr: SocketAddr) -> HttpPeer {
    let sni = u.url.host_str().unwrap_or_default().to_owned();
    let mut peer = HttpPeer::new(addr, u.tls, sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(CONNECT_TIMEOUT);
    o.total_connection_timeout = Some(CONNECT_TIMEOUT * 2);
    o.read_timeout = Some(READ_TIMEOUT);
    o.write_timeout = Some(WRITE_TIMEOUT);
    o.idle_timeout = Some(IDLE_TIMEOUT);
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(path: &str, target: &str) -> Upstream {
        Upstream {
            path: path.into(),
            url: url::Url::parse(&format!("http://{target}")).unwrap(),
            addr: target.parse().unwrap(),
            tls: false,
            host: None,
        }
    }

    fn port_of(u: &Upstreams, path: &str) -> Option<u16> {
        let i = u.select(path)?;
        Some(u.peer(i).ok()?.address().as_inet()?.port())
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let u = Upstreams::new(
            &[
                up("/", "127.0.0.1:1"),
                up("/api/v2", "127.0.0.1:3"),
                up("/api", "127.0.0.1:2"),
            ],
            None,
        );
        assert_eq!(port_of(&u, "/api/v2/x"), Some(3));
        assert_eq!(port_of(&u, "/api/x"), Some(2));
        assert_eq!(port_of(&u, "/other"), Some(1));
        assert_eq!(
            Upstreams::new(&[up("/app", "127.0.0.1:1")], None).select("/other"),
            None
        );
    }

    #[tokio::test]
    async fn a_name_has_no_peer_until_it_resolves_and_reload_keeps_it() {
        let list = [up("/", "localhost:8081"), up("/gone", "nowhere.invalid:80")];
        let u = Upstreams::new(&list, None);
        assert!(matches!(
            u.peer(u.select("/").unwrap()),
            Err(PeerError::Unresolved(_))
        ));
        let unresolved = u.resolve_all().await;
        assert_eq!(unresolved, ["nowhere.invalid"]);
        let peer = u.peer(u.select("/").unwrap()).unwrap();
        let addr = peer.address().as_inet().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() == 8081, "{addr}");
        let gone = u.select("/gone").unwrap();
        assert!(matches!(u.peer(gone), Err(PeerError::Unresolved(h)) if h == "nowhere.invalid:80"));

        // A reload with the same name starts with the address already known.
        let next = Upstreams::new(&list, Some(&u));
        assert!(next.peer(next.select("/").unwrap()).is_ok());
        assert!(Arc::ptr_eq(&next.kick, &u.kick));
    }

    #[test]
    fn the_current_address_is_kept_while_dns_still_lists_it() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert_eq!(choose(Some(b), &[a, b], false), Some(b));
        assert_eq!(choose(Some(b), &[a], false), Some(a));
        assert_eq!(choose(None, &[a, b], false), Some(a));
        assert_eq!(choose(Some(a), &[], false), None);
        // After a failed connect, the next address of the answer.
        assert_eq!(choose(Some(a), &[a, b], true), Some(b));
        assert_eq!(choose(Some(b), &[a, b], true), Some(a));
        assert_eq!(choose(Some(a), &[a], true), Some(a));
    }
}
