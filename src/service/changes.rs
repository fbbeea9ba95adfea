//! Live change streams: `GET /api/calendar/changes` as Server-Sent Events.
//!
//! A stream tells its client *that* the user's calendar changed, with the
//! user's feed version as the event id; never what changed. The client
//! refetches the feed, so the feed stays the one source of what is shown and
//! nothing bypasses its authorization or its freshness promise.
//!
//! The events:
//! - `ready` (id = current version): the stream is live and the client's
//!   `Last-Event-ID`, if it sent one, is current — nothing to refetch.
//! - `change` (id = new version): refetch. Sent when a change is published
//!   for the user, when a reconnecting client's `Last-Event-ID` is not the
//!   current version (it missed something), and when the periodic check
//!   finds the version moved (a lost Pub/Sub message).
//! - `end` (`{"reason": "logout" | "session_ended" | "session_expired"}`):
//!   the session is over; the client should not reconnect.
//! - comments (`: keep-alive`) every `stream.heartbeat_secs`.
//!
//! A stream that ends without `end` (replica stopping, Redis subscription
//! lost) is meant to be reconnected: the browser does so by itself, sending
//! `Last-Event-ID`, and lands on any replica.
//!
//! Each process keeps one [`Hub`]: the open streams per user and one Pub/Sub
//! subscription per user with streams here (`cache::changes::ChangeBus`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use super::auth::{self, Claim};
use super::{AppState, ServiceError};
use crate::cache::CacheError;
use crate::cache::changes::{BusEvent, ChangeBus, token_hash_hex};
use crate::config::StreamSettings;
use crate::db::{self, sessions};
use crate::domain::UserId;
use crate::error::Chain;

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("at most {limit} open change streams per user")]
    UserLimit { limit: usize },
    #[error("this server holds its maximum of {limit} change streams")]
    ProcessLimit { limit: usize },
    #[error("this server is shutting down")]
    ShuttingDown,
    #[error("live changes are unavailable (Redis)")]
    Unavailable(#[source] CacheError),
}

#[derive(Debug, Clone)]
enum Note {
    Changed,
    Revoked(String),
    /// End the stream without `end`: the client reconnects (elsewhere).
    Close,
}

#[derive(Debug)]
struct UserStreams {
    count: usize,
    tx: broadcast::Sender<Note>,
}

#[derive(Debug, Default)]
struct Streams {
    total: usize,
    users: HashMap<UserId, UserStreams>,
}

/// The open streams of this process.
#[derive(Debug)]
pub struct Hub {
    settings: StreamSettings,
    bus: OnceLock<ChangeBus>,
    streams: Mutex<Streams>,
    closing: AtomicBool,
    metrics: StreamMetrics,
}

impl Hub {
    pub fn new(settings: StreamSettings, metrics: StreamMetrics) -> Self {
        Self {
            settings,
            bus: OnceLock::new(),
            streams: Mutex::new(Streams::default()),
            closing: AtomicBool::new(false),
            metrics,
        }
    }

    /// Connects the hub to Redis (the subscriber task) and starts relaying
    /// its events to the streams. Without it every stream answers 503.
    pub fn start(state: &Arc<AppState>, redis: &crate::config::RedisSettings) -> Result<(), CacheError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let bus = ChangeBus::start(redis, tx)?;
        let _ = state.changes.bus.set(bus);
        tokio::spawn(relay(state.clone(), rx));
        Ok(())
    }

    /// Open streams in this process.
    pub fn open_streams(&self) -> usize {
        self.streams.lock().map_or(0, |s| s.total)
    }

    /// Ends every stream (without `end`, so clients reconnect to another
    /// replica) and refuses new ones: the first step of a graceful stop, so
    /// that actix's drain is not held up by streams that never finish.
    pub fn shut_down(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close_all();
    }

    fn close_all(&self) {
        if let Ok(streams) = self.streams.lock() {
            for s in streams.users.values() {
                let _ = s.tx.send(Note::Close);
            }
        }
    }

    fn notify(&self, user: UserId, note: Note) {
        if let Ok(streams) = self.streams.lock()
            && let Some(s) = streams.users.get(&user)
        {
            let _ = s.tx.send(note);
        }
    }

    /// Counts the stream in (or refuses it over a limit) and asks for the
    /// user's subscription. The subscribe command is queued under the lock,
    /// so it is ordered after any unsubscribe of an earlier last stream.
    fn register(&self, user: UserId) -> Result<(broadcast::Receiver<Note>, &ChangeBus), OpenError> {
        let bus = self.bus.get().ok_or(OpenError::Unavailable(CacheError::CircuitOpen))?;
        let mut streams = self.streams.lock().map_err(|_| OpenError::ShuttingDown)?;
        // Checked under the lock `shut_down` takes: no stream slips in after it.
        if self.closing.load(Ordering::SeqCst) {
            return Err(OpenError::ShuttingDown);
        }
        if streams.total >= self.settings.max_per_process.get() {
            self.metrics.rejected("process_limit");
            return Err(OpenError::ProcessLimit { limit: self.settings.max_per_process.get() });
        }
        let limit = self.settings.max_per_user.get();
        let entry = streams.users.entry(user).or_insert_with(|| UserStreams { count: 0, tx: broadcast::channel(16).0 });
        if entry.count >= limit {
            self.metrics.rejected("user_limit");
            return Err(OpenError::UserLimit { limit });
        }
        entry.count += 1;
        let rx = entry.tx.subscribe();
        streams.total += 1;
        self.metrics.open.set(i64::try_from(streams.total).unwrap_or(i64::MAX));
        Ok((rx, bus))
    }

    fn unregister(&self, user: UserId) {
        let Ok(mut streams) = self.streams.lock() else { return };
        streams.total = streams.total.saturating_sub(1);
        let last = match streams.users.get_mut(&user) {
            Some(s) => {
                s.count = s.count.saturating_sub(1);
                s.count == 0
            }
            None => false,
        };
        if last {
            streams.users.remove(&user);
            if let Some(bus) = self.bus.get() {
                bus.unsubscribe(user);
            }
        }
        self.metrics.open.set(i64::try_from(streams.total).unwrap_or(i64::MAX));
    }
}

