//! The short soak: two instances sharing PostgreSQL and Redis, 16 clients,
//! 90 % feed reads / 10 % writes over 50 users with assignments between
//! them; every feed answer is checked against PostgreSQL's truth at that
//! moment. The long form is `benches/hit_rates.rs --soak`.

use crate::helpers::each_versioned_strategy;
use std::sync::Arc;
use std::time::Duration;

pub use calcache::loadgen;

use crate::helpers::{spawn_app, spawn_sibling};

each_versioned_strategy! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_two_instances_mixed_load_has_no_stale_reads_and_no_5xx() {
    let a = spawn_app().await;
    let b = spawn_sibling(&a).await;
    let secs = std::env::var("CALCACHE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let w = loadgen::Workload { duration: Duration::from_secs(secs), items_per_user: 10, ..Default::default() };
    let target = Arc::new(loadgen::Target::new(vec![a.address.clone(), b.address.clone()], a.db_url.clone()));
    let users = loadgen::seed(&target, &w, "soak").await;
    let report = loadgen::run(target, users, &w, None).await;
    println!("soak: {}", report.summary());
    assert!(report.feeds > 500, "the soak ran: {}", report.summary());
    assert!(report.writes > 20, "{}", report.summary());
    assert_eq!(report.server_errors, 0, "{}", report.summary());
    assert_eq!(report.other_errors, 0, "{}", report.summary());
    assert_eq!(report.stale, 0, "{}; first: {:?}", report.summary(), report.first_stale);
    assert!(report.hits > 0, "{}", report.summary());
}
}
