//! One multiplexed connection (standalone or cluster), shared by every call
//! of a backend instance.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use ::redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation, Value};

use super::{RedisOptions, RedisTarget, backend_err};
use crate::error::Result;

/// A cheap-to-clone handle; clones share one multiplexed connection (per
/// node, for a cluster), so concurrent calls are pipelined on the socket
/// rather than waiting for each other.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Reconnects by itself after a failure.
    Single(ConnectionManager),
    /// Follows slot moves and reconnects by itself.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl Conn {
    pub(crate) async fn connect(opts: &RedisOptions) -> Result<Self> {
        opts.validate()?;
        match &opts.target {
            RedisTarget::Single(url) => {
                let client = ::redis::Client::open(url.as_str()).map_err(backend_err("connect"))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(opts.connect_timeout))
                    .set_response_timeout(Some(opts.response_timeout))
                    // Reconnect quickly after a Redis restart; the engine's
                    // port timeout bounds what a caller waits meanwhile.
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(500))
                    .set_number_of_retries(4);
                let manager = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(backend_err("connect"))?;
                let conn = Conn::Single(manager);
                if !opts.lazy {
                    conn.ping("connect").await?;
                }
                Ok(conn)
            }
            RedisTarget::Cluster(urls) => {
                let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(opts.connect_timeout)
                    .response_timeout(opts.response_timeout)
                    .retries(3)
                    .build()
                    .map_err(backend_err("connect"))?;
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(backend_err("connect"))?;
                Ok(Conn::Cluster(conn))
            }
        }
    }

    /// Loads `scripts` into the server's script cache (every node of a
    /// cluster), so that the first burst of calls does not meet `NOSCRIPT`
    /// all at once. Calls still fall back to loading if the cache is lost
    /// later (a restart, `SCRIPT FLUSH`).
    pub(crate) async fn preload(&self, scripts: &[&::redis::Script]) -> Result<()> {
        for script in scripts {
            let loaded = match self.clone() {
                Conn::Single(mut c) => script.prepare_invoke().load_async(&mut c).await,
                Conn::Cluster(mut c) => script.prepare_invoke().load_async(&mut c).await,
            };
            loaded.map_err(backend_err("connect"))?;
        }
        Ok(())
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Runs a script by SHA, loading it first if the server lost it.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => invocation.invoke_async(&mut c).await,
            Conn::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        }
    }

    /// Runs one plain command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// Runs a pipeline of commands (on a cluster their keys must share one
    /// slot).
    pub(crate) async fn pipe<T: FromRedisValue>(&self, pipe: &::redis::Pipeline) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }

    /// Runs `cmd` on every primary: the one server (answering as `single`)
    /// or each cluster master (answering by address). One answer per node,
    /// so a node that refuses the command does not hide the others.
    pub(crate) async fn query_each_primary(
        &self,
        cmd: &Cmd,
        single: &str,
    ) -> Vec<(String, RedisResult<Value>)> {
        match self.clone() {
            Conn::Single(mut c) => vec![(single.to_owned(), cmd.query_async(&mut c).await)],
            Conn::Cluster(mut c) => {
                // No response policy: the driver answers a map of node
                // address to that node's reply (or its error).
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match c.route_command(cmd.clone(), routing).await {
                    Ok(Value::Map(replies)) => replies
                        .into_iter()
                        .map(|(node, reply)| {
                            let node = String::from_redis_value(node)
                                .unwrap_or_else(|_| "a cluster node".to_owned());
                            (node, reply.extract_error())
                        })
                        .collect(),
                    Ok(other) => vec![(
                        "the cluster".to_owned(),
                        Ok(other).and_then(Value::extract_error),
                    )],
                    Err(e) => vec![("the cluster".to_owned(), Err(e))],
                }
            }
        }
    }

    /// Runs `cmd` on the primary that owns `key`'s slot. For commands that
    /// name no key but must reach the node that ran an earlier write on
    /// this connection (`WAIT`): the cluster driver would otherwise send
    /// them to every master.
    pub(crate) async fn query_on_node_of<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        key: &str,
    ) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let reply = c.route_command(cmd.clone(), routing).await?;
                Ok(T::from_redis_value(reply)?)
            }
        }
    }

    pub(crate) async fn ping(&self, operation: &'static str) -> Result<()> {
        self.query::<String>(&::redis::cmd("PING"))
            .await
            .map(drop)
            .map_err(backend_err(operation))
    }
}
