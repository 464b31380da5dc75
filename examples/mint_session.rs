//! Prints a `Cookie` header value carrying a valid session for the given
//! `authgate run` config, so `benches/load.sh` can drive the authenticated
//! path without a browser login. Development tool only: the session is
//! forged with the config's own cookie secret.
//!
//! `cargo run --release --example mint_session -- <config.yaml>`

use std::sync::Arc;

use authgate::authz::Identity;
use authgate::clock::unix_now;
use authgate::gate::Gate;
use authgate::metrics::Metrics;
use authgate::session::cookies::CookieJar;
use authgate::session::Session;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: mint_session <config.yaml>"))?;
    let cfg = authgate::config::load_str(&std::fs::read_to_string(&path)?)?;
    let gate = Gate::new(Arc::new(cfg), Metrics::new()?)?;
    // Token sizes like a real IdP's: about 1 KB each.
    let token = "x".repeat(900);
    let session = Session {
        identity: Identity {
            user: "alice@example.com".into(),
            email: "alice@example.com".into(),
            preferred_username: "alice".into(),
            groups: vec!["admins".into(), "devs".into()],
        }
        .into(),
        sub: "alice".into(),
        sid: Some("sid-1".into()),
        id_token: Some(token.clone().into()),
        access_token: Some(token.clone().into()),
        refresh_token: Some(token.into()),
        refreshed_at: unix_now(),
        expires_at: unix_now() + 3600,
        claims: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // With `session: redis` the session is written to Redis: connect first
    // (the upkeep task does so in `authgate run`), 10 s at most.
    if let Some(redis) = gate.store.redis() {
        rt.block_on(async {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
            tokio::select! {
                _ = redis.maintain() => {}
                _ = async {
                    while !redis.is_up() && std::time::Instant::now() < end {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                } => {}
            }
        });
    }
    let empty = http::HeaderMap::new();
    let set = rt.block_on(gate.store.save(
        &session,
        None,
        "127.0.0.1",
        &CookieJar::from_headers(&empty),
    ))?;
    let pairs: Vec<&str> = set
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .collect();
    println!("{}", pairs.join("; "));
    Ok(())
}