/// Relays the subscriber's events to this process's streams.
async fn relay(state: Arc<AppState>, mut events: mpsc::UnboundedReceiver<BusEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            BusEvent::Changed(user) => state.changes.notify(user, Note::Changed),
            BusEvent::SessionRevoked { user, token_hash_hex } => {
                state.changes.notify(user, Note::Revoked(token_hash_hex));
            }
            BusEvent::Lost => state.changes.close_all(),
        }
    }
}

/// A stream's place in the hub; leaving it (the client went away, the
/// stream ended) counts the stream out.
struct Registration {
    state: Arc<AppState>,
    user: UserId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.state.changes.unregister(self.user);
    }
}

/// An open stream: poll it for the bytes to send.
pub struct ChangeStream {
    state: Arc<AppState>,
    _registration: Registration,
    notes: broadcast::Receiver<Note>,
    claim: Claim,
    token_hex: String,
    last: u64,
    expires: Instant,
    heartbeat: tokio::time::Interval,
    check: tokio::time::Interval,
    queued: VecDeque<Bytes>,
    done: bool,
}

/// Opens a stream for the caller, after the session checks out (in
/// PostgreSQL: the stream needs the session's expiry) and the user's
/// subscription is in place. `last_event_id` is the version the client saw
/// last, if it says.
#[tracing::instrument(name = "changes.open", skip_all, fields(user_id = %claim.user_id))]
pub async fn open(state: Arc<AppState>, claim: Claim, last_event_id: Option<u64>) -> Result<ChangeStream, OpenError> {
    let hub = &state.changes;
    if hub.closing.load(Ordering::SeqCst) {
        hub.metrics.rejected("shutting_down");
        return Err(OpenError::ShuttingDown);
    }
    let hash = claim.token_hash;
    let live = db::run(&state.pool, move |c| sessions::find_live(c, &hash)).await.map_err(ServiceError::from)?;
    let expires_at = match live {
        Some((user, expires_at)) if user == claim.user_id => expires_at,
        _ => return Err(ServiceError::Unauthenticated.into()),
    };
    let user = claim.user_id;
    let (notes, bus) = hub.register(user)?;
    let registration = Registration { state: state.clone(), user };
    if let Err(e) = bus.subscribe(user).await {
        hub.metrics.rejected("unavailable");
        return Err(OpenError::Unavailable(e));
    }
    // Read after the subscription is confirmed: a change committed before
    // this read is in the version, one after it arrives as a message.
    let current = match state.cache.calendar_version(user).await {
        Ok(v) => v,
        Err(e) => {
            hub.metrics.rejected("unavailable");
            return Err(OpenError::Unavailable(e));
        }
    };
    let settings = &hub.settings;
    let mut first = format!("retry: {}\n\n", settings.retry.as_millis());
    match last_event_id {
        Some(seen) if seen == current => {
            hub.metrics.resumed("current");
            first.push_str(&event("ready", Some(current)));
            hub.metrics.sent("ready");
        }
        Some(_) => {
            hub.metrics.resumed("refetch");
            first.push_str(&event("change", Some(current)));
            hub.metrics.sent("change");
        }
        None => {
            first.push_str(&event("ready", Some(current)));
            hub.metrics.sent("ready");
        }
    }
    let left = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    let interval = |period: Duration| {
        let mut i = tokio::time::interval_at(Instant::now() + period, period);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    };
    let heartbeat = interval(settings.heartbeat);
    let check = interval(settings.check);
    tracing::debug!(version = current, "change stream opened");
    Ok(ChangeStream {
        token_hex: token_hash_hex(&claim.token_hash),
        state: state.clone(),
        _registration: registration,
        notes,
        claim,
        last: current,
        expires: Instant::now() + left,
        heartbeat,
        check,
        queued: VecDeque::from([Bytes::from(first)]),
        done: false,
    })
}

