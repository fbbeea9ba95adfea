//! Change notifications through Redis Pub/Sub (the Redis side of
//! `GET /api/calendar/changes`).
//!
//! Every invalidation publishes one short message on its user's channel,
//! `<prefix>:changes:{u<id>}`, in the same pipeline as the version bump (so
//! after the commit, and again by the outbox drainer when the bump was
//! deferred). The message says only *that* something changed: `v` for a feed
//! version bump, `s:<hex token hash>` for a revoked session. A stream reads
//! the version itself, so a message can never carry a stale version.
//!
//! Why Pub/Sub and not keyspace notifications: those need
//! `notify-keyspace-events` set on the server (an operator step that a
//! managed Redis may not allow), fire for every key touched (feed fills
//! included) and cannot say "this session was revoked". Why per-user
//! channels: a process subscribes only to the users whose streams it holds,
//! so a message reaches only processes that care, and in cluster mode the
//! channel carries the user's hash tag: `SPUBLISH`/`SSUBSCRIBE` (sharded
//! Pub/Sub) keep it on the node owning the user's slot, the publish rides in
//! the user's single-slot pipeline, and no message is broadcast over the
//! cluster bus.
//!
//! Pub/Sub is fire-and-forget: a message sent while the subscriber's
//! connection is down is lost. The streams therefore never rely on it alone:
//! a (re)connecting client sends the version it last saw (`Last-Event-ID`)
//! and is told to refetch if the current one differs, a subscriber that
//! loses its connection ends every stream it carries (their clients
//! reconnect and compare), and each stream re-reads the version every
//! `stream.check_secs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::{Pipeline, ProtocolVersion, PushInfo, PushKind, Value};
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, oneshot};

use super::{Cache, CacheError, Invalidation, Keys, version};
use crate::config::{RedisMode, RedisSettings};
use crate::domain::UserId;

const VERSION_MOVED: &str = "v";
const SESSION_REVOKED: &str = "s:";

/// Adds the notification of `item` to its user's invalidation pipeline.
/// Called by [`Cache::invalidate`] for every item, after the bump itself.
pub(super) fn push_publish(pipe: &mut Pipeline, keys: &Keys, item: &Invalidation, sharded: bool) {
    let command = if sharded { "SPUBLISH" } else { "PUBLISH" };
    let message = match item {
        Invalidation::FeedVersion { .. } => VERSION_MOVED.to_owned(),
        Invalidation::Session { token_hash, .. } => format!("{SESSION_REVOKED}{}", crate::domain::hex(token_hash)),
    };
    pipe.cmd(command).arg(keys.changes(item.user())).arg(message).ignore();
}

impl Cache {
    /// Whether the invalidation pipelines publish with `SPUBLISH`.
    pub(super) fn sharded_pubsub(&self) -> bool {
        self.client.is_cluster()
    }

    /// The user's feed version, initialised from the clock when missing
    /// (as a feed read would), so a stream and the feed agree on it.
    pub async fn calendar_version(&self, user: UserId) -> Result<u64, CacheError> {
        let key = self.keys.version(user);
        self.run(async |c| {
            let current: Option<u64> = redis::cmd("GET").arg(&key).query_async(&mut *c).await?;
            match current {
                Some(v) => Ok(v),
                None => version::init(c, &key).await,
            }
        })
        .await
    }
}

/// What the subscriber reports to the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// The user's calendar changed (a version bump was published).
    Changed(UserId),
    /// One of the user's sessions was revoked (logout).
    SessionRevoked { user: UserId, token_hash_hex: String },
    /// The subscription connection was lost: messages may have been missed.
    Lost,
}

enum Command {
    Subscribe(UserId, oneshot::Sender<Result<(), CacheError>>),
    Unsubscribe(UserId),
}

/// The process's one Pub/Sub connection, driven by one task. Subscriptions
/// are per user and reference-counted by the caller ([`ChangeBus::subscribe`]
/// when a user's first stream opens, [`ChangeBus::unsubscribe`] when the
/// last one closes).
#[derive(Debug, Clone)]
pub struct ChangeBus {
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subscribe(u, _) => write!(f, "Subscribe({u})"),
            Self::Unsubscribe(u) => write!(f, "Unsubscribe({u})"),
        }
    }
}

impl ChangeBus {
    /// Starts the subscriber task (on the current runtime). Events go to
    /// `events`. It connects lazily, on the first subscription, and
    /// reconnects with backoff while it has subscriptions.
    pub fn start(redis: &RedisSettings, events: mpsc::UnboundedSender<BusEvent>) -> Result<Self, CacheError> {
        let (commands, rx) = mpsc::unbounded_channel();
        let up = Arc::new(AtomicBool::new(false));
        let target = Target::new(redis)?;
        let keys = Keys::new(redis.key_prefix.as_str());
        tokio::spawn(run(target, keys, rx, events, up, redis.timeout));
        // A subscription is a round trip on the one subscriber connection,
        // which may be busy delivering messages: allow it more than a
        // command's timeout when that is short.
        Ok(Self { commands, timeout: redis.timeout.max(Duration::from_millis(500)) })
    }

