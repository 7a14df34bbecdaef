//! What an answered purchase promises if Redis crashes or fails over.
//!
//! Under [`HandOff::Outbox`](crate::machine::HandOff::Outbox) a purchase
//! answers 200 once its order is in the store, so the store must keep it.
//! Redis does only if every primary writes each command to its append-only
//! file and fsyncs it before replying (`appendonly yes`, `appendfsync
//! always`), or if each reserve waits until replicas have it
//! ([`RedisOptions::wait_replicas`]). [`RedisStockStore::with_options`]
//! reads the configuration of every primary once, logs a warning when
//! neither holds (or refuses to connect, with
//! [`RedisOptions::require_durable`]), and reports what it found as
//! [`RedisStockStore::durability`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use ::redis::{FromRedisValue, IntoConnectionInfo};

use super::conn::Conn;
use super::{RedisOptions, RedisStockStore, RedisTarget, backend_err};
use crate::error::{Error, Result};

/// What a purchase answered 200 promises if Redis crashes, restarts or
/// fails over, as found when the store connected. Print it in a server's
/// start-up banner; [`RedisOptions::require_durable`] refuses to connect
/// unless it [`is_durable`](Self::is_durable).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every primary runs AOF with `appendfsync always`: it replies only
    /// after the write is fsynced, so an answered order survives a crash and
    /// restart of that server. A failover to a replica (which gets writes
    /// asynchronously) can still lose the last ones; add
    /// [`RedisOptions::wait_replicas`] where a replica can be promoted.
    Fsynced,
    /// Each reserve that places an order waits until `replicas` replicas
    /// acknowledge it ([`RedisOptions::wait_replicas`]), and fails (the
    /// buyer gets 503 and owns nothing) when fewer do in time. The primaries'
    /// own persistence is not checked.
    Replicated {
        /// Replicas that must acknowledge each order.
        replicas: u32,
    },
    /// Neither: `reason` names each primary that falls short, what it is
    /// set to and what an answered order can be lost to.
    NotDurable {
        /// Per primary: its settings and what they can lose.
        reason: String,
    },
    /// The configuration could not be read (`CONFIG` disabled or renamed,
    /// as on many managed services, or a lazy store that did not connect at
    /// start). `reason` says why.
    Unknown {
        /// Why the configuration could not be read.
        reason: String,
    },
}

impl Durability {
    /// Whether an answered order survives the loss of a Redis process:
    /// [`Fsynced`](Self::Fsynced) or [`Replicated`](Self::Replicated).
    pub fn is_durable(&self) -> bool {
        matches!(self, Durability::Fsynced | Durability::Replicated { .. })
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Fsynced => {
                f.write_str("durable: AOF with appendfsync always on every primary")
            }
            Durability::Replicated { replicas } => write!(
                f,
                "durable: each order waits for {replicas} replica(s) to acknowledge it (WAIT)"
            ),
            Durability::NotDurable { reason } => write!(f, "NOT durable: {reason}"),
            Durability::Unknown { reason } => write!(f, "durability unknown: {reason}"),
        }
    }
}

/// [`RedisOptions::wait_replicas`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitReplicas {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

/// Rejects durability options that cannot work, before connecting.
pub(crate) fn validate(opts: &RedisOptions) -> Result<()> {
    if let Some(w) = opts.wait {
        if w.replicas == 0 {
            return Err(Error::Config(
                "redis wait_replicas needs at least 1 replica (0 would wait for nothing)".into(),
            ));
        }
        // `WAIT n 0` blocks forever; below 1 ms it would round to that.
        if w.timeout < Duration::from_millis(1) || w.timeout >= opts.response_timeout {
            return Err(Error::Config(format!(
                "redis wait_replicas timeout {:?} must be at least 1 ms and below the \
                 response timeout ({:?})",
                w.timeout, opts.response_timeout
            )));
        }
    }
    if opts.require_durable && opts.lazy && opts.wait.is_none() {
        return Err(Error::Config(
            "redis require_durable needs the server's configuration at start, which a lazy \
             store does not read: drop lazy, or use wait_replicas"
                .into(),
        ));
    }
    Ok(())
}

