//! `GET /api/calendar/changes`: live change streams across processes.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{
    OCT, TestApp, TestUser, eventually, item, metric, spawn_app, spawn_app_with, spawn_sibling, spawn_sibling_with,
};

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// A reader of an open change stream.
pub struct Sse {
    res: Response,
    buf: String,
}

impl Sse {
    pub fn new(res: Response) -> Self {
        Self { res, buf: String::new() }
    }

    /// The next event (comments skipped) within `within`; `None` when the
    /// server ended the stream.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let mut ev = Event { event: "message".into(), id: None, data: String::new() };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data.push_str(v);
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {within:?}; buffered: {:?}", self.buf));
            match chunk.expect("stream read") {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Asserts nothing but comments arrive for `quiet`.
    pub async fn nothing_for(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(chunk) = tokio::time::timeout_at(deadline, self.res.chunk()).await {
            let bytes = chunk.unwrap().expect("stream still open");
            let text = std::str::from_utf8(&bytes).unwrap();
            assert!(text.lines().all(|l| l.is_empty() || l.starts_with(':') || l.starts_with("retry:")), "{text}");
        }
    }
}

pub async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Response {
    let mut req = app.client.get(app.url("/api/calendar/changes")).bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

/// Opens a stream and reads its first event (`ready`), returning both.
async fn live(app: &TestApp, user: &TestUser) -> (Sse, Event) {
    let res = open(app, &user.token, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut sse = Sse::new(res);
    let first = sse.next(Duration::from_secs(5)).await.expect("first event");
    assert_eq!(first.event, "ready", "{first:?}");
    (sse, first)
}

fn version(ev: &Event) -> u64 {
    let id: u64 = ev.id.as_deref().expect("an id").parse().unwrap();
    let data: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(data["version"], id.to_string(), "{ev:?}");
    id
}

const SECOND: Duration = Duration::from_secs(2);

fn assert_guarded(res: &Response) {
    let h = res.headers();
    assert_eq!(h["cache-control"], "no-store, no-cache, must-revalidate, max-age=0, private");
    assert_eq!(h["pragma"], "no-cache");
    assert_eq!(h["expires"], "0");
    assert_eq!(h["vary"], "Cookie, Authorization");
}

#[tokio::test]
async fn a_stream_needs_a_session_and_carries_the_header_guard() {
    let app = spawn_app().await;
    let res = app.get("/api/calendar/changes", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_guarded(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    let user = app.new_user().await;
    let res = open(&app, &user.token, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_guarded(&res);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut sse = Sse::new(res);
    let ready = sse.next(SECOND).await.unwrap();
    assert_eq!(ready.event, "ready");
    let v = version(&ready);
    // The stream's version is the feed's: a feed read right after uses it.
    let mut redis = app.redis().await;
    let stored: u64 = redis::cmd("GET")
        .arg(app.keys().version(calcache::domain::UserId(user.id)))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stored, v);

    // Cookie sessions work too (what the browser sends).
    let res = app
        .client
        .get(app.url("/api/calendar/changes"))
        .header("cookie", format!("session={}", user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_last_event_id_is_a_400_naming_it_after_the_session_check() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/api/calendar/changes")).header("Last-Event-ID", "abc").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let user = app.new_user().await;
    let res = open(&app, &user.token, Some("abc")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_guarded(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_input");
    assert_eq!(body["error"]["field"], "Last-Event-ID");
    let res = app.get("/api/calendar/changes?last_event_id=-1", Some(&user.token)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["field"], "last_event_id");
}

/// The first case: a delete committed on one process reaches the
/// assignee's stream held by another, and the owner's own stream there.
#[tokio::test]
async fn a_delete_on_one_process_reaches_streams_on_another() {
    let a = spawn_app().await;
    let b = spawn_sibling(&a).await;
    let owner = a.new_user().await;
    let assignee = a.new_user().await;
    let stranger = a.new_user().await;
    let mut body = item("shared", "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z");
    body["assignee_ids"] = json!([assignee.id]);
    let created = a.create_item(&owner, body).await;
    let id = created["id"].as_str().unwrap().to_owned();

    let (mut assignee_stream, ready) = live(&b, &assignee).await;
    let before = version(&ready);
    let (mut owner_stream, _) = live(&b, &owner).await;
    let (mut stranger_stream, _) = live(&b, &stranger).await;
    assert_eq!(b.feed(&assignee, OCT).await.ids(), vec![id.clone()]);

    let res = a.delete(&format!("/api/work-items/{id}"), &owner.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let change = assignee_stream.next(SECOND).await.expect("a change event");
    assert_eq!(change.event, "change");
    assert!(version(&change) > before, "{change:?} after {before}");
    // What the client does next: refetch, through the feed, on any process.
    assert!(b.feed(&assignee, OCT).await.ids().is_empty());
    assert_eq!(owner_stream.next(SECOND).await.unwrap().event, "change");
    stranger_stream.nothing_for(Duration::from_millis(300)).await;

    let sent = metric(&b.metrics_text().await, "calcache_change_events_sent_total{event=\"change\"}");
    assert!(sent >= 2.0, "{sent}");
    assert_eq!(metric(&b.metrics_text().await, "calcache_change_streams_open"), 3.0);
}

/// The second case: a client that missed messages (its stream was
/// down while a change committed) is told to refetch when it reconnects
/// with `Last-Event-ID`, and only then.
#[tokio::test]
async fn a_reconnect_after_missed_changes_is_told_to_refetch() {
    let a = spawn_app().await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    let (sse, ready) = live(&b, &user).await;
    let seen = ready.id.clone().unwrap();
    drop(sse);

    // Up to date: ready, nothing to refetch.
    let res = open(&a, &user.token, Some(&seen)).await;
    let mut again = Sse::new(res);
    let ev = again.next(SECOND).await.unwrap();
    assert_eq!((ev.event.as_str(), ev.id.as_deref()), ("ready", Some(seen.as_str())));
    drop(again);

    // A change while no stream was open.
    a.create_item(&user, item("missed", "2026-10-07T09:00:00Z", "2026-10-07T10:00:00Z")).await;
    let res = open(&b, &user.token, Some(&seen)).await;
    let mut resumed = Sse::new(res);
    let ev = resumed.next(SECOND).await.unwrap();
    assert_eq!(ev.event, "change", "{ev:?}");
    assert!(version(&ev) > seen.parse::<u64>().unwrap());
    let text = b.metrics_text().await;
    assert_eq!(metric(&text, "calcache_change_stream_resumes_total{result=\"refetch\"}"), 1.0);

    // The same through the query parameter (a client that re-created its
    // EventSource after backing off).
    let res = b.get(&format!("/api/calendar/changes?last_event_id={seen}"), Some(&user.token)).await;
    let ev = Sse::new(res).next(SECOND).await.unwrap();
    assert_eq!(ev.event, "change");

    // A Redis restart re-initialises the version from the clock: the
    // stored version is gone, and a client resuming is told to refetch.
    let mut redis = a.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(a.keys().version(calcache::domain::UserId(user.id)))
        .query_async(&mut redis)
        .await
        .unwrap();
    let res = open(&b, &user.token, ev.id.as_deref()).await;
    assert_eq!(Sse::new(res).next(SECOND).await.unwrap().event, "change");
}

/// The third case: logout on one process ends that session's
/// streams on every process, with `end`; the user's other sessions keep
/// theirs. Then the token opens no stream.
#[tokio::test]
async fn logout_closes_that_sessions_streams_everywhere() {
    let a = spawn_app().await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    let other_token = a.token_for(&user.username, &user.password).await;
    let (mut first, _) = live(&b, &user).await;
    let res = open(&b, &other_token, None).await;
    let mut second = Sse::new(res);
    assert_eq!(second.next(SECOND).await.unwrap().event, "ready");

    let res = a.post_json("/api/logout", Some(&user.token), &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let end = first.next(SECOND).await.expect("an end event");
    assert_eq!(end.event, "end");
    assert_eq!(serde_json::from_str::<Value>(&end.data).unwrap()["reason"], "logout");
    assert_eq!(first.next(SECOND).await, None, "the stream is over");
    second.nothing_for(Duration::from_millis(300)).await;

    let res = open(&b, &user.token, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    eventually(SECOND, "the closed stream is counted out", || async {
        metric(&b.metrics_text().await, "calcache_change_streams_open") == 1.0
    })
    .await;
}

/// A stream ends when its session expires, with `end`.
#[tokio::test]
async fn a_stream_ends_when_its_session_expires() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    app.sql(&format!("UPDATE sessions SET expires_at = now() + interval '1 second' WHERE user_id = {}", user.id)).await;
    let (mut sse, _) = live(&app, &user).await;
    let end = sse.next(Duration::from_secs(5)).await.expect("an end event");
    assert_eq!(end.event, "end");
    assert_eq!(serde_json::from_str::<Value>(&end.data).unwrap()["reason"], "session_expired");
    assert_eq!(sse.next(SECOND).await, None);
}

/// Per-user and per-process limits answer the contract's JSON errors, and a
/// closed stream frees its place.
#[tokio::test]
async fn stream_limits_are_enforced_with_clear_errors() {
    let app = spawn_app_with(|s| {
        s.stream.max_per_user = 2.try_into().unwrap();
        s.stream.max_per_process = 3.try_into().unwrap();
        s.stream.heartbeat = std::time::Duration::from_secs(1);
    })
    .await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let carol = app.new_user().await;
    let (first, _) = live(&app, &alice).await;
    let (_second, _) = live(&app, &alice).await;
    let res = open(&app, &alice.token, None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_guarded(&res);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 2 open change streams per user"), "{body}");

    let (_bob, _) = live(&app, &bob).await;
    let res = open(&app, &carol.token, None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("maximum of 3 change streams"), "{body}");
    let text = app.metrics_text().await;
    assert_eq!(metric(&text, "calcache_change_streams_rejected_total{reason=\"user_limit\"}"), 1.0);
    assert_eq!(metric(&text, "calcache_change_streams_rejected_total{reason=\"process_limit\"}"), 1.0);

    // The client goes away; the next heartbeat finds it gone.
    drop(first);
    eventually(Duration::from_secs(5), "a freed place", || async {
        metric(&app.metrics_text().await, "calcache_change_streams_open") == 2.0
    })
    .await;
    let (_carol, _) = live(&app, &carol).await;
}

/// A stopping process ends its streams without `end` (so clients reconnect,
/// to another replica) and refuses new ones with 503, which a balancer
/// retries elsewhere.
#[tokio::test]
async fn a_stopping_process_ends_its_streams_for_clients_to_reconnect_elsewhere() {
    let a = spawn_app().await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    let (mut sse, ready) = live(&b, &user).await;
    b.state.changes.shut_down();
    assert_eq!(sse.next(SECOND).await, None, "ended without an end event");
    let res = open(&b, &user.token, None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The reconnect, elsewhere, with what the stream had sent.
    a.create_item(&user, item("during", "2026-10-08T09:00:00Z", "2026-10-08T10:00:00Z")).await;
    let res = open(&a, &user.token, ready.id.as_deref()).await;
    assert_eq!(Sse::new(res).next(SECOND).await.unwrap().event, "change");
}

/// Changes keep arriving in order on a stream under a run of writes, and
/// the last event names the final version.
#[tokio::test]
async fn a_burst_of_writes_ends_on_the_final_version() {
    let a = spawn_app().await;
    let b = spawn_sibling(&a).await;
    let user = a.new_user().await;
    let (mut sse, ready) = live(&b, &user).await;
    let mut last = version(&ready);
    for i in 0..10 {
        a.create_item(&user, item(&format!("burst {i}"), "2026-10-09T09:00:00Z", "2026-10-09T10:00:00Z")).await;
    }
    let mut redis = a.redis().await;
    let key = a.keys().version(calcache::domain::UserId(user.id));
    let final_version: u64 = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
    while last < final_version {
        let ev = sse.next(SECOND).await.expect("a change");
        assert_eq!(ev.event, "change");
        let v = version(&ev);
        assert!(v > last, "versions only grow: {v} after {last}");
        last = v;
    }
    assert_eq!(last, final_version);
}

fn redis_upstream() -> String {
    crate::helpers::authority(crate::helpers::base_settings().redis.url.expose_secret())
}

fn through(proxy: &crate::proxy::Proxy) -> impl FnOnce(&mut calcache::config::Settings) {
    let port = proxy.port;
    move |s| {
        s.redis.url = crate::helpers::with_authority(s.redis.url.expose_secret(), &format!("127.0.0.1:{port}")).into();
        s.redis.breaker_cooldown = std::time::Duration::from_millis(200);
    }
}

fn direct(s: &mut calcache::config::Settings) {
    s.redis.url = format!("redis://{}", redis_upstream()).into();
}

/// A bump that could not be applied after the commit is published by the
/// outbox drainer that applies it: the open stream still hears of it. (The
/// writer's Redis user may do everything but `INCR`: its write fence goes
/// up, its transaction commits, its bump is refused; see cache/fence.rs.)
#[tokio::test]
async fn a_deferred_bump_reaches_the_stream_when_the_drainer_applies_it() {
    if crate::helpers::cluster_nodes().is_some() {
        return; // a single redis-server of the test's own
    }
    let redis = crate::proxy::RedisServer::start().await;
    let nobump = redis.user_without("nobump", "incr").await;
    let on = |s: &mut calcache::config::Settings, url: String| {
        s.redis.mode = calcache::config::RedisMode::Single;
        s.redis.url = url.into();
        // Both drainers held off: the test applies the row itself.
        s.cache.outbox_interval = std::time::Duration::from_millis(3_600_000);
    };
    let writer = spawn_app_with(|s| on(s, nobump)).await;
    let reader = spawn_sibling_with(&writer, |s| on(s, redis.url())).await;
    let user = reader.new_user().await;
    let created = reader.create_item(&user, item("doomed", "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z")).await;
    let (mut sse, _) = live(&reader, &user).await;

    let res = writer.delete(&format!("/api/work-items/{}", created["id"].as_str().unwrap()), &user.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(writer.outbox_depth().await >= 1, "the bump waits in the outbox");
    // The refused bump's pipeline may still have published (a refetch then
    // reads through the fence, from PostgreSQL): take what came.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sse.next(Duration::from_secs(60))).await {}
    assert!(reader.feed(&user, OCT).await.ids().is_empty());
    eventually(Duration::from_secs(5), "the reader applies the deferred bump", || async {
        calcache::service::invalidation::drain_once(&reader.state, calcache::db::outbox::Due::Any).await.unwrap() > 0
    })
    .await;
    let ev = sse.next(Duration::from_secs(5)).await.expect("the drainer's publish");
    assert_eq!(ev.event, "change");
    assert!(reader.feed(&user, OCT).await.ids().is_empty());
}

/// When a process loses its subscription connection it cannot vouch for
/// its streams any more: it ends them (no `end`), refuses new ones with 503
/// until Redis answers, and a client reconnecting afterwards with its
/// `Last-Event-ID` is told to refetch what it missed meanwhile.
#[tokio::test]
async fn a_lost_subscription_ends_streams_and_the_reconnect_catches_up() {
    if crate::helpers::cluster_nodes().is_some() {
        return; // the proxy stands in front of one Redis
    }
    let proxy = crate::proxy::Proxy::start(redis_upstream()).await;
    let holder = spawn_app_with(through(&proxy)).await;
    let writer = spawn_sibling_with(&holder, direct).await;
    let user = writer.new_user().await;
    let (mut sse, ready) = live(&holder, &user).await;

    proxy.cut().await;
    assert_eq!(sse.next(Duration::from_secs(5)).await, None, "ended without an end event");
    // Missed by the holder: its subscription is down.
    writer.create_item(&user, item("while cut", "2026-10-06T09:00:00Z", "2026-10-06T10:00:00Z")).await;
    let res = open(&holder, &user.token, ready.id.as_deref()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");

    proxy.heal();
    // Polled with a deadline: the holder reconnects with backoff.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let resumed = loop {
        poll.tick().await;
        let res = open(&holder, &user.token, ready.id.as_deref()).await;
        if res.status() == StatusCode::OK {
            break Sse::new(res);
        }
        assert!(tokio::time::Instant::now() < deadline, "the holder never streamed again: {}", res.status());
    };
    let mut resumed = resumed;
    let ev = resumed.next(SECOND).await.unwrap();
    assert_eq!(ev.event, "change", "told to refetch what it missed: {ev:?}");
}
