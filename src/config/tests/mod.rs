//! Loader tests, from the outside of `config::load_str_with_env`: defaults,
//! YAML and serde problems, `${VAR}`, `_file` twins and the shipped conf
//! files. Per-section rules are in `sections`, the Redis URL in `redis`.

mod redis;
mod sections;

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::*;

const MINIMAL: &str = "
provider:
  issuer_url: https://idp.example.com/realms/demo
  client_id: authgate
cookie:
  secret: 0123456789abcdef
upstreams:
  - path: /
    url: http://127.0.0.1:8080
";

fn no_env(_: &str) -> Option<String> {
    None
}

/// MINIMAL with `extra` deep-merged over it (maps merge, the rest replaces).
fn with(extra: &str) -> String {
    fn merge(base: &mut Value, over: Value) {
        match (base, over) {
            (Value::Mapping(base), Value::Mapping(over)) => {
                for (k, v) in over {
                    match base.get_mut(&k) {
                        Some(existing) if existing.is_mapping() && v.is_mapping() => {
                            merge(existing, v)
                        }
                        _ => {
                            base.insert(k, v);
                        }
                    }
                }
            }
            (base, over) => *base = over,
        }
    }
    let mut base: Value = serde_yaml::from_str(MINIMAL).unwrap();
    let over: Value = serde_yaml::from_str(extra).unwrap();
    merge(&mut base, over);
    serde_yaml::to_string(&base).unwrap()
}

fn load_ok(yaml: &str) -> Config {
    match load_str_with_env(yaml, &no_env) {
        Ok(config) => config,
        Err(err) => panic!(
            "expected a valid config, got: {:?}",
            err.lines().collect::<Vec<_>>()
        ),
    }
}

fn problems(yaml: &str) -> Vec<String> {
    problems_with_env(yaml, &no_env)
}

fn problems_with_env(yaml: &str, env: EnvLookup<'_>) -> Vec<String> {
    match load_str_with_env(yaml, env) {
        Ok(_) => panic!("expected problems, config loaded"),
        Err(err) => err.lines().collect(),
    }
}

fn assert_has(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p == expected),
        "missing problem {expected:?} in {problems:#?}"
    );
}

fn assert_has_prefix(problems: &[String], prefix: &str) {
    assert!(
        problems.iter().any(|p| p.starts_with(prefix)),
        "no problem starting with {prefix:?} in {problems:#?}"
    );
}

// === Defaults ===

#[test]
fn minimal_file_gets_the_contract_defaults() {
    let c = load_ok(MINIMAL);
    assert_eq!(c.server.listen, "0.0.0.0:4180".parse().unwrap());
    assert_eq!(c.server.ext_authz_http, None);
    assert_eq!(c.server.ext_authz_grpc, None);
    assert_eq!(c.server.metrics, None);
    assert_eq!(c.server.ext_authz_path_prefix, "");
    assert!(c.server.trusted_proxies.is_empty());
    assert!(c.server.tls.is_none());
    assert!(c.server.threads >= 1);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(5));

    assert_eq!(c.provider.scopes, ["openid", "email", "profile", "groups"]);
    assert!(c.provider.endpoints.is_none());
    assert!(c.provider.pkce);
    assert!(c.provider.redirect_url.is_none());
    assert_eq!(c.provider.client_secret.expose(), "");
    assert_eq!(c.provider.claims.user, ClaimPath(vec!["email".into()]));
    assert_eq!(c.provider.claims.email, ClaimPath(vec!["email".into()]));
    assert_eq!(c.provider.claims.groups, ClaimPath(vec!["groups".into()]));
    assert_eq!(
        c.provider.claims.preferred_username,
        ClaimPath(vec!["preferred_username".into()])
    );
    assert!(!c.provider.allow_unverified_email);

    assert_eq!(c.cookie.name, "_oauth2_proxy");
    assert_eq!(c.cookie.secret.expose(), b"0123456789abcdef");
    assert_eq!(c.cookie.path, "/");
    assert!(c.cookie.secure && c.cookie.http_only);
    assert_eq!(c.cookie.same_site, SameSite::Lax);
    assert_eq!(c.cookie.expire, Duration::from_secs(168 * 3600));
    assert_eq!(c.cookie.refresh, None);

    assert!(matches!(c.session, Session::Cookie));
    assert_eq!(c.authorization.email_domains, ["*"]);
    assert!(c.authorization.bearer_tokens);
    assert!(!c.authorization.skip_preflight);
    assert!(!c.headers.pass_authorization && !c.headers.pass_access_token);
}

#[test]
fn default_identity_headers_are_the_contracts_eight() {
    let c = load_ok(MINIMAL);
    let got: Vec<(String, IdentityClaim)> = c
        .headers
        .identity
        .iter()
        .map(|h| (h.name.as_str().to_string(), h.claim))
        .collect();
    use IdentityClaim::*;
    let expected = [
        ("x-auth-request-user", User),
        ("x-auth-request-email", Email),
        ("x-auth-request-preferred-username", PreferredUsername),
        ("x-auth-request-groups", Groups),
        ("x-forwarded-user", User),
        ("x-forwarded-email", Email),
        ("x-forwarded-preferred-username", PreferredUsername),
        ("x-forwarded-groups", Groups),
    ]
    .map(|(n, c)| (n.to_string(), c));
    assert_eq!(got, expected);
}

