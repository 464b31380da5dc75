//! The gRPC front end from Envoy's side: `CheckRequest`s in, `CheckResponse`s out.

use super::*;
use crate::testkit::{self, Kit, HOST};
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::HeaderMap as PbHeaderMap;
use envoy_types::pb::envoy::service::auth::v3::{attribute_context, AttributeContext};
use std::collections::HashMap;
use tonic::Request;

fn request(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in headers {
        // Envoy joins repeated lines with ",".
        map.entry(k.to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(v)
            })
            .or_insert_with(|| v.to_string());
    }
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        host: HOST.into(),
        path: path.into(),
        scheme: "http".into(),
        headers: map,
        ..Default::default()
    };
    with_http(http)
}

fn with_http(http: attribute_context::HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(kit: &Kit, req: &CheckRequest) -> CheckResponse {
    let svc = ExtAuthzGrpc::new(kit.gate.clone());
    // Through the tonic trait: every decision is Ok.
    svc.check(Request::new(req.clone()))
        .await
        .expect("a decision is never a gRPC error")
        .into_inner()
}

fn code(r: &CheckResponse) -> i32 {
    r.status.as_ref().unwrap().code
}

fn ok(r: &CheckResponse) -> &OkHttpResponse {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an ok_response: {other:?}"),
    }
}

fn denied(r: &CheckResponse) -> &DeniedHttpResponse {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d,
        other => panic!("not a denied_response: {other:?}"),
    }
}

fn options<'a>(opts: &'a [HeaderValueOption], name: &str) -> Vec<&'a HeaderValueOption> {
    opts.iter()
        .filter(|o| o.header.as_ref().unwrap().key == name)
        .collect()
}

fn value(o: &HeaderValueOption) -> &str {
    &o.header.as_ref().unwrap().value
}

#[tokio::test]
async fn alice_is_ok_with_identity_headers_overwritten_and_only_unset_ones_removed() {
    let kit = testkit::kit("").await;
    let cookie = kit.session_cookie("alice").await;
    let req = request(
        "/app?x=1",
        &[
            ("cookie", &cookie),
            ("x-auth-request-email", "evil@evil.test"),
            ("x_forwarded_email", "evil@evil.test"),
        ],
    );
    let resp = check(&kit, &req).await;
    assert_eq!(code(&resp), OK);
    let ok = ok(&resp);
    for name in testkit::IDENTITY_SET {
        let set = options(&ok.headers, name);
        assert_eq!(set.len(), 1, "{name} once");
        assert_eq!(
            set[0].append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            "{name}"
        );
        assert!(!ok.headers_to_remove.iter().any(|r| r == name), "{name}");
    }
    assert_eq!(
        value(options(&ok.headers, "x-auth-request-email")[0]),
        "alice@example.com"
    );
    assert_eq!(
        value(options(&ok.headers, "x-forwarded-groups")[0]),
        "admins,devs"
    );
    for name in testkit::IDENTITY_UNSET {
        assert!(ok.headers_to_remove.iter().any(|r| r == name), "{name}");
        assert!(options(&ok.headers, name).is_empty());
    }
    assert!(
        ok.headers_to_remove
            .iter()
            .any(|r| r == "x_forwarded_email"),
        "{:?}",
        ok.headers_to_remove
    );
    assert!(ok.response_headers_to_add.is_empty());
}

#[tokio::test]
async fn anonymous_browser_is_16_with_a_302_location_and_csrf_cookie() {
    let kit = testkit::kit("").await;
    let resp = check(&kit, &request("/app", &[])).await;
    assert_eq!(code(&resp), UNAUTHENTICATED);
    let d = denied(&resp);
    assert_eq!(d.status.as_ref().unwrap().code, 302);
    let location = options(&d.headers, "location");
    assert_eq!(location.len(), 1);
    assert!(value(location[0]).starts_with(&kit.issuer));
    let cookies = options(&d.headers, "set-cookie");
    assert_eq!(cookies.len(), 1);
    assert!(value(cookies[0]).starts_with("_oauth2_proxy_csrf"));
    assert_eq!(
        cookies[0].append_action,
        HeaderAppendAction::AppendIfExistsOrAdd as i32
    );
    assert_eq!(value(options(&d.headers, "cache-control")[0]), "no-store");
}

