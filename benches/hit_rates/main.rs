//! The hit-rate benchmark: starts calcache itself (1 and 3 processes sharing
//! one PostgreSQL and one Redis), seeds users and items, drives the calendar
//! workload of `calcache::loadgen` (the `loadgen` feature) under every cache
//! strategy (of [`STRATEGIES`] that this build knows), once with writes
//! anywhere and once with writes clustered in the month being viewed, each
//! beside the ideal bound (the hit rate of an ideal fresh cache), and writes
//! a Markdown table and an SVG chart to `results/<timestamp>/` (and
//! `results/latest/`).
//!
//!   cargo bench --bench hit_rates                 # full run (2 workloads × 4 strategies × 1 and 3 processes, 15 s each, then the sections below)
//!   cargo bench --bench hit_rates -- --quick      # a short run
//!   cargo bench --bench hit_rates -- --quick --hit-rates-only
//!                                                 # the hit-rate tables only
//!   cargo bench --bench hit_rates -- --soak 300   # the long soak only
//!   cargo bench --bench hit_rates -- --hit-path   # hit path vs miss path only (needs wrk)
//!   cargo bench --bench hit_rates -- --hit-path --baseline OLD/calcache --baseline-config OLD/config
//!                                                 # and another build's hit path, in the same run
//!   cargo bench --bench hit_rates -- --bucket-widths  # bucketed with 1-, 7- and 28-day buckets, both workloads
//!   cargo bench --bench hit_rates -- --invalidation   # PATCH latency as a user's cached entries grow, versioned and bucketed
//!   cargo bench --bench hit_rates -- --near --baseline OLD/calcache --baseline-config OLD/config
//!                                                 # the near cache: hits by feed size and encoding, Redis bytes
//!                                                 # and CPU per hit, against another build (needs wrk, redis-benchmark)
//!   cargo test --bench hit_rates -- --tables-json results/*/   # (re)write results.json from report.md
//!
//! Next to every `report.md` goes `results.json`: the same tables, machine-
//! readable (see [`tables_json`]).
//!
//! Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL, defaults on
//! 127.0.0.1); scripts/test.sh or scripts/run.sh start them if needed.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use calcache::loadgen::{self, Report, Target, Workload, percentile};
use diesel::{Connection, PgConnection, RunQueryDsl};
use indicatif::{ProgressBar, ProgressStyle};
use redis::Commands as _;

mod near;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn with_db(url: &str, db: &str) -> String {
    format!("{}/{}", &url[..url.rfind('/').unwrap()], db)
}

struct Deployment {
    children: Vec<Child>,
    pub bases: Vec<String>,
    pub db_url: String,
    db_name: String,
    admin: String,
    prefix: String,
}

impl Deployment {
    fn start(processes: usize, strategy: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_binary(env!("CARGO_BIN_EXE_calcache"), processes, strategy, extra)
    }

