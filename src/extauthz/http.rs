//! The ext_authz HTTP check service. Envoy sends the original method, path
//! (after its `path_prefix`) and `Host`, plus only the headers the provider
//! config lists. Envoy allows on exactly 200 (202 is a deny); every other
//! answer goes back to the client as it is, so a deny carries our whole
//! reply: status, `Cache-Control: no-store`, each `Set-Cookie` on its own line.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use async_trait::async_trait;
use futures::FutureExt;
use http::{HeaderValue, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_http::RequestHeader;

use crate::authz::{admit, Decision, Listener, Outcome, Received, Reply, Trust, UpstreamEdits};
use crate::endpoints::pages;
use crate::reload::GateHandle;

/// Envoy removes the headers named here (comma-separated) from the upstream
/// request after applying the allowed ones from our 200.
pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The ext_authz HTTP check service (`server.ext_authz_http`).
pub struct ExtAuthzHttp {
    gate: GateHandle,
}

impl ExtAuthzHttp {
    /// The check service over `gate`.
    pub fn new(gate: impl Into<GateHandle>) -> Self {
        ExtAuthzHttp { gate: gate.into() }
    }

    /// The answer for one check request. Separate from Pingora's session so
    /// tests can call it with a constructed header. A panic in the decision
    /// becomes a 500 (Envoy then denies), never a dropped connection that a
    /// `failure_mode_allow` config would turn into an allow.
    pub async fn check(
        &self,
        req: &RequestHeader,
        client: Option<IpAddr>,
    ) -> (Outcome, Response<Vec<u8>>) {
        match AssertUnwindSafe(self.check_inner(req, client))
            .catch_unwind()
            .await
        {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!("ext_authz HTTP check failed internally");
                let reply = pages::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Outcome::Error,
                    "Internal error\n",
                );
                (Outcome::Error, deny(reply))
            }
        }
    }

    async fn check_inner(
        &self,
        req: &RequestHeader,
        client: Option<IpAddr>,
    ) -> (Outcome, Response<Vec<u8>>) {
        let gate = self.gate.load();
        let authority = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let received = Received {
            listener: Listener::ExtAuthzHttp,
            method: req.method.as_str(),
            target: req.raw_path(),
            authority,
            // The check connection's own scheme says nothing about the client's.
            scheme: None,
            headers: &req.headers,
            client_ip: client,
            path_prefix: &gate.cfg.server.ext_authz_path_prefix,
        };
        let admitted = match admit(received, Trust::Caller) {
            Ok(a) => a,
            Err(reply) => return (reply.outcome, deny(reply)),
        };
        crate::access_log::note_request(&gate, &admitted.view());
        let decision = gate.decide(&admitted.view()).await;
        let outcome = decision.outcome();
        let resp = match decision {
            Decision::Skip => allow(gate.upstream_edits(None, &req.headers)),
            Decision::Allow(grant) => allow(gate.upstream_edits(Some(grant), &req.headers)),
            Decision::Reply(reply) => deny(reply),
        };
        (outcome, resp)
    }
}

#[async_trait]
impl ServeHttp for ExtAuthzHttp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let started = Instant::now();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let on = crate::access_log::enabled(&self.gate.load());
        let req = session.req_header();
        let trace = crate::telemetry::trace::start(
            Listener::ExtAuthzHttp,
            req.method.as_str(),
            req.uri.path(),
            &req.headers,
        );
        // Tracing records the policy too, so it collects the note as well.
        let check = crate::access_log::scope(on || trace.is_some(), self.check(req, client));
        let ((outcome, resp), mut log) = match &trace {
            Some(t) => tracing::Instrument::instrument(check, t.span().clone()).await,
            None => check.await,
        };
        if let Some(trace) = trace {
            trace.noted(log.as_mut());
            trace.finish(resp.status().as_u16(), outcome);
        }
        let log = log.filter(|_| on);
        self.gate
            .load()
            .metrics
            .request(Listener::ExtAuthzHttp, outcome, started.elapsed());
        if let Some(note) = log {
            let entry = crate::access_log::Entry {
                listener: Listener::ExtAuthzHttp,
                status: resp.status().as_u16(),
                outcome,
                upstream: "",
                elapsed: started.elapsed(),
            };
            let req = session.req_header();
            let host = req
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok());
            let fallback = (req.method.as_str(), host.unwrap_or(""), req.uri.path());
            crate::access_log::emit(&entry, &note, fallback);
        }
        resp
    }
}

