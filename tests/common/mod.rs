//! Shared helpers for the root package's integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

pub mod emu;
