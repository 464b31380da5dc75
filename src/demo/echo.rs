//! The demo's upstream: shows what reached it, like the k8s echoserver.
//!
//! Its point is to make authgate's header injection visible: after logging in
//! the user sees `X-Auth-Request-User`, `X-Auth-Request-Groups`, ... as the
//! upstream received them. HTML for browsers, JSON for scripts and tests.

use http::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use super::http_server::{self, Handler, Request};

/// Answers every request with 200 and the method, URI and headers it received.
#[derive(Debug, Clone, Default)]
pub struct Echo;

// === impl Echo ===

impl Echo {
    /// The echo upstream (it has no state).
    pub fn new() -> Echo {
        Echo
    }

    /// This upstream as a [`Handler`] for the demo's
    /// [`http_server`](super::http_server); request bodies are read and ignored.
    pub fn handler(&self) -> Handler {
        let echo = self.clone();
        http_server::handler(move |req: Request| {
            let resp = match Method::from_bytes(req.method.as_bytes()) {
                Ok(method) => echo.handle(&method, &req.target, &req.header_map()),
                Err(_) => {
                    let mut resp = Response::new(b"bad method\n".to_vec());
                    *resp.status_mut() = StatusCode::BAD_REQUEST;
                    resp
                }
            };
            async move { resp.into() }
        })
    }

    /// The whole behaviour, separate from the server so it can be tested directly:
    /// 200 with `method`, the request target `uri` and every header.
    pub fn handle(&self, method: &Method, uri: &str, headers: &HeaderMap) -> Response<Vec<u8>> {
        let (body, content_type) = if prefers_json(headers) {
            (render_json(method, uri, headers), "application/json")
        } else {
            (
                render_html(method, uri, headers),
                "text/html; charset=utf-8",
            )
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// How well a media range matches a type: (q in thousandths, specificity).
/// Specificity breaks ties so `application/json, */*` (axios, fetch) gets JSON.
fn match_quality(accept: &str, wanted_type: &str, wanted_sub: &str) -> (u32, u8) {
    let mut best = (0u32, 0u8);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (t, s) = media.split_once('/').unwrap_or((media.as_str(), ""));
        let specificity = match (t, s) {
            _ if t == wanted_type && s == wanted_sub => 3,
            _ if t == wanted_type && s == "*" => 2,
            ("*", "*") => 1,
            _ => continue,
        };
        let mut q = 1000u32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .map(|f| (f.clamp(0.0, 1.0) * 1000.0) as u32)
                        .unwrap_or(0);
                }
            }
        }
        // The most specific matching range decides the q value (RFC 9110 12.5.1).
        if specificity > best.1 {
            best = (q, specificity);
        }
    }
    if best.0 == 0 {
        (0, 0)
    } else {
        best
    }
}

/// True when Accept ranks application/json strictly above text/html.
fn prefers_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.is_empty() {
        return false;
    }
    let json = match_quality(&accept, "application", "json");
    let html = match_quality(&accept, "text", "html");
    json > html
}

fn header_rows(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn render_json(method: &Method, uri: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for (name, value) in header_rows(headers) {
        let entry = map
            .entry(name)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = entry {
            values.push(serde_json::Value::String(value));
        }
    }
    let doc = serde_json::json!({
        "method": method.as_str(),
        "uri": uri,
        "headers": map,
    });
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

fn render_html(method: &Method, uri: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut rows = String::new();
    let mut sorted = header_rows(headers);
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in sorted {
        rows.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            html_escape::encode_text(&name),
            html_escape::encode_text(&value)
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>authgate demo upstream</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}\
table{{border-collapse:collapse}}th,td{{text-align:left;padding:.25rem .75rem;\
border-bottom:1px solid #ddd;font-family:ui-monospace,monospace;font-size:.9rem}}\
th{{color:#555}}code{{background:#f4f4f4;padding:.1rem .3rem}}</style></head>\n\
<body><h1>Echo upstream</h1>\n\
<p>This page is served by the demo upstream behind authgate. It lists the request it received.</p>\n\
<p><code>{} {}</code></p>\n<table>\n{}</table>\n\
<p><a href=\"/oauth2/sign_out\">Sign out</a></p>\n</body></html>\n",
        html_escape::encode_text(method.as_str()),
        html_escape::encode_text(uri),
        rows
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn body(resp: &Response<Vec<u8>>) -> String {
        String::from_utf8(resp.body().clone()).unwrap()
    }

    #[test]
    fn html_page_lists_method_uri_and_every_header() {
        let h = headers(&[
            ("x-auth-request-user", "alice"),
            ("x-auth-request-groups", "admins,devs"),
        ]);
        let resp = Echo.handle(&Method::POST, "/a/b?c=d", &h);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let b = body(&resp);
        assert!(b.contains("POST /a/b?c=d"));
        assert!(b.contains("<th>x-auth-request-user</th><td>alice</td>"));
        assert!(b.contains("<th>x-auth-request-groups</th><td>admins,devs</td>"));
    }

    #[test]
    fn html_page_escapes_header_values_and_uri() {
        let h = headers(&[("x-evil", "<script>alert(1)</script>")]);
        let b = body(&Echo.handle(&Method::GET, "/<img src=x>", &h));
        assert!(!b.contains("<script>"));
        assert!(!b.contains("<img"));
        assert!(b.contains("&lt;script&gt;"));
    }

    #[test]
    fn json_when_accept_prefers_json_with_repeated_headers_as_lists() {
        let h = headers(&[
            ("accept", "application/json"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        let resp = Echo.handle(&Method::GET, "/x", &h);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["uri"], "/x");
        assert_eq!(
            v["headers"]["x-forwarded-for"],
            serde_json::json!(["1.1.1.1", "2.2.2.2"])
        );
        assert_eq!(
            v["headers"]["accept"],
            serde_json::json!(["application/json"])
        );
    }

    #[test]
    fn accept_negotiation_prefers_html_for_browsers_and_ties() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(!prefers_json(&headers(&[("accept", browser)])));
        assert!(!prefers_json(&headers(&[("accept", "*/*")])));
        assert!(!prefers_json(&headers(&[])));
        assert!(!prefers_json(&headers(&[(
            "accept",
            "application/json;q=0.5, text/html"
        )])));
        assert!(!prefers_json(&headers(&[(
            "accept",
            "text/html, application/json"
        )])));
    }

    #[test]
    fn accept_negotiation_picks_json_when_ranked_higher() {
        assert!(prefers_json(&headers(&[(
            "accept",
            "application/json, text/plain, */*"
        )])));
        assert!(prefers_json(&headers(&[(
            "accept",
            "text/html;q=0.1, application/json"
        )])));
        assert!(prefers_json(&headers(&[("accept", "application/*")])));
    }
}
