//! Redis Cluster only (scripts/cluster-test.sh runs it against a local
//! cluster of three masters with one replica each): the master owning a
//! user's slot fails over in the middle of a run, and no read is stale and
//! no invalidation is lost. Against a single Redis it is skipped.

use crate::helpers::each_versioned_strategy;
use std::process::Command;
use std::time::{Duration, Instant};

use calcache::domain::UserId;
use reqwest::StatusCode;

use crate::helpers::{OCT, TestApp, cluster_nodes, eventually, item, spawn_app, spawn_sibling};

async fn node(addr: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let connect = client.get_multiplexed_async_connection();
    tokio::time::timeout(Duration::from_millis(500), connect).await.ok()?.ok()
}

async fn ask<T: redis::FromRedisValue>(addr: &str, cmd: &redis::Cmd) -> Option<T> {
    let mut conn = node(addr).await?;
    tokio::time::timeout(Duration::from_millis(500), cmd.query_async(&mut conn)).await.ok()?.ok()
}

/// The address (`host:port`) of the healthy master serving `slot`, as the
/// node at `via` sees it.
async fn master_of(via: &str, slot: u16) -> Option<String> {
    let nodes: String = ask(via, redis::cmd("CLUSTER").arg("NODES")).await?;
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if !flags.contains("master") || flags.contains("fail") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let mut ends = range.splitn(2, '-').map(|n| n.parse::<u16>().ok());
            match (ends.next().flatten(), ends.next()) {
                (Some(lo), None) => lo == slot,
                (Some(lo), Some(Some(hi))) => (lo..=hi).contains(&slot),
                _ => false,
            }
        });
        serves.then(|| fields[1].split('@').next().unwrap_or(fields[1]).to_owned())
    })
}

async fn cluster_ok(addr: &str) -> bool {
    ask::<String>(addr, redis::cmd("CLUSTER").arg("INFO")).await.is_some_and(|i| i.contains("cluster_state:ok"))
}

/// Every node up, every master with an online replica and every replica
/// linked: what a failover needs, and what a previous failover test leaves
/// only once its resumed master has re-synced as a replica.
async fn cluster_whole(seeds: &[String]) -> bool {
    for s in seeds {
        if !cluster_ok(s).await {
            return false;
        }
        let Some(info) = ask::<String>(s, &redis::cmd("INFO").arg("replication").clone()).await else {
            return false;
        };
        let linked = if info.contains("role:master") {
            info.lines().any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        } else {
            info.contains("master_link_status:up")
        };
        if !linked {
            return false;
        }
    }
    true
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(sig).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// The feed's item ids, sorted.
async fn feed_ids(app: &TestApp, user: &crate::helpers::TestUser) -> Vec<String> {
    let feed = app.feed(user, OCT).await;
    assert_eq!(feed.status, StatusCode::OK);
    let mut ids = feed.ids();
    ids.sort();
    ids
}

/// Continues the old master when the test ends, however it ends, so the
/// cluster stays whole for whatever runs next.
struct Resume(Option<u32>);

impl Drop for Resume {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill").arg("-CONT").arg(pid.to_string()).status();
        }
    }
}