    /// With another build of calcache (`--baseline`), to compare in one run.
    fn start_binary(binary: &str, processes: usize, strategy: &str, extra: &[(&str, &str)]) -> Self {
        let base_url = env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/calcache");
        let admin = with_db(&base_url, "postgres");
        let db_name = format!("calcache_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(&admin).unwrap();
        diesel::sql_query(format!(r#"CREATE DATABASE "{db_name}""#)).execute(&mut conn).unwrap();
        let db_url = with_db(&base_url, &db_name);
        let prefix = format!("calcache-bench-{}", uuid::Uuid::new_v4().simple());
        let mut children = Vec::new();
        let mut bases = Vec::new();
        for _ in 0..processes {
            let mut cmd = Command::new(binary);
            cmd.args(["serve", "--port", "0"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("CALCACHE_ENV", "local")
                .env("DATABASE_URL", &db_url)
                .env("REDIS_URL", env_or("REDIS_URL", "redis://127.0.0.1:6379"))
                .env("CALCACHE__REDIS__KEY_PREFIX", &prefix)
                .env("CALCACHE__CACHE__STRATEGY", strategy)
                .env("CALCACHE__SERVER__WORKERS", "2")
                // The load generator signs its 50 users up from one address.
                .env("CALCACHE__AUTH__SIGNUP_MAX_PER_CLIENT", "100000")
                .env("CALCACHE__LOG__FORMAT", "json")
                .env("RUST_LOG", "warn,calcache::startup=info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if binary == env!("CARGO_BIN_EXE_calcache") {
                // A load generator misses far more often than a person (the
                // miss row asks for a new range every request). (Only this
                // build knows the setting: an older baseline would refuse it.)
                cmd.env("CALCACHE__LIMITS__FEED_FILLS_PER_USER", "0");
            }
            for (k, v) in extra {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().unwrap();
            // Its errors (a configuration it refuses) say why it did not start.
            let errors = child.stderr.take().unwrap();
            let errors = std::thread::spawn(move || {
                BufReader::new(errors).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n")
            });
            // The JSON log line "calcache listening" carries the port.
            let out = child.stdout.take().unwrap();
            let mut lines = BufReader::new(out).lines();
            let port = loop {
                let Some(line) = lines.next() else {
                    let _ = child.wait();
                    panic!("{binary} exited before listening:\n{}", errors.join().unwrap_or_default());
                };
                let line = line.unwrap();
                if line.contains("calcache listening") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    break v["port"].as_u64().unwrap();
                }
            };
            std::thread::spawn(move || for _ in lines {});
            bases.push(format!("http://127.0.0.1:{port}"));
            children.push(child);
        }
        Self { children, bases, db_url, db_name, admin, prefix }
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.db_name))
                .execute(&mut conn);
        }
        // Drop this run's keys: a miss row leaves ~60 000 entries behind, and
        // Redis expiring them during the next rows would be measured there.
        // (A benchmark's own clean-up; calcache itself never scans keys.)
        if let Ok(mut redis) =
            redis::Client::open(env_or("REDIS_URL", "redis://127.0.0.1:6379")).and_then(|c| c.get_connection())
        {
            let pattern = format!("{}:*", self.prefix);
            let keys: Vec<String> =
                redis.scan_match(&pattern).map(|it| it.filter_map(Result::ok).collect()).unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query(&mut redis);
            }
            // UNLINK frees in a background thread: let it finish first.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let info: String = redis::cmd("INFO").arg("memory").query(&mut redis).unwrap_or_default();
                if info.lines().any(|l| l.trim() == "lazyfree_pending_objects:0") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

async fn metric_sum(client: &reqwest::Client, bases: &[String], name: &str) -> f64 {
    let mut total = 0.0;
    for b in bases {
        let text = client.get(format!("{b}/metrics")).send().await.unwrap().text().await.unwrap();
        total += text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The strategies the hit-rate table compares, by their config names: the
/// one list to edit. A name this build's `CacheStrategy` does not know
/// (`bucketed` until `CacheStrategy::Bucketed` lands) is skipped with a
/// warning, see [`known_strategies`].
const STRATEGIES: &[&str] = &["versioned", "bucketed", "ttl", "none"];

/// [`STRATEGIES`] that parse as this build's `calcache::config::CacheStrategy`.
fn known_strategies() -> Vec<&'static str> {
    STRATEGIES
        .iter()
        .copied()
        .filter(|name| {
            let known = serde_json::from_value::<calcache::config::CacheStrategy>(serde_json::json!(name)).is_ok();
            if !known {
                eprintln!("warning: cache strategy {name:?} is not in this build's CacheStrategy; skipped");
            }
            known
        })
        .collect()
}

/// The workloads of the hit-rate tables: the standard one, and writes
/// clustered in the month the writer is looking at.
fn workloads(secs: u64) -> Vec<(&'static str, Workload)> {
    let standard = Workload { duration: Duration::from_secs(secs), read_ratio: 0.95, ..Default::default() };
    let clustered = Workload { writes_in_viewed_month: true, ..standard.clone() };
    vec![
        ("Standard workload: writes anywhere in the ±90 days around today", standard),
        ("Clustered workload: writes in the month the writer is viewing", clustered),
    ]
}

const BOUND_NOTE: &str = "**Ideal bound**: the hit rate of an ideal fresh cache on the same reads, as the load generator counts it: a read is an ideal hit when the same view (user, range, filter) was read before and the rows PostgreSQL returns for it have not changed since that last read. *Share of bound* is the strategy's hit rate over the bound; *bound miss rate* (1 − bound) is the PostgreSQL queries per feed an ideal cache would need (one query per miss), to set beside the strategy's. A strategy above the bound (share over 100 %) is answering from entries whose content changed: stale answers.";

/// The command line as given, for the report.
fn cli_args(args: &[String]) -> String {
    let rest: Vec<&str> = args.iter().skip(1).filter(|a| *a != "--bench").map(String::as_str).collect();
    if rest.is_empty() { String::new() } else { format!(" -- {}", rest.join(" ")) }
}

/// One workload's table: every strategy × deployment, with the ideal bound.
fn hit_rate_table(rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| strategy | processes | req/s | feed p50 | p95 | p99 | hit rate | ideal bound | share of bound | bound miss rate | PG queries per feed | stale reads | 5xx |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut above = Vec::new();
    for r in rows {
        let f = &r.report.feed_latencies_us;
        let (hit, bound) = (r.report.hit_rate(), r.report.ideal_hit_rate());
        let share = if bound > 0.0 { hit / bound } else { 0.0 };
        if hit > bound {
            above.push(format!("{} × {}", r.strategy, r.processes));
        }
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} % | {:.1} % | {:.1} % | {:.3} | {:.3} | {} of {} | {} |",
            r.strategy,
            r.processes,
            r.report.rps(),
            percentile(f, 0.5) as f64 / 1000.0,
            percentile(f, 0.95) as f64 / 1000.0,
            percentile(f, 0.99) as f64 / 1000.0,
            100.0 * hit,
            100.0 * bound,
            100.0 * share,
            1.0 - bound,
            r.db_queries_per_feed,
            r.report.stale,
            r.report.feeds,
            r.report.server_errors
        );
    }
    if above.is_empty() {
        let _ = writeln!(md, "\nNo strategy is above the ideal bound.");
    } else {
        let _ = writeln!(
            md,
            "\nAbove the ideal bound, so serving stale answers (hits on entries whose content had changed): {}.",
            above.join(", ")
        );
    }
    md
}

struct Row {
    strategy: &'static str,
    processes: usize,
    report: Report,
    db_queries_per_feed: f64,
}

async fn strategy_run(strategy: &'static str, processes: usize, w: &Workload, bar: &ProgressBar) -> Row {
    strategy_run_with(strategy, strategy, &[], processes, w, bar).await
}

/// [`strategy_run`] with extra settings; `label` names the row.
async fn strategy_run_with(
    label: &'static str,
    strategy: &'static str,
    env: &[(&str, &str)],
    processes: usize,
    w: &Workload,
    bar: &ProgressBar,
) -> Row {
    let dep = Deployment::start(processes, strategy, env);
    let target = Arc::new(Target::new(dep.bases.clone(), dep.db_url.clone()));
    bar.set_message(format!("{strategy} × {processes}: seeding"));
    let users = loadgen::seed(&target, w, "bench").await;
    let q0 = metric_sum(&target.client, &dep.bases, "calcache_feed_db_queries_total").await;
    bar.set_message(format!("{strategy} × {processes}: running"));
    let counter = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (counter, bar) = (counter.clone(), bar.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let now = counter.load(Ordering::Relaxed);
                bar.inc(now - last);
                last = now;
            }
        })
    };
    let report = loadgen::run(target.clone(), users, w, Some(counter)).await;
    ticker.abort();
    let q1 = metric_sum(&target.client, &dep.bases, "calcache_feed_db_queries_total").await;
    bar.println(format!("{label:>9} × {processes}: {}", report.summary()));
    let db_queries_per_feed = (q1 - q0) / report.feeds.max(1) as f64;
    Row { strategy: label, processes, report, db_queries_per_feed }
}

