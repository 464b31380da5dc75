//! Closing the listening sockets on `SIGTERM` without resetting a
//! connection the kernel already completed: new `SYN`s are dropped first,
//! the accept queues are left to empty, and only then does Pingora close
//! the listeners.
//!
//! Closing a listening socket resets every connection still in its accept
//! queue: the client finished its handshake, sent its request, and gets a
//! `RST` although nothing was read. Pingora's accept loops stop and drop
//! their listeners the moment shutdown begins, with whatever is queued.
//! Here, before that moment, each listener gets a classic BPF socket filter
//! that drops bare `SYN` segments (no new handshakes start; the final `ACK`s
//! of handshakes under way still pass), the process waits until every accept
//! queue stays empty for [`SETTLE`] (Pingora keeps accepting meanwhile), at
//! most [`QUIESCE_MAX`], and then lets Pingora close. A client whose `SYN`
//! was dropped retransmits it (after about 1 s) and then finds the port
//! closed: refused, never reset after sending its request.
//!
//! Pingora does not expose its listening sockets, so they are found by
//! address: the socket inodes among this process's descriptors
//! (`/proc/self/fd`) that `/proc/self/net/tcp{,6}` lists as listening on
//! one of the configured addresses, duplicated with `pidfd_getfd(2)`
//! (Linux ≥ 5.6). Where any step is not permitted (an older kernel, a
//! seccomp profile), shutdown goes on as before and says so in the log.
//! Not used on `SIGQUIT`: the listeners then live on in the new process.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};
use socket2::{SockFilter, Socket};
use tokio::time::Instant;

/// How long every accept queue must stay empty before the listeners close:
/// a handshake whose `SYN-ACK` went out just before the filter took effect
/// completes within a round trip (well under this inside a data centre).
pub const SETTLE: Duration = Duration::from_millis(50);

/// The most the close is held back, however busy the accept queues are.
pub const QUIESCE_MAX: Duration = Duration::from_secs(1);

