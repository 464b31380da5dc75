//! `authgate migrate` as users run it: the seed article's Helm values become
//! a config `authgate check` accepts; one row per oauth2-proxy option shows
//! the key it lands on (and the report line when it differs); unknown
//! options are reported, restrictions that cannot be carried fail the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

mod rows;
use rows::ROWS;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const COOKIE_SECRET: &str = "kLgo9CRQk9xg6FGMM3Kx8bA2G1CymBAmv5Oj1dTpwy0";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrate")
        .join(name)
}

/// Runs `authgate migrate ARGS` with exactly `env` as its OAUTH2_PROXY_* variables.
fn migrate(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("migrate").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("OAUTH2_PROXY_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `authgate check` on `config`, with `env` for its `${VAR}`s.
fn check(config: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check refused the migrated config:\n{config}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value at a dotted path (`provider.claims.email`, `upstreams.0.url`).
fn at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = doc;
    for part in path.split('.') {
        v = match part.parse::<usize>() {
            Ok(i) => v.get(i)?,
            Err(_) => v.get(part)?,
        };
    }
    Some(v)
}

/// Flags that make a complete oauth2-proxy command line.
const BASE: &[&str] = &[
    "--provider=oidc",
    "--oidc-issuer-url=https://idp.example.com/realms/demo",
    "--client-id=app",
    "--email-domain=*",
    "--upstream=http://127.0.0.1:8080/",
];

fn base_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("OAUTH2_PROXY_COOKIE_SECRET", COOKIE_SECRET),
        ("OAUTH2_PROXY_CLIENT_SECRET", "client-secret"),
    ]
}

