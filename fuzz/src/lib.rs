//! The bodies of authgate's fuzz targets: one function per target, run by
//! the cargo-fuzz binaries in `fuzz_targets/` and, on every seed and every
//! crash input kept in `fuzz/corpus/<target>/`, by `tests/fuzz_corpus.rs`
//! (which includes this file), so the fuzzer and the replay cannot drift.
//!
//! Each body takes the raw bytes an attacker controls, feeds them to the
//! code that reads them in production, and asserts the properties that code
//! promises beyond "does not panic". A failed assertion is a crash.

use std::borrow::Cow;
use std::sync::OnceLock;

use authgate::authz::{path, redirect};
use authgate::session::chunks::read_session_cookie;
use authgate::session::codec::SessionCodec;
use authgate::session::cookies::CookieJar;
use authgate::session::{Session, TokenUse};
use envoy_types::ext_authz::v3::pb::CheckRequest;
use prost::Message as _;

/// A target's body: the fuzzer's input bytes in, a panic on a failure.
pub type Body = fn(&[u8]);

/// The targets, by the name of their binary and corpus directory.
pub const TARGETS: &[(&str, Body)] = &[
    ("session_cookie", session_cookie),
    ("path", path_normalize),
    ("redirect", redirect_validate),
    ("grpc_check", grpc_check),
    ("config", config_yaml),
];

// === session_cookie ===

/// The session cookie's name (the default, as oauth2-proxy's).
const COOKIE: &str = "_oauth2_proxy";

fn codec() -> &'static SessionCodec {
    static CODEC: OnceLock<SessionCodec> = OnceLock::new();
    CODEC.get_or_init(|| SessionCodec::new(b"fuzzing-cookie-secret-32-bytes!!"))
}

/// `Cookie` header lines (the input split at `\n`) → the cookie jar → the
/// session cookie (whole or chunked) → `SessionCodec::open` →
/// `Session::decode_for`, as every request's session load runs them.
///
/// Properties: the jar's `get` finds every pair it lists; the header-map
/// reader and the string reader agree; anything sealed opens to itself and
/// nothing else opens under another cookie name; `decode_for` accepts
/// exactly what `serde_json::from_slice::<Session>` accepts.
pub fn session_cookie(data: &[u8]) {
    let lines: Vec<&str> = data
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .collect();
    let jar = CookieJar::from_lines(lines.iter().copied());
    for (name, _) in jar.iter() {
        assert!(jar.get(name).is_some(), "a listed cookie is found by name");
    }
    let mut headers = http::HeaderMap::new();
    for line in &lines {
        if let Ok(v) = http::HeaderValue::from_str(line) {
            headers.append(http::header::COOKIE, v);
        }
    }
    let from_map = CookieJar::from_headers(&headers);
    if headers.len() == lines.len() {
        assert!(
            from_map.iter().eq(jar.iter()),
            "header-map and string readers agree"
        );
    }

    let now = 1_800_000_000;
    let uses = TokenUse {
        id_token: false,
        access_token: false,
        refresh: None,
    };
    if let Some(raw) = read_session_cookie(COOKIE, &jar) {
        if let Ok(plain) = codec().open(COOKIE.as_bytes(), &raw) {
            let _ = Session::decode_for(&plain, uses, now);
        }
    }

    // Sealing round trip with the input as the plaintext.
    let sealed = codec().seal(COOKIE.as_bytes(), data);
    assert_eq!(
        codec().open(COOKIE.as_bytes(), &sealed).as_deref(),
        Ok(data),
        "open(seal(x)) == x"
    );
    assert!(
        codec().open(b"_oauth2_proxy_csrf", &sealed).is_err(),
        "a value sealed for one cookie never opens as another"
    );
    // The input as a session's JSON: the borrowing decoder accepts exactly
    // what the owning one does.
    assert_eq!(
        Session::decode_for(data, uses, now).is_ok(),
        serde_json::from_slice::<Session>(data).is_ok(),
        "decode_for and from_slice agree"
    );
}

// === path ===

