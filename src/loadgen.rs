//! A calendar workload against running calcache instances, shared by the
//! soak test (`tests/api/soak.rs`) and the hit-rate benchmark
//! (`benches/hit_rates.rs`). Behind the `loadgen` feature, which only the
//! crate's own dev-dependency on itself turns on: never part of the server.
//!
//! It fails loudly (`unwrap`) on anything but the answers it measures.
//!
//! Users are picked with Zipf-distributed activity; a read is a FullCalendar
//! month grid (6 weeks) or week view around the month the user is looking
//! at, navigating back and forth, sometimes filtered; a write creates,
//! renames/reschedules or deletes one of the user's items, often assigned to
//! other users. Every feed answer is compared with PostgreSQL's truth at that
//! moment: reads and writes of the same user are serialized by locks held in
//! the generator, so "the truth at that moment" is well defined, and any
//! difference is a stale read.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a load generator fails loudly")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::db::work_items::{self as items, FeedFilter};
use crate::domain::WorkType;
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use diesel::{Connection, PgConnection};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
pub struct Workload {
    pub users: usize,
    pub clients: usize,
    pub duration: Duration,
    /// Share of requests that read the feed (the rest write).
    pub read_ratio: f64,
    /// Zipf exponent of user activity.
    pub zipf_s: f64,
    pub items_per_user: usize,
    pub seed: u64,
    /// Writes land in the month the writing user is looking at (the worst
    /// case for invalidating per week or per month bucket) instead of
    /// anywhere in the ±90 days around today.
    pub writes_in_viewed_month: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            users: 50,
            clients: 16,
            duration: Duration::from_secs(20),
            read_ratio: 0.9,
            zipf_s: 1.1,
            items_per_user: 20,
            seed: 20261006,
            writes_in_viewed_month: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub token: String,
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub requests: u64,
    pub feeds: u64,
    pub writes: u64,
    pub server_errors: u64,
    pub other_errors: u64,
    pub stale: u64,
    pub hits: u64,
    /// Reads an ideal fresh cache would have answered: the same view (user,
    /// range, filter) was read before and its content (the rows PostgreSQL
    /// returns for it) has not changed since that last read.
    pub ideal_hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub elapsed: Duration,
    pub feed_latencies_us: Vec<u64>,
    pub hit_latencies_us: Vec<u64>,
    pub miss_latencies_us: Vec<u64>,
    pub write_latencies_us: Vec<u64>,
    pub first_stale: Option<String>,
    /// Writes answered 2xx whose effect PostgreSQL does not show.
    pub lost: u64,
    pub first_lost: Option<String>,
    /// Every answer that was not a success, when it came and what it said.
    pub errors: Vec<ErrorEvent>,
}

/// A failed request: when it ended, its status (`None`: no HTTP answer) and
/// the error body's `code`.
#[derive(Debug, Clone)]
pub struct ErrorEvent {
    pub at: Instant,
    pub status: Option<u16>,
    pub code: String,
    pub what: &'static str,
}

pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

impl Report {
    pub fn finish(&mut self) {
        for v in [
            &mut self.feed_latencies_us,
            &mut self.hit_latencies_us,
            &mut self.miss_latencies_us,
            &mut self.write_latencies_us,
        ] {
            v.sort_unstable();
        }
    }

    pub fn hit_rate(&self) -> f64 {
        if self.feeds == 0 { 0.0 } else { self.hits as f64 / self.feeds as f64 }
    }

    /// The hit rate of an ideal fresh cache on the same reads: the upper
    /// bound for any strategy that never serves stale answers.
    pub fn ideal_hit_rate(&self) -> f64 {
        if self.feeds == 0 { 0.0 } else { self.ideal_hits as f64 / self.feeds as f64 }
    }

    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} requests ({} feeds, {} writes) in {:.1}s = {:.0} req/s; 5xx {}; other errors {}; stale {}; lost {}; hit rate {:.1}% (ideal {:.1}%); feed p50 {} µs p95 {} µs p99 {} µs",
            self.requests,
            self.feeds,
            self.writes,
            self.elapsed.as_secs_f64(),
            self.rps(),
            self.server_errors,
            self.other_errors,
            self.stale,
            self.lost,
            100.0 * self.hit_rate(),
            100.0 * self.ideal_hit_rate(),
            percentile(&self.feed_latencies_us, 0.50),
            percentile(&self.feed_latencies_us, 0.95),
            percentile(&self.feed_latencies_us, 0.99),
        )
    }
}

