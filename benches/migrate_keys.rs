//! Benchmark: `pkcscca -m keys -k aes` over stores of growing size.
//!
//! For each size N it builds a 3.12+ store holding N AES DATA key objects (half
//! private, half public) under the software CCA's CURRENT AES master key, changes the
//! AES master key, and times the real binary migrating every key. It prints the wall
//! time, the time per key, and the peak resident memory of the `pkcscca` process (its
//! `VmHWM`, sampled until it exits), so that cost stays linear in the number of
//! objects and memory bounded. The emulator's per-verb latency knob can model a card:
//! `CSULCCA_EMU_LATENCY_US=300 cargo bench --bench migrate_keys`.
//!
//! Run: `cargo bench --bench migrate_keys` (sizes: `PKCSCCA_BENCH_SIZES=64,512,4096`;
//! a profiler around the binary: `PKCSCCA_BENCH_WRAP="perf record -g -o perf.data"`).
//! Timings are figures to read, not assertions: nothing here fails on a slow machine.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/common/emu.rs"]
#[allow(dead_code)]
mod emu;
#[path = "common/floor.rs"]
mod floor;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pkcscca::cca::rules::{Keyword, RuleArray};
use pkcscca::cca::token::MkType;
use pkcscca::cca::Csulcca;
use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
use pkcscca::store::{CreateOptions, Format, Template, TokenStore};

const SO_PIN: &[u8] = b"76543210";
const USER_PIN: &[u8] = b"11223344";

/// One AES-256 DATA key token under the CURRENT AES master key.
fn aes_token(cca: &Csulcca) -> [u8; 64] {
    let rule = RuleArray::new(&[
        Keyword::new("INTERNAL"),
        Keyword::new("AES"),
        Keyword::new("NO-KEY"),
        Keyword::new("KEYLN32"),
    ]);
    let mut t = cca.csnbktb(Keyword::new("DATA"), &rule).expect("CSNBKTB");
    cca.csnbkgn(Keyword::new(""), Keyword::new("AESTOKEN"), &mut t)
        .expect("CSNBKGN");
    t
}

fn build_store(dir: &Path, cca: &Csulcca, n: usize) {
    let mut opts = CreateOptions::new(Format::New);
    opts.pbkdf2_iterations = 1000;
    let (mut store, mk) = TokenStore::create(dir, opts).expect("create store");
    for i in 0..n {
        let mut t = Template::new(store.byte_order());
        let private = i % 2 == 0;
        t.set_ulong(AttrType::CLASS, ObjectClass::SECRET_KEY.value());
        t.set_ulong(AttrType::KEY_TYPE, KeyType::AES.value());
        t.set_bool(AttrType::TOKEN, true);
        t.set_bool(AttrType::PRIVATE, private);
        t.set(AttrType::LABEL, format!("bench-{i}").into_bytes());
        t.set(AttrType::VALUE, vec![0u8; 32]);
        t.set_ulong(AttrType::VALUE_LEN, 32);
        t.set(AttrType::IBM_OPAQUE, aes_token(cca).to_vec());
        store.add_object(&mk, t).expect("add object");
    }
}

/// Runs the binary, sampling its peak resident set until it exits.
fn run_pkcscca(session: &emu::EmuSession, dir: &Path, lock_dir: &Path) -> (Duration, u64, bool) {
    // `PKCSCCA_BENCH_WRAP="perf record -g -o perf.data"` (or strace, ...) runs the
    // binary under a profiler; the figures then include the profiler's cost.
    let wrap = std::env::var("PKCSCCA_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(env!("CARGO_BIN_EXE_pkcscca"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_pkcscca")),
    };
    let start = Instant::now();
    let mut child = cmd
        .args(["-m", "keys", "-s", "2", "-k", "aes", "-d"])
        .arg(dir)
        .envs(session.child_env())
        .env("PKCSCCA_LOCK_DIR", lock_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pkcscca");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[SO_PIN, b"\n", USER_PIN, b"\n"].concat())
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    (start.elapsed(), peak_kib, status.success())
}

fn main() {
    let sizes: Vec<usize> = std::env::var("PKCSCCA_BENCH_SIZES")
        .unwrap_or_else(|_| "64,512,2048,4096".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let latency = std::env::var("CSULCCA_EMU_LATENCY_US").ok();
    println!(
        "pkcscca -m keys -k aes, software CCA{}",
        latency
            .as_deref()
            .map(|l| format!(" (latency {l} us per verb)"))
            .unwrap_or_default()
    );
    println!(
        "{:>8} {:>12} {:>14} {:>14} {:>12} {:>11}",
        "keys", "wall (ms)", "per key (us)", "peak RSS (KiB)", "floor (ms)", "ours/floor"
    );
    for n in sizes {
        let session = emu::EmuSession::new("bench");
        let cca = session.open();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ccatok");
        build_store(&dir, &cca, n);
        // The master key change: a random NEW AES master key, then SET.
        cca.csnbmkp(MkType::Aes, Keyword::new("RANDOM"), &[])
            .expect("CSNBMKP RANDOM");
        cca.csnbmkp(MkType::Aes, Keyword::new("SET"), &[])
            .expect("CSNBMKP SET");
        if let Some(l) = &latency {
            std::env::set_var("CSULCCA_EMU_LATENCY_US", l);
        }
        // The I/O floor on a copy of the same store, just before our run.
        let copy = tmp.path().join("floor");
        let cp = Command::new("cp").arg("-a").arg(&dir).arg(&copy).status();
        assert!(cp.is_ok_and(|s| s.success()), "copy the store");
        let floor = floor::measure(&copy).total();
        let (wall, peak, ok) = run_pkcscca(&session, &dir, &tmp.path().join("lock"));
        std::env::remove_var("CSULCCA_EMU_LATENCY_US");
        assert!(ok, "pkcscca failed on {n} keys");
        let per_key = wall.as_secs_f64() * 1e6 / n.max(1) as f64;
        println!(
            "{n:>8} {:>12.1} {per_key:>14.1} {peak:>14} {:>12.1} {:>10.2}x",
            wall.as_secs_f64() * 1e3,
            floor.as_secs_f64() * 1e3,
            wall.as_secs_f64() / floor.as_secs_f64()
        );
    }
}
