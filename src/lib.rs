//! calcache: calendar feeds from PostgreSQL through a shared, versioned
//! Redis cache that never serves what a user already changed or deleted.
//!
//! Layers, outside in: `routes` (HTTP) → `service` (use cases, transactions,
//! the commit-then-invalidate order) → `db` (Diesel, the source of truth)
//! and `cache` (Redis: keys, versions, read-through).

pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
#[cfg(feature = "loadgen")]
pub mod loadgen;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod service;
pub mod startup;
pub mod telemetry;