    /// Subscribes to the user's channel; returns once Redis confirmed it, so
    /// every change published afterwards is delivered.
    pub async fn subscribe(&self, user: UserId) -> Result<(), CacheError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Subscribe(user, tx)).map_err(|_| CacheError::Timeout)?;
        match tokio::time::timeout(self.timeout * 2, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(CacheError::Timeout),
        }
    }

    pub fn unsubscribe(&self, user: UserId) {
        let _ = self.commands.send(Command::Unsubscribe(user));
    }
}

/// Where the Pub/Sub connection goes: RESP3 (pushes) on one Redis, or a
/// RESP3 cluster connection, which routes `SSUBSCRIBE` to the slot's node
/// and re-subscribes after failovers.
enum Target {
    Single(redis::Client),
    Cluster(Vec<String>),
}

impl Target {
    fn new(redis: &RedisSettings) -> Result<Self, CacheError> {
        Ok(match redis.mode {
            RedisMode::Single => {
                let info = redis::IntoConnectionInfo::into_connection_info(redis.url.expose_secret())?;
                let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                Self::Single(redis::Client::open(info.set_redis_settings(settings))?)
            }
            RedisMode::Cluster => {
                Self::Cluster(redis.cluster_nodes.iter().map(|n| n.expose_secret().to_owned()).collect())
            }
        })
    }

