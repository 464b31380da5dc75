//! Per-section validation rules, each through `load_str_with_env`: cookie,
//! durations, provider, server, session store, authorization, redirect,
//! upstreams and headers.

use base64::Engine as _;

use super::*;
use crate::config::validate::cookie::decode_cookie_secret;

// === Cookie secret ===

#[test]
fn cookie_secret_accepts_raw_and_base64_forms() {
    // Like oauth2-proxy, base64 wins when it yields a key size: 32
    // base64 characters are 24 bytes, not 32 raw ones.
    assert_eq!(decode_cookie_secret(&"A".repeat(32)), Ok(vec![0; 24]));
    let key32: Vec<u8> = (0u8..32).collect();
    let key16: Vec<u8> = (100u8..116).collect();
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    assert_eq!(
        decode_cookie_secret("0123456789abcdef"),
        Ok(b"0123456789abcdef".to_vec())
    );
    assert_eq!(decode_cookie_secret(&"x".repeat(24)), Ok(b"x".repeat(24)));
    assert_eq!(decode_cookie_secret(&"!".repeat(32)), Ok(b"!".repeat(32)));
    assert_eq!(
        decode_cookie_secret(&STANDARD.encode(&key32)),
        Ok(key32.clone())
    );
    assert_eq!(
        decode_cookie_secret(&URL_SAFE_NO_PAD.encode(&key32)),
        Ok(key32.clone())
    );
    assert_eq!(
        decode_cookie_secret(STANDARD.encode(&key32).trim_end_matches('=')),
        Ok(key32.clone())
    );
    assert_eq!(decode_cookie_secret(&STANDARD.encode(&key16)), Ok(key16));
    let url_padded = base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 24]);
    assert!(url_padded.contains('-') || url_padded.contains('_'));
    assert_eq!(decode_cookie_secret(&url_padded), Ok(vec![0xfb; 24]));
}

#[test]
fn cookie_secret_of_wrong_size_reports_its_length() {
    assert_eq!(decode_cookie_secret("1234567"), Err(7));
    let twenty = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 20]);
    assert_eq!(decode_cookie_secret(&twenty), Err(20));
    assert_eq!(
        problems(&with("cookie: { secret: 'abcdefg' }")),
        ["cookie.secret: must decode to 16, 24 or 32 bytes, got 7"]
    );
}

// === Durations in keys ===

#[test]
fn durations_are_parsed_and_bad_ones_name_their_key() {
    let c = load_ok(&with(
        "cookie: { expire: 1h30m, refresh: 30m }\nserver: { shutdown_grace: 500ms }",
    ));
    assert_eq!(c.cookie.expire, Duration::from_secs(5400));
    assert_eq!(c.cookie.refresh, Some(Duration::from_secs(1800)));
    assert_eq!(c.server.shutdown_grace, Duration::from_millis(500));

    let p = problems(&with("cookie: { expire: '-5m', refresh: soon }"));
    assert_has(&p, "cookie.expire: must not be negative");
    assert_has_prefix(&p, "cookie.refresh: expected a number followed by a unit");
}

#[test]
fn refresh_must_be_shorter_than_expire_and_expire_positive() {
    assert_eq!(
        problems(&with("cookie: { expire: 1h, refresh: 2h }")),
        ["cookie.refresh: must be shorter than cookie.expire"]
    );
    assert_eq!(
        problems(&with("cookie: { expire: 0s }")),
        ["cookie.expire: must be greater than 0"]
    );
}

// === Cookie attributes ===

#[test]
fn same_site_none_requires_secure() {
    assert_eq!(
            problems(&with("cookie: { same_site: none, secure: false }")),
            ["cookie.same_site: none requires cookie.secure: true (browsers drop the cookie otherwise)"]
        );
    let c = load_ok(&with("cookie: { same_site: None }"));
    assert_eq!(c.cookie.same_site, SameSite::None);
}

#[test]
fn cookie_name_must_be_a_token_and_respect_prefixes() {
    assert_has_prefix(
        &problems(&with("cookie: { name: 'my cookie' }")),
        "cookie.name: must be a cookie name token",
    );
    assert_has_prefix(
        &problems(&with("cookie: { name: 'a;b' }")),
        "cookie.name: must be a cookie name token",
    );
    assert_has_prefix(
        &problems(&with("cookie: { name: '' }")),
        "cookie.name: must not be empty",
    );
    assert_has_prefix(
        &problems(&with("cookie: { name: __Host-s, domains: [example.com] }")),
        "cookie.name: the __Host- prefix",
    );
    assert_has_prefix(
        &problems(&with("cookie: { name: __Secure-s, secure: false }")),
        "cookie.name: the __Secure-/__Host- prefix requires",
    );
    assert_eq!(
        load_ok(&with("cookie: { name: __Host-auth }")).cookie.name,
        "__Host-auth"
    );
}

