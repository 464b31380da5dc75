//! `authgate demo`: the proxy, the development IdP and the echo upstream in
//! one process, all on 127.0.0.1, wired together with a generated config.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use pingora::services::listening::Service;

use super::echo::Echo;
use super::idp::{DemoClient, DemoIdp};
use super::{refuse_non_loopback, BANNER};

const CLIENT_ID: &str = "authgate-demo";

/// A port nothing listens on right now (the OS picks it).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}


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

pub fn run(port: u16) -> anyhow::Result<()> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    refuse_non_loopback(&listen)?;
    let idp_port = free_port()?;
    let echo_port = free_port()?;
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
    let mut idp_svc = Service::new("demo identity provider".to_owned(), idp);
    idp_svc.add_tcp(&format!("127.0.0.1:{idp_port}"));
    let mut echo_svc = Service::new("demo echo upstream".to_owned(), Echo::new());
    echo_svc.add_tcp(&format!("127.0.0.1:{echo_port}"));
    server.add_service(idp_svc);
    server.add_service(echo_svc);

    eprintln!("{BANNER}");
    eprintln!("identity provider: http://127.0.0.1:{idp_port}   echo upstream: http://127.0.0.1:{echo_port}");
    eprintln!(
        "users: alice/alice (groups admins, devs: allowed)   bob/bob (group users: gets 403)"
    );
    println!("open http://127.0.0.1:{port}/");
    server.run_forever()
}
