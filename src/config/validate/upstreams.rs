//! `upstreams`: path prefixes (unique, absolute), backend URLs and `host`
//! overrides; addresses are resolved later, by `config::dns`.

use std::collections::HashMap;

use url::Url;

use super::Validator;
use crate::config::file::UpstreamFile;

impl Validator {
    pub(super) fn upstreams(
        &mut self,
        list: Vec<UpstreamFile>,
        optional: bool,
    ) -> Vec<PendingUpstream> {
        if list.is_empty() && !optional {
            self.problem(
                "upstreams",
                "must list at least one upstream (or set server.ext_authz_http/ext_authz_grpc)",
            );
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut pending = Vec::new();
        for (i, upstream) in list.into_iter().enumerate() {
            let key = format!("upstreams[{i}]");
            let path_ok = if upstream.path.is_empty() {
                self.problem(
                    format!("{key}.path"),
                    "must not be empty (use / for everything)",
                );
                false
            } else if !upstream.path.starts_with('/') {
                self.problem(format!("{key}.path"), "must start with /");
                false
            } else if let Some(first) = seen.get(&upstream.path) {
                self.problem(
                    format!("{key}.path"),
                    format!("same path as upstreams[{first}]"),
                );
                false
            } else {
                seen.insert(upstream.path.clone(), i);
                true
            };

            let url_key = format!("{key}.url");
            let url = self.required_url(&url_key, &upstream.url);
            if let Some(url) = &url {
                if url.host_str().is_none_or(str::is_empty) {
                    self.problem(&url_key, "must name a host");
                }
            }

            let host = upstream.host.trim();
            let host_ok = host.is_empty()
                || (host.parse::<http::uri::Authority>().is_ok()
                    && http::HeaderValue::from_str(host).is_ok());
            if !host_ok {
                self.problem(
                    format!("{key}.host"),
                    "must be a host name with an optional :port",
                );
            }

            if let (true, true, Some(url)) = (path_ok, host_ok, url) {
                pending.push(PendingUpstream {
                    tls: url.scheme() == "https",
                    key,
                    path: upstream.path,
                    url,
                    host: (!host.is_empty()).then(|| host.to_string()),
                });
            }
        }
        pending
    }
}

/// An upstream that passed the static checks and awaits resolution.
pub(in crate::config) struct PendingUpstream {
    /// `upstreams[i]`, for problems found while resolving.
    pub(in crate::config) key: String,
    pub(in crate::config) path: String,
    pub(in crate::config) url: Url,
    pub(in crate::config) tls: bool,
    pub(in crate::config) host: Option<String>,
}