/// The finding and the `WAIT` settings of one store.
#[derive(Debug)]
pub(crate) struct Guard {
    finding: Durability,
    wait: Option<WaitReplicas>,
}

/// One primary's settings, as far as they could be read.
#[derive(Default)]
struct Node {
    /// `CONFIG GET` answers, or the first error.
    config: Option<std::result::Result<HashMap<String, String>, String>>,
    /// `connected_slaves` from `INFO replication`.
    replicas: Option<u64>,
}

impl Guard {
    /// Reads every primary's persistence settings (unless the store is
    /// lazy), logs what an answered order can be lost to, and refuses to
    /// go on if `require_durable` is set and the answer is not durable.
    /// Never fails for a `CONFIG` the server refuses: that is
    /// [`Durability::Unknown`].
    pub(crate) async fn check(conn: &Conn, opts: &RedisOptions) -> Result<Self> {
        let nodes = if opts.lazy {
            BTreeMap::new()
        } else {
            inspect(conn, &single_label(&opts.target)).await
        };
        let finding = if opts.lazy && opts.wait.is_none() {
            Durability::Unknown {
                reason: "a lazy store does not read the server's configuration at start".into(),
            }
        } else {
            judge(&nodes, opts.wait)
        };
        if opts.require_durable && !finding.is_durable() {
            return Err(Error::Config(format!(
                "redis {finding}; require_durable is set, so the store refuses to start. Set \
                 `appendonly yes` and `appendfsync always` on every primary (CONFIG SET, then \
                 CONFIG REWRITE or redis.conf), or use RedisOptions::wait_replicas on a \
                 replicated setup, or drop require_durable"
            )));
        }
        report(&finding, &nodes);
        Ok(Self {
            finding,
            wait: opts.wait,
        })
    }

    /// With [`RedisOptions::wait_replicas`]: waits until that many replicas
    /// have this connection's writes on the node of `key` (the reserve just
    /// answered there), or fails the reserve.
    pub(crate) async fn after_reserve(&self, conn: &Conn, key: &str) -> Result<()> {
        let Some(w) = self.wait else {
            return Ok(());
        };
        let ms = u64::try_from(w.timeout.as_millis()).unwrap_or(u64::MAX);
        // WAIT counts the replicas that have every write this connection
        // made, the reserve included. (After a reconnect between the two it
        // only covers the new connection's writes: a window of one round
        // trip, which a lost primary usually fails anyway.)
        let acked: i64 = conn
            .query_on_node_of(::redis::cmd("WAIT").arg(w.replicas).arg(ms), key)
            .await
            .map_err(backend_err("reserve"))?;
        if acked >= i64::from(w.replicas) {
            return Ok(());
        }
        // Failing makes the engine void the reserve and answer 503: the
        // buyer owns nothing (unless a failover promotes a replica that got
        // the reserve but not yet the void, the window of any lost answer).
        // A 200 would promise what no replica holds.
        Err(Error::backend(
            crate::redis::BACKEND,
            "reserve",
            format!(
                "WAIT: only {acked} of {} replica(s) acknowledged the order within {ms} ms, so \
                 it is not answered as durable (the engine voids it and answers 503); check \
                 the primary's replicas (INFO replication) or lower RedisOptions::wait_replicas",
                w.replicas
            ),
        ))
    }
}

impl RedisStockStore {
    /// What a purchase answered 200 promises if Redis crashes or fails
    /// over, as found when the store connected (see [`Durability`]).
    pub fn durability(&self) -> &Durability {
        &self.durability.finding
    }
}

/// How a standalone server is named in findings: its address, never the
/// credentials of its URL.
fn single_label(target: &RedisTarget) -> String {
    match target {
        RedisTarget::Single(url) => url
            .as_str()
            .into_connection_info()
            .map(|info| info.addr().to_string())
            .unwrap_or_else(|_| "the server".to_owned()),
        RedisTarget::Cluster(_) => "the cluster".to_owned(),
    }
}