/// Zipf sampler over 0..n (rank 0 most active).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        Self {
            cdf: weights
                .iter()
                .map(|w| {
                    acc += w / total;
                    acc
                })
                .collect(),
        }
    }

    pub fn sample(&self, rng: &mut StdRng) -> usize {
        let x: f64 = rng.random();
        self.cdf.partition_point(|c| *c < x).min(self.cdf.len() - 1)
    }
}

pub struct Target {
    pub bases: Vec<String>,
    pub db_url: String,
    pub client: reqwest::Client,
}

impl Target {
    pub fn new(bases: Vec<String>, db_url: String) -> Self {
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        Self { bases, db_url, client }
    }

    fn base(&self, rng: &mut StdRng) -> &str {
        &self.bases[rng.random_range(0..self.bases.len())]
    }
}

pub fn month_start(today: NaiveDate, offset: i32) -> NaiveDate {
    let months = today.year() * 12 + today.month0() as i32 + offset;
    NaiveDate::from_ymd_opt(months.div_euclid(12), months.rem_euclid(12) as u32 + 1, 1).unwrap()
}

fn utc(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
}

/// FullCalendar's month grid: 6 weeks from the Sunday on or before the 1st.
pub fn month_grid(first: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let back = first.weekday().num_days_from_sunday() as u64;
    let start = first.checked_sub_days(Days::new(back)).unwrap();
    (utc(start), utc(start.checked_add_days(Days::new(42)).unwrap()))
}

/// Signs up and logs in `n` users, and gives each `items` work items spread
/// over the months around today, a third of them assigned to other users.
pub async fn seed(target: &Target, w: &Workload, prefix: &str) -> Vec<User> {
    let mut users = Vec::with_capacity(w.users);
    let base = &target.bases[0];
    for i in 0..w.users {
        let name = format!("{prefix}{i}");
        let body = json!({"username": name, "password": "load-test-password"});
        let res = target.client.post(format!("{base}/api/signup")).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "signup {name}: {}", res.status());
        let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let res = target.client.post(format!("{base}/api/login")).json(&body).send().await.unwrap();
        let token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
        users.push(User { id, name, token });
    }
    let mut rng = StdRng::seed_from_u64(w.seed);
    let today = Utc::now().date_naive();
    for u in 0..users.len() {
        for _ in 0..w.items_per_user {
            let body = random_item(&mut rng, &users, u, today, None);
            let res = target
                .client
                .post(format!("{base}/api/work-items"))
                .bearer_auth(&users[u].token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "seed item: {}", res.status());
        }
    }
    users
}

/// A random item starting in the ±90 days around `today`, or in the month
/// starting `month` when given.
fn random_item(rng: &mut StdRng, users: &[User], owner: usize, today: NaiveDate, month: Option<NaiveDate>) -> Value {
    let day = match month {
        Some(first) => {
            let days = (month_start(first, 1) - first).num_days() as u64;
            first.checked_add_days(Days::new(rng.random_range(0..days))).unwrap()
        }
        None => today
            .checked_sub_days(Days::new(90))
            .unwrap()
            .checked_add_days(Days::new(rng.random_range(0..180)))
            .unwrap(),
    };
    let start = utc(day) + chrono::Duration::hours(rng.random_range(7..18));
    let end = start + chrono::Duration::minutes(30 * rng.random_range(1..8));
    let work_type = ["project", "activity", "task"][rng.random_range(0..3)];
    let status = ["not_started", "in_progress", "completed", "cancelled"][rng.random_range(0..4)];
    let assignees: Vec<i64> = if rng.random_bool(0.33) && users.len() > 1 {
        let other = (owner + rng.random_range(1..users.len())) % users.len();
        vec![users[other].id]
    } else {
        vec![]
    };
    json!({"title": format!("load {}", rng.random_range(0..1_000_000)), "work_type": work_type, "status": status,
           "start": start.to_rfc3339(), "end": end.to_rfc3339(), "assignee_ids": assignees})
}

type ViewKey = (usize, i64, i64, Option<WorkType>);

