//! The provider's unit tests: shared helpers (a provider on a fixed key,
//! forms, a login, a code exchange) and the discovery, keys and routing tests;
//! each endpoint's tests are in the submodule named after it.

mod authorize;
mod logout;
mod token;
mod userinfo;

use std::sync::OnceLock;
use std::time::Instant;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::*;

const REDIRECT: &str = "http://127.0.0.1:4180/oauth2/callback";
const SECRET: &str = "s3cret";
// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// One key per test binary: RSA generation takes seconds in debug builds.
fn key() -> RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
        .clone()
}

fn idp_at(issuer: &str) -> DemoIdp {
    DemoIdp::new_with_key(
        Url::parse(issuer).unwrap(),
        vec![
            DemoClient {
                client_id: "authgate".into(),
                client_secret: SECRET.into(),
                redirect_uris: vec![REDIRECT.into()],
            },
            DemoClient {
                client_id: "other".into(),
                client_secret: "other-secret".into(),
                redirect_uris: vec![],
            },
        ],
        key(),
    )
    .unwrap()
}

fn idp() -> DemoIdp {
    idp_at("http://127.0.0.1:5556/")
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

fn get(idp: &DemoIdp, target: &str) -> Response<Vec<u8>> {
    idp.handle(&Method::GET, target, &HeaderMap::new(), b"")
}

fn body_str(r: &Response<Vec<u8>>) -> String {
    String::from_utf8(r.body().clone()).unwrap()
}

fn body_json(r: &Response<Vec<u8>>) -> Value {
    serde_json::from_slice(r.body()).unwrap()
}

fn location(r: &Response<Vec<u8>>) -> Url {
    Url::parse(r.headers()[LOCATION].to_str().unwrap()).unwrap()
}

fn query_param(u: &Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn auth_params<'a>() -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", "authgate"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email profile groups"),
        ("state", "st&ate=1"),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

fn authorize_query(params: &[(&str, &str)]) -> String {
    format!("/authorize?{}", String::from_utf8(form(params)).unwrap())
}

fn login_as(idp: &DemoIdp, user: &str, password: &str) -> Response<Vec<u8>> {
    let mut p = auth_params();
    p.push(("username", user));
    p.push(("password", password));
    idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p))
}

/// Logs in and returns the code from the callback redirect.
fn code_for(idp: &DemoIdp, user: &str) -> String {
    let r = login_as(idp, user, user);
    assert_eq!(r.status(), StatusCode::FOUND);
    query_param(&location(&r), "code").unwrap()
}

fn basic(id: &str, secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    h.insert(AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
    h
}

fn token(idp: &DemoIdp, headers: &HeaderMap, params: &[(&str, &str)]) -> Response<Vec<u8>> {
    idp.handle(&Method::POST, "/token", headers, &form(params))
}

fn exchange(idp: &DemoIdp, code: &str, verifier: &str) -> Response<Vec<u8>> {
    token(
        idp,
        &basic("authgate", SECRET),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
}

/// Verifies a JWT the way a relying party does: key from the served JWKS.
fn verify_with_jwks(idp: &DemoIdp, jwt: &str, aud: &str) -> Value {
    let jwks = body_json(&get(idp, "/jwks"));
    let k = &jwks["keys"][0];
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.kid.as_deref(), k["kid"].as_str());
    let key = DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap())
        .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[aud]);
    v.set_issuer(&["http://127.0.0.1:5556"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
}

fn error_of(r: &Response<Vec<u8>>) -> String {
    body_json(r)["error"].as_str().unwrap().to_string()
}

// --- discovery and keys ---

#[test]
fn discovery_lists_endpoints_under_the_issuer_path() {
    let idp = idp_at("http://127.0.0.1:5556/dex/");
    let d = body_json(&get(&idp, "/dex/.well-known/openid-configuration"));
    assert_eq!(d["issuer"], "http://127.0.0.1:5556/dex");
    assert_eq!(
        d["authorization_endpoint"],
        "http://127.0.0.1:5556/dex/authorize"
    );
    assert_eq!(d["token_endpoint"], "http://127.0.0.1:5556/dex/token");
    assert_eq!(d["jwks_uri"], "http://127.0.0.1:5556/dex/jwks");
    assert_eq!(
        d["end_session_endpoint"],
        "http://127.0.0.1:5556/dex/logout"
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(get(&idp, "/.well-known/openid-configuration").status(), 404);
    assert_eq!(get(&idp, "/dex/jwks").status(), 200);
}

#[test]
fn jwks_publishes_the_rs256_signing_key() {
    let idp = idp();
    let r = get(&idp, "/jwks");
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    let k = &body_json(&r)["keys"][0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(k["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    assert!(!k["kid"].as_str().unwrap().is_empty());
}

#[test]
fn issuer_with_query_is_rejected() {
    let r = DemoIdp::new_with_key(
        Url::parse("http://127.0.0.1:1/?a=b").unwrap(),
        vec![],
        key(),
    );
    assert!(r.is_err());
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    let idp = idp();
    assert_eq!(get(&idp, "/nope").status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&idp, "/token").status(), StatusCode::METHOD_NOT_ALLOWED);
}