/// Reads each primary's persistence settings and replica count.
async fn inspect(conn: &Conn, single: &str) -> BTreeMap<String, Node> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    // Three patterns rather than one CONFIG GET of several names, which
    // servers before Redis 7 refuse.
    for pattern in ["append*", "save", "min-replicas-*"] {
        let cmd = ::redis::cmd("CONFIG").arg("GET").arg(pattern).clone();
        for (name, reply) in conn.query_each_primary(&cmd, single).await {
            let parsed = reply.and_then(|v| Ok(HashMap::<String, String>::from_redis_value(v)?));
            let node = nodes.entry(name).or_default();
            match (&mut node.config, parsed) {
                (Some(Err(_)), _) => {}
                (Some(Ok(config)), Ok(more)) => config.extend(more),
                (slot, Ok(config)) => *slot = Some(Ok(config)),
                (slot, Err(e)) => *slot = Some(Err(e.to_string())),
            }
        }
    }
    let info = ::redis::cmd("INFO").arg("replication").clone();
    for (name, reply) in conn.query_each_primary(&info, single).await {
        let replicas = reply
            .and_then(|v| Ok(String::from_redis_value(v)?))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
                    .and_then(|n| n.parse().ok())
            });
        nodes.entry(name).or_default().replicas = replicas;
    }
    nodes
}

/// The finding for what [`inspect`] read.
fn judge(nodes: &BTreeMap<String, Node>, wait: Option<WaitReplicas>) -> Durability {
    if let Some(w) = wait {
        return Durability::Replicated {
            replicas: w.replicas,
        };
    }
    let mut short = Vec::new();
    let mut unread = Vec::new();
    for (name, node) in nodes {
        match &node.config {
            Some(Ok(config)) => {
                if let Some(why) = shortfall(config, node.replicas.unwrap_or(0)) {
                    short.push(format!("{name}: {why}"));
                }
            }
            Some(Err(e)) => unread.push(format!("{name}: CONFIG GET failed ({e})")),
            None => unread.push(format!("{name}: no answer")),
        }
    }
    if nodes.is_empty() {
        unread.push("no primary answered".into());
    }
    if !short.is_empty() {
        short.extend(unread);
        Durability::NotDurable {
            reason: short.join("; "),
        }
    } else if !unread.is_empty() {
        Durability::Unknown {
            reason: unread.join("; "),
        }
    } else {
        Durability::Fsynced
    }
}

/// Why one primary's settings do not make a reply durable, or `None` if
/// they do (`appendonly yes`, `appendfsync always`).
fn shortfall(config: &HashMap<String, String>, replicas: u64) -> Option<String> {
    let get = |k: &str| config.get(k).map_or("", String::as_str);
    let save = get("save");
    let mut why = match (get("appendonly"), get("appendfsync")) {
        ("yes", "always") => return None,
        ("yes", "everysec") => {
            "appendfsync everysec: about the last second of answered orders is lost if the \
             host crashes"
                .to_owned()
        }
        ("yes", other) => format!(
            "appendfsync {other}: the kernel decides when answered orders reach the disk \
             (typically up to 30 s of them are lost if the host crashes)"
        ),
        _ if save.is_empty() => {
            "appendonly no and no RDB snapshots (save \"\"): every answered order is lost when \
             Redis restarts"
                .to_owned()
        }
        _ => format!(
            "appendonly no, RDB snapshots only (save \"{save}\"): answered orders since the \
             last snapshot are lost when Redis restarts"
        ),
    };
    if replicas > 0 {
        why.push_str(&format!(
            ", and a failover to one of its {replicas} replica(s), which get writes \
             asynchronously, loses the last ones"
        ));
    }
    let min = get("min-replicas-to-write");
    if !min.is_empty() && min != "0" {
        why.push_str(&format!(
            " (min-replicas-to-write {min} refuses writes without enough replicas but does \
             not wait for them, so it does not close this)"
        ));
    }
    Some(why)
}

