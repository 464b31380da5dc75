//! Upstream targets without DNS: each `upstreams[i].url` becomes an IP
//! address or a host name and port, checked by syntax alone. Loading (and so
//! `authgate check`) makes no network call; the proxy resolves host names in
//! the background (`proxy::upstream`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::error::Problem;
use super::model::Upstream;
use super::validate::upstreams::PendingUpstream;

/// Where an upstream lives: an address, or a name resolved at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamAddr {
    /// An IP literal in the URL: no lookup, ever.
    Ip(SocketAddr),
    /// A host name (lower-case, as the URL parser normalises it) and port,
    /// re-resolved in the background while running.
    Name {
        /// The DNS name.
        host: String,
        /// The TCP port (the URL's, or the scheme's default).
        port: u16,
    },
}

impl UpstreamAddr {
    /// The TCP port.
    pub fn port(&self) -> u16 {
        match self {
            UpstreamAddr::Ip(addr) => addr.port(),
            UpstreamAddr::Name { port, .. } => *port,
        }
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Ip(addr) => addr.fmt(f),
            UpstreamAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a `host:port` text is not an [`UpstreamAddr`].
#[derive(Debug, thiserror::Error)]
#[error("expected host:port or ip:port")]
pub struct UpstreamAddrError;

impl FromStr for UpstreamAddr {
    type Err = UpstreamAddrError;

    /// `10.0.0.1:80`, `[::1]:81` or `app.internal:8080`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(UpstreamAddr::Ip(addr));
        }
        let (host, port) = s.rsplit_once(':').ok_or(UpstreamAddrError)?;
        let port = port.parse().map_err(|_| UpstreamAddrError)?;
        if host.is_empty() || host.contains([':', '[', ']', '/']) {
            return Err(UpstreamAddrError);
        }
        Ok(UpstreamAddr::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// Turns each statically valid upstream into its target. An IP literal is
/// its address; a host name is kept as a name (its syntax was checked by the
/// URL parser). No lookup happens here.
pub(super) fn upstream_targets(
    pending: Vec<PendingUpstream>,
    problems: &mut Vec<Problem>,
) -> Vec<Upstream> {
    let mut upstreams = Vec::with_capacity(pending.len());
    for p in pending {
        let url_key = format!("{}.url", p.key);
        let Some(port) = p.url.port_or_known_default() else {
            problems.push(Problem::new(&url_key, "needs a port"));
            continue;
        };
        let addr = match p.url.host() {
            Some(url::Host::Ipv4(ip)) => UpstreamAddr::Ip(SocketAddr::new(IpAddr::V4(ip), port)),
            Some(url::Host::Ipv6(ip)) => UpstreamAddr::Ip(SocketAddr::new(IpAddr::V6(ip), port)),
            Some(url::Host::Domain(host)) if !host.is_empty() => UpstreamAddr::Name {
                host: host.to_ascii_lowercase(),
                port,
            },
            _ => {
                problems.push(Problem::new(&url_key, "must name a host"));
                continue;
            }
        };
        upstreams.push(Upstream {
            path: p.path,
            url: p.url,
            addr,
            tls: p.tls,
            host: p.host,
        });
    }
    upstreams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_text() {
        assert_eq!(
            "10.1.2.3:80".parse::<UpstreamAddr>().unwrap(),
            UpstreamAddr::Ip("10.1.2.3:80".parse().unwrap())
        );
        assert_eq!(
            "App.Internal:8080".parse::<UpstreamAddr>().unwrap(),
            UpstreamAddr::Name {
                host: "app.internal".into(),
                port: 8080
            }
        );
        assert_eq!("[::1]:81".parse::<UpstreamAddr>().unwrap().port(), 81);
        assert!("nohost".parse::<UpstreamAddr>().is_err());
        assert!(":80".parse::<UpstreamAddr>().is_err());
        assert_eq!(
            UpstreamAddr::Name {
                host: "a.b".into(),
                port: 1
            }
            .to_string(),
            "a.b:1"
        );
    }
}
