//! The plainest Pingora proxy: no authentication, no metrics, no header
//! work, forwarding everything to one upstream. `benches/load.sh` runs it
//! next to authgate so the table shows what Pingora itself costs — the
//! ceiling authgate's proxy path should stay close to. It mirrors authgate's
//! server set-up (threads, h2c, upstream timeouts, peer from a resolved
//! address) so the difference is authgate's own work.
//!
//! `cargo run --release --example bare_proxy -- <listen> <upstream> [threads]`

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The same timeouts `src/proxy/upstream.rs` gives every peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        let o = &mut peer.options;
        o.connection_timeout = Some(CONNECT_TIMEOUT);
        o.total_connection_timeout = Some(CONNECT_TIMEOUT * 2);
        o.read_timeout = Some(READ_TIMEOUT);
        o.write_timeout = Some(WRITE_TIMEOUT);
        o.idle_timeout = Some(IDLE_TIMEOUT);
        Ok(Box::new(peer))
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || anyhow::anyhow!("usage: bare_proxy <listen addr> <upstream addr> [threads]");
    let listen = args.next().ok_or_else(usage)?;
    let upstream: SocketAddr = args.next().ok_or_else(usage)?.parse()?;
    let threads: usize = match args.next() {
        Some(t) => t.parse()?,
        None => 1,
    };
    let conf = ServerConf {
        threads: threads.max(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
    let mut opts = HttpServerOptions::default();
    opts.h2c = true;
    if let Some(app) = proxy.app_logic_mut() {
        app.server_options = Some(opts);
    }
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever()
}
