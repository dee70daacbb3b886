//! The shipped binary carries no test-only code: `cargo build --release -p
//! pkcscca` builds without the `testkit` feature, so it has no store-creation
//! symbol and knows only the CCA verbs the modes call.
//!
//! The verb names are the sharp check: with `testkit` the `Verb` enum has the
//! 13 test-only verbs and the binary holds their names (verified when this test
//! was written), without it none of them. Symbols are read with `nm` from
//! binutils; without `nm` the test fails, it does not pass unchecked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The verbs only tests and benches call (behind `testkit`).
const TESTKIT_VERBS: [&str; 13] = [
    "CSUACFV", "CSNBMKP", "CSNBENC", "CSNBSAE", "CSNBSAD", "CSNDDSG", "CSNDDSV", "CSNBKGN",
    "CSNBKTB", "CSNDPKB", "CSNDPKG", "CSNBKTB2", "CSNBKGN2",
];

/// The verbs the modes call, which the binary must name.
const MODE_VERBS: [&str; 7] = [
    "CSNBKTC", "CSNBKTC2", "CSNDKTC", "CSUACFQ", "CSNBDEC", "CSNDPKT", "CSNDPKX",
];

/// Symbols from store creation and the dumps (demangled).
const TESTKIT_SYMBOLS: [&str; 5] = [
    "pkcscca::store::create::",
    "pkcscca::store::TokenStore::create",
    "pkcscca::store::TokenStore::add_object",
    "pkcscca::store::attrs::Template::dump",
    "pkcscca::store::StoredObject::dump",
];

/// Builds the release binary exactly as the README says and returns its path.
fn release_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "pkcscca"])
        .current_dir(root)
        .status()
        .expect("run cargo build --release -p pkcscca");
    assert!(status.success(), "cargo build --release -p pkcscca failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("release").join("pkcscca")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn release_binary_has_no_testkit_code() {
    let bin = release_binary();

    let out = Command::new("nm")
        .args(["--demangle", "--defined-only"])
        .arg(&bin)
        .output()
        .expect("nm (binutils) is needed to read the release binary's symbols");
    assert!(out.status.success(), "nm failed: {out:?}");
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(
        symbols.contains("pkcscca::"),
        "nm shows no pkcscca symbol: is the binary stripped? {}",
        bin.display()
    );
    for s in TESTKIT_SYMBOLS {
        let hits: Vec<&str> = symbols.lines().filter(|l| l.contains(s)).collect();
        assert!(
            hits.is_empty(),
            "store-creation code in the binary: {hits:#?}"
        );
    }

    let bytes = std::fs::read(&bin).unwrap();
    for v in MODE_VERBS {
        assert!(contains(&bytes, v), "the binary does not name {v}");
    }
    for v in TESTKIT_VERBS {
        assert!(
            !contains(&bytes, v),
            "the binary names the test-only verb {v}"
        );
    }
}