#[test]
fn cookie_path_must_be_absolute() {
    assert_eq!(
        problems(&with("cookie: { path: app }")),
        ["cookie.path: must start with /"]
    );
}

// === Provider ===

#[test]
fn discovery_off_requires_each_endpoint_by_key() {
    let p = problems(&with(
        "provider: { discovery: false, token_endpoint: 'https://idp/token' }",
    ));
    assert_eq!(
        p,
        [
            "provider.authorization_endpoint: is required when provider.discovery is false",
            "provider.userinfo_endpoint: is required when provider.discovery is false",
            "provider.jwks_uri: is required when provider.discovery is false",
        ]
    );
}

#[test]
fn discovery_off_builds_the_endpoints() {
    let c = load_ok(&with(
        "provider:
               discovery: false
               authorization_endpoint: https://idp/auth
               token_endpoint: https://idp/token
               userinfo_endpoint: https://idp/userinfo
               jwks_uri: https://idp/certs
               end_session_endpoint: https://idp/logout",
    ));
    let e = c.provider.endpoints.unwrap();
    assert_eq!(e.token_endpoint.as_str(), "https://idp/token");
    assert_eq!(e.jwks_uri.as_str(), "https://idp/certs");
    assert_eq!(
        e.end_session_endpoint.unwrap().as_str(),
        "https://idp/logout"
    );
}

#[test]
fn provider_urls_and_scopes_are_checked() {
    let p = problems(&with(
            "provider: { redirect_url: '/oauth2/callback', scopes: [email], claims: { groups: 'realm_access..roles' } }",
        ));
    assert_has_prefix(&p, "provider.redirect_url: invalid URL");
    assert_has(&p, "provider.scopes: must include openid");
    assert_has_prefix(&p, "provider.claims.groups: must be a claim name");
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn dotted_claims_are_split() {
    let c = load_ok(&with(
        "provider: { claims: { groups: realm_access.roles } }",
    ));
    assert_eq!(
        c.provider.claims.groups,
        ClaimPath(vec!["realm_access".into(), "roles".into()])
    );
}

#[test]
fn ca_file_must_exist() {
    assert_has_prefix(
        &problems(&with("provider: { ca_file: /nonexistent/ca.pem }")),
        "provider.ca_file: cannot read /nonexistent/ca.pem",
    );
    let ca = temp_file("pem");
    let c = load_ok(&with(&format!(
        "provider: {{ ca_file: '{}' }}",
        ca.path().display()
    )));
    assert_eq!(c.provider.ca_file.as_deref(), Some(ca.path()));
}

// === Server ===

#[test]
fn server_addresses_and_proxies_are_parsed() {
    let c = load_ok(&with(
        "server:
               listen: '[::]:4180'
               ext_authz_grpc: 127.0.0.1:4182
               ext_authz_path_prefix: /authz
               trusted_proxies: [10.0.0.0/8, 192.168.1.7, '::1']
               threads: 3",
    ));
    assert_eq!(c.server.listen, "[::]:4180".parse().unwrap());
    assert_eq!(
        c.server.ext_authz_grpc,
        Some("127.0.0.1:4182".parse().unwrap())
    );
    assert_eq!(c.server.ext_authz_path_prefix, "/authz");
    let nets: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
    assert_eq!(c.server.threads, 3);
}

#[test]
fn zero_threads_means_the_number_of_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        load_ok(&with("server: { threads: 0 }")).server.threads,
        cores
    );
}

#[test]
fn bad_server_values_are_problems() {
    let p = problems(&with(
        "server:
               listen: 'localhost:4180'
               metrics: 0.0.0.0:4180
               ext_authz_http: 0.0.0.0:4180
               ext_authz_path_prefix: authz
               trusted_proxies: [10.0.0.0/33, proxy]
               tls: { cert_file: /nonexistent/cert.pem }",
    ));
    assert_has_prefix(&p, "server.listen: must be IP:PORT");
    assert_has(&p, "server.metrics: same address as server.ext_authz_http");
    assert_has(
        &p,
        "server.ext_authz_path_prefix: must start with / (or be empty)",
    );
    assert_has_prefix(&p, "server.trusted_proxies[0]: must be a CIDR");
    assert_has_prefix(&p, "server.trusted_proxies[1]: must be a CIDR");
    assert_has_prefix(&p, "server.tls.cert_file: cannot read");
    assert_has(&p, "server.tls.key_file: must not be empty");
    assert_eq!(p.len(), 7, "{p:#?}");
}

// === Session ===