#[test]
fn empty_identity_list_means_no_identity_headers() {
    let c = load_ok(&with("headers: { identity: [] }"));
    assert!(c.headers.identity.is_empty());
}

#[test]
fn key_without_value_takes_its_default() {
    let c = load_ok(&format!("{MINIMAL}session:\nredirect:\n"));
    assert!(matches!(c.session, Session::Cookie));
}

#[test]
fn numbers_and_bools_are_accepted_in_text_fields() {
    let c = load_ok(&with("provider: { client_id: 12345 }"));
    assert_eq!(c.provider.client_id, "12345");
}

#[test]
fn plain_http_issuer_is_accepted() {
    let c = load_ok(&with("provider: { issuer_url: 'http://127.0.0.1:9000' }"));
    assert_eq!(c.provider.issuer_url.scheme(), "http");
}

// === Unknown keys and serde errors ===

#[test]
fn unknown_key_is_named_by_full_path() {
    let p = problems(&with("cookie: { secrte: x }"));
    assert_eq!(p, ["cookie.secrte: unknown key"]);
}

#[test]
fn unknown_keys_everywhere_are_all_reported() {
    let p = problems(&with(
        "
colour: blue
server: { listne: '0.0.0.0:1' }
upstreams:
  - { path: /, url: 'http://127.0.0.1:8080', hots: x }
",
    ));
    assert_has(&p, "colour: unknown key");
    assert_has(&p, "server.listne: unknown key");
    assert_has(&p, "upstreams[0].hots: unknown key");
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn wrong_type_is_reported_with_its_path_and_only_once() {
    let p = problems(&with(
        "cookie: { secure: maybe }\nprovider: { scopes: openid }",
    ));
    assert_has_prefix(&p, "cookie.secure: ");
    assert_has_prefix(&p, "provider.scopes: invalid type");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn wrong_type_inside_a_list_does_not_cascade() {
    let p = problems(&with("upstreams: ['http://127.0.0.1:8080']"));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_has_prefix(&p, "upstreams[0]: invalid type");
}

#[test]
fn type_error_on_a_secret_does_not_echo_it() {
    let p = problems(&with(
        "cookie: { secret: { nested: hunter2hunter2hunter2 } }",
    ));
    assert_eq!(p, ["cookie.secret: invalid type: expected a string"]);
}

#[test]
fn yaml_syntax_error_is_one_problem() {
    let p = problems("provider: [unclosed\n");
    assert_eq!(p.len(), 1);
    assert_has_prefix(&p, "(yaml): ");
}

#[test]
fn root_must_be_a_mapping() {
    assert_eq!(
        problems("- a\n- b\n"),
        ["(root): the configuration must be a YAML mapping of sections"]
    );
}

#[test]
fn empty_file_reports_every_required_key() {
    let p = problems("");
    assert_has(&p, "provider.issuer_url: must not be empty");
    assert_has(&p, "provider.client_id: must not be empty");
    assert_has_prefix(&p, "cookie.secret: must not be empty");
    assert_has(
        &p,
        "upstreams: must list at least one upstream (or set server.ext_authz_http/ext_authz_grpc)",
    );
}

#[test]
fn problems_are_all_reported_at_once() {
    let p = problems(
        "
server: { listen: 'nowhere', threads: many }
provider: { issuer_url: 'ftp://idp', client_id: '' , bogus: 1 }
cookie: { secret: short12, same_site: sideways, expire: forever }
session: { store: memcached }
authorization: { skip_auth_routes: ['GET=(' ] }
upstreams:
  - { path: api, url: 'http://127.0.0.1:1' }
headers: { identity: [ { name: 'Bad Header', claim: nickname } ] }
",
    );
    for expected in [
        "server.threads: ",
        "server.listen: must be IP:PORT",
        "provider.bogus: unknown key",
        "provider.issuer_url: scheme must be http or https",
        "provider.client_id: must not be empty",
        "cookie.secret: must decode to 16, 24 or 32 bytes, got 7",
        "cookie.same_site: must be lax, strict or none",
        "cookie.expire: ",
        "session.store: must be cookie or redis",
        "authorization.skip_auth_routes[0]: invalid regex",
        "upstreams[0].path: must start with /",
        "headers.identity[0].name: must be a valid HTTP header name",
        "headers.identity[0].claim: must be user, email, preferred_username or groups",
    ] {
        assert_has_prefix(&p, expected);
    }
    assert_eq!(p.len(), 13, "{p:#?}");
}

#[test]
fn problem_displays_as_key_colon_message() {
    assert_eq!(Problem::new("a.b[0]", "bad").to_string(), "a.b[0]: bad");
}

// === Environment ===

#[test]
fn env_variables_are_expanded_in_values() {
    let env = |name: &str| match name {
        "OIDC_CLIENT_SECRET" => Some("s#cret: with yaml chars".to_string()),
        "APP_PORT" => Some("9090".to_string()),
        "SECURE" => Some("false".to_string()),
        _ => None,
    };
    let yaml = with(
        "
provider: { client_secret: '${OIDC_CLIENT_SECRET}' }
cookie: { secure: '${SECURE}' }
upstreams: [ { path: /, url: 'http://127.0.0.1:${APP_PORT}' } ]
authorization: { api_routes: ['^/api$'] }
",
    );
    let c = load_str_with_env(&yaml, &env).unwrap();
    assert_eq!(c.provider.client_secret.expose(), "s#cret: with yaml chars");
    assert!(!c.cookie.secure);
    assert_eq!(c.upstreams[0].addr.port(), 9090);
    assert_eq!(c.authorization.api_routes[0].as_str(), "^/api$");
}

#[test]
fn missing_env_variable_names_variable_and_key_once() {
    let p = problems(&with(
        "provider: { client_secret: '${OIDC_CLIENT_SECRET}' }\n\
             upstreams: [ { path: /, url: 'http://${APP_HOST}:80' } ]",
    ));
    assert_has(
        &p,
        "provider.client_secret: environment variable OIDC_CLIENT_SECRET is not set",
    );
    assert_has(
        &p,
        "upstreams[0].url: environment variable APP_HOST is not set",
    );
    // No derived "invalid URL" for the unexpanded value.
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn dollar_without_braces_is_kept_literally() {
    let c = load_ok(&with("provider: { client_secret: 'pa$$w$rd$' }"));
    assert_eq!(c.provider.client_secret.expose(), "pa$$w$rd$");
}

// === _file twins ===

fn temp_file(content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file
}

#[test]
fn secret_files_are_read_and_trimmed() {
    let client = temp_file("  client-secret \n");
    // 32 bytes 0..31, base64url, with the newline `kubectl create secret` keeps.
    let cookie = temp_file("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n");
    let yaml = format!(
        "
provider:
  issuer_url: https://idp.example.com
  client_id: authgate
  client_secret_file: {}
cookie:
  secret_file: {}
upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]
",
        client.path().display(),
        cookie.path().display()
    );
    let c = load_ok(&yaml);
    assert_eq!(c.provider.client_secret.expose(), "client-secret");
    assert_eq!(*c.cookie.secret.expose(), (0u8..32).collect::<Vec<_>>());
}

#[test]
fn value_and_file_together_is_a_problem() {
    let file = temp_file("x");
    let p = problems(&with(&format!(
        "provider: {{ client_secret: a, client_secret_file: '{}' }}",
        file.path().display()
    )));
    assert_eq!(
            p,
            ["provider.client_secret_file: set either provider.client_secret or provider.client_secret_file, not both"]
        );
}

#[test]
fn unreadable_or_empty_secret_file_is_a_problem() {
    let empty = temp_file(" \n");
    let p = problems(&format!(
            "
provider: {{ issuer_url: 'https://idp', client_id: a, client_secret_file: /nonexistent/authgate-secret }}
cookie: {{ secret_file: '{}' }}
upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]
",
            empty.path().display()
        ));
    assert_has_prefix(
        &p,
        "provider.client_secret_file: cannot read /nonexistent/authgate-secret",
    );
    assert_has_prefix(&p, "cookie.secret_file: file ");
    assert_eq!(p.len(), 2, "{p:#?}");
}

// === The shipped examples ===

#[test]
fn shipped_conf_files_load_with_their_env() {
    let env = |name: &str| match name {
        "OIDC_CLIENT_SECRET" => Some("ci-client-secret".to_string()),
        "COOKIE_SECRET" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".to_string()),
        _ => None,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let prod = load_with_env(&dir.join("authgate.yaml"), &env)
        .unwrap_or_else(|e| panic!("{:?}", e.lines().collect::<Vec<_>>()));
    assert_eq!(
        prod.provider.issuer_url.as_str(),
        "https://keycloak.example.com/realms/demo"
    );
    assert_eq!(*prod.cookie.secret.expose(), (0u8..32).collect::<Vec<_>>());
    assert_eq!(prod.authorization.allowed_groups, ["admins"]);
    assert_eq!(prod.upstreams[0].addr, "127.0.0.1:8080".parse().unwrap());

    let dev = load_with_env(&dir.join("dev.yaml"), &no_env)
        .unwrap_or_else(|e| panic!("{:?}", e.lines().collect::<Vec<_>>()));
    assert!(!dev.cookie.secure);
    assert_eq!(dev.provider.issuer_url.as_str(), "http://127.0.0.1:9000/");

    let p: Vec<String> = load_with_env(&dir.join("authgate.yaml"), &no_env)
        .unwrap_err()
        .lines()
        .collect();
    assert_eq!(
        p,
        [
            "provider.client_secret: environment variable OIDC_CLIENT_SECRET is not set",
            "cookie.secret: environment variable COOKIE_SECRET is not set",
        ]
    );
}

#[test]
fn unreadable_config_file_is_a_problem_naming_it() {
    let err = load(Path::new("/nonexistent/authgate.yaml")).unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert!(err.problems()[0]
        .to_string()
        .starts_with("/nonexistent/authgate.yaml: cannot read"));
}