#[tokio::test]
async fn anonymous_api_call_is_16_with_401() {
    let kit = testkit::kit("").await;
    for req in [
        request("/api/x", &[]),
        request("/app", &[("accept", "application/json")]),
        request("/app", &[("x-requested-with", "XMLHttpRequest")]),
    ] {
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), UNAUTHENTICATED);
        assert_eq!(denied(&resp).status.as_ref().unwrap().code, 401);
    }
}

#[tokio::test]
async fn bob_is_7_with_403() {
    let kit = testkit::kit("").await;
    let cookie = kit.session_cookie("bob").await;
    let resp = check(&kit, &request("/app", &[("cookie", &cookie)])).await;
    assert_eq!(code(&resp), PERMISSION_DENIED);
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 403);
}

#[tokio::test]
async fn skip_route_is_ok_without_identity_and_removes_every_identity_header() {
    let kit = testkit::kit("").await;
    let req = request("/public/a", &[("x-auth-request-user", "evil")]);
    let resp = check(&kit, &req).await;
    assert_eq!(code(&resp), OK);
    let ok = ok(&resp);
    assert!(ok.headers.is_empty());
    for name in testkit::IDENTITY_SET
        .iter()
        .chain(testkit::IDENTITY_UNSET.iter())
    {
        assert!(ok.headers_to_remove.iter().any(|r| r == name), "{name}");
    }
}

#[tokio::test]
async fn no_http_attributes_is_7_and_never_a_panic() {
    let kit = testkit::kit_without_idp().await;
    for req in [
        CheckRequest::default(),
        CheckRequest {
            attributes: Some(AttributeContext::default()),
        },
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request::default()),
                ..Default::default()
            }),
        },
    ] {
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), PERMISSION_DENIED);
        assert_eq!(denied(&resp).status.as_ref().unwrap().code, 403);
    }
}

#[tokio::test]
async fn a_path_not_starting_with_a_slash_is_a_400_deny_even_on_a_skip_route() {
    let kit = testkit::kit_with_skip_routes(r#"["^/$"]"#).await;
    for path in ["foo:/admin", "admin", "*"] {
        let resp = check(&kit, &request(path, &[])).await;
        assert_ne!(code(&resp), OK, "{path}");
        assert_eq!(denied(&resp).status.as_ref().unwrap().code, 400, "{path}");
    }
    assert_eq!(code(&check(&kit, &request("/", &[])).await), OK);
}

#[tokio::test]
async fn headers_over_64_kib_are_a_431_deny_as_on_the_other_listeners() {
    // A valid session does not help: the request is refused before any decision.
    let kit = testkit::kit("").await;
    let cookie = kit.session_cookie("alice").await;
    let big = "a".repeat(crate::authz::request::MAX_HEADER_BYTES);
    let resp = check(
        &kit,
        &request("/app", &[("cookie", &cookie), ("x-big", &big)]),
    )
    .await;
    assert_eq!(code(&resp), INVALID_ARGUMENT);
    let denied = denied(&resp);
    assert_eq!(denied.status.as_ref().unwrap().code, 431);
    assert!(denied.headers.iter().any(|o| {
        let h = o.header.as_ref().unwrap();
        h.key == "cache-control" && h.value == "no-store"
    }));
    // Just under the limit, the same session is allowed.
    let fits = "a".repeat(crate::authz::request::MAX_HEADER_BYTES / 2);
    let resp = check(
        &kit,
        &request("/app", &[("cookie", &cookie), ("x-big", &fits)]),
    )
    .await;
    assert_eq!(code(&resp), OK);
}

#[tokio::test]
async fn a_cookie_joined_with_commas_from_several_lines_still_yields_the_session() {
    let kit = testkit::kit("").await;
    let cookie = kit.session_cookie("alice").await;
    // Two lines, Envoy-joined: "theme=dark,_oauth2_proxy=...".
    let req = request("/app", &[("cookie", "theme=dark"), ("cookie", &cookie)]);
    let resp = check(&kit, &req).await;
    assert_eq!(code(&resp), OK, "{resp:?}");
    let spaced = format!("theme=dark, {}, lang=en", cookie.replace("; ", ", "));
    let resp = check(&kit, &request("/app", &[("cookie", &spaced)])).await;
    assert_eq!(code(&resp), OK, "{resp:?}");
}

#[tokio::test]
async fn headers_come_from_header_map_when_headers_is_empty() {
    let kit = testkit::kit("").await;
    let cookie = kit.session_cookie("alice").await;
    let pb = |k: &str, v: &str, raw: bool| PbHeaderValue {
        key: k.into(),
        value: if raw { String::new() } else { v.into() },
        raw_value: if raw {
            v.as_bytes().to_vec()
        } else {
            Vec::new()
        },
    };
    for raw in [true, false] {
        // No host, path or method fields: the pseudo-headers stand in.
        let http = attribute_context::HttpRequest {
            header_map: Some(PbHeaderMap {
                headers: vec![
                    pb(":authority", HOST, raw),
                    pb(":path", "/app", raw),
                    pb(":method", "GET", raw),
                    pb("cookie", &cookie, raw),
                ],
            }),
            ..Default::default()
        };
        let resp = check(&kit, &with_http(http)).await;
        assert_eq!(code(&resp), OK, "raw={raw} {resp:?}");
    }
    // `headers` wins when both are present.
    let mut req = request("/app", &[("accept", "application/json")]);
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.header_map = Some(PbHeaderMap {
            headers: vec![pb("cookie", &cookie, true)],
        });
    }
    let resp = check(&kit, &req).await;
    assert_eq!(code(&resp), UNAUTHENTICATED);
}

