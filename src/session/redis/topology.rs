//! The client handles for each Redis deployment (single server, Sentinel,
//! Cluster), built from the typed [`config::RedisTopology`] without
//! connecting, and the one connection type the store sends commands on.

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisResult};
use std::future::Future;
use std::time::Duration;

use super::sentinel::Sentinels;
use super::{RedisError, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::config;

/// Which servers the store talks to.
pub(super) enum Topology {
    Single(redis::Client),
    Sentinel(Box<Sentinels>),
    Cluster(redis::cluster::ClusterClient),
}

/// A live connection: multiplexed to one node, or the cluster's router.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Cluster: the longest one command may take, the crate's retries while a
/// dead master's replica takes over included; then it fails (503) rather
/// than hold the request for the whole `cluster-node-timeout`.
const CLUSTER_DEADLINE: Duration = RESPONSE_TIMEOUT;
/// Cluster: the shortest and longest pause between two of the crate's
/// retries of one command (ms). Its defaults (1.28 s and more) would keep a
/// request waiting long after the failover it waits for has ended.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (25, 250);

impl Conn {
    pub(super) async fn cmd<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => bounded(cmd.query_async(&mut c)).await,
        }
    }

    pub(super) async fn pipe(&self, pipe: &Pipeline) -> RedisResult<()> {
        self.values(pipe).await.map(drop)
    }

    /// The replies of the pipeline's commands not marked `ignore`.
    pub(super) async fn values(&self, pipe: &Pipeline) -> RedisResult<Vec<redis::Value>> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => bounded(pipe.query_async(&mut c)).await,
        }
    }
}

/// `work`, or a timeout error after [`CLUSTER_DEADLINE`].
async fn bounded<T>(work: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(CLUSTER_DEADLINE, work)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
}

/// The connection settings of the data nodes (single server, master or
/// cluster node): database, credentials and protocol, from the typed config.
pub(super) fn redis_info(cfg: &config::Redis) -> redis::RedisConnectionInfo {
    redis::RedisConnectionInfo {
        db: cfg.db,
        username: cfg.username.clone(),
        password: cfg.password.as_ref().map(|p| p.expose().clone()),
        protocol: match cfg.protocol {
            config::RedisProtocol::Resp2 => redis::ProtocolVersion::RESP2,
            config::RedisProtocol::Resp3 => redis::ProtocolVersion::RESP3,
        },
    }
}

/// A TCP address, with TLS (certificates verified) when `tls`.
pub(super) fn tcp_addr(node: &config::RedisNode, tls: bool) -> redis::ConnectionAddr {
    if tls {
        redis::ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(node.host.clone(), node.port)
    }
}

/// The trust anchors for TLS to the data nodes. None: the redis crate's
/// built-in web PKI roots. When the environment variable `SSL_CERT_FILE`
/// names a PEM bundle (the OpenSSL convention, which Pingora's upstream TLS
/// also follows), exactly the CA certificates in it, as OpenSSL clients do:
/// how a private CA that signs Redis's certificate is trusted. Read once.
///
/// # Errors
/// [`RedisError::Client`] when the file cannot be read or holds no certificate.
pub(super) fn tls_roots(cfg: &config::Redis) -> Result<Option<redis::TlsCertificates>, RedisError> {
    let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| cfg.tls && !p.is_empty()) else {
        return Ok(None);
    };
    let shown = std::path::Path::new(&path).display().to_string();
    let pem = std::fs::read(&path)
        .map_err(|e| RedisError::Client(format!("SSL_CERT_FILE {shown}: {e}")))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(RedisError::Client(format!(
            "SSL_CERT_FILE {shown}: no PEM certificate"
        )));
    }
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// A client for one data node, trusting `roots` (see [`tls_roots`]) instead
/// of the built-in roots when it is a TLS address and they are given.
pub(super) fn node_client(
    info: redis::ConnectionInfo,
    roots: Option<&redis::TlsCertificates>,
) -> RedisResult<redis::Client> {
    match roots {
        Some(certs) if matches!(info.addr, redis::ConnectionAddr::TcpTls { .. }) => {
            redis::Client::build_with_tls(info, certs.clone())
        }
        _ => redis::Client::open(info),
    }
}

/// Builds the client handles from the typed topology that `config` parsed;
/// connects to nothing (the prober does). Config validation already refused
/// every form these builders reject, so an error here is a bug, reported
/// rather than panicking, or an unusable `SSL_CERT_FILE` ([`tls_roots`]).
pub(super) fn build_topology(cfg: &config::Redis) -> Result<Topology, RedisError> {
    let client_err = |e: redis::RedisError| RedisError::Client(e.to_string());
    let roots = tls_roots(cfg)?;
    match &cfg.topology {
        config::RedisTopology::Single(addr) => {
            let addr = match addr {
                config::RedisAddr::Tcp(node) => tcp_addr(node, cfg.tls),
                config::RedisAddr::Unix(path) => redis::ConnectionAddr::Unix(path.clone()),
            };
            let info = redis::ConnectionInfo {
                addr,
                redis: redis_info(cfg),
            };
            node_client(info, roots.as_ref())
                .map(Topology::Single)
                .map_err(client_err)
        }
        config::RedisTopology::Cluster { nodes } => {
            let nodes: Vec<redis::ConnectionInfo> = nodes
                .iter()
                .map(|node| redis::ConnectionInfo {
                    addr: tcp_addr(node, cfg.tls),
                    redis: redis_info(cfg),
                })
                .collect();
            let mut builder = redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
                .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1);
            if let Some(certs) = roots {
                builder = builder.certs(certs);
            }
            builder.build().map(Topology::Cluster).map_err(client_err)
        }
        config::RedisTopology::Sentinel { sentinels, master } => {
            let s = Sentinels::new(cfg, sentinels, master, roots);
            // Refuse now what every later connect would (e.g. bad TLS settings).
            if let Some(node) = sentinels.first() {
                s.data_client(&(node.host.clone(), node.port))
                    .map_err(client_err)?;
            }
            Ok(Topology::Sentinel(Box::new(s)))
        }
    }
}