#[test]
fn redis_url_is_checked_only_for_the_redis_store() {
    load_ok(&with(
        "session: { store: cookie, redis: { url: 'not a url' } }",
    ));
    let node = |host: &str, port| RedisNode {
        host: host.into(),
        port,
    };
    for (url, topology, tls, user) in [
        (
            "redis://127.0.0.1:6379/0",
            RedisTopology::Single(RedisAddr::Tcp(node("127.0.0.1", 6379))),
            false,
            None,
        ),
        (
            "rediss://user:pw@redis.example.com:6380",
            RedisTopology::Single(RedisAddr::Tcp(node("redis.example.com", 6380))),
            true,
            Some("user"),
        ),
        (
            "redis+sentinel://s1:26379,s2:26379/mymaster",
            RedisTopology::Sentinel {
                sentinels: vec![node("s1", 26379), node("s2", 26379)],
                master: "mymaster".into(),
            },
            false,
            None,
        ),
        (
            "redis+cluster://n1:6379,n2:6379",
            RedisTopology::Cluster {
                nodes: vec![node("n1", 6379), node("n2", 6379)],
            },
            false,
            None,
        ),
        (
            "rediss+cluster://n1:6379",
            RedisTopology::Cluster {
                nodes: vec![node("n1", 6379)],
            },
            true,
            None,
        ),
    ] {
        let c = load_ok(&with(&format!(
            "session: {{ store: redis, redis: {{ url: '{url}' }} }}"
        )));
        let Session::Redis(redis) = c.session else {
            panic!("{url}: not the redis store");
        };
        assert_eq!(redis.topology, topology, "{url}");
        assert_eq!(redis.tls, tls, "{url}");
        assert_eq!(redis.db, 0, "{url}");
        assert_eq!(redis.username.as_deref(), user, "{url}");
        assert_eq!(
            redis.password.as_ref().map(|p| p.expose().as_str()),
            user.map(|_| "pw"),
            "{url}"
        );
    }
    assert_has_prefix(
        &problems(&with(
            "session: { store: redis, redis: { url: 'http://redis:6379' } }",
        )),
        "session.redis.url: scheme must be one of redis, rediss",
    );
    assert_has_prefix(
        &problems(&with(
            "session: { store: redis, redis: { url: 'redis-host:6379' } }",
        )),
        "session.redis.url: must be a URL",
    );
}

// === Authorization and redirect ===

#[test]
fn routes_compile_with_optional_method() {
    let c = load_ok(&with(
        "authorization:
               skip_auth_routes: ['get=^/public/', '^/health$', '^/a=b$']
               api_routes: ['^/api/']
               email_domains: [Example.COM]
               allowed_emails: [Alice@Example.com]
               allowed_groups: [admins]",
    ));
    let routes = &c.authorization.skip_auth_routes;
    assert_eq!(routes[0].method.as_deref(), Some("GET"));
    assert_eq!(routes[0].path.as_str(), "^/public/");
    assert_eq!(routes[1].method, None);
    assert_eq!(routes[2].method, None);
    assert_eq!(routes[2].path.as_str(), "^/a=b$");
    assert!(c.authorization.api_routes[0].is_match("/api/x"));
    assert_eq!(c.authorization.email_domains, ["example.com"]);
    assert_eq!(c.authorization.allowed_emails, ["alice@example.com"]);
    assert_eq!(c.authorization.allowed_groups, ["admins"]);
}

#[test]
fn bad_authorization_entries_are_problems_by_index() {
    let p = problems(&with(
        "authorization:
               skip_auth_routes: ['^/ok', 'POST=']
               api_routes: ['[z-a]']
               allowed_emails: ['a@b@c', nobody]
               email_domains: ['@example.com']
               extra_jwt_issuers: [ { issuer_url: 'https://other' } ]",
    ));
    assert_has_prefix(
        &p,
        "authorization.skip_auth_routes[1]: regex must not be empty",
    );
    assert_has_prefix(&p, "authorization.api_routes[0]: invalid regex: ");
    assert_has(
        &p,
        "authorization.allowed_emails[0]: must be an address with exactly one @",
    );
    assert_has(
        &p,
        "authorization.allowed_emails[1]: must be an address with exactly one @",
    );
    assert_has_prefix(
        &p,
        "authorization.email_domains[0]: must be a domain without @",
    );
    assert_has(
        &p,
        "authorization.extra_jwt_issuers[0].audience: must not be empty",
    );
    assert_eq!(p.len(), 6, "{p:#?}");
    assert!(p.iter().all(|line| !line.contains('\n')));
}

#[test]
fn extra_issuers_are_parsed() {
    let c = load_ok(&with(
            "authorization: { extra_jwt_issuers: [ { issuer_url: 'https://other/realms/x', audience: api } ] }",
        ));
    let issuer = &c.authorization.extra_jwt_issuers[0];
    assert_eq!(issuer.issuer_url.as_str(), "https://other/realms/x");
    assert_eq!(issuer.audience, "api");
}