/// How often the queues are looked at.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// The socket filter: keep every segment except a bare `SYN` (flags
/// `SYN` set, `ACK` clear). A TCP socket's filter sees the segment from its
/// TCP header on, so byte 13 is the flags byte (RFC 9293 §3.1).
fn drop_new_handshakes() -> [SockFilter; 5] {
    // Classic BPF opcodes (linux/filter.h).
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    [
        SockFilter::new(LD_B_ABS, 0, 0, 13),
        SockFilter::new(AND_K, 0, 0, SYN | ACK),
        // A bare SYN falls through to "drop"; anything else jumps to "keep".
        SockFilter::new(JEQ_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ]
}

/// Why the listeners could not be quiesced (shutdown then goes on as if
/// without this step).
#[derive(Debug, thiserror::Error)]
pub enum QuiesceError {
    /// `/proc` could not be read.
    #[error("cannot list the process's sockets: {0}")]
    Proc(io::Error),
    /// `pidfd_open` or `pidfd_getfd` failed (kernel older than 5.6, seccomp).
    #[error("cannot duplicate a listening socket: {0}")]
    Duplicate(io::Error),
    /// The filter could not be attached.
    #[error("cannot attach the socket filter: {0}")]
    Filter(io::Error),
}

/// This process's listening sockets on the given addresses, each with the
/// `SYN`-dropping filter attached. Dropping it closes only the duplicates.
pub struct Quiesced {
    sockets: Vec<(SocketAddr, Socket)>,
}

impl Quiesced {
    /// Finds the listening sockets on `addrs` and attaches the filter.
    ///
    /// # Errors
    /// See [`QuiesceError`]. An address no socket listens on is skipped.
    pub fn attach(addrs: &[SocketAddr]) -> Result<Quiesced, QuiesceError> {
        let listening = listening_inodes().map_err(QuiesceError::Proc)?;
        let mut wanted: Vec<(u64, SocketAddr)> = listening
            .into_iter()
            .filter(|(_, addr)| addrs.contains(addr))
            .collect();
        if wanted.is_empty() {
            return Ok(Quiesced {
                sockets: Vec::new(),
            });
        }
        wanted.sort();
        let pidfd = pidfd_open(getpid(), PidfdFlags::empty())
            .map_err(|e| QuiesceError::Duplicate(e.into()))?;
        let mut sockets = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd").map_err(QuiesceError::Proc)? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Some(inode) = socket_inode(&entry.path()) else {
                continue;
            };
            let Ok(at) = wanted.binary_search_by_key(&inode, |(i, _)| *i) else {
                continue;
            };
            let addr = wanted[at].1;
            let dup: OwnedFd = match pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) {
                Ok(dup) => dup,
                // Closed since the directory was read.
                Err(rustix::io::Errno::BADF) => continue,
                Err(e) => return Err(QuiesceError::Duplicate(e.into())),
            };
            let socket = Socket::from(dup);
            // The number may have been reused since it was listed.
            if !socket.is_listener().unwrap_or(false)
                || socket.local_addr().ok().and_then(|a| a.as_socket()) != Some(addr)
            {
                continue;
            }
            socket
                .attach_filter(&drop_new_handshakes())
                .map_err(QuiesceError::Filter)?;
            sockets.push((addr, socket));
            // Several descriptors may share one socket; one filter will do.
            wanted.remove(at);
        }
        Ok(Quiesced { sockets })
    }

    /// The addresses whose listeners now drop new handshakes.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.sockets.iter().map(|(a, _)| *a)
    }

    /// How many of the listeners have a connection waiting to be accepted.
    pub fn queued(&self) -> usize {
        let mut fds: Vec<PollFd<'_>> = self
            .sockets
            .iter()
            .map(|(_, s)| PollFd::new(s, PollFlags::IN))
            .collect();
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(_) => fds
                .iter()
                .filter(|f| f.revents().contains(PollFlags::IN))
                .count(),
            // Nothing to wait for that can be known.
            Err(_) => 0,
        }
    }

    /// Waits until every accept queue has stayed empty for `settle`, at
    /// most `max`. Returns whether they settled.
    pub async fn settle(&self, settle: Duration, max: Duration) -> bool {
        let end = Instant::now() + max;
        let mut empty_since = Instant::now();
        loop {
            let now = Instant::now();
            if self.queued() > 0 {
                empty_since = now;
            } else if now.duration_since(empty_since) >= settle {
                return true;
            }
            if now >= end {
                return false;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// On `SIGTERM`, before Pingora closes the listeners on `addrs`: stop new
/// handshakes and let the accept queues empty (see the module doc).
pub async fn before_close(addrs: &[SocketAddr]) {
    let began = Instant::now();
    match Quiesced::attach(addrs) {
        Ok(q) => {
            let settled = q.settle(SETTLE, QUIESCE_MAX).await;
            tracing::info!(
                listeners = q.addrs().count(),
                settled,
                after_ms = began.elapsed().as_millis() as u64,
                "new handshakes dropped and accept queues emptied before closing the listeners"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            "closing the listeners without emptying their accept queues first"
        ),
    }
}

/// The inode of the socket `link` (a `/proc/self/fd/N` entry) points to.
fn socket_inode(link: &std::path::Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let target = target.to_str()?;
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Listening TCP sockets in this process's network namespace, by inode.
fn listening_inodes() -> io::Result<HashMap<u64, SocketAddr>> {
    let mut out = HashMap::new();
    for (path, v6) in [("/proc/self/net/tcp", false), ("/proc/self/net/tcp6", true)] {
        let table = match std::fs::read_to_string(path) {
            Ok(t) => t,
            // No IPv6 in this kernel.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(
            table
                .lines()
                .skip(1)
                .filter_map(|l| parse_listen_row(l, v6)),
        );
    }
    Ok(out)
}

/// One row of `/proc/net/tcp{,6}`: `sl local_address rem_address st ...
/// inode`, addresses as hex words in host byte order and the port in hex;
/// state `0A` is `LISTEN`.
fn parse_listen_row(line: &str, v6: bool) -> Option<(u64, SocketAddr)> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = cols.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = cols.get(9)?.parse().ok()?;
    let ip: std::net::IpAddr = if v6 {
        if ip.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (w, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(ip.get(w * 8..w * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        std::net::Ipv6Addr::from(bytes).into()
    } else {
        let word = u32::from_str_radix(ip, 16).ok()?;
        std::net::Ipv4Addr::from(word.to_ne_bytes()).into()
    };
    Some((inode, SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn proc_net_rows_parse_to_listening_addresses() {
        let v4 = "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0";
        assert_eq!(
            parse_listen_row(v4, false),
            Some((4242, "127.0.0.1:8080".parse().unwrap()))
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_listen_row(&established, false), None);
        let v6 = "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0 100 0 0 10 0";
        assert_eq!(
            parse_listen_row(v6, true),
            Some((77, "[::1]:8081".parse().unwrap()))
        );
    }

    #[test]
    fn the_filter_drops_new_handshakes_and_keeps_queued_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Completed before the filter: waits in the accept queue.
        let mut queued = TcpStream::connect(addr).unwrap();
        queued.write_all(b"hello").unwrap();

        let q = Quiesced::attach(&[addr]).unwrap();
        assert_eq!(q.addrs().collect::<Vec<_>>(), vec![addr]);
        assert_eq!(q.queued(), 1, "the completed connection is queued");

        // A new handshake gets no SYN-ACK: loopback answers in microseconds,
        // so 300 ms without one is the filter, not the machine.
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}"),
            Ok(_) => panic!("a new handshake completed through the filter"),
        }

        // The queued one is still served, whole.
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(q.queued(), 0, "nothing left to accept");
        drop(q);
        // The duplicate is gone, the listener (and its filter) stays.
        assert!(listener.local_addr().is_ok());
    }

    #[tokio::test]
    async fn settling_waits_for_the_queue_to_empty() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _queued = TcpStream::connect(addr).unwrap();
        let q = Quiesced::attach(&[addr]).unwrap();
        // Not accepted: the queue never empties, so settling gives up.
        assert!(!q.settle(SETTLE, Duration::from_millis(100)).await);
        let _conn = listener.accept().unwrap();
        assert!(q.settle(SETTLE, QUIESCE_MAX).await);
    }

    #[test]
    fn an_address_nobody_listens_on_is_skipped() {
        let free: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let q = Quiesced::attach(&[free]).unwrap();
        assert_eq!(q.addrs().count(), 0);
        assert_eq!(q.queued(), 0);
    }
}