#[test]
fn the_seed_articles_helm_values_migrate_to_a_config_check_accepts() {
    let values = fixture("values-oauth2-proxy.yaml");
    let run = migrate(&["--helm-values", values.to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    check(&run.stdout, &[]);
    let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
    let expect = [
        (
            "provider.issuer_url",
            "https://keycloak.example.com/identity/auth/realms/demo",
        ),
        ("provider.discovery", "false"),
        (
            "provider.jwks_uri",
            "https://keycloak.example.com/identity/auth/realms/demo/protocol/openid-connect/certs",
        ),
        ("provider.client_id", "oauth2-proxy"),
        ("cookie.name", "_oauth2_proxy"),
        ("cookie.domains.0", ".example.com"),
        ("cookie.secure", "false"),
        ("cookie.expire", "12h"),
        ("authorization.email_domains.0", "*"),
        ("authorization.allowed_groups.0", "admins"),
        ("authorization.bearer_tokens", "false"),
        ("redirect.allowed_domains.0", ".example.com"),
        ("server.listen", "0.0.0.0:4180"),
        ("server.ext_authz_http", "0.0.0.0:4181"),
        (
            "headers.identity.0.name",
            "X-Auth-Request-Preferred-Username",
        ),
        ("headers.identity.1.name", "X-Auth-Request-Email"),
        ("headers.identity.1.claim", "email"),
    ];
    for (path, want) in expect {
        let got = at(&doc, path).unwrap_or_else(|| panic!("{path} missing:\n{}", run.stdout));
        let got = match got {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other).unwrap().trim().to_string(),
        };
        assert_eq!(got, want, "{path}");
    }
    assert_eq!(
        at(&doc, "upstreams").unwrap().as_sequence().unwrap().len(),
        0
    );
    for line in [
        "warning: given in clear",
        "validateURL: not carried",
        "--show-debug-on-error: not carried",
        "carried as server.ext_authz_http",
    ] {
        assert!(run.stderr.contains(line), "no {line:?} in:\n{}", run.stderr);
    }
}

#[test]
fn each_option_lands_on_its_key() {
    let mut failures = Vec::new();
    for (i, (flags, env, path, want, line)) in ROWS.iter().enumerate() {
        let mut args: Vec<&str> = vec!["--"];
        args.extend_from_slice(BASE);
        args.extend_from_slice(flags);
        let mut all_env = base_env();
        all_env.extend_from_slice(env);
        let run = migrate(&args, &all_env);
        if run.code != 0 {
            failures.push(format!(
                "row {i} {flags:?}: exit {}\n{}",
                run.code, run.stderr
            ));
            continue;
        }
        check(&run.stdout, &all_env);
        let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
        let want: Value = serde_yaml::from_str(want).unwrap();
        let got = at(&doc, path).cloned();
        let same = match (&got, &want) {
            (Some(Value::String(g)), w) => {
                Some(w) == serde_yaml::from_str::<Value>(g).ok().as_ref()
                    || g == w.as_str().unwrap_or("\u{0}")
            }
            (Some(g), w) => g == w,
            (None, _) => false,
        };
        if !same {
            failures.push(format!(
                "row {i} {flags:?}: {path} = {got:?}, want {want:?}\n{}",
                run.stdout
            ));
        }
        if !line.is_empty() && !run.stderr.contains(line) {
            failures.push(format!(
                "row {i} {flags:?}: no {line:?} in the report:\n{}",
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_config_file_the_environment_and_flags_combine_with_oauth2_proxys_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oauth2_proxy.cfg");
    std::fs::write(&cfg, "cookie_name = \"file\"\ncookie_path = \"/file\"\ncookie_domains = [\"file.example.com\"]\nemail_domains = [\"example.com\"]\n").unwrap();
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--"];
    args.extend_from_slice(&BASE[..3]);
    args.extend_from_slice(&["--upstream=http://127.0.0.1:8080/", "--cookie-name=flag"]);
    let mut env = base_env();
    env.push(("OAUTH2_PROXY_COOKIE_PATH", "/env"));
    let run = migrate(&args, &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(at(&doc, "cookie.name").unwrap(), "flag");
    assert_eq!(at(&doc, "cookie.path").unwrap(), "/env");
    assert_eq!(at(&doc, "cookie.domains.0").unwrap(), "file.example.com");
    assert_eq!(
        at(&doc, "authorization.email_domains.0").unwrap(),
        "example.com"
    );
}

#[test]
fn authenticated_emails_are_read_into_allowed_emails() {
    let dir = tempfile::tempdir().unwrap();
    let emails = dir.path().join("emails");
    std::fs::write(&emails, "alice@example.com\n\n bob@example.com \n").unwrap();
    let flag = format!("--authenticated-emails-file={}", emails.display());
    let mut args = vec!["--"];
    args.extend_from_slice(&BASE[..3]);
    args.extend_from_slice(&["--upstream=http://127.0.0.1:8080/", &flag]);
    let run = migrate(&args, &base_env());
    assert_eq!(run.code, 0, "{}", run.stderr);
    check(&run.stdout, &base_env());
    let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(
        at(&doc, "authorization.allowed_emails").unwrap(),
        &serde_yaml::from_str::<Value>("[alice@example.com, bob@example.com]").unwrap()
    );
    // No email-domain given: none allowed by domain, exactly as oauth2-proxy.
    assert_eq!(
        at(&doc, "authorization.email_domains")
            .unwrap()
            .as_sequence()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn the_alpha_config_carries_injected_headers_and_login_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = dir.path().join("alpha.yaml");
    std::fs::write(
        &alpha,
        r#"
providers:
- id: kc
  provider: oidc
  clientID: app
  clientSecretFile: /etc/oauth2-proxy/client-secret
  scope: openid email profile
  loginURLParameters:
  - name: kc_idp_hint
    default: [github]
  oidcConfig:
    issuerURL: https://idp.example.com/realms/demo
upstreamConfig:
  upstreams:
  - id: app
    path: /
    uri: http://127.0.0.1:8080
injectRequestHeaders:
- name: X-Forwarded-Email
  values: [{ claim: email }]
- name: X-Forwarded-Groups
  values: [{ claim: groups }]
- name: X-Custom
  values: [{ value: fixed }]
"#,
    )
    .unwrap();
    let run = migrate(
        &[
            "--alpha-config",
            alpha.to_str().unwrap(),
            "--",
            "--email-domain=*",
        ],
        &[("OAUTH2_PROXY_COOKIE_SECRET", COOKIE_SECRET)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(
        at(&doc, "headers.identity.0.name").unwrap(),
        "X-Forwarded-Email"
    );
    assert_eq!(at(&doc, "headers.identity.1.claim").unwrap(), "groups");
    assert_eq!(
        at(&doc, "provider.extra_auth_params.kc_idp_hint").unwrap(),
        "github"
    );
    assert_eq!(
        at(&doc, "provider.client_secret_file").unwrap(),
        "/etc/oauth2-proxy/client-secret"
    );
    assert!(
        run.stderr.contains("X-Custom: not carried"),
        "{}",
        run.stderr
    );
    // The secret file exists only in the pod: check says so, migrate warns.
    assert!(
        run.stderr.contains("provider.client_secret_file: warning"),
        "{}",
        run.stderr
    );
}

#[test]
fn keycloak_roles_become_a_policy_or_fail_the_run_never_widen() {
    let mut args = vec!["--"];
    args.extend_from_slice(BASE);
    args.extend_from_slice(&[
        "--provider=keycloak-oidc",
        "--allowed-role=admin",
        "--allowed-role=app:editor",
    ]);
    let run = migrate(&args, &base_env());
    if run.code == 0 {
        check(&run.stdout, &base_env());
        let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
        let expr = at(&doc, "policies.0.expression")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            expr.contains("'admin' in claims.realm_access.roles"),
            "{expr}"
        );
        assert!(
            expr.contains("'editor' in claims.resource_access['app'].roles"),
            "{expr}"
        );
    } else {
        assert_eq!(run.code, 1);
        assert!(
            run.stderr.contains("--allowed-role: cannot be carried"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn a_restriction_authgate_cannot_express_fails_the_run() {
    let mut args = vec!["--"];
    args.extend_from_slice(BASE);
    args.push("--github-org=acme");
    let run = migrate(&args, &base_env());
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.is_empty(), "wrote a config:\n{}", run.stdout);
    assert!(
        run.stderr.contains("--github-org: cannot be carried"),
        "{}",
        run.stderr
    );
}

#[test]
fn inputs_oauth2_proxy_refuses_are_refused_with_its_reason() {
    let mut args = vec!["--"];
    args.extend_from_slice(BASE);
    args.push("--no-such-option=1");
    let run = migrate(&args, &base_env());
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unknown flag: --no-such-option"),
        "{}",
        run.stderr
    );

    let run = migrate(
        &[
            "--",
            "--provider=oidc",
            "--client-id=x",
            "--oidc-issuer-url=https://idp",
        ],
        &base_env(),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("email-domain or authenticated-emails-file required"),
        "{}",
        run.stderr
    );

    let mut args = vec!["--"];
    args.extend_from_slice(BASE);
    args.push("--cookie-secure=maybe");
    let run = migrate(&args, &base_env());
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("strconv.ParseBool"), "{}", run.stderr);
}

#[test]
fn unreadable_or_unparsable_input_names_the_file_and_position() {
    let run = migrate(&["--config", "/nonexistent/oauth2_proxy.cfg"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("/nonexistent/oauth2_proxy.cfg"),
        "{}",
        run.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.cfg");
    std::fs::write(&cfg, "email_domains = [ \"*\" ]\ncookie_name = \n").unwrap();
    let run = migrate(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(run.code, 1);
    let want = format!("{}:2:", cfg.display());
    assert!(run.stderr.contains(&want), "no {want:?} in {}", run.stderr);

    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "config:\n  cookieSecret: x\n extraArgs: [\n").unwrap();
    let run = migrate(&["--helm-values", values.to_str().unwrap()], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("{}:", values.display())),
        "{}",
        run.stderr
    );
}

#[test]
fn secret_files_become_the_file_keys() {
    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("client-secret");
    let cookie = dir.path().join("cookie-secret");
    std::fs::write(&client, "cs-value-not-copied\n").unwrap();
    std::fs::write(&cookie, format!("{COOKIE_SECRET}\n")).unwrap();
    let client_flag = format!("--client-secret-file={}", client.display());
    let cookie_flag = format!("--cookie-secret-file={}", cookie.display());
    let mut args = vec!["--"];
    args.extend_from_slice(BASE);
    args.push(&client_flag);
    args.push(&cookie_flag);
    let run = migrate(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    check(&run.stdout, &[]);
    let doc: Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(
        at(&doc, "provider.client_secret_file").and_then(Value::as_str),
        client.to_str()
    );
    assert_eq!(
        at(&doc, "cookie.secret_file").and_then(Value::as_str),
        cookie.to_str()
    );
    // Referenced, never copied: neither value is in the config.
    assert!(
        at(&doc, "provider.client_secret").is_none(),
        "{}",
        run.stdout
    );
    assert!(at(&doc, "cookie.secret").is_none(), "{}", run.stdout);
    assert!(!run.stdout.contains(COOKIE_SECRET), "{}", run.stdout);
    assert!(
        !run.stdout.contains("cs-value-not-copied"),
        "{}",
        run.stdout
    );
}
