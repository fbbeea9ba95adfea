//! The freshness auditor: re-checks a sample of served cache hits against
//! PostgreSQL and counts mismatches (the way Facebook's memcache team audits
//! invalidation). Off unless `cache.audit_sample_rate` > 0.
//!
//! A hit is stale if the body served differs from what PostgreSQL says
//! *while the version it was served under is still current*. A mutation
//! between the serve and the re-check bumps the version, and then the sample
//! says nothing (counted as `skipped`). The version is read before and after
//! the query, so a commit in between is never mistaken for staleness; a
//! mutation that committed but whose bump is still in flight is given
//! `SETTLE` to land before a mismatch is counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use super::AppState;
use super::feed::load_feed;
use crate::cache::AuditSample;
use crate::cache::FeedBody;
use crate::metrics::AuditResult;

const SETTLE: Duration = Duration::from_secs(1);

pub async fn run_auditor(state: Arc<AppState>, mut samples: Receiver<AuditSample>) {
    while let Some(sample) = samples.recv().await {
        let result = audit_one(&state, &sample).await;
        state.metrics.audited(result);
        if result == AuditResult::Mismatch {
            tracing::error!(user_id = %sample.user, version = sample.version, "freshness audit: a cache hit differed from PostgreSQL");
        }
    }
}

async fn audit_one(state: &AppState, s: &AuditSample) -> AuditResult {
    let sampled = Some((s.version, s.buckets.clone()));
    let current = async || state.cache.peek_versions(s.user, &s.params).await.ok().flatten();
    if current().await != sampled {
        return AuditResult::Skipped;
    }
    let Ok(truth) = load_feed(state, s.user, &s.params).await else {
        return AuditResult::Skipped;
    };
    // The JSON, not the gzip: another process may have compressed the same
    // JSON into other bytes.
    if FeedBody::Gzip(s.body.clone()).json().is_ok_and(|served| served == truth) {
        return AuditResult::Match;
    }
    // Different: only stale if no invalidation arrives for this user.
    tokio::time::sleep(SETTLE).await;
    if current().await == sampled { AuditResult::Mismatch } else { AuditResult::Skipped }
}
