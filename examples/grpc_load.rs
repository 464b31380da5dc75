//! A gRPC load client for the ext_authz `Check` service: many concurrent
//! calls kept in flight on ONE HTTP/2 connection, as Envoy's ext_authz
//! filter does (`ghz` is not packaged in Debian). `benches/load.sh` runs it.
//!
//! `cargo run --release --example grpc_load -- <host:port> <concurrency> <seconds> <authority> [cookie]`
//!
//! Prints one line: `requests=N rps=R p50_ms=A p99_ms=B errors=E`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};

fn request(authority: &str, cookie: Option<&str>) -> CheckRequest {
    let mut headers = HashMap::from([
        ("host".to_owned(), authority.to_owned()),
        ("accept".to_owned(), "text/html".to_owned()),
    ]);
    if let Some(c) = cookie {
        headers.insert("cookie".to_owned(), c.to_owned());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    host: authority.into(),
                    path: "/dashboard".into(),
                    scheme: "http".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!("usage: grpc_load <host:port> <concurrency> <seconds> <authority> [cookie]");
    }
    let addr = args[1].clone();
    let concurrency: usize = args[2].parse()?;
    let seconds: u64 = args[3].parse()?;
    let req = request(&args[4], args.get(5).map(String::as_str));
    // One runtime thread: the client should cost the shared cores little.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // One Channel: every clone multiplexes on the same HTTP/2 connection.
        let client = AuthorizationClient::connect(format!("http://{addr}")).await?;
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let mut client = client.clone();
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < end {
                    let t = Instant::now();
                    match client.check(req.clone()).await {
                        Ok(r) if r.get_ref().status.as_ref().map_or(0, |s| s.code) == 0 => {
                            lat.push(t.elapsed().as_micros() as u32)
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let started = Instant::now();
        let mut all: Vec<u32> = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await?;
            all.extend(lat);
            errors += e;
        }
        let took = started.elapsed().as_secs_f64().max(1e-9);
        all.sort_unstable();
        let pct = |p: f64| -> f64 {
            if all.is_empty() {
                return 0.0;
            }
            let i = ((all.len() as f64 - 1.0) * p).round() as usize;
            f64::from(all[i]) / 1000.0
        };
        println!(
            "requests={} rps={:.0} p50_ms={:.2} p99_ms={:.2} errors={}",
            all.len(),
            all.len() as f64 / took,
            pct(0.50),
            pct(0.99),
            errors
        );
        anyhow::Ok(())
    })
}