struct Shared {
    users: Vec<User>,
    locks: Vec<Mutex<()>>,
    writers: Mutex<()>,
    /// The month each user is looking at (offset from today's month).
    views: std::sync::Mutex<HashMap<usize, i32>>,
    /// Per view (user, start, end, filter): the content hash at its last read.
    seen: std::sync::Mutex<HashMap<ViewKey, u64>>,
    writes_in_viewed_month: bool,
    truth: std::sync::Mutex<Vec<PgConnection>>,
    db_url: String,
}

impl Shared {
    fn conn(&self) -> PgConnection {
        self.truth.lock().unwrap().pop().unwrap_or_else(|| PgConnection::establish(&self.db_url).unwrap())
    }

    fn give_back(&self, c: PgConnection) {
        self.truth.lock().unwrap().push(c);
    }
}

/// The ids PostgreSQL says the feed must hold, in order, and a hash of
/// those rows' content (everything the feed shows of them).
async fn truth(
    shared: &Arc<Shared>,
    user: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    work_type: Option<WorkType>,
) -> (Vec<String>, u64) {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        use std::hash::{Hash as _, Hasher as _};
        let mut conn = s.conn();
        let user = crate::domain::UserId(user);
        let rows = items::feed(&mut conn, FeedFilter { user, start, end, work_type, status: None }).unwrap();
        s.give_back(conn);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        format!("{rows:?}").hash(&mut hasher);
        (rows.into_iter().map(|r| r.id.to_string()).collect(), hasher.finish())
    })
    .await
    .unwrap()
}

/// Items the user owns (for writes).
async fn owned(shared: &Arc<Shared>, user: i64) -> Vec<(uuid::Uuid, Vec<i64>)> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        use crate::db::schema::{work_item_assignees as a, work_items as w};
        use diesel::prelude::*;
        let mut conn = s.conn();
        let ids: Vec<uuid::Uuid> = w::table.filter(w::owner_id.eq(user)).select(w::id).load(&mut conn).unwrap();
        let pairs: Vec<(uuid::Uuid, i64)> = a::table
            .filter(a::work_item_id.eq_any(&ids))
            .select((a::work_item_id, a::user_id))
            .load(&mut conn)
            .unwrap();
        s.give_back(conn);
        ids.into_iter().map(|id| (id, pairs.iter().filter(|p| p.0 == id).map(|p| p.1).collect())).collect()
    })
    .await
    .unwrap()
}

/// Drives the workload for `w.duration` and reports what it saw.
pub async fn run(target: Arc<Target>, users: Vec<User>, w: &Workload, progress: Option<Arc<AtomicU64>>) -> Report {
    let shared = Arc::new(Shared {
        locks: users.iter().map(|_| Mutex::new(())).collect(),
        users,
        writers: Mutex::new(()),
        views: std::sync::Mutex::new(HashMap::new()),
        seen: std::sync::Mutex::new(HashMap::new()),
        writes_in_viewed_month: w.writes_in_viewed_month,
        truth: std::sync::Mutex::new(Vec::new()),
        db_url: target.db_url.clone(),
    });
    let zipf = Arc::new(Zipf::new(shared.users.len(), w.zipf_s));
    let started = Instant::now();
    let deadline = started + w.duration;
    let mut tasks = Vec::new();
    for c in 0..w.clients {
        let (shared, zipf, target, w, progress) =
            (shared.clone(), zipf.clone(), target.clone(), w.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w.seed ^ ((c as u64 + 1) * 0x9E37_79B9));
            let mut report = Report::default();
            let today = Utc::now().date_naive();
            while Instant::now() < deadline {
                let u = zipf.sample(&mut rng);
                if rng.random_bool(w.read_ratio) {
                    read(&shared, &target, &mut rng, u, today, &mut report).await;
                } else {
                    write(&shared, &target, &mut rng, u, today, &mut report).await;
                }
                report.requests += 1;
                if let Some(p) = &progress {
                    p.fetch_add(1, Ordering::Relaxed);
                }
            }
            report
        }));
    }
    let mut total = Report::default();
    for t in tasks {
        let r = t.await.unwrap();
        total.requests += r.requests;
        total.feeds += r.feeds;
        total.writes += r.writes;
        total.server_errors += r.server_errors;
        total.other_errors += r.other_errors;
        total.stale += r.stale;
        total.hits += r.hits;
        total.ideal_hits += r.ideal_hits;
        total.misses += r.misses;
        total.bypasses += r.bypasses;
        total.feed_latencies_us.extend(r.feed_latencies_us);
        total.hit_latencies_us.extend(r.hit_latencies_us);
        total.miss_latencies_us.extend(r.miss_latencies_us);
        total.write_latencies_us.extend(r.write_latencies_us);
        total.first_stale = total.first_stale.or(r.first_stale);
        total.lost += r.lost;
        total.first_lost = total.first_lost.or(r.first_lost);
        total.errors.extend(r.errors);
    }
    total.elapsed = started.elapsed();
    total.finish();
    total
}

