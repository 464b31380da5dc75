//! The command line as users run it: `check` (Redis URLs included),
//! `secret`, `--version`, and `run` refusing a bad config.

use std::process::{Command, Output};

use crate::support::{conf_dir, BIN};
use base64::Engine as _;

fn authgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("OIDC_CLIENT_SECRET", "integration-client-secret")
        .env(
            "COOKIE_SECRET",
            "RpP0jCEcNYg9mJt3Y2YL3Q3m3qDqgQ8bG6sFNkU2h1c",
        )
        .env_remove("AUTHGATE_CONFIG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_every_shipped_config_file() {
    let mut files: Vec<_> = std::fs::read_dir(conf_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no config files in conf/");
    for f in files {
        let out = authgate(&["check", "--config", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}\n{}{}",
            f.display(),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// An otherwise valid config with exactly three problems.
const BAD: &str = r#"
server:
  listen: 127.0.0.1:4180
provider:
  issuer_url: http://127.0.0.1:9000
  client_id: authgate
  client_secret: s3cret
cookie:
  secret: "1234567"
  expire: soon
authorization:
  skip_auth_routes: ["("]
upstreams:
  - path: /
    url: http://127.0.0.1:8080
"#;

fn problem_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn check_prints_one_line_per_problem_naming_the_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let out = authgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines = problem_lines(&stdout);
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines.contains(&"cookie.secret: must decode to 16, 24 or 32 bytes, got 7"),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("cookie.expire: ")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("authorization.skip_auth_routes[0]: ")),
        "{stdout}"
    );
}

#[test]
fn run_refuses_a_bad_config_with_the_same_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let out = authgate(&["run", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cookie.secret: must decode to 16, 24 or 32 bytes, got 7"),
        "{stderr}"
    );
}

#[test]
fn check_names_a_missing_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.yaml");
    let yaml = BAD
        .replace("\"1234567\"", "${AUTHGATE_ITEST_SURELY_UNSET}")
        .replace("expire: soon", "expire: 1h")
        .replace("[\"(\"]", "[]");
    std::fs::write(&path, yaml).unwrap();
    let out = authgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("AUTHGATE_ITEST_SURELY_UNSET"), "{stdout}");
}

/// `check` on an otherwise valid config with the Redis store at `url`.
fn check_redis_url(url: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis.yaml");
    let yaml = BAD
        .replace("\"1234567\"", "0123456789abcdef")
        .replace("expire: soon", "expire: 1h")
        .replace("[\"(\"]", "[]")
        + &format!("session:\n  store: redis\n  redis:\n    url: \"{url}\"\n");
    std::fs::write(&path, yaml).unwrap();
    authgate(&["check", "--config", path.to_str().unwrap()])
}

#[test]
fn check_accepts_exactly_the_redis_urls_run_can_use() {
    // Accepted: `run` builds its Redis client from these (see the
    // session::redis unit test that builds one for every form).
    for url in [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@redis.example.com:6380/1",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "REDIS+CLUSTER://n1:6379,n2:6379",
    ] {
        let out = check_redis_url(url);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{url}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // Refused: forms `run` could not use, each with one problem under the key.
    for url in [
        "redis+sentinel://s1:26379,s2:26379",
        "redis://r.example.com/0/1",
        "rediss://r.example.com:6380/#insecure",
        "redis+sentinel://s1:notaport/mymaster",
    ] {
        let out = check_redis_url(url);
        assert_eq!(out.status.code(), Some(1), "{url}");
        let stdout = text(&out.stdout);
        let lines = problem_lines(&stdout);
        assert_eq!(lines.len(), 1, "{url}: {stdout}");
        assert!(
            lines[0].starts_with("session.redis.url: "),
            "{url}: {stdout}"
        );
    }
}

#[test]
fn secret_prints_43_base64url_chars_of_32_fresh_bytes() {
    let one = authgate(&["secret"]);
    assert!(one.status.success());
    let s = text(&one.stdout).trim_end().to_owned();
    assert_eq!(s.len(), 43, "{s:?}");
    assert!(s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&s)
        .unwrap();
    assert_eq!(bytes.len(), 32);
    let two = authgate(&["secret"]);
    assert_ne!(text(&two.stdout).trim_end(), s, "two secrets are equal");
}

#[test]
fn version_flag_prints_name_and_version() {
    let out = authgate(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("authgate {}", env!("CARGO_PKG_VERSION"))
    );
}