/// A request target → `path::normalize` and `path::is_ambiguous`, as the
/// request edge runs them on every request.
///
/// Properties: the result starts with `/`, holds no query or fragment, no
/// `//`, no `.` or `..` segment, and normalising it again changes nothing
/// (else a route that matched here could name another path upstream).
pub fn path_normalize(data: &[u8]) {
    let Ok(uri) = std::str::from_utf8(data) else {
        return;
    };
    let _ = path::is_ambiguous(uri);
    let once = path::normalize(uri);
    assert!(once.starts_with('/'), "normalised {uri:?} to {once:?}");
    assert!(!once.contains(['?', '#']), "query left in {once:?}");
    assert!(!once.contains("//"), "unmerged separators in {once:?}");
    assert!(
        !once.split('/').any(|s| s == "." || s == ".."),
        "dot segment left in {once:?}"
    );
    let twice = path::normalize(&once);
    assert_eq!(once, twice, "normalize is not idempotent on {uri:?}");
    let _ = path::is_ambiguous(&once);
}

// === redirect ===

/// The request host every redirect is checked against.
const REQUEST_HOST: &str = "app.example.com";

/// `redirect.allowed_domains` for the redirect target: a subdomain entry,
/// an exact host with a port, an exact host with any port.
fn allowed_domains() -> Vec<String> {
    vec![
        ".example.org".to_owned(),
        "fixed.example.net:8443".to_owned(),
        "any.example.net:*".to_owned(),
    ]
}

/// A redirect target (`rd`, `X-Auth-Request-Redirect`, the original URL)
/// → `redirect::validate`, as every login and sign-out runs it.
///
/// Properties: the answer is the target itself or `/`; an accepted target,
/// resolved by a WHATWG URL parser (as a browser resolves `Location`)
/// against `https://app.example.com/`, stays on `app.example.com` or an
/// allowed domain, with an `http`/`https` scheme and no userinfo; and it
/// never names authgate's own `/oauth2/*` endpoints.
pub fn redirect_validate(data: &[u8]) {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = allowed_domains();
    let answer = redirect::validate(target, REQUEST_HOST, &allowed);
    if answer == "/" {
        return;
    }
    assert!(matches!(answer, Cow::Borrowed(a) if a == target));
    assert!(!redirect::names_own_endpoint(target), "{target:?} is ours");
    let Ok(base) = url::Url::parse("https://app.example.com/") else {
        return;
    };
    let resolved = base
        .join(target)
        .unwrap_or_else(|e| panic!("accepted {target:?} does not resolve: {e}"));
    assert!(
        matches!(resolved.scheme(), "http" | "https"),
        "accepted {target:?} leaves http(s): {resolved}"
    );
    assert!(
        resolved.username().is_empty() && resolved.password().is_none(),
        "accepted {target:?} carries userinfo"
    );
    let host = resolved.host_str().unwrap_or_default();
    let on_site = host == REQUEST_HOST
        || host == "example.org"
        || host.ends_with(".example.org")
        || host == "fixed.example.net"
        || host == "any.example.net";
    assert!(on_site, "accepted {target:?} goes off-site to {host:?}");
}

// === grpc_check ===

/// An ext_authz gRPC `CheckRequest` (protobuf bytes, as tonic decodes
/// them) → the request edge's view (`extauthz::grpc::admit_check`).
///
/// Properties: an admitted view's path is `/`-rooted and normalisation is
/// idempotent on it; a refusal is the edge's 400 or 431.
pub fn grpc_check(data: &[u8]) {
    let Ok(req) = CheckRequest::decode(data) else {
        return;
    };
    let _ = authgate::extauthz::grpc::admit_check(&req, |admitted| match admitted {
        Ok(view) => {
            assert!(view.path.starts_with('/'), "view path {:?}", view.path);
            assert_eq!(path::normalize(view.path), view.path);
        }
        Err(reply) => assert!(
            matches!(reply.status.as_u16(), 400 | 431),
            "edge answered {}",
            reply.status
        ),
    });
}

// === config ===

/// YAML configuration text → `config::load_str_with_env` (the whole
/// pipeline: YAML tree, `${VAR}` expansion, DTO, validation; upstream hosts
/// are resolved later, at start-up), with a fixed environment.
///
/// Property: a bad file is `Err` with at least one problem, never a panic.
pub fn config_yaml(data: &[u8]) {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "OIDC_CLIENT_SECRET" => Some("fuzz-client-secret".to_owned()),
        "COOKIE_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
        _ => None,
    };
    if let Err(e) = authgate::config::load_str_with_env(yaml, &env) {
        assert!(!e.0.is_empty(), "an error names at least one problem");
    }
}
