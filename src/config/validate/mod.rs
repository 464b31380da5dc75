//! Validation, DTO to model: one shared [`Validator`] that collects problems
//! by dotted key, its scalar checks (text, URLs, addresses, files, secrets),
//! and the walk over the sections, each in its own module.

mod assertion;
mod authorization;
pub(super) mod cookie;
mod headers;
mod policies;
mod provider;
mod redirect;
mod server;
pub(super) mod session;
mod telemetry;
pub(super) mod upstreams;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::duration::parse_duration;
use super::error::Problem;
use super::file::FileConfig;
use super::model::{
    Assertion, Authorization, Cookie, Headers, Policies, Provider, Redirect, Server, Session,
};
use upstreams::PendingUpstream;

/// Everything but the upstreams' addresses, which need DNS.
pub(super) struct Staged {
    /// Every section but the upstreams; None when any of them had a problem.
    pub(super) parts: Option<Parts>,
    /// Upstreams that passed the static checks, awaiting resolution.
    pub(super) upstreams: Vec<PendingUpstream>,
    /// `telemetry`; None when it had a problem (recorded).
    pub(super) telemetry: Option<super::model::Telemetry>,
}

/// The validated sections that need no network.
pub(super) struct Parts {
    pub(super) server: Server,
    pub(super) provider: Provider,
    pub(super) cookie: Cookie,
    pub(super) session: Session,
    pub(super) authorization: Authorization,
    pub(super) redirect: Redirect,
    pub(super) headers: Headers,
    pub(super) policies: Policies,
    pub(super) assertion: Option<Assertion>,
}

/// The one collector of problems, by dotted key, shared by every section's
/// checks; each check returns `None` after recording why, so one bad key
/// never hides the next.
#[derive(Default)]
pub(super) struct Validator {
    /// What was found so far, in the order it was found.
    pub(super) problems: Vec<Problem>,
}

impl Validator {
    /// Records one problem under `key` (the full dotted path).
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// Checks every section; the upstreams still need [`super::dns`].
    pub(super) fn validate(&mut self, file: FileConfig) -> Staged {
        let server = self.server(file.server);
        let provider = self.provider(file.provider);
        let cookie = self.cookie(file.cookie);
        let session = self.session(file.session);
        let authorization = self.authorization(file.authorization);
        let redirect = self.redirect(file.redirect);
        // An ext_authz-only deployment forwards nothing itself: Envoy does.
        let ext_authz_only = server
            .as_ref()
            .is_some_and(|s| s.ext_authz_http.is_some() || s.ext_authz_grpc.is_some());
        let upstreams = self.upstreams(file.upstreams, ext_authz_only);
        let headers = self.headers(file.headers);
        let policies = self.policies(&file.policies);
        let assertion = self.assertion(&file.assertion);
        let parts = match (
            server,
            provider,
            cookie,
            session,
            authorization,
            redirect,
            headers,
            policies,
            assertion,
        ) {
            (
                Some(server),
                Some(provider),
                Some(cookie),
                Some(session),
                Some(authorization),
                Some(redirect),
                Some(headers),
                Some(policies),
                Some(assertion),
            ) => Some(Parts {
                server,
                provider,
                cookie,
                session,
                authorization,
                redirect,
                headers,
                policies,
                assertion,
            }),
            _ => None,
        };
        let telemetry = self.telemetry(&file.telemetry);
        Staged {
            parts,
            upstreams,
            telemetry,
        }
    }

    // === Scalar checks shared by the sections ===

    /// Non-empty text, trimmed.
    fn required_text(&mut self, key: &str, text: &str) -> Option<String> {
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(text.to_string())
    }

    /// A list of non-empty strings, trimmed, optionally lower-cased.
    fn text_list(&mut self, key: &str, items: &[String], lowercase: bool) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item = item.trim();
            if item.is_empty() {
                self.problem(format!("{key}[{i}]"), "must not be empty");
                ok = false;
            } else if lowercase {
                out.push(item.to_ascii_lowercase());
            } else {
                out.push(item.to_string());
            }
        }
        ok.then_some(out)
    }

    /// An absolute http(s) URL (plain http is allowed for local and test IdPs).
    fn required_url(&mut self, key: &str, text: &str) -> Option<Url> {
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.problem(key, "scheme must be http or https");
                None
            }
            Err(err) => {
                self.problem(key, format!("invalid URL: {err}"));
                None
            }
        }
    }

    /// Outer `None`: invalid (recorded); `Some(None)`: not set.
    fn optional_url(&mut self, key: &str, text: &str) -> Option<Option<Url>> {
        if text.trim().is_empty() {
            return Some(None);
        }
        self.required_url(key, text).map(Some)
    }

    /// `IP:PORT` (no host names: a listener binds an address).
    fn socket_addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        text.parse()
            .map_err(|_| self.problem(key, "must be IP:PORT, e.g. 0.0.0.0:4180 or [::]:4180"))
            .ok()
    }

    /// Outer `None`: invalid (recorded); `Some(None)`: not set.
    fn optional_socket_addr(&mut self, key: &str, text: &str) -> Option<Option<SocketAddr>> {
        if text.trim().is_empty() {
            return Some(None);
        }
        self.socket_addr(key, text).map(Some)
    }

    /// A CIDR, or a bare IP meaning that one address (/32 or /128).
    fn cidr(&mut self, key: &str, text: &str) -> Option<IpNet> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Some(net);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(IpNet::from(ip));
        }
        self.problem(key, "must be a CIDR (10.0.0.0/8) or an IP address");
        None
    }

    /// A duration such as `30s` or `1h30m` ([`parse_duration`]).
    fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        parse_duration(text)
            .map_err(|err| self.problem(key, err.to_string()))
            .ok()
    }

    /// A secret given inline or through its `_file` twin (a mounted
    /// Kubernetes Secret); file content is trimmed. `Some("")` when neither
    /// is set, so the caller decides whether that is allowed.
    fn secret_twin(
        &mut self,
        key: &str,
        value: &str,
        file_key: &str,
        file: &str,
    ) -> Option<String> {
        let file = file.trim();
        match (value.is_empty(), file.is_empty()) {
            (false, false) => {
                self.problem(
                    file_key,
                    format!("set either {key} or {file_key}, not both"),
                );
                None
            }
            (false, true) => Some(value.to_string()),
            (true, true) => Some(String::new()),
            (true, false) => match std::fs::read_to_string(file) {
                Ok(content) if content.trim().is_empty() => {
                    self.problem(file_key, format!("file {file} is empty"));
                    None
                }
                Ok(content) => Some(content.trim().to_string()),
                Err(err) => {
                    self.problem(file_key, format!("cannot read {file}: {err}"));
                    None
                }
            },
        }
    }

    /// A path that must be set and name a readable file.
    fn required_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        let path = path.trim();
        if path.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        self.readable_file(key, path)
    }

    /// Outer `None`: invalid (recorded); `Some(None)`: not set.
    fn optional_file(&mut self, key: &str, path: &str) -> Option<Option<PathBuf>> {
        let path = path.trim();
        if path.is_empty() {
            return Some(None);
        }
        self.readable_file(key, path).map(Some)
    }

    /// Opens the file once, so `check` catches permissions too.
    fn readable_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        match std::fs::File::open(path) {
            Ok(_) if Path::new(path).is_file() => Some(PathBuf::from(path)),
            Ok(_) => {
                self.problem(key, format!("{path} is not a file"));
                None
            }
            Err(err) => {
                self.problem(key, format!("cannot read {path}: {err}"));
                None
            }
        }
    }
}