async fn read(
    shared: &Arc<Shared>,
    target: &Target,
    rng: &mut StdRng,
    u: usize,
    today: NaiveDate,
    report: &mut Report,
) {
    // Navigate: mostly stay, sometimes previous/next month, sometimes back to today.
    let offset = {
        let mut views = shared.views.lock().unwrap();
        let v = views.entry(u).or_insert(0);
        match rng.random_range(0..10) {
            0 => *v -= 1,
            1 => *v += 1,
            2 => *v = 0,
            _ => {}
        }
        *v = (*v).clamp(-3, 3);
        *v
    };
    let first = month_start(today, offset);
    let (start, end) = if rng.random_bool(0.7) {
        month_grid(first)
    } else {
        let (s, _) = month_grid(first);
        let week = s + chrono::Duration::weeks(rng.random_range(0..6));
        (week, week + chrono::Duration::weeks(1))
    };
    let work_type =
        if rng.random_bool(0.15) { Some(WorkType::ALL[rng.random_range(0..WorkType::ALL.len())]) } else { None };
    let mut url = format!(
        "{}/api/calendar/feed?start={}&end={}&_={}",
        target.base(rng),
        start.format("%Y-%m-%dT%H:%M:%SZ"),
        end.format("%Y-%m-%dT%H:%M:%SZ"),
        rng.random_range(0..u32::MAX)
    );
    if let Some(t) = work_type {
        url.push_str(&format!("&work_type={}", t.as_str()));
    }
    let user = &shared.users[u];
    let _guard = shared.locks[u].lock().await;
    let t0 = Instant::now();
    let res = target.client.get(&url).bearer_auth(&user.token).send().await;
    let res = match res {
        Ok(r) => r,
        Err(_) => {
            report.other_errors += 1;
            report.errors.push(ErrorEvent { at: Instant::now(), status: None, code: String::new(), what: "feed" });
            return;
        }
    };
    let status = res.status();
    let x_cache = res.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let us = t0.elapsed().as_micros() as u64;
    report.feeds += 1;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        report.errors.push(ErrorEvent { at: Instant::now(), status: Some(status.as_u16()), code, what: "feed" });
        if status.is_server_error() {
            report.server_errors += 1;
        } else {
            report.other_errors += 1;
        }
        return;
    }
    report.feed_latencies_us.push(us);
    match x_cache.as_str() {
        "HIT" => {
            report.hits += 1;
            report.hit_latencies_us.push(us);
        }
        "MISS" => {
            report.misses += 1;
            report.miss_latencies_us.push(us);
        }
        _ => report.bypasses += 1,
    }
    let got: Vec<String> = body
        .as_array()
        .map(|a| a.iter().map(|e| e["extendedProps"]["workItemId"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default();
    let (want, content) = truth(shared, user.id, start, end, work_type).await;
    // Still under the user's lock: no write of this user ran since the
    // answer, so `content` is what this read should have seen.
    let key = (u, start.timestamp(), end.timestamp(), work_type);
    if shared.seen.lock().unwrap().insert(key, content) == Some(content) {
        report.ideal_hits += 1;
    }
    if got != want {
        report.stale += 1;
        if report.first_stale.is_none() {
            report.first_stale =
                Some(format!("user {} {url} ({x_cache}): got {} items, truth {}", user.name, got.len(), want.len()));
        }
    }
}

async fn write(
    shared: &Arc<Shared>,
    target: &Target,
    rng: &mut StdRng,
    u: usize,
    today: NaiveDate,
    report: &mut Report,
) {
    let _writers = shared.writers.lock().await;
    let owner = &shared.users[u];
    let mine = owned(shared, owner.id).await;
    let choice = rng.random_range(0..3);
    let month = shared.writes_in_viewed_month.then(|| {
        let offset = shared.views.lock().unwrap().get(&u).copied().unwrap_or(0);
        month_start(today, offset)
    });
    let (method, url, body, touched): (&str, String, Option<Value>, Vec<i64>) = if choice == 0 || mine.is_empty() {
        let body = random_item(rng, &shared.users, u, today, month);
        let assignees: Vec<i64> =
            body["assignee_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        ("POST", format!("{}/api/work-items", target.base(rng)), Some(body), assignees)
    } else {
        let (id, assignees) = &mine[rng.random_range(0..mine.len())];
        if choice == 1 {
            let shift = rng.random_range(-3i64..=3);
            let fresh = random_item(rng, &shared.users, u, today, month);
            let new_assignees: Vec<i64> =
                fresh["assignee_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            let mut touched = assignees.clone();
            touched.extend(&new_assignees);
            let body = json!({"title": format!("moved {shift}"), "start": fresh["start"], "end": fresh["end"], "assignee_ids": new_assignees});
            ("PATCH", format!("{}/api/work-items/{id}", target.base(rng)), Some(body), touched)
        } else {
            ("DELETE", format!("{}/api/work-items/{id}", target.base(rng)), None, assignees.clone())
        }
    };
    // Lock every affected user (sorted; readers hold one lock at most, and
    // writers take turns, so this cannot deadlock).
    let mut involved: Vec<usize> = std::iter::once(u)
        .chain(touched.iter().filter_map(|id| shared.users.iter().position(|x| x.id == *id)))
        .collect();
    involved.sort_unstable();
    involved.dedup();
    let mut guards = Vec::new();
    for i in &involved {
        guards.push(shared.locks[*i].lock().await);
    }
    let mut req = target.client.request(method.parse().unwrap(), &url).bearer_auth(&owner.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let t0 = Instant::now();
    let answered = req.send().await;
    report.writes += 1;
    let res = match answered {
        Ok(res) => res,
        Err(_) => {
            report.other_errors += 1;
            report.errors.push(ErrorEvent { at: Instant::now(), status: None, code: String::new(), what: "write" });
            return;
        }
    };
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        report.errors.push(ErrorEvent { at: Instant::now(), status: Some(status.as_u16()), code, what: "write" });
        if status.is_server_error() {
            report.server_errors += 1;
        } else {
            report.other_errors += 1;
        }
        return;
    }
    report.write_latencies_us.push(t0.elapsed().as_micros() as u64);
    // Acknowledged: PostgreSQL must show it (still under the users' locks).
    let id = match method {
        "POST" => body["id"].as_str().unwrap_or("").to_owned(),
        _ => url.rsplit('/').next().unwrap_or("").to_owned(),
    };
    let present = owned(shared, owner.id).await.iter().any(|(i, _)| i.to_string() == id);
    if present != (method != "DELETE") {
        report.lost += 1;
        if report.first_lost.is_none() {
            report.first_lost = Some(format!("{method} {url} answered {status}, but PostgreSQL disagrees"));
        }
    }
}

/// A gzip of `n` zero bytes, built directly (one fixed-Huffman deflate
/// block: a literal zero, then copies of 258 bytes at distance 1): 100 MB
/// in ~630 KB without running a compressor over 100 MB. The gzip bomb of
/// the decompression tests (`cache::body`, `tests/api/limits.rs`).
pub fn zeros_gzip(n: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        len: u32,
    }
    impl Bits {
        fn push(&mut self, value: u32, bits: u32) {
            // Deflate packs bits from the least significant end.
            self.acc |= value << self.len;
            self.len += bits;
            while self.len >= 8 {
                self.out.push((self.acc & 0xff) as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            for i in (0..bits).rev() {
                self.push((code >> i) & 1, 1);
            }
        }
    }
    let mut b = Bits { out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], acc: 0, len: 0 };
    b.push(1, 1); // BFINAL
    b.push(1, 2); // BTYPE = fixed Huffman
    if n > 0 {
        b.code(0x30, 8); // literal 0
        for _ in 0..(n - 1) / 258 {
            b.code(0xc5, 8); // length 258 (symbol 285)
            b.code(0, 5); // distance 1
        }
        for _ in 0..(n - 1) % 258 {
            b.code(0x30, 8);
        }
    }
    b.code(0, 7); // end of block
    b.push(0, 7); // to a byte boundary
    // The trailer's CRC-32 is only checked by a reader that gets to the
    // end; one stopped at a bound never does, so a bomb need not pay for it.
    let mut crc = flate2::Crc::new();
    if n <= 64 << 20 {
        crc.update(&vec![0u8; n]);
    }
    let mut out = b.out;
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out
}
