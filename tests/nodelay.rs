//! `TCP_NODELAY` on every socket authgate holds: with Nagle's algorithm on,
//! the small last write of an answer (a gRPC trailers frame) waits for the
//! peer's delayed ACK, ~40 ms per ext_authz `Check` (issue 11). Two guards,
//! both against the real binary:
//!
//! - read back: the test duplicates the child's sockets (`pidfd_getfd(2)`,
//!   allowed on a child process) and reads `TCP_NODELAY` from each connected
//!   TCP socket: the accepted gRPC, ext_authz HTTP and proxy connections,
//!   the upstream pool and the IdP client. Where the kernel or a seccomp
//!   profile refuses `pidfd_getfd`, it says so and only the bound runs;
//! - a latency-bug detector (not a speed goal): 100 sequential loopback
//!   `Check`s (and proxied requests) take well under 100 x 10 ms, a 10x
//!   margin over the ~1 ms each takes with Nagle off, while the stall makes
//!   each one ~40 ms.

use crate::support;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::support::{Authgate, GateConfig, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

const ROUND_TRIPS: u32 = 100;
/// 10x the ~1 ms a loopback round trip takes; a stalled one takes ~40 ms.
const BOUND_EACH: Duration = Duration::from_millis(10);

fn check_request(host: &str) -> CheckRequest {
    support::check_request(
        "GET",
        host,
        "/public/x",
        HashMap::from([("host".to_owned(), host.to_owned())]),
    )
}

/// One connected TCP socket of another process, as read back.
#[derive(Debug)]
struct Sock {
    local_port: u16,
    peer_port: u16,
    nodelay: bool,
}

fn port_of(addr: &libc::sockaddr_storage) -> Option<u16> {
    // SAFETY: the family says which sockaddr the storage holds.
    unsafe {
        match addr.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(addr as *const _ as *const libc::sockaddr_in);
                Some(u16::from_be(a.sin_port))
            }
            libc::AF_INET6 => {
                let a = &*(addr as *const _ as *const libc::sockaddr_in6);
                Some(u16::from_be(a.sin6_port))
            }
            _ => None,
        }
    }
}

fn int_opt(fd: i32, level: i32, name: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for the call.
    let rc = unsafe { libc::getsockopt(fd, level, name, &mut v as *mut _ as *mut _, &mut len) };
    (rc == 0).then_some(v)
}

/// Every connected (not listening) TCP socket of `pid`, or `Err` with why
/// the kernel would not let us look.
fn tcp_sockets(pid: u32) -> Result<Vec<Sock>, String> {
    // SAFETY: plain syscalls; every returned fd is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pidfd_open returned a new fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed meanwhile
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: as above.
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if dup < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBADF) {
                continue; // closed meanwhile
            }
            return Err(format!("pidfd_getfd: {e}"));
        }
        // SAFETY: pidfd_getfd returned a new fd we own.
        let dup = unsafe { OwnedFd::from_raw_fd(dup as i32) };
        let fd = dup.as_raw_fd();
        let stream = int_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM);
        let listening = int_opt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(0);
        let domain = int_opt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
        let inet = domain == Some(libc::AF_INET) || domain == Some(libc::AF_INET6);
        if !stream || listening || !inet {
            continue;
        }
        // SAFETY: zeroed sockaddr_storage is valid; len is its size.
        let (local, peer) = unsafe {
            let mut local: libc::sockaddr_storage = std::mem::zeroed();
            let mut peer: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            libc::getsockname(fd, &mut local as *mut _ as *mut _, &mut len);
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(fd, &mut peer as *mut _ as *mut _, &mut len) != 0 {
                continue; // not connected (yet, or any more)
            }
            (local, peer)
        };
        let (Some(local_port), Some(peer_port)) = (port_of(&local), port_of(&peer)) else {
            continue;
        };
        let nodelay = int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY).unwrap_or(0) != 0;
        out.push(Sock {
            local_port,
            peer_port,
            nodelay,
        });
    }
    Ok(out)
}

#[tokio::test]
async fn every_socket_has_nodelay_and_checks_do_not_stall() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let (http_port, grpc_port) = cfg.with_ext_authz();
    let gate = Authgate::run(&cfg).await;
    let host = format!("127.0.0.1:{}", cfg.port);

    // One HTTP/2 connection, as Envoy keeps one per ext_authz cluster.
    let mut grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .unwrap();
    let client = support::client();
    let app = gate.url("/public/x");
    let check_http = format!("http://127.0.0.1:{http_port}/public/x");
    // Warm up: connections made, the upstream pooled, the IdP discovered.
    let resp = grpc.check(check_request(&host)).await.unwrap().into_inner();
    assert_eq!(resp.status.map(|s| s.code), Some(0), "skip route allowed");
    assert_eq!(client.get(&app).send().await.unwrap().status(), 200);
    let resp = client
        .get(&check_http)
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Sequential round trips: each waits for the previous answer, so a
    // delayed ACK is paid every time.
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let resp = grpc.check(check_request(&host)).await.unwrap().into_inner();
        assert_eq!(resp.status.map(|s| s.code), Some(0));
    }
    let grpc_took = started.elapsed();
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        assert_eq!(client.get(&app).send().await.unwrap().status(), 200);
    }
    let proxy_took = started.elapsed();
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let resp = client
            .get(&check_http)
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let http_took = started.elapsed();

    // Read back while every connection is still open.
    match tcp_sockets(gate.pid()) {
        Ok(socks) => {
            let find = |what: &str, f: &dyn Fn(&Sock) -> bool| {
                let found: Vec<&Sock> = socks.iter().filter(|s| f(s)).collect();
                assert!(!found.is_empty(), "no {what} socket among {socks:?}");
                for s in found {
                    assert!(s.nodelay, "{what} socket without TCP_NODELAY: {s:?}");
                }
            };
            find("accepted gRPC", &|s| s.local_port == grpc_port);
            find("accepted ext_authz HTTP", &|s| s.local_port == http_port);
            find("accepted proxy", &|s| s.local_port == cfg.port);
            find("upstream", &|s| s.peer_port == echo.port());
            // The IdP client's connection may be closed by now; whatever
            // else is open must be NODELAY too.
            for s in &socks {
                assert!(s.nodelay, "a socket without TCP_NODELAY: {s:?}");
            }
        }
        Err(why) => eprintln!("TCP_NODELAY not read back ({why}); the latency bound still runs"),
    }

    let bound = BOUND_EACH * ROUND_TRIPS;
    eprintln!("{ROUND_TRIPS} sequential: gRPC {grpc_took:?}, proxy {proxy_took:?}, ext_authz HTTP {http_took:?}");
    for (what, took) in [
        ("gRPC Check", grpc_took),
        ("proxied GET", proxy_took),
        ("ext_authz HTTP check", http_took),
    ] {
        assert!(
            took < bound,
            "{ROUND_TRIPS} sequential {what}s took {took:?} (bound {bound:?}): \
             a delayed-ACK stall (Nagle on)?"
        );
    }
}
