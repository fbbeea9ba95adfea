//! The chaos soak: the truth-checking load generator against three
//! processes while faults are injected at random, one at a time — Redis
//! restarted empty, Redis partitioned from everyone, one process cut from
//! Redis, PostgreSQL partitioned (packets dropped) and reset, a replica
//! killed and restarted, a slow Redis. At the end: 0 stale reads, 0 lost
//! acknowledged writes, every error a JSON 503 (or, for the killed replica,
//! a refused connection) inside a declared fault window, the outbox drained.
//! `CALCACHE_CHAOS_SECS` sets the length (30 s in the test command),
//! `CALCACHE_CHAOS_SEED` the fault schedule; the
//! long form's figures are in BENCHMARKS.md.

use crate::helpers::each_versioned_strategy;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calcache::config::{RedisMode, Settings};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use secrecy::ExposeSecret;

use crate::helpers::{
    TestApp, authority, base_settings, eventually, spawn_app_with, spawn_sibling_with, try_spawn_sibling_with,
    with_authority,
};
use crate::proxy::{Mode, Proxy, RedisServer};
use crate::soak::loadgen;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    RedisRestartedEmpty,
    RedisPartitioned,
    OneProcessCutFromRedis(usize),
    SlowRedis,
    PostgresPartitioned,
    PostgresReset,
    ReplicaKilled(usize),
}

/// After a fault is healed, how long its effects may still be seen: a
/// breaker cool-down, a request bounded by `database.request_timeout_ms`,
/// pools reconnecting.
const GRACE: Duration = Duration::from_secs(4);

fn configure(s: &mut Settings, redis_port: u16, pg_port: u16) {
    s.redis.mode = RedisMode::Single;
    s.redis.url = format!("redis://127.0.0.1:{redis_port}").into();
    s.redis.timeout = std::time::Duration::from_millis(300);
    s.redis.breaker_cooldown = std::time::Duration::from_millis(200);
    s.database.url = with_authority(s.database.url.expose_secret(), &format!("127.0.0.1:{pg_port}")).into();
    s.database.request_timeout = std::time::Duration::from_millis(2000);
    s.database.statement_timeout = std::time::Duration::from_millis(1500);
    s.database.connect_timeout = std::time::Duration::from_millis(500);
    s.cache.outbox_interval = std::time::Duration::from_millis(100);
}

/// Holds a fault (or the calm between two) for `d`: a schedule, not a wait
/// for a condition.
async fn hold(d: Duration) {
    tokio::time::sleep_until(tokio::time::Instant::now() + d).await;
}

