//! Stopping without losing an accepted request: the signals (`SIGTERM`
//! drains, `SIGQUIT` hands the listening sockets to a waiting `--upgrade`
//! process, then drains, `SIGINT` stops at once), the count of open
//! connections on every listener, and the drain that ends the process as
//! soon as they are all closed, at the latest one `server.shutdown_grace`
//! after shutdown began.
//!
//! Pingora alone sleeps the whole grace period and then gives the runtimes
//! a further timeout, so a drained process would still linger for the
//! grace and more; here the process exits once its last connection closes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::reload::GateHandle;

/// How long a `SIGQUIT` waits for a new process's `upgrade_sock` to appear
/// before it is ignored (Pingora's sender retries about as long).
const UPGRADE_WAIT: Duration = Duration::from_secs(5);

/// How often the drain looks at the connection count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Kept back from the grace for the exit itself, so the process is gone
/// within `shutdown_grace` of the signal.
const EXIT_MARGIN: Duration = Duration::from_millis(100);

/// Open connections across the listeners (accepted, after any TLS handshake).
#[derive(Clone, Default)]
pub struct Connections(Arc<AtomicUsize>);

impl Connections {
    /// How many are open now.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One open connection; closing it (dropping) counts it out.
struct Open(Connections);

impl Drop for Open {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A listener's application `A`, counted in [`Connections`] for each
/// connection it serves.
pub struct Counted<A> {
    app: Arc<A>,
    open: Connections,
}

impl<A> Counted<A> {
    /// Wraps `app`, counting into `open`.
    pub fn new(app: A, open: &Connections) -> Self {
        Counted {
            app: Arc::new(app),
            open: open.clone(),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Counted<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.open.0.fetch_add(1, Ordering::AcqRel);
        let _open = Open(self.open.clone());
        // The HTTP apps loop over keep-alive requests inside this call and
        // return None; a stream handed back is served again right here.
        let mut next = self.app.process_new(session, shutdown).await;
        while let Some(stream) = next {
            next = self.app.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

/// The shutdown signals, with `SIGQUIT` honoured only when a new process
/// is waiting on `upgrade_sock` (else Pingora would drain this process with
/// nobody to take over its sockets: an outage).
pub struct Signals {
    /// `server.upgrade_sock`.
    pub upgrade_sock: PathBuf,
    /// Every listening address (proxy, ext_authz, metrics): on `SIGTERM`
    /// they stop taking new handshakes before they close (see `quiesce`).
    pub listeners: Vec<SocketAddr>,
    /// The gate whose `/ready` turns 503 as soon as `SIGTERM` arrives.
    pub gate: GateHandle,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let streams = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (mut quit, mut term, mut int) = match streams {
            (Ok(q), Ok(t), Ok(i)) => (q, t, i),
            _ => {
                tracing::error!("cannot listen for SIGTERM/SIGQUIT/SIGINT: stopping");
                return ShutdownSignal::FastShutdown;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: draining");
                    self.gate.load().start_draining();
                    super::quiesce::before_close(&self.listeners).await;
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: stopping now");
                    return ShutdownSignal::FastShutdown;
                }
                _ = quit.recv() => {
                    if upgrade_waiting(&self.upgrade_sock).await {
                        tracing::info!(sock = %self.upgrade_sock.display(), "SIGQUIT: handing the listening sockets to the new process, then draining");
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    tracing::error!(
                        sock = %self.upgrade_sock.display(),
                        "SIGQUIT ignored: no `authgate run --upgrade` is waiting on server.upgrade_sock; still serving"
                    );
                }
            }
        }
    }
}

/// Whether `sock` is (or within [`UPGRADE_WAIT`] becomes) a Unix socket:
/// a new process listening for the hand-over.
async fn upgrade_waiting(sock: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    let end = Instant::now() + UPGRADE_WAIT;
    loop {
        if std::fs::metadata(sock).is_ok_and(|m| m.file_type().is_socket()) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once shutdown starts: `/ready` answers 503, and the process exits when
/// no connection is open any more, at the latest `grace` later.
pub struct Drain {
    /// The gate whose `/ready` turns 503.
    pub gate: GateHandle,
    /// The connections to wait for.
    pub open: Connections,
    /// `server.shutdown_grace`.
    pub grace: Duration,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.wait_for(|&down| down).await.is_err() {
            return;
        }
        let began = Instant::now();
        self.gate.load().start_draining();
        let deadline = began + self.grace.saturating_sub(EXIT_MARGIN);
        loop {
            let open = self.open.open();
            if open == 0 {
                tracing::info!(
                    after_ms = began.elapsed().as_millis() as u64,
                    "drained: every connection closed, exiting"
                );
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    open,
                    "shutdown_grace over: exiting with connections still open"
                );
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        // The spans still queued for the OTLP collector, in what is left.
        crate::telemetry::trace::flush(deadline.saturating_duration_since(Instant::now()));
        // Pingora's `Server::run` would still sleep out the whole grace
        // period (and then time its runtimes out): ending the process here,
        // with every connection closed and the spans flushed, is the drain's
        // purpose, not a way around it.
        #[allow(clippy::disallowed_methods)]
        std::process::exit(0);
    }
}