/// Logs the finding: loudly when an answered order can be lost.
fn report(finding: &Durability, nodes: &BTreeMap<String, Node>) {
    match finding {
        Durability::NotDurable { reason } => tracing::warn!(
            "redis is NOT durable, so purchases answered 200 can be lost: {reason}. Under \
             HandOff::Outbox a 200 means the order is in Redis; if Redis loses it, the buyer \
             who was told yes has no order, and if its events were already relayed its units \
             can be sold again. Set `appendonly yes` and `appendfsync always` on every \
             primary (CONFIG SET, then CONFIG REWRITE or redis.conf), or on a replicated \
             setup use RedisOptions::wait_replicas; RedisOptions::require_durable(true) \
             refuses to start instead of this warning"
        ),
        Durability::Unknown { reason } => tracing::warn!(
            "redis durability could not be checked ({reason}): make sure every primary runs \
             `appendonly yes` with `appendfsync always`, or use RedisOptions::wait_replicas; \
             otherwise purchases answered 200 can be lost if Redis crashes or fails over"
        ),
        Durability::Fsynced => {
            tracing::info!("redis {finding}");
            for (name, node) in nodes {
                if let Some(n @ 1..) = node.replicas {
                    tracing::warn!(
                        "redis primary {name} has {n} replica(s), which get writes \
                         asynchronously: a failover to one can lose the last purchases \
                         answered 200; use RedisOptions::wait_replicas where a replica can be \
                         promoted"
                    );
                }
            }
        }
        Durability::Replicated { replicas } => {
            tracing::info!("redis {finding}");
            for (name, node) in nodes {
                if let Some(n) = node.replicas.filter(|&n| n < u64::from(*replicas)) {
                    tracing::warn!(
                        "redis primary {name} has {n} replica(s) connected but wait_replicas \
                         asks for {replicas}: every purchase of its products answers 503 until \
                         enough replicas are connected"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn nodes(configs: &[(&str, HashMap<String, String>)]) -> BTreeMap<String, Node> {
        configs
            .iter()
            .map(|(name, c)| {
                (
                    (*name).to_owned(),
                    Node {
                        config: Some(Ok(c.clone())),
                        replicas: Some(0),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn only_aof_always_is_fsynced() {
        let always = config(&[("appendonly", "yes"), ("appendfsync", "always")]);
        assert_eq!(
            judge(&nodes(&[("a", always.clone())]), None),
            Durability::Fsynced
        );
        for (c, says) in [
            (
                config(&[("appendonly", "yes"), ("appendfsync", "everysec")]),
                "everysec",
            ),
            (
                config(&[("appendonly", "yes"), ("appendfsync", "no")]),
                "kernel",
            ),
            (config(&[("appendonly", "no"), ("save", "")]), "no RDB"),
            (
                config(&[("appendonly", "no"), ("save", "3600 1")]),
                "since the last snapshot",
            ),
        ] {
            let d = judge(&nodes(&[("a", always.clone()), ("b", c)]), None);
            let Durability::NotDurable { reason } = &d else {
                panic!("{d:?}");
            };
            assert!(
                reason.starts_with("b: ") && reason.contains(says),
                "{reason}"
            );
            assert!(!d.is_durable());
        }
    }

    #[test]
    fn an_unreadable_config_is_unknown_and_wait_is_replicated() {
        let mut n = nodes(&[]);
        n.insert(
            "a".into(),
            Node {
                config: Some(Err("ERR unknown command 'CONFIG'".into())),
                replicas: None,
            },
        );
        let d = judge(&n, None);
        assert!(matches!(&d, Durability::Unknown { reason } if reason.contains("CONFIG")));
        let wait = WaitReplicas {
            replicas: 2,
            timeout: Duration::from_millis(10),
        };
        assert_eq!(
            judge(&n, Some(wait)),
            Durability::Replicated { replicas: 2 }
        );
    }
}
