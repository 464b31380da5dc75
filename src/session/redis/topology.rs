//! The client handles for each Redis deployment (single server, Sentinel,
//! Cluster), built from the typed [`config::RedisTopology`] without
//! connecting, and the one connection type the store sends commands on.

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisResult};

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

impl Conn {
    pub(super) async fn cmd<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    pub(super) async fn pipe(&self, pipe: &Pipeline) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }
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

/// Builds the client handles from the typed topology that `config` parsed;
/// connects to nothing (the prober does). Config validation already refused
/// every form these builders reject, so an error here is a bug, reported
/// rather than panicking.
pub(super) fn build_topology(cfg: &config::Redis) -> Result<Topology, RedisError> {
    let client_err = |e: redis::RedisError| RedisError::Client(e.to_string());
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
            redis::Client::open(info)
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
            redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map(Topology::Cluster)
                .map_err(client_err)
        }
        config::RedisTopology::Sentinel { sentinels, master } => {
            let s = Sentinels::new(cfg, sentinels, master);
            // Refuse now what every later connect would (e.g. bad TLS settings).
            if let Some(node) = sentinels.first() {
                s.data_client(&(node.host.clone(), node.port))
                    .map_err(client_err)?;
            }
            Ok(Topology::Sentinel(Box::new(s)))
        }
    }
}
