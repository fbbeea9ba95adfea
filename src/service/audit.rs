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
use crate::cache::{FeedBody, FeedParams, Versions};
use crate::domain::UserId;
use crate::metrics::AuditResult;

const SETTLE: Duration = Duration::from_secs(1);

/// A served hit, for the auditor to re-check.
#[derive(Debug, Clone)]
pub struct AuditSample {
    pub user: UserId,
    pub params: FeedParams,
    pub versions: Versions,
    pub body: FeedBody,
}

/// Picks the hits to re-check: each with probability `rate`.
#[derive(Debug)]
pub struct Sampler {
    rate: f64,
    tx: tokio::sync::mpsc::Sender<AuditSample>,
}

impl Sampler {
    /// A sampler and the receiving end of its samples (for `run_auditor`).
    /// `rate` is checked at config load (0.0..=1.0).
    pub fn new(rate: f64) -> (Self, Receiver<AuditSample>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        (Self { rate, tx }, rx)
    }

    /// Samples a served hit, maybe. A full queue drops the sample: auditing
    /// must never slow a hit.
    pub fn offer(&self, user: UserId, params: &FeedParams, versions: &Versions, body: &FeedBody) {
        if rand::random_bool(self.rate) {
            let sample = AuditSample { user, params: *params, versions: versions.clone(), body: body.clone() };
            let _ = self.tx.try_send(sample);
        }
    }
}

pub async fn run_auditor(state: Arc<AppState>, mut samples: Receiver<AuditSample>) {
    while let Some(sample) = samples.recv().await {
        let result = audit_one(&state, &sample).await;
        state.metrics.audited(result);
        if result == AuditResult::Mismatch {
            tracing::error!(user_id = %sample.user, version = sample.versions.version, "freshness audit: a cache hit differed from PostgreSQL");
        }
    }
}

async fn audit_one(state: &AppState, s: &AuditSample) -> AuditResult {
    let sampled = Some(s.versions.clone());
    let current = async || state.cache.peek_versions(s.user, &s.params).await.ok().flatten();
    if current().await != sampled {
        return AuditResult::Skipped;
    }
    let Ok(truth) = load_feed(state, s.user, &s.params).await else {
        return AuditResult::Skipped;
    };
    // The JSON, not the gzip: another process may have compressed the same
    // JSON into other bytes.
    if s.body.json().is_ok_and(|served| served == truth) {
        return AuditResult::Match;
    }
    // Different: only stale if no invalidation arrives for this user.
    tokio::time::sleep(SETTLE).await;
    if current().await == sampled { AuditResult::Mismatch } else { AuditResult::Skipped }
}
