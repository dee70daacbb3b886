//! Shared helpers for the root package's integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod emu;
