//! `--near`: what the near cache (`cache::near`) takes off Redis and off
//! calcache, by feed size and client encoding, against another build (the
//! baseline: the same rows before the near cache), with `redis-benchmark`'s
//! `GET` of the same stored bytes as the floor, and one row of three
//! processes sharing one Redis.
//!
//! Runs on a redis-server of its own (started and stopped here), so that
//! Redis' CPU and bytes out are this benchmark's only.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calcache::loadgen::{self, Target};
use serde_json::json;

use super::{Deployment, WrkSummary, cpu_secs, metric_sum, wrk};

/// Items in the month grid, for about 1, 17, 50 and 200 KB of JSON.
const SIZES: &[usize] = &[4, 70, 205, 820];

/// The origin's design (Django + django-redis, 4 gunicorn workers) serving
/// cached 200-event feeds on this machine, per second (from the issue).
const DJANGO_RPS: f64 = 700.0;

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn bytes_out(&self) -> f64 {
        let mut c = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    /// `redis-benchmark`'s GET of a value of `bytes`, 64 connections: the
    /// floor any cache that fetches the entry per hit stands on.
    fn get_floor(&self, bytes: usize) -> f64 {
        let out = Command::new("redis-benchmark")
            .args(["-p", &self.port.to_string(), "-t", "set,get", "-c", "64", "-n", "200000", "-q", "--csv"])
            .args(["-d", &bytes.to_string()])
            .output()
            .expect("redis-benchmark runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.starts_with("\"GET\""))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|v| v.trim_matches('"').parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Row {
    build: &'static str,
    items: usize,
    json_bytes: usize,
    gzip_bytes: usize,
    gzip: bool,
    run: WrkSummary,
    cpu_us: f64,
    redis_cpu_us: f64,
    redis_bytes: f64,
    local_share: Option<f64>,
}

impl Row {
    fn rps(&self) -> f64 {
        self.run.requests as f64 / (self.run.duration_us.max(1) as f64 / 1e6)
    }
}

/// Seeds one user with `items` items inside the month grid; returns the
/// user's token.
async fn seed(target: &Target, items: usize, start: chrono::DateTime<chrono::Utc>) -> String {
    let users =
        loadgen::seed(target, &loadgen::Workload { users: 1, items_per_user: 0, ..Default::default() }, "near").await;
    let token = users[0].token.clone();
    for i in 0..items {
        let at = start + chrono::Duration::minutes(i64::try_from(i * 71 % (41 * 24 * 60)).unwrap());
        let work_type = ["project", "activity", "task"][i % 3];
        let body = json!({
            "title": format!("Weekly planning with the team, number {i}"),
            "work_type": work_type,
            "start": at.to_rfc3339(),
            "end": (at + chrono::Duration::hours(1)).to_rfc3339(),
        });
        let res = target
            .client
            .post(format!("{}/api/work-items", target.bases[0]))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        assert!(res.unwrap().status().is_success(), "seed item");
    }
    token
}

/// One row: this deployment's feed for `token`, driven by wrk for `secs`.
#[expect(clippy::too_many_arguments, reason = "one row's setup, as the table names it")]
async fn measure(
    build: &'static str,
    dep: &Deployment,
    target: &Target,
    redis: &Redis,
    redis_pid: u32,
    url: &str,
    token: &str,
    items: usize,
    gzip: bool,
    secs: u64,
) -> Row {
    let json_bytes = target.client.get(url).bearer_auth(token).send().await.unwrap().bytes().await.unwrap().len();
    let res = target.client.get(url).bearer_auth(token).header("accept-encoding", "gzip").send().await.unwrap();
    let gzip_bytes = res.bytes().await.unwrap().len();
    wrk(url, token, gzip, None, None, 2);
    let local = async || metric_sum(&target.client, &dep.bases, "calcache_near_cache_hits_total").await;
    let (l0, b0) = (local().await, redis.bytes_out());
    let pids = dep.pids();
    let cpu = || pids.iter().map(|&p| cpu_secs(p)).sum::<f64>();
    let (c0, r0) = (cpu(), cpu_secs(redis_pid));
    let run = wrk(url, token, gzip, None, None, secs);
    let (c1, r1) = (cpu(), cpu_secs(redis_pid));
    let n = run.requests.max(1) as f64;
    let l1 = local().await;
    Row {
        build,
        items,
        json_bytes,
        gzip_bytes,
        gzip,
        cpu_us: (c1 - c0) * 1e6 / n,
        redis_cpu_us: (r1 - r0) * 1e6 / n,
        redis_bytes: (redis.bytes_out() - b0) / n,
        local_share: (build == "this build").then_some((l1 - l0) / n),
        run,
    }
}

fn redis_pid(redis: &Redis) -> u32 {
    let mut c = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok()).unwrap()
}