/// One SSE event. The data repeats the version as a string: versions are
/// nanosecond-based and exceed JavaScript's exact integers.
fn event(name: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("event: {name}\nid: {v}\ndata: {{\"version\":\"{v}\"}}\n\n"),
        None => format!("event: {name}\ndata: {{}}\n\n"),
    }
}

fn end(reason: &str) -> String {
    format!("event: end\ndata: {{\"reason\":\"{reason}\"}}\n\n")
}

impl ChangeStream {
    /// The next chunk to send, or `None` when the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.queued.pop_front() {
            return Some(chunk);
        }
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                note = self.notes.recv() => match note {
                    Ok(Note::Changed) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(chunk) = self.changed(true).await {
                            return Some(chunk);
                        }
                    }
                    Ok(Note::Revoked(hash)) => {
                        if hash == self.token_hex {
                            return Some(self.finish("logout"));
                        }
                    }
                    Ok(Note::Close) | Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                _ = self.check.tick() => {
                    match auth::confirm_uncached(&self.state, self.claim.clone()).await {
                        Err(ServiceError::Unauthenticated) => return Some(self.finish("session_ended")),
                        Err(e) => tracing::debug!(error = %Chain(&e), "change stream: session not re-checked"),
                        Ok(_) => {}
                    }
                    if let Some(chunk) = self.changed(false).await {
                        return Some(chunk);
                    }
                }
                () = tokio::time::sleep_until(self.expires) => return Some(self.finish("session_expired")),
            }
        }
    }

    /// A `change` event if the version moved. `told`: a change was
    /// published, so refetch even if the version cannot be read.
    async fn changed(&mut self, told: bool) -> Option<Bytes> {
        let metrics = &self.state.changes.metrics;
        match self.state.cache.calendar_version(self.claim.user_id).await {
            Ok(v) if v != self.last => {
                self.last = v;
                metrics.sent("change");
                Some(Bytes::from(event("change", Some(v))))
            }
            Ok(_) => None,
            // No id: the client keeps the one it has, and compares again
            // when it reconnects.
            Err(_) if told => {
                metrics.sent("change");
                Some(Bytes::from(event("change", None)))
            }
            Err(_) => None,
        }
    }

    fn finish(&mut self, reason: &str) -> Bytes {
        self.done = true;
        self.state.changes.metrics.sent("end");
        Bytes::from(end(reason))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The streams' metrics, registered into the process's registry.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    pub open: Gauge,
    pub events: Family<EventLabels, Counter>,
    pub resumes: Family<ResultLabels, Counter>,
    pub rejected: Family<ReasonLabels, Counter>,
}

impl StreamMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "change_streams_open",
            "Open live change streams (GET /api/calendar/changes)",
            m.open.clone(),
        );
        registry.register(
            "change_events_sent",
            "Events sent on change streams (ready, change, end), heartbeats not counted",
            m.events.clone(),
        );
        registry.register(
            "change_stream_resumes",
            "Streams reopened with Last-Event-ID, by result: refetch (the client had missed a change) or current",
            m.resumes.clone(),
        );
        registry.register(
            "change_streams_rejected",
            "Streams refused: user_limit (429), process_limit, unavailable, shutting_down (503)",
            m.rejected.clone(),
        );
        // Exported at zero from start-up, so rates and alerts work before
        // the first event.
        for event in ["ready", "change", "end"] {
            let _ = m.events.get_or_create(&EventLabels { event });
        }
        for result in ["refetch", "current"] {
            let _ = m.resumes.get_or_create(&ResultLabels { result });
        }
        for reason in ["user_limit", "process_limit", "unavailable", "shutting_down"] {
            let _ = m.rejected.get_or_create(&ReasonLabels { reason });
        }
        m
    }

    fn sent(&self, event: &'static str) {
        self.events.get_or_create(&EventLabels { event }).inc();
    }

    fn resumed(&self, result: &'static str) {
        self.resumes.get_or_create(&ResultLabels { result }).inc();
    }

    fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }
}
