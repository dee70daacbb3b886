//! Shared by `tests/migrate_v2.rs` and `tests/migrate_oldrsa.rs`: running the built
//! `pkcscca` against a store with the software CCA library, building stores through
//! the emulator, and the golden cases of whole runs (`tests/cmd/{v2objectsv3,oldrsakeys}`).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pkcscca::cca::rules::{self, Keyword, RuleArray};
use pkcscca::cca::Csulcca;
use pkcscca::pkcs11::{AttrType, KeyType, ObjectClass};
use pkcscca::store::{ByteOrder, Template};

use crate::common::emu::EmuSession;

/// One run of the binary.
#[derive(Debug)]
pub struct Run {
    /// The arguments it was given.
    pub args: Vec<String>,
    /// What was piped to its standard input.
    pub stdin: Vec<u8>,
    /// Exit status.
    pub rc: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `pkcscca ARGS` with a clean environment: the emulator of `session`, the lock
/// directory `<tmp>/lock`, no openCryptoki configuration; `stdin` piped.
pub fn pkcscca(session: &EmuSession, tmp: &Path, args: &[&str], stdin: &[u8]) -> Run {
    pkcscca_env(session, tmp, args, stdin, &[])
}

/// [`pkcscca`] with extra environment variables (e.g. emulator fault knobs).
pub fn pkcscca_env(
    session: &EmuSession,
    tmp: &Path,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Run {
    // Wait while a tests/ock381 or tests/interop harness runs its pkcsslotd.
    let _guard = crate::common::lab::no_pkcsslotd_guard();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pkcscca"))
        .args(args)
        .env_clear()
        .envs(session.child_env())
        .env("PKCSCCA_LOCK_DIR", tmp.join("lock"))
        .env(
            "PKCSCCA_OPENCRYPTOKI_CONF",
            tmp.join("no-opencryptoki.conf"),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pkcscca");
    // A run refused before the prompts never reads its input.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: stdin.to_vec(),
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The vectors' PINs, one line each.
pub const PINS: &[u8] = b"76543210\n11223344\n";

/// Compares a run with `tests/cmd/<name>.case` (command included), the store's scratch
/// directory (the parent of `store`) shown as `@LAB@`; `PKCSCCA_UPDATE_GOLDEN=1`
/// rewrites the file.
pub fn check_golden(name: &str, run: &Run, store: &Path) {
    let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
    let seen = crate::common::golden::Observed {
        args: &args,
        stdin: &run.stdin,
        rc: run.rc,
        stdout: &run.stdout,
        stderr: &run.stderr,
    };
    let lab = store.parent().expect("the store is <scratch dir>/store");
    crate::common::golden::check_scenario(name, lab, &seen);
}

/// A fresh temporary directory with the store at `<tmp>/store`.
pub fn temp() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    (tmp, dir)
}

/// A DES DATA key token (24-byte key) made by the card.
pub fn des_token(cca: &Csulcca) -> [u8; 64] {
    let mut t = [0u8; 64];
    cca.csnbkgn(Keyword::new("KEYLN24"), Keyword::new("DATA"), &mut t)
        .unwrap();
    t
}

/// An AES DATA key token (version `X'04'`) of `bits` bits made by the card.
pub fn aes_token(cca: &Csulcca, bits: u32) -> [u8; 64] {
    let len = match bits {
        128 => "KEYLN16",
        192 => "KEYLN24",
        _ => "KEYLN32",
    };
    let skel = cca
        .csnbktb(
            Keyword::new("DATA"),
            &RuleArray::new(&[
                rules::INTERNAL,
                rules::AES,
                rules::NO_KEY,
                Keyword::new(len),
            ]),
        )
        .unwrap();
    let mut key = skel;
    let kl = if bits == 256 { "" } else { len };
    cca.csnbkgn(Keyword::new(kl), Keyword::new("AESTOKEN"), &mut key)
        .unwrap();
    key
}

/// An RSA-CRT (`X'08'`) private key token under the ASYM master key.
pub fn rsa_crt_token(cca: &Csulcca, bits: u16) -> Vec<u8> {
    let mut kvs = vec![0u8; 21];
    kvs[0..2].copy_from_slice(&bits.to_be_bytes());
    kvs[4..6].copy_from_slice(&3u16.to_be_bytes());
    kvs[18..21].copy_from_slice(&[1, 0, 1]);
    let skel = cca
        .csndpkb(&RuleArray::new(&[rules::RSA_CRT, rules::KEY_MGMT]), &kvs)
        .unwrap();
    cca.csndpkg(&skel).unwrap()
}

/// A key object template as openCryptoki's CCA token stores it.
pub fn key_template(
    order: ByteOrder,
    class: ObjectClass,
    key_type: KeyType,
    label: &str,
    private: bool,
) -> Template {
    let mut t = Template::new(order);
    t.set_ulong(AttrType::CLASS, class.value());
    t.set_bool(AttrType::TOKEN, true);
    t.set_bool(AttrType::PRIVATE, private);
    t.set(AttrType::LABEL, label.as_bytes().to_vec());
    t.set_ulong(AttrType::KEY_TYPE, key_type.value());
    t
}