/// One wrk run's summary (its Lua `done` hook prints it as JSON).
#[derive(Debug, Default, serde::Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: u64,
    non2xx: u64,
    socket_errors: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
}

/// Drives `url` with wrk: 64 connections, one wrk thread, `secs` seconds.
/// `unique_end` makes every request ask for another range (the range's end
/// moves by a minute per request), so that every one is a cache miss.
/// `think_ms` makes each connection wait that long after an answer before
/// its next request (browsers do not ask back to back), so the server runs
/// below saturation.
fn wrk(url: &str, token: &str, gzip: bool, unique_end: Option<i64>, think_ms: Option<u32>, secs: u64) -> WrkSummary {
    let script = format!(
        r#"
wrk.headers["Authorization"] = "Bearer {token}"
{accept}
local i = 0
local unique_end = {unique}
{think}
request = function()
  if unique_end == nil then return wrk.format("GET") end
  i = i + 1
  local path = wrk.path:gsub("end=[^&]*", "end=" .. os.date("!%Y-%m-%dT%H:%M:%SZ", unique_end + i * 60))
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\n{{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"#,
        accept = if gzip { r#"wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd""# } else { "" },
        unique = unique_end.map_or_else(|| "nil".to_owned(), |e| e.to_string()),
        think = think_ms.map_or_else(String::new, |ms| format!("delay = function() return {ms} end")),
    );
    let path = std::env::temp_dir().join(format!("calcache-bench-{}.lua", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, script).unwrap();
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{secs}s"), "--timeout", "5s", "-s"])
        .arg(&path)
        .arg(url)
        .output()
        .expect("wrk runs");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no wrk summary in:\n{text}"));
    serde_json::from_str(line).unwrap()
}

fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The process id of the Redis at REDIS_URL, if it runs on this machine
/// (to read its CPU time).
async fn local_redis_pid() -> Option<u32> {
    let client = redis::Client::open(env_or("REDIS_URL", "redis://127.0.0.1:6379")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.ok()?;
    let pid = info.lines().find_map(|l| l.strip_prefix("process_id:"))?.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}/stat")).exists().then_some(pid)
}

/// One row of the hit-path table: which build, which strategy, how driven.
struct PathSetup<'a> {
    name: &'static str,
    binary: &'a str,
    config: Option<&'a str>,
    strategy: &'static str,
    gzip: bool,
    unique: bool,
    think_ms: Option<u32>,
}

struct PathRun {
    name: &'static str,
    run: WrkSummary,
    server_cpu_us: f64,
    redis_cpu_us: Option<f64>,
    hits: f64,
    /// `None` for a build without the metric (a baseline).
    redis_trips: Option<f64>,
    db_queries: f64,
}

/// The hit path against the miss path, measured back to back in one run:
/// wrk (a separate process, 64 connections) against one calcache process
/// with 2 workers and production logging (`info`, JSON), on the month grid
/// FullCalendar asks for, over the realistic 6 weeks of one busy user.
///
/// With `baseline` (another build's binary, and its config directory if
/// this build's would not load in it), its hit path is measured in the same
/// run, right after this build's, for a before/after ratio.
async fn hit_vs_miss(secs: u64, baseline: Option<(&str, Option<&str>)>) -> String {
    let mut out = String::new();
    if !wrk_installed() {
        let _ = writeln!(out, "Skipped: this section needs `wrk` (`apt-get install wrk`).");
        return out;
    }
    let redis_pid = local_redis_pid().await;
    let today = chrono::Utc::now().date_naive();
    let (start, end) = loadgen::month_grid(loadgen::month_start(today, 0));
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let this = env!("CARGO_BIN_EXE_calcache");
    let row = |name, strategy, gzip, unique, think_ms| PathSetup {
        name,
        binary: this,
        config: None,
        strategy,
        gzip,
        unique,
        think_ms,
    };
    let mut runs = vec![
        row("hit, gzip accepted (browsers)", "versioned", true, false, None),
        row("hit, gzip not accepted (decompressed per request)", "versioned", false, false, None),
        row("no cache (strategy none: PostgreSQL every request)", "none", true, false, None),
        row("hit, gzip, below saturation: 1 ms between a connection's requests", "versioned", true, false, Some(1)),
    ];
    if let Some((binary, config)) = baseline {
        runs.push(PathSetup {
            name: "baseline build: hit, gzip accepted",
            binary,
            config,
            ..row("", "versioned", true, false, None)
        });
    }
    // Last: it fills Redis with an entry per request.
    runs.push(row(
        "miss (versioned, a new range every request: lookup, lease, PostgreSQL, compress, store)",
        "versioned",
        true,
        true,
        None,
    ));
    let mut results = Vec::new();
    let mut sizes = (0, 0);
    for PathSetup { name, binary, config, strategy, gzip, unique, think_ms } in runs {
        let mut env = vec![("RUST_LOG", "info")];
        if let Some(dir) = config {
            env.push(("CALCACHE_CONFIG_DIR", dir));
        }
        let dep = Deployment::start_binary(binary, 1, strategy, &env);
        let target = Arc::new(Target::new(dep.bases.clone(), dep.db_url.clone()));
        // 300 items over ±90 days: about 70 in the month grid (≈ 15 KB of JSON).
        let w = Workload { users: 1, items_per_user: 300, ..Default::default() };
        let users = loadgen::seed(&target, &w, "hot").await;
        let url = format!("{}/api/calendar/feed?start={}&end={}", dep.bases[0], fmt(start), fmt(end));
        let token = users[0].token.clone();
        // Warm: fill the entry and let the process learn the version.
        for _ in 0..2 {
            let res = target.client.get(&url).bearer_auth(&token).send().await.unwrap();
            if binary == this {
                sizes.0 = res.bytes().await.unwrap().len();
            }
        }
        let raw = target.client.get(&url).bearer_auth(&token).header("accept-encoding", "gzip").send().await.unwrap();
        if binary == this && raw.headers().get("content-encoding").is_some() {
            sizes.1 = raw.bytes().await.unwrap().len();
        }
        if !unique {
            // Two unmeasured seconds: connections, caches and the allocator
            // warm, whatever the previous row left behind settled.
            wrk(&url, &token, gzip, None, think_ms, 2);
        }
        let pid = dep.pids()[0];
        let metric = async |name: &str| metric_sum(&target.client, &dep.bases, name).await;
        let (h0, t0, q0) = (
            metric("calcache_feed_cache_requests_total{outcome=\"hit\"}").await,
            metric("calcache_redis_round_trips_total").await,
            metric("calcache_feed_db_queries_total").await,
        );
        let (cpu0, rcpu0) = (cpu_secs(pid), redis_pid.map(cpu_secs));
        let run = wrk(&url, &token, gzip, unique.then(|| end.timestamp()), think_ms, secs);
        let (cpu1, rcpu1) = (cpu_secs(pid), redis_pid.map(cpu_secs));
        let n = run.requests.max(1) as f64;
        results.push(PathRun {
            name,
            server_cpu_us: (cpu1 - cpu0) * 1e6 / n,
            redis_cpu_us: rcpu0.zip(rcpu1).map(|(a, b)| (b - a) * 1e6 / n),
            hits: (metric("calcache_feed_cache_requests_total{outcome=\"hit\"}").await - h0) / n,
            redis_trips: {
                let t1 = metric("calcache_redis_round_trips_total").await;
                (t1 > 0.0).then(|| (t1 - t0) / n)
            },
            db_queries: (metric("calcache_feed_db_queries_total").await - q0) / n,
            run,
        });
    }
    let _ = writeln!(
        out,
        "wrk, 64 connections, {secs} s per row; one calcache process (2 workers, `RUST_LOG=info`, JSON logs); the month grid {} – {} of a user with 300 items: {} bytes of JSON, {} bytes gzipped. Per-request figures are per answered request of that row.\n",
        fmt(start),
        fmt(end),
        sizes.0,
        sizes.1
    );
    let _ = writeln!(
        out,
        "| path | req/s | p50 | p90 | p99 | p99.9 | calcache CPU per request | Redis CPU per request | HIT share | Redis round trips per request | PostgreSQL queries per request | errors |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ms = |us: u64| us as f64 / 1000.0;
    for r in &results {
        let rps = r.run.requests as f64 / (r.run.duration_us.max(1) as f64 / 1e6);
        let _ = writeln!(
            out,
            "| {} | {rps:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} µs | {} | {:.0} % | {} | {:.2} | {} |",
            r.name,
            ms(r.run.p50),
            ms(r.run.p90),
            ms(r.run.p99),
            ms(r.run.p999),
            r.server_cpu_us,
            r.redis_cpu_us.map_or_else(|| "—".to_owned(), |c| format!("{c:.1} µs")),
            100.0 * r.hits,
            r.redis_trips.map_or_else(|| "—".to_owned(), |t| format!("{t:.2}")),
            r.db_queries,
            r.run.non2xx + r.run.socket_errors
        );
    }
    let rps = |r: &PathRun| r.run.requests as f64 / (r.run.duration_us.max(1) as f64 / 1e6);
    if let [hit, identity, none, paced, rest @ .., miss] = &results[..] {
        let _ = writeln!(
            out,
            "\nHit-path throughput is **{:.1}×** the miss path ({:.1}× with gzip not accepted, {:.1}× strategy none); hit p99 **{:.2} ms** at 64 connections; calcache CPU per hit {:.1} µs vs {:.1} µs per miss ({:.1}×).",
            rps(hit) / rps(miss).max(1e-9),
            rps(identity) / rps(miss).max(1e-9),
            rps(hit) / rps(none).max(1e-9),
            ms(hit.run.p99),
            hit.server_cpu_us,
            miss.server_cpu_us,
            miss.server_cpu_us / hit.server_cpu_us.max(1e-9)
        );
        let _ = writeln!(
            out,
            "Below saturation ({:.0} req/s from the same 64 connections), hit p99 is **{:.2} ms**.",
            rps(paced),
            ms(paced.run.p99)
        );
        if let [old] = rest {
            let _ = writeln!(
                out,
                "Against the baseline build ({}): **{:.2}×** the throughput, calcache CPU per hit {:.1} µs → {:.1} µs, p99 {:.2} ms → {:.2} ms.",
                baseline.map_or("", |(binary, _)| binary),
                rps(hit) / rps(old).max(1e-9),
                old.server_cpu_us,
                hit.server_cpu_us,
                ms(old.run.p99),
                ms(hit.run.p99)
            );
        }
    }
    out
}

/// `bucketed` with day, week and month buckets (and `versioned` beside
/// them), on both workloads, one process: which width buys the most hits.
async fn bucket_widths(secs: u64) -> String {
    let mut out = String::new();
    let bar = ProgressBar::new(0);
    let widths: [(&'static str, &'static str); 3] =
        [("bucketed, 1 day", "1"), ("bucketed, 7 days", "7"), ("bucketed, 28 days", "28")];
    for (name, w) in workloads(secs) {
        let mut rows = vec![strategy_run("versioned", 1, &w, &bar).await];
        for (label, days) in widths {
            rows.push(
                strategy_run_with(label, "bucketed", &[("CALCACHE__CACHE__BUCKET_DAYS", days)], 1, &w, &bar).await,
            );
        }
        let _ = writeln!(out, "## {name}\n\n{}", hit_rate_table(&rows));
    }
    bar.finish_and_clear();
    out
}

/// What a Redis outage costs a request: feeds with Redis unreachable (every
/// answer a BYPASS, sessions checked in PostgreSQL, the circuit open)
/// against caching switched off with Redis up, 16 connections each.
async fn outage_overhead(secs: u64) -> String {
    let mut out = String::from("| setting | req/s | p50 | p99 | X-Cache |\n| --- | ---: | ---: | ---: | --- |\n");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down_url = format!("redis://127.0.0.1:{closed}");
    for (name, strategy, extra) in [
        ("Redis up, strategy none", "none", vec![]),
        ("Redis unreachable, strategy versioned", "versioned", vec![("REDIS_URL", down_url.as_str())]),
    ] {
        let dep = Deployment::start(1, strategy, &extra);
        let target = Arc::new(Target::new(dep.bases.clone(), dep.db_url.clone()));
        let w = Workload { users: 1, items_per_user: 20, ..Default::default() };
        let users = loadgen::seed(&target, &w, "outage").await;
        let url = format!("{}/api/calendar/feed?start=2026-09-27T00:00:00Z&end=2026-11-08T00:00:00Z", dep.bases[0]);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, url, token) = (target.client.clone(), url.clone(), users[0].token.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut last = String::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    last = res.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let _ = res.bytes().await;
                    lat.push(t0.elapsed().as_micros() as u64);
                }
                (lat, last)
            }));
        }
        let mut lat = Vec::new();
        let mut x_cache = String::new();
        for t in tasks {
            let (l, x) = t.await.unwrap();
            lat.extend(l);
            x_cache = x;
        }
        lat.sort_unstable();
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {x_cache} |",
            lat.len() as f64 / secs as f64,
            percentile(&lat, 0.5) as f64 / 1000.0,
            percentile(&lat, 0.99) as f64 / 1000.0
        );
    }
    out
}

