//! Micro-benchmarks of the hot path's pure parts:
//!   cargo bench --bench micro
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmarks fail loudly")]

use std::hint::black_box;

use calcache::cache::{FeedBody, FeedParams, Keys};
use calcache::db::FeedRow;
use calcache::domain::{Status, TimeRange, Timestamp, UserId, WorkItemId, WorkType};
use calcache::service::feed::serialize_feed;
use chrono::{Duration, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn params() -> FeedParams {
    let range =
        TimeRange::new(Timestamp::parse("2026-09-28").unwrap(), Timestamp::parse("2026-11-09").unwrap()).unwrap();
    FeedParams { range, work_type: Some(WorkType::Task), status: Some(Status::InProgress) }
}

fn keys(c: &mut Criterion) {
    let keys = Keys::new("calcache");
    let p = params();
    c.bench_function("keys/feed", |b| {
        b.iter(|| {
            keys.feed(
                black_box(UserId(42)),
                black_box(calcache::cache::EntryKey::Versioned(1_764_000_000_000_000_123)),
                &p,
            )
        })
    });
    c.bench_function("keys/version", |b| b.iter(|| keys.version(black_box(UserId(42)))));
}

fn ranges(c: &mut Criterion) {
    c.bench_function("range/parse_and_normalize", |b| {
        b.iter(|| {
            let start = Timestamp::parse(black_box("2026-09-28T00:00:00+02:00")).unwrap();
            let end = Timestamp::parse(black_box("2026-11-09T00:00:00-05:00")).unwrap();
            TimeRange::new(start, end).unwrap()
        })
    });
    c.bench_function("range/parse_bare_date", |b| b.iter(|| Timestamp::parse(black_box("2026-10-06")).unwrap()));
}

fn rows(n: usize) -> Vec<FeedRow> {
    let t0 = Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap();
    (0..n)
        .map(|i| FeedRow {
            id: WorkItemId::new_random(),
            title: format!("Work item number {i}"),
            work_type: WorkType::Task,
            status: Status::InProgress,
            start_at: t0 + Duration::minutes(i as i64 * 15),
            end_at: t0 + Duration::minutes(i as i64 * 15 + 60),
            all_day: i % 7 == 0,
        })
        .collect()
}

fn serialization(c: &mut Criterion) {
    let mut group = c.benchmark_group("feed/serialize");
    for n in [1usize, 100, 10_000] {
        let data = rows(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &data, |b, data| {
            b.iter(|| serialize_feed(black_box(data)).unwrap())
        });
    }
    group.finish();
}

/// What a fill adds (compress) and what a hit costs a client that does not
/// accept gzip (decompress).
fn compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("feed/gzip");
    for n in [1usize, 100, 10_000] {
        let json = serialize_feed(&rows(n)).unwrap();
        let gz = FeedBody::Gzip(FeedBody::compress(&json).unwrap());
        println!("feed/gzip {n} events: {} bytes of JSON -> {} bytes", json.len(), gz.gzip().unwrap().len());
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::new("compress", n), &json, |b, json| {
            b.iter(|| FeedBody::compress(black_box(json)).unwrap())
        });
        group
            .bench_with_input(BenchmarkId::new("decompress", n), &gz, |b, gz| b.iter(|| black_box(gz).json().unwrap()));
    }
    group.finish();
}

criterion_group!(benches, keys, ranges, serialization, compression);
criterion_main!(benches);
