//! `server`: listener addresses (no two alike), the ext_authz path prefix,
//! trusted proxy CIDRs, TLS files, threads, the shutdown grace and the
//! upgrade socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::Validator;
use crate::config::file::ServerFile;
use crate::config::model::{Server, Tls};

impl Validator {
    pub(super) fn server(&mut self, s: ServerFile) -> Option<Server> {
        let listen = self.socket_addr("server.listen", &s.listen);
        let ext_authz_http = self.optional_socket_addr("server.ext_authz_http", &s.ext_authz_http);
        let ext_authz_grpc = self.optional_socket_addr("server.ext_authz_grpc", &s.ext_authz_grpc);
        let metrics = self.optional_socket_addr("server.metrics", &s.metrics);

        let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
        for (key, addr) in [
            ("server.listen", listen),
            ("server.ext_authz_http", ext_authz_http.flatten()),
            ("server.ext_authz_grpc", ext_authz_grpc.flatten()),
            ("server.metrics", metrics.flatten()),
        ] {
            let Some(addr) = addr else { continue };
            if let Some((other, _)) = bound.iter().find(|(_, a)| *a == addr && addr.port() != 0) {
                let message = format!("same address as {other}");
                self.problem(key, message);
            }
            bound.push((key, addr));
        }

        let prefix_ok =
            s.ext_authz_path_prefix.is_empty() || s.ext_authz_path_prefix.starts_with('/');
        if !prefix_ok {
            self.problem(
                "server.ext_authz_path_prefix",
                "must start with / (or be empty)",
            );
        }

        let trusted_proxies: Vec<Option<IpNet>> = s
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| self.cidr(&format!("server.trusted_proxies[{i}]"), text))
            .collect();

        let tls = match s.tls {
            None => Some(None),
            Some(tls) => {
                let cert = self.required_file("server.tls.cert_file", &tls.cert_file);
                let key = self.required_file("server.tls.key_file", &tls.key_file);
                match (cert, key) {
                    (Some(cert_file), Some(key_file)) => Some(Some(Tls {
                        cert_file,
                        key_file,
                    })),
                    _ => None,
                }
            }
        };

        let threads = match s.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shutdown_grace = self.duration("server.shutdown_grace", &s.shutdown_grace.0);
        let upgrade_sock = self.upgrade_sock(&s.upgrade_sock);

        let trusted_proxies = trusted_proxies.into_iter().collect::<Option<Vec<_>>>();
        Some(Server {
            listen: listen?,
            ext_authz_http: ext_authz_http?,
            ext_authz_grpc: ext_authz_grpc?,
            metrics: metrics?,
            ext_authz_path_prefix: prefix_ok.then_some(s.ext_authz_path_prefix)?,
            trusted_proxies: trusted_proxies?,
            tls: tls?,
            threads,
            shutdown_grace: shutdown_grace?,
            upgrade_sock: upgrade_sock?,
        })
    }

    /// `server.upgrade_sock`: a Unix socket path (empty = the default in the
    /// temp dir) that fits `sockaddr_un.sun_path` (107 bytes and a NUL).
    fn upgrade_sock(&mut self, text: &str) -> Option<PathBuf> {
        let path = if text.is_empty() {
            std::env::temp_dir().join("authgate_upgrade.sock")
        } else {
            PathBuf::from(text)
        };
        if path.as_os_str().len() > 107 {
            self.problem(
                "server.upgrade_sock",
                "longer than the 107 bytes a Unix socket path may have",
            );
            return None;
        }
        Some(path)
    }
}