/// Cost of one invalidation (a PATCH, commit + version bump) when the user
/// has 1, 100 or 10 000 cached feed entries: versioned invalidation is one
/// INCR whatever the number of entries.
async fn invalidation_cost(sizes: &[usize]) -> String {
    let mut out = String::from(
        "| strategy | cached entries of the user | mean PATCH latency | p95 |\n| --- | ---: | ---: | ---: |\n",
    );
    for strategy in ["versioned", "bucketed"] {
        out.push_str(&invalidation_cost_of(strategy, sizes).await);
    }
    out
}

/// [`invalidation_cost`] of one strategy: its table rows.
async fn invalidation_cost_of(strategy: &'static str, sizes: &[usize]) -> String {
    let mut out = String::new();
    let dep = Deployment::start(1, strategy, &[]);
    let target = Arc::new(Target::new(dep.bases.clone(), dep.db_url.clone()));
    let w = Workload { users: 1, items_per_user: 5, ..Default::default() };
    let users = loadgen::seed(&target, &w, "inv").await;
    let user = &users[0];
    let base = &dep.bases[0];
    let item: serde_json::Value = target
        .client
        .post(format!("{base}/api/work-items"))
        .bearer_auth(&user.token)
        .json(&serde_json::json!({"title": "x", "work_type": "task", "start": "2026-10-06"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = item["id"].as_str().unwrap().to_owned();
    for &n in sizes {
        // n distinct ranges, each its own cache entry, all current.
        let mut fills = futures_util::stream::iter(0..n)
            .map(|i| {
                let url = format!(
                    "{base}/api/calendar/feed?start=2026-01-01T00:00:00Z&end={}",
                    (chrono::DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z").unwrap()
                        + chrono::Duration::minutes(i as i64))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                );
                let req = target.client.get(url).bearer_auth(&user.token);
                async move { req.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
            })
            .buffer_unordered(32);
        use futures_util::StreamExt as _;
        let mut ok = 0;
        while let Some(s) = fills.next().await {
            ok += usize::from(s);
        }
        drop(fills);
        let mut lat = Vec::new();
        for k in 0..30 {
            let t0 = Instant::now();
            let res = target
                .client
                .patch(format!("{base}/api/work-items/{id}"))
                .bearer_auth(&user.token)
                .json(&serde_json::json!({"title": format!("t{k}")}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
            lat.push(t0.elapsed().as_micros() as u64);
        }
        lat.sort_unstable();
        let mean = lat.iter().sum::<u64>() as f64 / lat.len() as f64;
        let _ = writeln!(
            out,
            "| {strategy} | {n} (filled {ok}) | {:.2} ms | {:.2} ms |",
            mean / 1000.0,
            percentile(&lat, 0.95) as f64 / 1000.0,
        );
    }
    out
}

fn svg_chart(rows: &[&Row]) -> String {
    let (h, pad, bar_w) = (340.0, 60.0, 34.0);
    let w = f64::max(760.0, pad + 40.0 + rows.len() as f64 * bar_w * 2.6);
    let max_rps = rows.iter().map(|r| r.report.rps()).fold(1.0, f64::max);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="{pad}" y="20" font-size="14">calcache: hit rate (bars) and requests/s (labels) per strategy × processes</text>"#
    );
    let _ = write!(s, r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - pad, w - 20.0, h - pad);
    for (i, r) in rows.iter().enumerate() {
        let x = pad + 20.0 + i as f64 * (bar_w * 2.6);
        let bh = (h - pad - 50.0) * r.report.hit_rate();
        let colour = match r.strategy {
            "versioned" => "#2b8a3e",
            "ttl" => "#e67700",
            "bucketed" => "#1971c2",
            _ => "#868e96",
        };
        let _ = write!(s, r#"<rect x="{x}" y="{}" width="{bar_w}" height="{bh}" fill="{colour}"/>"#, h - pad - bh);
        let _ = write!(s, r#"<text x="{x}" y="{}">{:.0}%</text>"#, h - pad - bh - 18.0, 100.0 * r.report.hit_rate());
        let _ = write!(s, r##"<text x="{x}" y="{}" fill="#555">{:.0}/s</text>"##, h - pad - bh - 4.0, r.report.rps());
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}">{}</text><text x="{x}" y="{}">×{} stale {}</text>"#,
            h - pad + 15.0,
            r.strategy,
            h - pad + 30.0,
            r.processes,
            r.report.stale
        );
        let _ = max_rps;
    }
    s.push_str("</svg>\n");
    s
}

/// The tables of a report as JSON: `{"tables": [{"section", "columns",
/// "rows"}]}`, one object per Markdown table under the `##` heading it
/// follows (or the `#` title), each row an object by column name. A cell
/// that is a number is a number; a number with a unit (`1.0 ms`, `50.4 %`,
/// `16.1 µs`) is `{"value": 1.0, "unit": "ms"}`; `0 of 60573` is
/// `{"value": 0, "of": 60573}`; anything else stays a string.
fn tables_json(md: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    fn cell(text: &str) -> Value {
        let text = text.trim().trim_matches('*');
        let number = |s: &str| {
            let s = s.replace(',', "");
            s.parse::<i64>().map(|n| json!(n)).ok().or_else(|| s.parse::<f64>().ok().map(|n| json!(n)))
        };
        if let Some(n) = number(text) {
            return n;
        }
        let parts: Vec<&str> = text.split_whitespace().collect();
        match parts.as_slice() {
            [n, "of", total] if number(n).is_some() && number(total).is_some() => {
                json!({"value": number(n), "of": number(total)})
            }
            [n, unit] if number(n).is_some() && unit.len() <= 3 => json!({"value": number(n), "unit": unit}),
            _ => Value::String(text.to_owned()),
        }
    }
    let split =
        |line: &str| -> Vec<String> { line.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect() };
    let mut tables = Vec::new();
    let mut section = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(heading) = line.strip_prefix("## ").or_else(|| line.strip_prefix("# ")) {
            section = heading.trim().to_owned();
            continue;
        }
        let is_table = line.starts_with('|') && lines.peek().is_some_and(|next| next.starts_with("| ---"));
        if !is_table {
            continue;
        }
        let columns = split(line);
        lines.next(); // the separator
        let mut rows = Vec::new();
        while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
            let object: serde_json::Map<String, Value> =
                columns.iter().cloned().zip(split(row).iter().map(|c| cell(c))).collect();
            rows.push(Value::Object(object));
        }
        tables.push(json!({"section": section, "columns": columns, "rows": rows}));
    }
    json!({"tables": tables})
}

/// Writes `report.md` and its `results.json` into `dir`.
fn write_report(dir: &std::path::Path, md: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("report.md"), md).unwrap();
    let json = serde_json::to_string_pretty(&tables_json(md)).unwrap() + "\n";
    std::fs::write(dir.join("results.json"), json).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends
    }
    if let Some(i) = args.iter().position(|a| a == "--tables-json") {
        for dir in &args[i + 1..] {
            let dir = std::path::Path::new(dir);
            let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
            write_report(dir, &md);
            println!("wrote {}", dir.join("results.json").display());
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let hit_path_only = args.iter().any(|a| a == "--hit-path");
    let hit_rates_only = args.iter().any(|a| a == "--hit-rates-only");
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let (baseline, baseline_config) = (flag("--baseline"), flag("--baseline-config"));
    let baseline = baseline.as_deref().map(|b| (b, baseline_config.as_deref()));
    let soak =
        args.iter().position(|a| a == "--soak").map(|i| args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(300u64));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        if let Some(secs) = soak {
            let w = Workload { duration: Duration::from_secs(secs), ..Default::default() };
            let bar = ProgressBar::new(0);
            let row = strategy_run("versioned", 2, &w, &bar).await;
            println!("soak (2 processes, 16 clients, 90/10, 50 users, {secs}s): {}", row.report.summary());
            assert_eq!(row.report.stale, 0, "stale reads in the soak");
            return;
        }
        if args.iter().any(|a| a == "--near") {
            let md = near::near_cache(if quick { 4 } else { 10 }, baseline).await;
            let cmd = args.iter().skip(1).filter(|a| *a != "--bench").cloned().collect::<Vec<_>>().join(" ");
            let report = format!("# calcache near cache\n\nCommand: `cargo bench --bench hit_rates -- {cmd}`.\n\n{md}");
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results").join(format!("{stamp}-near"));
            write_report(&dir, &report);
            println!("{report}\nwritten to results/{stamp}-near/");
            return;
        }
        if args.iter().any(|a| a == "--invalidation") {
            let md = invalidation_cost(if quick { &[1, 100, 1000] } else { &[1, 100, 10_000] }).await;
            let report = format!("# calcache invalidation cost\n\nCommand: `cargo bench --bench hit_rates{}`.\n\n{md}", cli_args(&args));
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results").join(format!("{stamp}-invalidation"));
            write_report(&dir, &report);
            println!("{report}\nwritten to results/{stamp}-invalidation/");
            return;
        }
        if args.iter().any(|a| a == "--bucket-widths") {
            let md = bucket_widths(if quick { 8 } else { 15 }).await;
            let cmd = args.iter().skip(1).filter(|a| *a != "--bench").cloned().collect::<Vec<_>>().join(" ");
            let report = format!("# calcache bucket widths\n\nCommand: `cargo bench --bench hit_rates -- {cmd}`.\n\n{BOUND_NOTE}\n\n{md}");
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results").join(format!("{stamp}-buckets"));
            write_report(&dir, &report);
            println!("{report}\nwritten to results/{stamp}-buckets/");
            return;
        }
        if hit_path_only {
            let md = hit_vs_miss(if quick { 5 } else { 15 }, baseline).await;
            let cmd = args.iter().skip(1).filter(|a| *a != "--bench").cloned().collect::<Vec<_>>().join(" ");
            let report = format!("# calcache hit path vs miss path\n\nCommand: `cargo bench --bench hit_rates -- {cmd}`.\n\n{md}");
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results").join(format!("{stamp}-hit-path"));
            write_report(&dir, &report);
            println!("{report}\nwritten to results/{stamp}-hit-path/");
            return;
        }
        // Two workloads × four strategies × two deployments: 15 s a run
        // keeps the full benchmark near its former length.
        let secs = if quick { 8 } else { 15 };
        let workloads = workloads(secs);
        let strategies = known_strategies();
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}] {pos} requests").unwrap());
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut tables: Vec<(&'static str, Vec<Row>)> = Vec::new();
        for (name, w) in &workloads {
            let mut rows = Vec::new();
            for &strategy in &strategies {
                for processes in [1, 3] {
                    rows.push(strategy_run(strategy, processes, w, &bar).await);
                }
            }
            tables.push((name, rows));
        }
        let (hot, outage, inv) = if hit_rates_only {
            let skipped = "Skipped (`--hit-rates-only`).\n".to_owned();
            (skipped.clone(), skipped.clone(), skipped)
        } else {
            bar.set_message("hit path vs miss path");
            let hot = hit_vs_miss(if quick { 5 } else { 15 }, baseline).await;
            bar.set_message("redis outage overhead");
            let outage = outage_overhead(if quick { 4 } else { 10 }).await;
            bar.set_message("invalidation cost");
            let inv = invalidation_cost(if quick { &[1, 100, 1000] } else { &[1, 100, 10_000] }).await;
            (hot, outage, inv)
        };
        bar.finish_and_clear();
        let w = &workloads[0].1;

        let mut md = String::new();
        let _ = writeln!(md, "# calcache hit-rate benchmark\n");
        let _ = writeln!(
            md,
            "Workload: {} users (Zipf s={}), {} clients, {:.0} % feed reads (FullCalendar 6-week month grids and week views, navigating ±1 month, 15 % filtered), writes = creates / updates / deletes with a third assigned to another user; {} s per run; every feed answer checked against PostgreSQL at that moment. Machine: {} cores. Command: {}.\n\n{}\n",
            w.users,
            w.zipf_s,
            w.clients,
            100.0 * w.read_ratio,
            secs,
            std::thread::available_parallelism().map_or(0, usize::from),
            if cfg!(debug_assertions) {
                format!(
                    "`cargo test --bench hit_rates{}` (a debug build: req/s and latencies are not comparable with `cargo bench`'s, hit rates are)",
                    cli_args(&args)
                )
            } else {
                format!("`cargo bench --bench hit_rates{}`", cli_args(&args))
            },
            BOUND_NOTE,
        );
        for (name, rows) in &tables {
            let _ = writeln!(md, "## {name}\n\n{}", hit_rate_table(rows));
        }
        let _ = writeln!(md, "\n## Hit path vs miss path\n\n{hot}");
        let _ = writeln!(md, "\n## A Redis outage\n\n{outage}");
        let _ = writeln!(md, "\n## Invalidation cost as a user's cached entries grow\n\n{inv}");
        let _ = writeln!(md, "\n![chart](chart.svg)");
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let all: Vec<&Row> = tables.iter().flat_map(|(_, rows)| rows).collect();
        for dir in [root.join(&stamp), root.join("latest")] {
            write_report(&dir, &md);
            std::fs::write(dir.join("chart.svg"), svg_chart(&all)).unwrap();
        }
        println!("{md}");
        println!("written to results/{stamp}/ and results/latest/");
    });
}