#[tokio::test]
async fn login_round_trip_through_checks_sets_each_cookie_as_its_own_option() {
    let kit = testkit::kit("").await;
    let first = check(&kit, &request("/app?y=2", &[])).await;
    let d = denied(&first);
    let location = value(options(&d.headers, "location")[0]).to_owned();
    let csrf = testkit::cookie_pair(value(options(&d.headers, "set-cookie")[0]));
    let back = kit.login_at_idp(&location, "alice");
    let cb = check(&kit, &request(&back, &[("cookie", &csrf)])).await;
    assert_eq!(code(&cb), UNAUTHENTICATED);
    let d = denied(&cb);
    assert_eq!(d.status.as_ref().unwrap().code, 302);
    assert_eq!(
        value(options(&d.headers, "location")[0]),
        format!("http://{HOST}/app?y=2")
    );
    let cookies = options(&d.headers, "set-cookie");
    assert!(cookies.len() >= 2, "{cookies:?}");
    for c in &cookies {
        assert_eq!(
            c.append_action,
            HeaderAppendAction::AppendIfExistsOrAdd as i32
        );
        assert!(!value(c).contains('\n'));
    }
    let session = cookies
        .iter()
        .map(|c| value(c))
        .filter(|c| !c.starts_with("_oauth2_proxy_csrf"))
        .map(testkit::cookie_pair)
        .collect::<Vec<_>>()
        .join("; ");
    let next = check(&kit, &request("/app?y=2", &[("cookie", &session)])).await;
    assert_eq!(code(&next), OK);
    // A bad state is a 4xx deny, never a session.
    let bad = back.replace("state=", "state=x");
    let resp = check(&kit, &request(&bad, &[("cookie", &csrf)])).await;
    assert_ne!(code(&resp), OK);
    let d = denied(&resp);
    let status = d.status.as_ref().unwrap().code;
    assert!((400..500).contains(&status), "{status}");
    assert!(options(&d.headers, "set-cookie")
        .iter()
        .all(|c| value(c).starts_with("_oauth2_proxy_csrf")));
}

