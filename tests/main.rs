//! The integration tests: one test crate (one binary, `cargo test --test
//! integration`), a module per area, `common` for what they share.
//! Cargo.toml sets `autotests = false`: a new file here is a module listed
//! below, not a binary of its own.
//!
//! Run one area: `cargo test --release --test integration peers_cluster::`.
//! Tests that count this process's threads and fds, or fork, run in a
//! process of their own (`common::process::in_own_process`).

mod common;

mod attack_peers;
mod engine_batch;
mod engine_fork;
mod engine_group;
mod peers_cluster;
mod peers_dns;
mod peers_escape;
mod peers_gonode;
mod peers_perf;
mod peers_ring;
mod peers_tls;
mod reliability_peers;
mod reliability_race;
mod reliability_stress;