/// Exactly 200 with each identity header once (and the rewritten `cookie`),
/// the names we did not set in `x-envoy-auth-headers-to-remove`, and a
/// refreshed session's `Set-Cookie` lines (users list `set-cookie` in
/// `headersToDownstreamOnAllow`).
fn allow(edits: UpstreamEdits) -> Response<Vec<u8>> {
    let mut resp = Response::new(Vec::new());
    *resp.status_mut() = StatusCode::OK;
    let remove = edits.removals_after_set().join(", ");
    let h = resp.headers_mut();
    for (name, value) in edits.sets_with_cookie() {
        h.insert(name, value);
    }
    if !remove.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&remove) {
            h.insert(HEADERS_TO_REMOVE, v);
        }
    }
    for c in edits.client_cookies {
        h.append(http::header::SET_COOKIE, c);
    }
    // Without a length Pingora would close-delimit the empty body and drop
    // Envoy's pooled connection after every allow.
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0u32));
    resp
}

/// A deny as Envoy passes it on: status, body, `Cache-Control: no-store`,
/// each `Set-Cookie` its own line.
fn deny(reply: Reply) -> Response<Vec<u8>> {
    let len = reply.body.len();
    let mut resp = Response::new(reply.body.to_vec());
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    for (name, value) in reply.headers {
        h.append(name, value);
    }
    // Every `Reply` starts with it; a deny must never be cached whatever built it.
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Kit};
    use http::Method;

    fn request(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        request_bytes(path.as_bytes(), headers)
    }

    fn request_bytes(path: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(Method::GET, path, None).unwrap();
        req.insert_header("host", testkit::HOST).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    async fn check(kit: &Kit, path: &str, headers: &[(&str, &str)]) -> Response<Vec<u8>> {
        let svc = ExtAuthzHttp::new(kit.gate.clone());
        svc.check(&request(path, headers), None).await.1
    }

    fn all(resp: &Response<Vec<u8>>, name: &str) -> Vec<String> {
        resp.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn removed(resp: &Response<Vec<u8>>) -> Vec<String> {
        all(resp, HEADERS_TO_REMOVE)
            .iter()
            .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[tokio::test]
    async fn alice_is_exactly_200_with_each_identity_header_once_and_the_rest_removed() {
        let kit = testkit::kit("").await;
        let cookie = kit.session_cookie("alice").await;
        let resp = check(
            &kit,
            "/app",
            &[
                ("cookie", &cookie),
                ("x-auth-request-email", "evil@evil.test"),
                ("x_forwarded_user", "evil"),
            ],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(all(&resp, "x-auth-request-email"), ["alice@example.com"]);
        assert_eq!(all(&resp, "x-auth-request-groups"), ["admins,devs"]);
        for name in testkit::IDENTITY_SET {
            assert_eq!(all(&resp, name).len(), 1, "{name} once");
        }
        let removed = removed(&resp);
        // The testkit maps preferred_username to a claim the sessions lack.
        for name in testkit::IDENTITY_UNSET {
            assert!(removed.iter().any(|r| r == name), "{name} in {removed:?}");
            assert!(resp.headers().get(*name).is_none());
        }
        assert!(
            removed.iter().any(|r| r == "x_forwarded_user"),
            "{removed:?}"
        );
        for name in testkit::IDENTITY_SET {
            assert!(!removed.iter().any(|r| r == name), "{name} set and removed");
        }
        assert_eq!(all(&resp, "content-length"), ["0"]);
        assert!(resp.headers().get("set-cookie").is_none());
    }

    #[tokio::test]
    async fn anonymous_browser_gets_302_to_the_idp_with_csrf_cookie_and_no_store() {
        let kit = testkit::kit("").await;
        let resp = check(&kit, "/app?x=1", &[("x-forwarded-proto", "https")]).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = all(&resp, "location").remove(0);
        assert!(location.starts_with(&kit.issuer), "{location}");
        // The scheme comes from the ext_authz caller's X-Forwarded-Proto.
        let redirect_uri = format!("https://{}/oauth2/callback", testkit::HOST);
        let encoded: String = form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect();
        assert!(location.contains(&encoded), "{location}");
        assert_eq!(all(&resp, "cache-control"), ["no-store"]);
        let cookies = all(&resp, "set-cookie");
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert!(cookies[0].starts_with("_oauth2_proxy_csrf"), "{cookies:?}");
    }

    #[tokio::test]
    async fn anonymous_api_call_is_401_and_the_apps_ping_is_not_special() {
        let kit = testkit::kit("").await;
        let resp = check(&kit, "/app", &[("accept", "application/json")]).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(all(&resp, "cache-control"), ["no-store"]);
        let resp = check(&kit, "/ping", &[]).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let resp = check(&kit, "/oauth2/auth", &[]).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
    }

    #[tokio::test]
    async fn bob_is_403_with_no_store() {
        let kit = testkit::kit("").await;
        let cookie = kit.session_cookie("bob").await;
        let resp = check(&kit, "/app", &[("cookie", &cookie)]).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(all(&resp, "cache-control"), ["no-store"]);
        assert!(resp.headers().get("x-auth-request-email").is_none());
    }

    #[tokio::test]
    async fn skip_route_is_200_without_identity_and_removes_every_identity_header() {
        let kit = testkit::kit("").await;
        let resp = check(
            &kit,
            "/public/x",
            &[("x-auth-request-email", "evil@evil.test")],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("x-auth-request-email").is_none());
        let removed = removed(&resp);
        for name in testkit::IDENTITY_SET
            .iter()
            .chain(testkit::IDENTITY_UNSET.iter())
        {
            assert!(removed.iter().any(|r| r == name), "{name} in {removed:?}");
        }
    }

    #[tokio::test]
    async fn login_round_trip_works_purely_through_checks_under_a_path_prefix() {
        let kit = testkit::kit("  ext_authz_path_prefix: /authz/\n").await;
        let first = check(&kit, "/authz/app?x=1", &[]).await;
        assert_eq!(first.status(), StatusCode::FOUND);
        let csrf = testkit::cookie_pair(&all(&first, "set-cookie")[0]);
        let back = kit.login_at_idp(&all(&first, "location")[0], "alice");
        let callback = check(&kit, &format!("/authz{back}"), &[("cookie", &csrf)]).await;
        assert_eq!(callback.status(), StatusCode::FOUND, "{callback:?}");
        assert_eq!(
            all(&callback, "location"),
            [format!("http://{}/app?x=1", testkit::HOST)]
        );
        assert_eq!(all(&callback, "cache-control"), ["no-store"]);
        let cookies = all(&callback, "set-cookie");
        // The CSRF cookie is cleared and the session set, each its own line.
        assert!(cookies.len() >= 2, "{cookies:?}");
        assert!(cookies.iter().any(|c| c.starts_with("_oauth2_proxy_csrf")));
        let session: Vec<String> = cookies
            .iter()
            .filter(|c| !c.starts_with("_oauth2_proxy_csrf"))
            .map(|c| testkit::cookie_pair(c))
            .collect();
        assert!(!session.is_empty(), "{cookies:?}");
        let next = check(&kit, "/authz/app?x=1", &[("cookie", &session.join("; "))]).await;
        assert_eq!(next.status(), StatusCode::OK);
        assert_eq!(all(&next, "x-auth-request-user"), ["alice@example.com"]);
        // The state is single-use: replaying the callback is a 4xx.
        let replay = check(&kit, &format!("/authz{back}"), &[("cookie", &csrf)]).await;
        assert!(replay.status().is_client_error(), "{}", replay.status());
    }

    #[tokio::test]
    async fn a_refreshed_session_comes_back_as_set_cookie_on_the_200() {
        let kit = testkit::kit_with_cookie("  refresh: 1s\n").await;
        let cookie = kit.login_cookie("alice").await;
        let stale = kit.age_session(&cookie).await;
        let resp = check(&kit, "/app", &[("cookie", &stale)]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let cookies = all(&resp, "set-cookie");
        assert!(
            cookies.iter().any(|c| c.starts_with("_oauth2_proxy=")),
            "{cookies:?}"
        );
        assert_eq!(all(&resp, "x-auth-request-email"), ["alice@example.com"]);
    }

    #[tokio::test]
    async fn an_unreachable_idp_is_a_5xx_not_an_allow() {
        let kit = testkit::kit_without_idp().await;
        let resp = check(&kit, "/app", &[]).await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
        assert_eq!(all(&resp, "cache-control"), ["no-store"]);
    }

    #[tokio::test]
    async fn a_target_not_starting_with_a_slash_or_not_utf8_is_400_never_an_allow() {
        // Pingora parses these to `/` or a lossy `/public/...`: skip routes
        // for both must not let the raw target through.
        let kit = testkit::kit_with_skip_routes(r#"["^/$", "^/public/"]"#).await;
        let svc = ExtAuthzHttp::new(kit.gate.clone());
        for target in [
            &b"foo:/public/x"[..],
            b"foo:/admin",
            b"admin",
            b"public/x",
            b"\xff/public/x",
            b"/public/\xff",
        ] {
            let shown = String::from_utf8_lossy(target);
            let (_, resp) = svc.check(&request_bytes(target, &[]), None).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{shown}");
            assert!(removed(&resp).is_empty(), "{shown}");
        }
        // Origin-form and absolute-form targets are decided as usual.
        for target in [&b"/"[..], b"/public/x", b"http://app.example.test/public/x"] {
            let (_, resp) = svc.check(&request_bytes(target, &[]), None).await;
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn an_allow_rewrites_cookie_without_authgates_cookies() {
        let kit = testkit::kit("").await;
        let alice = kit.session_cookie("alice").await;
        let mixed = format!("theme=dark; {alice}; _oauth2_proxy_csrf_ab=c; lang=\u{e9}n");
        let resp = check(&kit, "/app", &[("cookie", &mixed)]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get_all("cookie")
                .iter()
                .map(|v| v.as_bytes())
                .collect::<Vec<_>>(),
            [&b"theme=dark; lang=\xc3\xa9n"[..]]
        );
        assert!(!removed(&resp).iter().any(|r| r == "cookie"));
        // Several lines are joined into the one header Envoy sets.
        let resp = check(
            &kit,
            "/app",
            &[
                ("cookie", "theme=dark"),
                ("cookie", &alice),
                ("cookie", "a=b"),
            ],
        )
        .await;
        assert_eq!(all(&resp, "cookie"), ["theme=dark; a=b"]);
    }

    #[tokio::test]
    async fn an_allow_removes_cookie_when_only_authgates_cookies_were_sent() {
        let kit = testkit::kit("").await;
        let alice = kit.session_cookie("alice").await;
        // A session; on a skip route, stray chunk and CSRF cookies.
        for (path, cookie) in [
            ("/app", alice.as_str()),
            ("/public/x", "_oauth2_proxy_1=a; _oauth2_proxy_csrf_x=b"),
        ] {
            let resp = check(&kit, path, &[("cookie", cookie)]).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert!(resp.headers().get("cookie").is_none(), "{path}");
            let removed = removed(&resp);
            assert!(removed.iter().any(|r| r == "cookie"), "{path}: {removed:?}");
        }
    }

    #[tokio::test]
    async fn an_allow_leaves_cookie_alone_when_none_of_authgates_is_present() {
        let kit = testkit::kit("").await;
        for headers in [
            &[][..],
            &[("cookie", "theme=dark; _oauth2_proxy_other=1")][..],
        ] {
            let resp = check(&kit, "/public/x", headers).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert!(resp.headers().get("cookie").is_none(), "{headers:?}");
            assert!(!removed(&resp).iter().any(|r| r == "cookie"), "{headers:?}");
        }
    }
}
