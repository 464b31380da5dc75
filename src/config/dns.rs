//! Start-up resolution of the upstream hosts: the one network step of
//! loading, run last so every offline problem is already known. Pingora's
//! `HttpPeer::new` would otherwise resolve with blocking DNS per request.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::error::Problem;
use super::model::Upstream;
use super::validate::upstreams::PendingUpstream;

/// Resolves an upstream host and port to addresses (`ToSocketAddrs` in
/// production; a closure in tests so they need no DNS). Errors are reported
/// as `upstreams[i].url: cannot resolve host …`.
pub type Resolver<'a> = &'a dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

/// The system resolver (`getaddrinfo` through `ToSocketAddrs`).
pub(super) fn system_resolver(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// Resolves each upstream's host once (the first address wins); an IP
/// literal needs no lookup. Hosts that do not resolve become problems.
pub(super) fn resolve_upstreams(
    pending: Vec<PendingUpstream>,
    resolve: Resolver<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Upstream> {
    let mut problem = |key: &str, message: String| problems.push(Problem::new(key, message));
    let mut upstreams = Vec::with_capacity(pending.len());
    for p in pending {
        let url_key = format!("{}.url", p.key);
        let Some(port) = p.url.port_or_known_default() else {
            problem(&url_key, "needs a port".to_string());
            continue;
        };
        let addr = match p.url.host() {
            Some(url::Host::Ipv4(ip)) => Some(SocketAddr::new(IpAddr::V4(ip), port)),
            Some(url::Host::Ipv6(ip)) => Some(SocketAddr::new(IpAddr::V6(ip), port)),
            Some(url::Host::Domain(host)) => match resolve(host, port) {
                Ok(addrs) => match addrs.first() {
                    Some(addr) => Some(*addr),
                    None => {
                        problem(
                            &url_key,
                            format!("cannot resolve host {host}: no addresses"),
                        );
                        None
                    }
                },
                Err(err) => {
                    problem(&url_key, format!("cannot resolve host {host}: {err}"));
                    None
                }
            },
            None => {
                problem(&url_key, "must name a host".to_string());
                None
            }
        };
        if let Some(addr) = addr {
            upstreams.push(Upstream {
                path: p.path,
                url: p.url,
                addr,
                tls: p.tls,
                host: p.host,
            });
        }
    }
    upstreams
}
