//! `authgate demo`: the proxy, the development IdP and the echo upstream in
//! one process, all on 127.0.0.1, wired together with a generated config.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService};

use super::echo::Echo;
use super::http_server::{self, Handler};
use super::idp::{DemoClient, DemoIdp};
use super::{refuse_non_loopback, BANNER};

const CLIENT_ID: &str = "authgate-demo";

/// The demo's authgate configuration, as a user would write it.
fn config_yaml(port: u16, idp_port: u16, echo_port: u16, client_secret: &str) -> String {
    format!(
        r#"server:
  listen: 127.0.0.1:{port}
  threads: 2
  shutdown_grace: 1s
provider:
  issuer_url: http://127.0.0.1:{idp_port}
  client_id: {CLIENT_ID}
  client_secret: {client_secret}
cookie:
  secret: {cookie_secret}
  secure: false
  expire: 12h
authorization:
  allowed_groups: [admins]
upstreams:
  - path: /
    url: http://127.0.0.1:{echo_port}
"#,
        cookie_secret = crate::domain::random::token(32),
    )
}

/// A listener bound before Pingora starts (so its port is known and stays
/// ours), served with [`http_server`] on a Pingora background runtime until
/// shutdown.
struct Served {
    listener: Mutex<Option<TcpListener>>,
    handler: Handler,
}

#[async_trait]
impl BackgroundService for Served {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().take() else {
            return;
        };
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "authgate demo: cannot serve a listener");
                return;
            }
        };
        tokio::select! {
            served = http_server::serve(listener, self.handler.clone()) => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "authgate demo: cannot serve a listener");
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs the demo with the proxy on `127.0.0.1:port` until the process is
/// stopped. Errors if a port cannot be bound or the generated config is
/// refused; never returns otherwise.
pub fn run(port: u16) -> anyhow::Result<()> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    refuse_non_loopback(&listen)?;
    // Bound now and kept: the ports go into the config and nobody can take them.
    let idp_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let echo_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let idp_port = idp_listener.local_addr()?.port();
    let echo_port = echo_listener.local_addr()?.port();
    let client_secret = crate::domain::random::token(24);
    let cfg = crate::config::load_str(&config_yaml(port, idp_port, echo_port, &client_secret))
        .map_err(|e| {
            anyhow::anyhow!("demo config: {}", e.lines().collect::<Vec<_>>().join("; "))
        })?;

    let issuer = url::Url::parse(&format!("http://127.0.0.1:{idp_port}"))?;
    let idp = DemoIdp::new(
        issuer,
        vec![DemoClient {
            client_id: CLIENT_ID.to_owned(),
            client_secret,
            redirect_uris: vec![
                format!("http://127.0.0.1:{port}/oauth2/callback"),
                format!("http://localhost:{port}/oauth2/callback"),
            ],
        }],
    )?;

    let (mut server, _gate) = crate::server::build(cfg)?;
    server.add_service(background_service(
        "demo identity provider",
        Served {
            listener: Mutex::new(Some(idp_listener)),
            handler: idp.handler(),
        },
    ));
    server.add_service(background_service(
        "demo echo upstream",
        Served {
            listener: Mutex::new(Some(echo_listener)),
            handler: Echo::new().handler(),
        },
    ));

    eprintln!("{BANNER}");
    eprintln!("identity provider: http://127.0.0.1:{idp_port}   echo upstream: http://127.0.0.1:{echo_port}");
    eprintln!(
        "users: alice/alice (groups admins, devs: allowed)   bob/bob (group users: gets 403)"
    );
    println!("open http://127.0.0.1:{port}/");
    server.run_forever()
}