    async fn connect(&self, pushes: mpsc::UnboundedSender<PushInfo>, timeout: Duration) -> Result<Link, CacheError> {
        match self {
            Self::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_push_sender(pushes);
                Ok(Link::Single(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Self::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .push_sender(pushes)
                    .build()?;
                Ok(Link::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

enum Link {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Link {
    async fn subscribe(&mut self, channel: &str) -> Result<(), CacheError> {
        match self {
            Self::Single(c) => c.subscribe(channel).await?,
            Self::Cluster(c) => c.ssubscribe(channel).await?,
        }
        Ok(())
    }

    /// Names the connection in `CLIENT LIST` (single Redis only; a cluster
    /// connection has one per node). Best effort.
    async fn name(&mut self, name: &str) {
        if let Self::Single(c) = self
            && let Err(e) = redis::cmd("CLIENT").arg("SETNAME").arg(name).query_async::<()>(c).await
        {
            tracing::debug!(error = %crate::error::Chain(&e), "change notifications: CLIENT SETNAME failed");
        }
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), CacheError> {
        match self {
            Self::Single(c) => c.unsubscribe(channel).await?,
            Self::Cluster(c) => c.sunsubscribe(channel).await?,
        }
        Ok(())
    }
}

async fn run(
    target: Target,
    keys: Keys,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<BusEvent>,
    up: Arc<AtomicBool>,
    timeout: Duration,
) {
    let mut users: HashSet<UserId> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    'connect: loop {
        // Nothing to listen for: wait for the first subscription.
        if users.is_empty() {
            match commands.recv().await {
                None => return,
                Some(Command::Subscribe(user, ack)) => {
                    users.insert(user);
                    // Acked below, once the subscription is in place.
                    if connect_and_serve(&target, &keys, &mut users, Some(ack), &mut commands, &events, &up, timeout)
                        .await
                    {
                        return;
                    }
                }
                Some(Command::Unsubscribe(_)) => continue 'connect,
            }
        } else if connect_and_serve(&target, &keys, &mut users, None, &mut commands, &events, &up, timeout).await {
            return;
        }
        if up.swap(false, Ordering::Relaxed) {
            // It was up: retry soon. Repeated failures back off.
            backoff = Duration::from_millis(100);
        }
        let _ = events.send(BusEvent::Lost);
        // Streams end on `Lost`, and their users unsubscribe; what is left
        // here is re-subscribed on the next connection.
        let jitter = Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
        tokio::select! {
            () = tokio::time::sleep(backoff + jitter) => {}
            command = commands.recv() => match command {
                None => return,
                Some(Command::Subscribe(user, ack)) => {
                    // Not connected: refuse now rather than keep a stream
                    // waiting for a connection that may not come.
                    let _ = ack.send(Err(CacheError::Timeout));
                    users.remove(&user);
                }
                Some(Command::Unsubscribe(user)) => {
                    users.remove(&user);
                }
            },
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Connects, subscribes `users`, then relays pushes and commands until the
/// connection breaks (returns false) or the command channel closes (true).
#[expect(clippy::too_many_arguments, reason = "the subscriber task's whole state, passed once")]
async fn connect_and_serve(
    target: &Target,
    keys: &Keys,
    users: &mut HashSet<UserId>,
    mut first_ack: Option<oneshot::Sender<Result<(), CacheError>>>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    events: &mpsc::UnboundedSender<BusEvent>,
    up: &AtomicBool,
    timeout: Duration,
) -> bool {
    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    let connected = async {
        let mut link = target.connect(push_tx, timeout).await?;
        link.name(&subscriber_name(keys)).await;
        for user in users.iter() {
            link.subscribe(&keys.changes(*user)).await?;
        }
        Ok::<Link, CacheError>(link)
    };
    let mut link = match tokio::time::timeout(timeout * 4, connected).await {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::Chain(&e), "change notifications: cannot subscribe");
            if let Some(ack) = first_ack.take() {
                let _ = ack.send(Err(e));
            }
            users.clear();
            return false;
        }
        Err(_) => {
            tracing::warn!("change notifications: redis did not answer in time");
            if let Some(ack) = first_ack.take() {
                let _ = ack.send(Err(CacheError::Timeout));
            }
            users.clear();
            return false;
        }
    };
    up.store(true, Ordering::Relaxed);
    if let Some(ack) = first_ack.take() {
        let _ = ack.send(Ok(()));
    }
    tracing::info!(users = users.len(), "change notifications: subscribed");
    let mut by_channel: HashMap<String, UserId> = users.iter().map(|u| (keys.changes(*u), *u)).collect();
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return false };
                match push.kind {
                    PushKind::Disconnection => {
                        tracing::warn!("change notifications: subscription connection lost");
                        users.clear();
                        return false;
                    }
                    PushKind::Message | PushKind::SMessage => {
                        if let Some(event) = parse(&push.data, &by_channel) {
                            let _ = events.send(event);
                        }
                    }
                    _ => {}
                }
            }
            command = commands.recv() => match command {
                None => return true,
                Some(Command::Subscribe(user, ack)) => {
                    let channel = keys.changes(user);
                    let result = match tokio::time::timeout(timeout, link.subscribe(&channel)).await {
                        Ok(r) => r,
                        Err(_) => Err(CacheError::Timeout),
                    };
                    let failed = result.is_err();
                    if !failed {
                        users.insert(user);
                        by_channel.insert(channel, user);
                    }
                    let _ = ack.send(result);
                    if failed {
                        users.clear();
                        return false;
                    }
                }
                Some(Command::Unsubscribe(user)) => {
                    let channel = keys.changes(user);
                    users.remove(&user);
                    by_channel.remove(&channel);
                    if let Ok(Err(e)) = tokio::time::timeout(timeout, link.unsubscribe(&channel)).await {
                        tracing::debug!(error = %crate::error::Chain(&e), "change notifications: unsubscribe failed");
                    }
                }
            },
        }
    }
}

/// The subscriber connection's name in `CLIENT LIST`:
/// `calcache-changes:<prefix>` (spaces, which names may not hold, as `_`).
pub fn subscriber_name(keys: &Keys) -> String {
    format!("calcache-changes:{}", keys.prefix().replace(' ', "_"))
}

/// `[channel, payload]` of a (sharded) message push.
fn parse(data: &[Value], by_channel: &HashMap<String, UserId>) -> Option<BusEvent> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let channel = text(data.first()?)?;
    let payload = text(data.get(1)?)?;
    let user = *by_channel.get(&channel)?;
    if payload == VERSION_MOVED {
        Some(BusEvent::Changed(user))
    } else {
        payload
            .strip_prefix(SESSION_REVOKED)
            .map(|hash| BusEvent::SessionRevoked { user, token_hash_hex: hash.to_owned() })
    }
}

/// Lower-case hex of a token hash, as the revocation message spells it.
pub fn token_hash_hex(hash: &[u8]) -> String {
    crate::domain::hex(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_user_by_channel() {
        let keys = Keys::new("p");
        let by_channel: HashMap<String, UserId> = [(keys.changes(UserId(7)), UserId(7))].into();
        let msg = |c: &str, p: &str| vec![Value::BulkString(c.into()), Value::BulkString(p.into())];
        assert_eq!(parse(&msg("p:changes:{u7}", "v"), &by_channel), Some(BusEvent::Changed(UserId(7))));
        assert_eq!(
            parse(&msg("p:changes:{u7}", "s:ab01"), &by_channel),
            Some(BusEvent::SessionRevoked { user: UserId(7), token_hash_hex: "ab01".into() })
        );
        assert_eq!(parse(&msg("p:changes:{u8}", "v"), &by_channel), None);
        assert_eq!(parse(&msg("p:changes:{u7}", "?"), &by_channel), None);
    }

    #[test]
    fn publishes_ride_in_the_users_pipeline() {
        let keys = Keys::new("p");
        let mut pipe = redis::pipe();
        push_publish(
            &mut pipe,
            &keys,
            &Invalidation::FeedVersion { user: UserId(3), fence: None, extents: None },
            true,
        );
        push_publish(&mut pipe, &keys, &Invalidation::Session { user: UserId(3), token_hash: vec![0xab, 0x01] }, false);
        let packed = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
        assert!(
            packed.contains("SPUBLISH") && packed.contains("p:changes:{u3}") && packed.contains("s:ab01"),
            "{packed}"
        );
    }
}
