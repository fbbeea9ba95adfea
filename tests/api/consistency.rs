//! The freshness promise across processes: a write through one instance is
//! never read stale through another that shares PostgreSQL and Redis.

use crate::helpers::each_versioned_strategy;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{OCT, spawn_app, spawn_sibling};

each_versioned_strategy! {
#[tokio::test]
async fn two_hundred_rounds_of_write_here_read_there_see_no_stale_feed() {
    let writer = spawn_app().await;
    let reader = spawn_sibling(&writer).await;
    let owner = writer.new_user().await;
    let assignee = writer.new_user().await;
    let mut live: Vec<String> = Vec::new();
    let mut stale = 0;
    for round in 0..200 {
        // Warm both users' caches on the reader.
        reader.feed(&owner, OCT).await;
        reader.feed(&assignee, OCT).await;
        match round % 3 {
            0 => {
                let body = json!({"title": format!("r{round}"), "work_type": "task",
                    "start": format!("2026-10-{:02}T09:00:00Z", round % 28 + 1), "assignee_ids": [assignee.id]});
                let created = writer.create_item(&owner, body).await;
                live.push(created["id"].as_str().unwrap().to_owned());
            }
            1 if !live.is_empty() => {
                let id = &live[round % live.len()];
                let res = writer
                    .patch_json(&format!("/api/work-items/{id}"), &owner.token, &json!({"title": format!("p{round}")}))
                    .await;
                assert_eq!(res.status(), StatusCode::OK);
            }
            _ if !live.is_empty() => {
                let id = live.remove(round % live.len());
                let res = writer.delete(&format!("/api/work-items/{id}"), &owner.token).await;
                assert_eq!(res.status(), StatusCode::NO_CONTENT);
            }
            _ => {}
        }
        // Truth, straight from the database through the writer's API.
        let mut expected = live.clone();
        expected.sort();
        for user in [&owner, &assignee] {
            let feed = reader.feed(user, OCT).await;
            assert_eq!(feed.status, StatusCode::OK);
            let mut got = feed.ids();
            got.sort();
            if got != expected {
                stale += 1;
            }
        }
        // Titles too: a patch must be visible at once.
        if round % 3 == 1 && !live.is_empty() {
            let id = &live[round % live.len()];
            let feed = reader.feed(&owner, OCT).await;
            let title = feed
                .body
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["extendedProps"]["workItemId"] == id.as_str())
                .map(|e| e["title"].as_str().unwrap().to_owned());
            if title.as_deref() != Some(format!("p{round}").as_str()) {
                stale += 1;
            }
        }
    }
    assert_eq!(stale, 0, "stale reads through the second instance");
    // And the cache was really in play, not bypassed.
    let text = reader.metrics_text().await;
    assert!(crate::helpers::metric(&text, "calcache_feed_cache_requests_total{outcome=\"hit\"}") > 100.0, "{text}");
}
}