#[tokio::test]
async fn a_refreshed_session_goes_to_the_client_in_response_headers_to_add() {
    let kit = testkit::kit_with_cookie("  refresh: 1s\n").await;
    let cookie = kit.login_cookie("alice").await;
    let stale = kit.age_session(&cookie).await;
    let resp = check(&kit, &request("/app", &[("cookie", &stale)])).await;
    assert_eq!(code(&resp), OK);
    let ok = ok(&resp);
    let cookies = options(&ok.response_headers_to_add, "set-cookie");
    assert!(
        cookies
            .iter()
            .any(|c| value(c).starts_with("_oauth2_proxy=")),
        "{cookies:?}"
    );
    for c in cookies {
        assert_eq!(
            c.append_action,
            HeaderAppendAction::AppendIfExistsOrAdd as i32
        );
    }
}

#[tokio::test]
async fn an_unreachable_idp_is_a_5xx_deny_not_an_error_or_allow() {
    let kit = testkit::kit_without_idp().await;
    let resp = check(&kit, &request("/app", &[])).await;
    assert_eq!(code(&resp), UNAVAILABLE);
    let status = denied(&resp).status.as_ref().unwrap().code;
    assert!((500..600).contains(&status), "{status}");
}

#[tokio::test]
async fn the_scheme_follows_the_request_then_x_forwarded_proto() {
    let kit = testkit::kit("").await;
    let redirect_uri = |r: &CheckResponse| {
        let loc = value(options(&denied(r).headers, "location")[0]).to_owned();
        url::Url::parse(&loc)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let mut req = request("/app", &[("x-forwarded-proto", "https")]);
    let resp = check(&kit, &req).await;
    assert_eq!(
        redirect_uri(&resp),
        "http://app.example.test/oauth2/callback"
    );
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.scheme.clear();
    }
    let resp = check(&kit, &req).await;
    assert_eq!(
        redirect_uri(&resp),
        "https://app.example.test/oauth2/callback"
    );
}

#[tokio::test]
async fn an_ok_overwrites_cookie_without_authgates_cookies() {
    let kit = testkit::kit("").await;
    let alice = kit.session_cookie("alice").await;
    // One line, and several lines as Envoy joins them.
    let one = request(
        "/app",
        &[(
            "cookie",
            &format!("theme=dark; {alice}; _oauth2_proxy_csrf_ab=c; a=b"),
        )],
    );
    let joined = request(
        "/app",
        &[
            ("cookie", "theme=dark"),
            ("cookie", &alice),
            ("cookie", "a=b"),
        ],
    );
    for req in [one, joined] {
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), OK, "{resp:?}");
        let ok = ok(&resp);
        let cookie = options(&ok.headers, "cookie");
        assert_eq!(cookie.len(), 1, "{:?}", ok.headers);
        assert_eq!(
            cookie[0].append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        let kept = value(cookie[0]);
        assert!(!kept.contains("_oauth2_proxy"), "{kept}");
        assert!(
            kept.starts_with("theme=dark") && kept.ends_with("a=b"),
            "{kept}"
        );
        assert!(!ok.headers_to_remove.iter().any(|r| r == "cookie"));
    }
}

#[tokio::test]
async fn an_ok_removes_cookie_when_only_authgates_cookies_were_sent() {
    let kit = testkit::kit("").await;
    let alice = kit.session_cookie("alice").await;
    for req in [
        request("/app", &[("cookie", &alice)]),
        request(
            "/public/x",
            &[("cookie", "_oauth2_proxy_1=a; _oauth2_proxy_csrf=b")],
        ),
    ] {
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), OK, "{resp:?}");
        let ok = ok(&resp);
        assert!(
            options(&ok.headers, "cookie").is_empty(),
            "{:?}",
            ok.headers
        );
        assert!(
            ok.headers_to_remove.iter().any(|r| r == "cookie"),
            "{:?}",
            ok.headers_to_remove
        );
    }
}

#[tokio::test]
async fn an_ok_leaves_cookie_alone_when_none_of_authgates_is_present() {
    let kit = testkit::kit("").await;
    for req in [
        request("/public/x", &[]),
        request(
            "/public/x",
            &[("cookie", "theme=dark; _oauth2_proxy_other=1")],
        ),
    ] {
        let resp = check(&kit, &req).await;
        let ok = ok(&resp);
        assert!(options(&ok.headers, "cookie").is_empty());
        assert!(!ok.headers_to_remove.iter().any(|r| r == "cookie"));
    }
}
