//! Upstream selection: longest path prefix wins; peers are built from the
//! addresses resolved at start-up, never from DNS on the request path.

use std::time::Duration;

use pingora::prelude::HttpPeer;

use crate::config::Upstream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The configured upstreams, longest path prefix first, each with its peer.
pub struct Upstreams {
    /// Sorted by prefix length, longest first.
    routes: Vec<Upstream>,
    /// `routes[i]`'s peer, built once: each request clones it.
    peers: Vec<HttpPeer>,
}

impl Upstreams {
    /// Sorts `list` for longest-prefix selection and builds each peer once.
    pub fn new(list: &[Upstream]) -> Self {
        let mut routes = list.to_vec();
        routes.sort_by_key(|u| std::cmp::Reverse(u.path.len()));
        let peers = routes.iter().map(build_peer).collect();
        Upstreams { routes, peers }
    }

    /// Index of the upstream for a path; None when no prefix matches (or,
    /// in an ext_authz-only deployment, none is configured).
    pub fn select(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|u| path.starts_with(&u.path))
    }

    /// The `Host` header upstream `i` wants instead of the client's, if set.
    pub fn host_override(&self, i: usize) -> Option<&str> {
        self.routes.get(i).and_then(|u| u.host.as_deref())
    }

    /// A copy of upstream `i`'s peer for one request.
    pub fn peer(&self, i: usize) -> Option<Box<HttpPeer>> {
        self.peers.get(i).map(|p| Box::new(p.clone()))
    }
}

fn build_peer(u: &Upstream) -> HttpPeer {
    let sni = u.url.host_str().unwrap_or_default().to_owned();
    let mut peer = HttpPeer::new(u.addr, u.tls, sni);
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

    fn up(path: &str, port: u16) -> Upstream {
        Upstream {
            path: path.into(),
            url: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            tls: false,
            host: None,
        }
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let u = Upstreams::new(&[up("/", 1), up("/api/v2", 3), up("/api", 2)]);
        let port = |p: &str| u.select(p).map(|i| u.routes[i].addr.port());
        assert_eq!(port("/api/v2/x"), Some(3));
        assert_eq!(port("/api/x"), Some(2));
        assert_eq!(port("/other"), Some(1));
        assert_eq!(Upstreams::new(&[up("/app", 1)]).select("/other"), None);
    }
}