each_versioned_strategy! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_loses_nothing_serves_nothing_stale_and_fails_only_with_503_inside_fault_windows() {
    let secs = std::env::var("CALCACHE_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30u64);
    let mut redis = RedisServer::start().await;
    let pg = Proxy::start(authority(base_settings().database.url.expose_secret())).await;
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(Proxy::start(format!("127.0.0.1:{}", redis.port)).await);
    }
    let (rp, pp) = (proxies.iter().map(|p| p.port).collect::<Vec<_>>(), pg.port);
    let first = spawn_app_with(|s| configure(s, rp[0], pp)).await;
    let second = spawn_sibling_with(&first, |s| configure(s, rp[1], pp)).await;
    let third = spawn_sibling_with(&first, |s| configure(s, rp[2], pp)).await;
    let bases = vec![first.address.clone(), second.address.clone(), third.address.clone()];
    let ports = [first.port, second.port, third.port];
    let mut replicas: Vec<Option<TestApp>> = vec![Some(second), Some(third)];

    // The generator checks the truth in PostgreSQL directly, not through
    // the proxy the faults go through.
    let target = Arc::new(loadgen::Target::new(bases, first.db_url.clone()));
    let w = loadgen::Workload {
        duration: Duration::from_secs(secs),
        users: 20,
        clients: 8,
        items_per_user: 5,
        read_ratio: 0.85,
        ..Default::default()
    };
    let users = loadgen::seed(&target, &w, "chaos").await;
    let started = Instant::now();
    let load = tokio::spawn({
        let (target, w) = (target.clone(), w.clone());
        async move { loadgen::run(target, users, &w, None).await }
    });

    // A fixed schedule by default, so a failure can be replayed;
    // `CALCACHE_CHAOS_SEED` draws another.
    let seed = std::env::var("CALCACHE_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(w.seed);
    println!("chaos: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut windows: Vec<(Fault, Instant, Instant)> = Vec::new();
    while started.elapsed() + Duration::from_secs(4) < w.duration {
        hold(Duration::from_millis(rng.random_range(500..1200))).await;
        let fault = match rng.random_range(0..7) {
            0 => Fault::RedisRestartedEmpty,
            1 => Fault::RedisPartitioned,
            2 => Fault::OneProcessCutFromRedis(rng.random_range(0..3)),
            3 => Fault::SlowRedis,
            4 => Fault::PostgresPartitioned,
            5 => Fault::PostgresReset,
            _ => Fault::ReplicaKilled(rng.random_range(0..2)),
        };
        let from = Instant::now();
        let length = Duration::from_millis(rng.random_range(800..2000));
        match fault {
            Fault::RedisRestartedEmpty => redis.restart().await,
            Fault::RedisPartitioned => {
                for p in &proxies {
                    p.cut().await;
                }
                hold(length).await;
                proxies.iter().for_each(Proxy::heal);
            }
            Fault::OneProcessCutFromRedis(i) => {
                proxies[i].cut().await;
                hold(length).await;
                proxies[i].heal();
            }
            Fault::SlowRedis => {
                proxies.iter().for_each(|p| p.set(Mode::Slow(200, 600)));
                hold(length).await;
                proxies.iter().for_each(Proxy::heal);
            }
            Fault::PostgresPartitioned => {
                pg.set(Mode::Blackhole);
                hold(length).await;
                pg.heal();
            }
            Fault::PostgresReset => {
                pg.cut().await;
                hold(length / 4).await;
                pg.heal();
            }
            Fault::ReplicaKilled(i) => {
                drop(replicas[i].take());
                hold(length).await;
                let port = ports[i + 1];
                eventually(Duration::from_secs(10), "the killed replica's port is free", || async move {
                    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                })
                .await;
                // Started like a fresh replica: it migrates and binds first,
                // and PostgreSQL may be slow to answer on a loaded machine.
                let deadline = Instant::now() + Duration::from_secs(20);
                let restarted = loop {
                    let tried = try_spawn_sibling_with(&first, |s| {
                        configure(s, rp[i + 1], pp);
                        s.server.port = port;
                    })
                    .await;
                    match tried {
                        Ok(app) => break app,
                        Err(e) => assert!(Instant::now() < deadline, "the killed replica does not start again: {e:?}"),
                    }
                };
                replicas[i] = Some(restarted);
            }
        }
        windows.push((fault, from, Instant::now()));
    }
    let report = load.await.unwrap();
    let ended = Instant::now();

    // Every acknowledged write stands and every read was the truth.
    println!("chaos: {}", report.summary());
    println!("chaos: faults {:?}", windows.iter().map(|w| w.0).collect::<Vec<_>>());
    assert!(windows.len() >= 3, "too few faults injected: {windows:?}");
    assert!(report.feeds > 200 && report.writes > 20, "the load ran: {}", report.summary());
    assert_eq!(report.stale, 0, "{}; first: {:?}", report.summary(), report.first_stale);
    assert_eq!(report.lost, 0, "{}; first: {:?}", report.summary(), report.first_lost);
    for e in &report.errors {
        // Windows overlap by their grace: any one that explains it will do.
        let during: Vec<Fault> =
            windows.iter().filter(|(_, from, to)| e.at >= *from && e.at <= *to + GRACE).map(|w| w.0).collect();
        assert!(!during.is_empty(), "{e:?} at {:?} outside every fault window: {windows:?}", e.at - started);
        match e.status {
            Some(503) => assert!(
                ["unavailable", "outcome_unknown"].contains(&e.code.as_str()),
                "a 503 without the contract's body: {e:?}"
            ),
            None => assert!(
                during.iter().any(|f| matches!(f, Fault::ReplicaKilled(_))),
                "no answer during {during:?}: {e:?}"
            ),
            Some(_) => panic!("{e:?} during {during:?}: only 503s may come from a fault"),
        }
    }
    // Nothing left behind: every deferred invalidation was applied.
    eventually(Duration::from_secs(15), "the outbox drains after the faults", || async {
        first.outbox_depth().await == 0
    })
    .await;
    tracing::info!(after = ?ended.elapsed(), "outbox drained");
}
}
