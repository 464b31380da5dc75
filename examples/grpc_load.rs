//! A gRPC load client for the ext_authz `Check` service: many concurrent
//! calls kept in flight on ONE HTTP/2 connection, as Envoy's ext_authz
//! filter does (`ghz` is not packaged in Debian). `benches/load.sh` runs it.
//!
//! `cargo run --release --example grpc_load -- <host:port> <concurrency> <seconds> <authority> [cookie]`
//!
//! `<seconds>` may instead be a number of calls in all, written `2000r`
//! (benches/load.sh's callgrind mode: a fixed count, not a duration).
//!
//! The `CheckRequest` is encoded once and its bytes sent on every call, as
//! wrk sends one prepared request: the client shares the cores with the
//! server it measures, so it should cost them little. Each response is
//! decoded and its status checked.
//!
//! Prints one line: `requests=N rps=R p50_ms=A p99_ms=B errors=E
//! client_cpu_us=C` (this process's CPU per call, µs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest, CheckResponse,
};
use http::uri::PathAndQuery;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Status;

/// Sends prepared `CheckRequest` bytes as they are; decodes `CheckResponse`s.
#[derive(Clone, Copy, Default)]
struct Prepared;

impl Codec for Prepared {
    type Encode = Bytes;
    type Decode = CheckResponse;
    type Encoder = Prepared;
    type Decoder = Prepared;

    fn encoder(&mut self) -> Prepared {
        Prepared
    }

    fn decoder(&mut self) -> Prepared {
        Prepared
    }
}

impl Encoder for Prepared {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Prepared {
    type Item = CheckResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CheckResponse>, Status> {
        CheckResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

/// This process's CPU time so far, µs (utime + stime; /proc counts in
/// USER_HZ, 100 per second on Linux).
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10_000
}

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
    // A duration in seconds, or (`2000r`) a number of calls in all.
    let (seconds, calls) = match args[3].strip_suffix('r') {
        Some(n) => (None, n.parse::<u64>()?),
        None => (Some(args[3].parse::<u64>()?), u64::MAX),
    };
    let req = Bytes::from(request(&args[4], args.get(5).map(String::as_str)).encode_to_vec());
    // One runtime thread: the client should cost the shared cores little.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // One Channel: every clone multiplexes on the same HTTP/2 connection.
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let client = tonic::client::Grpc::new(channel);
        let cpu_before = cpu_us();
        let end = seconds.map(|s| Instant::now() + Duration::from_secs(s));
        let started_calls = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let mut client = client.clone();
            let req = req.clone();
            let started_calls = Arc::clone(&started_calls);
            tasks.push(tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::new();
                let mut errors = 0u64;
                while end.is_none_or(|end| Instant::now() < end)
                    && started_calls.fetch_add(1, Ordering::Relaxed) < calls
                {
                    let t = Instant::now();
                    let call = async {
                        client
                            .ready()
                            .await
                            .map_err(|e| Status::unknown(e.to_string()))?;
                        let path = PathAndQuery::from_static(CHECK);
                        client
                            .unary(tonic::Request::new(req.clone()), path, Prepared)
                            .await
                    };
                    match call.await {
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
        let made = (all.len() as u64 + errors).max(1);
        println!(
            "requests={} rps={:.0} p50_ms={:.2} p99_ms={:.2} errors={} client_cpu_us={:.1}",
            all.len(),
            all.len() as f64 / took,
            pct(0.50),
            pct(0.99),
            errors,
            (cpu_us() - cpu_before) as f64 / made as f64
        );
        anyhow::Ok(())
    })
}
