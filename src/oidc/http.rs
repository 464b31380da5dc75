//! The HTTP client to the IdP: timeouts, no redirects, the extra CA bundle,
//! a size cap and a metric per call. Every IdP request goes through here,
//! also those `openidconnect` makes (through [`IdpCall`], its
//! `AsyncHttpClient`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};
use url::Url;

use super::OidcError;
use crate::metrics::{IdpEndpoint, Metrics};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An IdP document larger than this is not a discovery document or a JWKS.
const MAX_BODY: usize = 1 << 20;

/// The one reqwest client to an IdP (the provider, or an extra JWT issuer),
/// with the metrics it reports to. Cheap to clone.
#[derive(Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
    metrics: Metrics,
}

/// Why an IdP call failed before the IdP answered usefully: the IdP is
/// unavailable (unreachable, timed out, or a 5xx), or its answer was too big.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer: connection, TLS, timeout or body read failed (no URL in it:
    /// some IdPs put tokens in URLs).
    #[error("{0}")]
    Unreachable(&'static str),
    /// The IdP answered with a server error (RFC 9110 15.6): it is down, not
    /// refusing us.
    #[error("status {0}")]
    ServerError(u16),
    /// The answer exceeded 1 MiB.
    #[error("response too large")]
    TooLarge,
}

impl From<TransportError> for OidcError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::TooLarge => OidcError::Invalid(e.to_string()),
            e => OidcError::Unreachable(e.to_string()),
        }
    }
}

impl IdpHttp {
    /// Builds the client: 3 s to connect, 10 s per request, redirects never
    /// followed, `provider.ca_file` trusted besides the web PKI roots.
    /// Start-up only; a bad CA file is [`OidcError::Config`].
    pub fn new(ca_file: Option<&std::path::Path>, metrics: Metrics) -> Result<Self, OidcError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // reqwest's default, said out loud: Nagle would hold small
            // requests (a token POST) for the IdP's delayed ACK.
            .tcp_nodelay(true)
            // A redirect from the IdP is never part of these protocols and
            // following one could leak the client secret to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| OidcError::Config(format!("provider.ca_file: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| OidcError::Config(format!("provider.ca_file: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| OidcError::Config(format!("HTTP client: {e}")))?;
        Ok(IdpHttp { client, metrics })
    }

    /// An `openidconnect` HTTP client for calls counted under `endpoint`.
    pub fn call(&self, endpoint: IdpEndpoint) -> IdpCall<'_> {
        IdpCall {
            http: self,
            endpoint,
            status: AtomicU16::new(0),
        }
    }

    /// GET a JSON document (the JWKS). A non-2xx answer is
    /// [`OidcError::Rejected`] (5xx: [`OidcError::Unreachable`]).
    pub async fn get_json(
        &self,
        url: &Url,
        endpoint: IdpEndpoint,
    ) -> Result<serde_json::Value, OidcError> {
        let call = self.call(endpoint);
        let req = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| OidcError::Invalid(format!("request: {e}")))?;
        let res = call.send(req).await?;
        if !res.status().is_success() {
            return Err(OidcError::Rejected(format!(
                "status {}",
                res.status().as_u16()
            )));
        }
        serde_json::from_slice(res.body()).map_err(|e| OidcError::Invalid(format!("not JSON: {e}")))
    }

    async fn execute(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (parts, body) = req.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|_| TransportError::Unreachable("bad URL"))?;
        let mut builder = self.client.request(parts.method, url).body(body);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let res = builder.send().await.map_err(|e| without_url(&e))?;
        let status = res.status();
        if res.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(TransportError::TooLarge);
        }
        let headers = res.headers().clone();
        let bytes = res.bytes().await.map_err(|e| without_url(&e))?;
        if bytes.len() > MAX_BODY {
            return Err(TransportError::TooLarge);
        }
        if status.is_server_error() {
            return Err(TransportError::ServerError(status.as_u16()));
        }
        let mut out = http::Response::new(bytes.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// One logical IdP call as `openidconnect` sees its HTTP client: it counts
/// each request in `authgate_idp_requests_total{endpoint}` (ok = 2xx with a
/// JSON body, as before the crate) and remembers the last status, so a token
/// error can be told apart by status as RFC 6749 5.2 needs.
pub struct IdpCall<'h> {
    http: &'h IdpHttp,
    endpoint: IdpEndpoint,
    status: AtomicU16,
}

impl IdpCall<'_> {
    /// The status of the last answer, 0 before one arrived.
    pub fn last_status(&self) -> u16 {
        self.status.load(Ordering::Relaxed)
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        // Discovery fetches the JWKS through the same client: count it as such.
        let endpoint = match self.endpoint {
            IdpEndpoint::Discovery
                if !req
                    .uri()
                    .path()
                    .ends_with("/.well-known/openid-configuration") =>
            {
                IdpEndpoint::Jwks
            }
            e => e,
        };
        // The IdP call's client span (tracing on): endpoint, method and
        // path only, never the query, body or headers (code, secret, tokens).
        let span = crate::telemetry::trace::idp_call(span_name(endpoint), req.method(), req.uri());
        let res = tracing::Instrument::instrument(self.http.execute(req), span.clone()).await;
        crate::telemetry::trace::answered(
            &span,
            match &res {
                Ok(r) => r.status().as_u16(),
                Err(TransportError::ServerError(s)) => *s,
                Err(_) => 0,
            },
        );
        let ok = match &res {
            Ok(r) => {
                self.status.store(r.status().as_u16(), Ordering::Relaxed);
                r.status().is_success()
                    && serde_json::from_slice::<serde::de::IgnoredAny>(r.body()).is_ok()
            }
            Err(TransportError::ServerError(s)) => {
                self.status.store(*s, Ordering::Relaxed);
                false
            }
            Err(_) => false,
        };
        self.http.metrics.idp(endpoint, ok);
        res
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpCall<'_> {
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// The IdP call's span name (`idp <name>`), as the metric's label.
fn span_name(endpoint: IdpEndpoint) -> &'static str {
    match endpoint {
        IdpEndpoint::Discovery => "discovery",
        IdpEndpoint::Jwks => "jwks",
        IdpEndpoint::Token => "token",
        IdpEndpoint::Refresh => "refresh",
        IdpEndpoint::Userinfo => "userinfo",
    }
}

/// reqwest errors print the URL, which for some IdPs carries a token.
fn without_url(e: &reqwest::Error) -> TransportError {
    TransportError::Unreachable(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    })
}
