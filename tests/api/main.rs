//! The integration suite: one binary (links once), every test against the
//! real PostgreSQL and Redis, each with its own database and key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod auth;
mod bad_input;
mod buckets;
mod changes;
mod chaos;
mod cluster;
mod consistency;
mod control_plane;
mod faults;
mod feed;
#[allow(dead_code, reason = "a shared toolbox; not every module uses every helper")]
mod helpers;
mod limits;
mod migrations;
mod near;
mod openapi;
mod ops;
mod page;
mod partial;
mod process;
#[allow(dead_code, reason = "a shared toolbox")]
mod proxy;
mod soak;
mod strategies;
mod trust;
mod work_items;