each_versioned_strategy! {
#[tokio::test]
async fn a_master_failing_over_mid_run_loses_no_invalidation_and_serves_nothing_stale() {
    let Some(seeds) = cluster_nodes() else {
        eprintln!("skipped: needs Redis Cluster (run scripts/cluster-test.sh)");
        return;
    };
    let seeds: Vec<String> = seeds.iter().map(|s| crate::helpers::authority(s)).collect();
    // After another failover test, wait for its old master to be a synced
    // replica again (writes need a replica's acknowledgement).
    crate::helpers::eventually(Duration::from_secs(60), "the cluster whole again", || cluster_whole(&seeds)).await;
    let writer = spawn_app().await;
    let reader = spawn_sibling(&writer).await;
    let user = writer.new_user().await;
    let mut live: Vec<String> = Vec::new();
    for day in 1..=3 {
        let created =
            writer.create_item(&user, item(&format!("w{day}"), &format!("2026-10-{day:02}"), "2026-10-28")).await;
        live.push(created["id"].as_str().unwrap().to_owned());
    }
    live.sort();
    // The writer's read fills the shared cache; the other process hits it.
    assert_eq!(feed_ids(&writer, &user).await, live);
    assert_eq!(reader.feed(&user, OCT).await.x_cache, "HIT");

    // The master that owns this user's slot, and its process.
    let version_key = writer.keys().version(UserId(user.id));
    let slot: u16 = ask(&seeds[0], redis::cmd("CLUSTER").arg("KEYSLOT").arg(&version_key)).await.unwrap();
    let old_master = master_of(&seeds[0], slot).await.unwrap();
    let info: String = ask(&old_master, redis::cmd("INFO").arg("server")).await.unwrap();
    let pid: u32 = info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().parse().unwrap();
    let survivors: Vec<String> = seeds.iter().filter(|s| **s != old_master).cloned().collect();

    // Freeze it: it stops answering but keeps its sockets, the harder case
    // for clients (timeouts, not refused connections). After the cluster's
    // node timeout its replica is promoted.
    signal(pid, "-STOP");
    let mut resume = Resume(Some(pid));
    let started = Instant::now();
    let mut stale = Vec::new();
    let mut failed_over_at = None;
    let mut round = 0;
    // Keep writing and reading through the failover and a few rounds past it.
    // While the slot has no master a write cannot raise its fence: it must
    // answer 503 and change nothing (checked against PostgreSQL at the end).
    let mut refused = 0;
    loop {
        round += 1;
        let body = item(&format!("f{round}"), &format!("2026-10-{:02}", round % 27 + 1), "2026-10-29");
        let res = writer.post_json("/api/work-items", Some(&user.token), &body).await;
        match res.status() {
            StatusCode::CREATED => {
                let created: serde_json::Value = res.json().await.unwrap();
                live.push(created["id"].as_str().unwrap().to_owned());
            }
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("create answered {other}"),
        }
        if round % 3 == 0 {
            let id = live[0].clone();
            let res = writer.delete(&format!("/api/work-items/{id}"), &user.token).await;
            match res.status() {
                StatusCode::NO_CONTENT => {
                    live.remove(0);
                }
                StatusCode::SERVICE_UNAVAILABLE => refused += 1,
                other => panic!("delete answered {other}"),
            }
        }
        live.sort();
        for (who, app) in [("writer", &writer), ("reader", &reader)] {
            let got = feed_ids(app, &user).await;
            if got != live {
                stale.push(format!("round {round} via {who}: got {} ids, want {}", got.len(), live.len()));
            }
        }
        if failed_over_at.is_none() {
            for s in &survivors {
                if let Some(m) = master_of(s, slot).await
                    && m != old_master
                    && cluster_ok(s).await
                {
                    failed_over_at = Some(started.elapsed());
                    break;
                }
            }
        }
        if let Some(at) = failed_over_at
            && started.elapsed() > at + Duration::from_secs(2)
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "no failover within 40 s (round {round})");
    }
    eprintln!(
        "failover after {:?}, {round} rounds of writes and reads, {refused} writes refused",
        failed_over_at.unwrap_or_default()
    );

    // The old master comes back and rejoins as a replica.
    resume.0 = None;
    signal(pid, "-CONT");
    eventually(Duration::from_secs(30), "cluster ok on every node", || {
        let seeds = seeds.clone();
        async move {
            for s in &seeds {
                if !cluster_ok(s).await {
                    return false;
                }
            }
            true
        }
    })
    .await;

    // No invalidation lost: every one deferred during the outage was applied.
    eventually(Duration::from_secs(30), "outbox drained", || async { writer.outbox_depth().await == 0 }).await;

    // The shared cache now agrees with PostgreSQL, from either process, and
    // serves it from Redis again.
    let truth = {
        let mut ids =
            writer.sql_strings(&format!("SELECT id::text AS value FROM work_items WHERE owner_id = {}", user.id)).await;
        ids.sort();
        ids
    };
    assert_eq!(truth, live, "the test's own bookkeeping matches PostgreSQL");
    for (who, app) in [("writer", &writer), ("reader", &reader)] {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            let feed = app.feed(&user, OCT).await;
            let mut ids = feed.ids();
            ids.sort();
            assert_eq!(ids, truth, "{who} after the failover");
            seen.push(feed.x_cache.clone());
            if feed.x_cache == "HIT" {
                break;
            }
            assert!(Instant::now() < deadline, "{who} never served from Redis again: {seen:?}");
        }
        eprintln!("{who} after the failover: {seen:?}");
    }
    assert!(stale.is_empty(), "stale reads during the failover: {stale:#?}");
}
}

#[tokio::test]
async fn a_write_no_replica_can_acknowledge_is_refused_and_changes_nothing() {
    if cluster_nodes().is_none() {
        eprintln!("skipped: needs Redis Cluster (run scripts/cluster-test.sh)");
        return;
    }
    // Each master has one replica: WAIT for two can never be satisfied, as
    // when a replica lags or is down and the bump may exist on the master only.
    // The write fence could be lost with its master, so the write must not
    // start: 503, nothing in PostgreSQL, nothing in the outbox.
    let app = crate::helpers::spawn_app_with(|s| s.redis.cluster_wait_replicas = 2).await;
    let user = app.new_user().await;
    let res =
        app.post_json("/api/work-items", Some(&user.token), &item("unreplicated", "2026-10-05", "2026-10-06")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(app.outbox_depth().await, 0);
    let stored =
        app.sql_strings(&format!("SELECT id::text AS value FROM work_items WHERE owner_id = {}", user.id)).await;
    assert!(stored.is_empty(), "a refused write was committed: {stored:?}");
    let feed = app.feed(&user, OCT).await;
    assert!(feed.ids().is_empty());
}