#[test]
fn redirect_domains_are_hosts_lowercased() {
    let c = load_ok(&with(
        "redirect: { allowed_domains: [.Example.com, app.example.org] }",
    ));
    assert_eq!(
        c.redirect.allowed_domains,
        [".example.com", "app.example.org"]
    );
    assert_has_prefix(
        &problems(&with(
            "redirect: { allowed_domains: ['https://example.com/'] }",
        )),
        "redirect.allowed_domains[0]: must be a host name",
    );
}

// === Upstreams ===

#[test]
fn at_least_one_upstream_is_required() {
    assert_eq!(
            problems(&with("upstreams: []")),
            ["upstreams: must list at least one upstream (or set server.ext_authz_http/ext_authz_grpc)"]
        );
}

#[test]
fn ext_authz_only_deployments_need_no_upstream() {
    let yaml = with("upstreams: []\nserver:\n  ext_authz_http: 127.0.0.1:4181");
    let loaded = load_str_with_env(&yaml, &no_env);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[test]
fn upstream_paths_schemes_and_hosts_are_checked() {
    let p = problems(&with(
        "upstreams:
               - { path: /, url: 'http://127.0.0.1:8080' }
               - { path: app, url: 'http://127.0.0.1:8081' }
               - { path: /x, url: 'ftp://127.0.0.1' }
               - { path: /, url: 'http://127.0.0.1:8082' }
               - { path: /y, url: 'http://127.0.0.1:8083', host: 'bad host' }
               - { path: /z, url: '' }",
    ));
    assert_eq!(
        p,
        [
            "upstreams[1].path: must start with /",
            "upstreams[2].url: scheme must be http or https",
            "upstreams[3].path: same path as upstreams[0]",
            "upstreams[4].host: must be a host name with an optional :port",
            "upstreams[5].url: must not be empty",
        ]
    );
}

#[test]
fn upstream_hosts_keep_their_names_and_default_ports() {
    let c = load_ok(&with(
        "upstreams:
               - { path: /, url: 'http://app.internal' }
               - { path: /secure, url: 'https://App.Internal/base', host: app.example.com }
               - { path: /v6, url: 'http://[::1]:81' }",
    ));
    assert_eq!(c.upstreams[0].addr, "app.internal:80".parse().unwrap());
    assert!(!c.upstreams[0].tls);
    assert_eq!(c.upstreams[1].addr, "app.internal:443".parse().unwrap());
    assert!(c.upstreams[1].tls);
    assert_eq!(c.upstreams[1].host.as_deref(), Some("app.example.com"));
    assert_eq!(c.upstreams[2].addr, "[::1]:81".parse().unwrap());
    assert_eq!(c.upstreams[2].host, None);
}

/// Loading makes no network call: a name that resolves nowhere (yet) is
/// valid, only its syntax is checked; the other problems are still listed.
#[test]
fn upstream_hosts_are_not_resolved_while_loading() {
    let c = load_ok(&with(
        "upstreams:
  - { path: /, url: 'http://grafana.monitoring.svc.cluster.local:3000' }
  - { path: /b, url: 'http://nowhere.invalid' }",
    ));
    assert_eq!(
        c.upstreams[0].addr,
        "grafana.monitoring.svc.cluster.local:3000".parse().unwrap()
    );
    assert_eq!(
        problems(&with(
            "cookie: { secret: short }
upstreams:
  - { path: /, url: 'http://nowhere.invalid:8080' }
  - { path: /b, url: 'http://bad host:80' }",
        )),
        [
            "cookie.secret: must decode to 16, 24 or 32 bytes, got 5",
            "upstreams[1].url: invalid URL: invalid international domain name",
        ]
    );
}

// === Headers ===

#[test]
fn identity_headers_validate_name_claim_and_reserved_names() {
    let p = problems(&with(
        "headers:
               identity:
                 - { name: X-User, claim: user }
                 - { name: Host, claim: email }
                 - { name: 'X User', claim: email }
                 - { name: X-Nick, claim: nickname }",
    ));
    assert_eq!(
        p,
        [
            "headers.identity[1].name: host cannot carry identity",
            "headers.identity[2].name: must be a valid HTTP header name",
            "headers.identity[3].claim: must be user, email, preferred_username or groups",
        ]
    );
    let c = load_ok(&with("headers: { pass_access_token: true, identity: [ { name: X-Who, claim: preferred_username } ] }"));
    assert!(c.headers.pass_access_token);
    assert_eq!(c.headers.identity[0].name.as_str(), "x-who");
    assert_eq!(
        c.headers.identity[0].claim,
        IdentityClaim::PreferredUsername
    );
}
