//! Requests that arrive before the first successful discovery (issue 9,
//! fault 2): the real binary started before its IdP listens, then a browser
//! request the moment the IdP is up must go to the IdP, never 503; with no
//! IdP at all the 503 comes within the bounded wait, and the waiting requests
//! share the probes instead of each making its own.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::support::{
    client, demo_idp, free_port, location, metric, Authgate, GateConfig, TestServer,
};
use tokio::net::TcpListener;

/// The longest a request may wait for a provider that is not discovered yet
/// (`oidc::DISCOVERY_WAIT`, 2.5 s) plus the slack of a loaded CI machine.
const WAIT_BOUND: Duration = Duration::from_millis(4000);

/// Discovery probes that found no IdP so far.
async fn failed_probes(gate: &Authgate) -> f64 {
    metric(
        &gate.metrics().await,
        r#"authgate_idp_requests_total{endpoint="discovery",outcome="error"}"#,
    )
    .unwrap_or(0.0)
}

/// A browser navigation (`Accept: text/html`) to `/`.
async fn navigate(gate: &Authgate) -> reqwest::Response {
    client()
        .get(gate.url("/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_browser_request_right_after_the_idp_comes_up_goes_to_the_idp_not_503() {
    let upstream = TestServer::echo("app").await;
    let idp_port = free_port();
    let cfg = GateConfig::new(idp_port, &[("/", upstream.port())]);
    let mut gate = Authgate::start(&cfg);
    gate.wait_ping().await;
    // Let authgate find the IdP missing a few times (its probe schedule has
    // moved on from the first attempt), so the request below meets an
    // undiscovered provider whatever the timing.
    let end = Instant::now() + Duration::from_secs(10);
    while failed_probes(&gate).await < 3.0 {
        assert!(Instant::now() < end, "no failed discovery probe seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, idp_port))
        .await
        .unwrap();
    let idp = demo_idp(idp_port);
    let _idp = TestServer::serve_idp(listener, &idp);

    let started = Instant::now();
    let resp = navigate(&gate).await;
    eprintln!(
        "first request after the IdP came up: {:?}",
        started.elapsed()
    );
    assert_eq!(
        resp.status(),
        302,
        "the first browser request after the IdP came up; stderr:\n{}",
        gate.stderr()
    );
    let to = location(&resp);
    assert_eq!(to.port(), Some(idp_port), "{to}");
    assert_eq!(to.path(), "/authorize", "{to}");
}

#[tokio::test]
async fn with_no_idp_a_browser_request_gets_503_within_the_bound() {
    let upstream = TestServer::echo("app").await;
    let cfg = GateConfig::new(free_port(), &[("/", upstream.port())]);
    let mut gate = Authgate::start(&cfg);
    gate.wait_ping().await;
    let started = Instant::now();
    let resp = navigate(&gate).await;
    let took = started.elapsed();
    eprintln!("503 without an IdP after {took:?}");
    assert_eq!(resp.status(), 503);
    assert!(took < WAIT_BOUND, "the 503 took {took:?}");
    let ready = client().get(gate.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/ready stays 503 until discovery");
}

#[tokio::test]
async fn many_waiting_requests_share_the_discovery_probes() {
    let upstream = TestServer::echo("app").await;
    let cfg = GateConfig::new(free_port(), &[("/", upstream.port())]);
    let mut gate = Authgate::start(&cfg);
    gate.wait_ping().await;
    let before = failed_probes(&gate).await;
    let started = Instant::now();
    let requests = (0..100).map(|_| navigate(&gate));
    let answers = futures::future::join_all(requests).await;
    let took = started.elapsed();
    assert!(answers.iter().all(|r| r.status() == 503));
    assert!(took < WAIT_BOUND, "100 waiting requests took {took:?}");
    // One probe at a time, at most every 100 ms while requests wait (plus
    // the start-up schedule): far fewer than one per request.
    let probes = failed_probes(&gate).await - before;
    eprintln!("100 waiting requests: {probes} probes, all answered in {took:?}");
    assert!(probes <= 40.0, "{probes} discovery probes for 100 requests");
}