pub async fn near_cache(secs: u64, baseline: Option<(&str, Option<&str>)>) -> String {
    let mut out = String::new();
    let redis = Redis::start();
    let rpid = redis_pid(&redis);
    let today = chrono::Utc::now().date_naive();
    let (start, end) = loadgen::month_grid(loadgen::month_start(today, 0));
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let this = env!("CARGO_BIN_EXE_calcache");
    let mut builds: Vec<(&'static str, &str, Option<&str>)> = vec![("this build", this, None)];
    if let Some((binary, config)) = baseline {
        builds.push(("baseline", binary, config));
    }
    let url_env = redis.url();
    let mut rows = Vec::new();
    for &items in SIZES {
        for &(build, binary, config) in &builds {
            let mut env = vec![("RUST_LOG", "info"), ("REDIS_URL", url_env.as_str())];
            if let Some(dir) = config {
                env.push(("CALCACHE_CONFIG_DIR", dir));
            }
            let dep = Deployment::start_binary(binary, 1, "versioned", &env);
            let target = Arc::new(Target::new(dep.bases.clone(), dep.db_url.clone()));
            let token = seed(&target, items, start).await;
            let url = format!("{}/api/calendar/feed?start={}&end={}", dep.bases[0], fmt(start), fmt(end));
            for gzip in [true, false] {
                rows.push(measure(build, &dep, &target, &redis, rpid, &url, &token, items, gzip, secs).await);
            }
        }
    }
    let _ = writeln!(
        out,
        "wrk, 64 connections, {secs} s per row after 2 unmeasured seconds; one calcache process (2 workers, `RUST_LOG=info`, JSON logs), `versioned`, on a redis-server of the benchmark's own; the month grid {} – {} of one user. CPU per hit from `/proc` (calcache, redis-server); Redis bytes out per hit from its `total_net_output_bytes`.\n",
        fmt(start),
        fmt(end)
    );
    let _ = writeln!(
        out,
        "| build | items | JSON | gzip | client | req/s | p99 | calcache CPU per hit | Redis CPU per hit | Redis bytes out per hit | local copies |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} B | {} B | {} | {:.0} | {:.2} ms | {:.1} µs | {:.1} µs | {:.0} | {} |",
            r.build,
            r.items,
            r.json_bytes,
            r.gzip_bytes,
            if r.gzip { "gzip" } else { "identity" },
            r.rps(),
            r.run.p99 as f64 / 1000.0,
            r.cpu_us,
            r.redis_cpu_us,
            r.redis_bytes,
            r.local_share.map_or_else(|| "—".to_owned(), |s| format!("{:.0} %", 100.0 * s)),
        );
    }
    let find = |build: &str, items: usize, gzip: bool| {
        rows.iter().find(|r| r.build == build && r.items == items && r.gzip == gzip)
    };
    let _ = writeln!(
        out,
        "\n| items | JSON | identity ÷ gzip CPU, this build | identity ÷ gzip CPU, baseline | redis-benchmark GET of the gzip bytes (req/s) | this build gzip ÷ that floor |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for &items in SIZES {
        let (Some(g), Some(i)) = (find("this build", items, true), find("this build", items, false)) else { continue };
        let base = find("baseline", items, true).zip(find("baseline", items, false));
        let floor = redis.get_floor(g.gzip_bytes);
        let _ = writeln!(
            out,
            "| {items} | {} B | {:.2} | {} | {floor:.0} | {:.2} |",
            g.json_bytes,
            i.cpu_us / g.cpu_us.max(1e-9),
            base.map_or_else(|| "—".to_owned(), |(bg, bi)| format!("{:.2}", bi.cpu_us / bg.cpu_us.max(1e-9))),
            g.rps() / floor.max(1e-9),
        );
    }
    if let (Some(g), Some(i)) = (find("this build", 205, true), find("this build", 205, false)) {
        let _ = writeln!(
            out,
            "\nAgainst the origin's design ({DJANGO_RPS:.0} cached 200-event feeds/s, Django + django-redis, 4 gunicorn workers): **{:.0}×** for gzip clients, **{:.0}×** for identity clients (205 items, {} B of JSON).",
            g.rps() / DJANGO_RPS,
            i.rps() / DJANGO_RPS,
            g.json_bytes
        );
    }
    // The fleet: three processes sharing the Redis, a wrk each, at once.
    let _ = writeln!(
        out,
        "\nThree processes sharing the one Redis, 70 items, gzip clients: three wrk at once (one per process, 64 connections each).\n"
    );
    let _ = writeln!(out, "| build | req/s (sum) | p99 (worst) | Redis CPU per hit | Redis bytes out per hit |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for &(build, binary, config) in &builds {
        let mut env = vec![("RUST_LOG", "info"), ("REDIS_URL", url_env.as_str())];
        if let Some(dir) = config {
            env.push(("CALCACHE_CONFIG_DIR", dir));
        }
        let dep = Deployment::start_binary(binary, 3, "versioned", &env);
        let target = Arc::new(Target::new(dep.bases.clone(), dep.db_url.clone()));
        let token = seed(&target, 70, start).await;
        let urls: Vec<String> =
            dep.bases.iter().map(|b| format!("{b}/api/calendar/feed?start={}&end={}", fmt(start), fmt(end))).collect();
        for u in &urls {
            wrk(u, &token, true, None, None, 2);
        }
        let (b0, r0) = (redis.bytes_out(), cpu_secs(rpid));
        let runs: Vec<WrkSummary> = std::thread::scope(|s| {
            let handles: Vec<_> = urls.iter().map(|u| s.spawn(|| wrk(u, &token, true, None, None, secs))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let n = runs.iter().map(|r| r.requests).sum::<u64>().max(1) as f64;
        let rps: f64 = runs.iter().map(|r| r.requests as f64 / (r.duration_us.max(1) as f64 / 1e6)).sum();
        let p99 = runs.iter().map(|r| r.p99).max().unwrap_or(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "| {build} | {rps:.0} | {p99:.2} ms | {:.1} µs | {:.0} |",
            (cpu_secs(rpid) - r0) * 1e6 / n,
            (redis.bytes_out() - b0) / n
        );
    }
    out
}
