//! Side-by-side benchmark: Debian's `pkcscca` 3.8.1 and ours on the same
//! openCryptoki 3.8.1 store after the same AES master key change.
//!
//! `cargo bench --bench side_by_side` runs `benches/side_by_side.sh` (which does the
//! work, see its header) when it is run as root with `PKCSCCA_BENCH_SIDE_BY_SIDE=1`;
//! otherwise it prints how to run it and exits 0, so a plain `cargo bench` on a
//! developer machine still works. The script changes the system (it installs
//! openCryptoki when missing, rewrites `/etc/opencryptoki`, starts and stops
//! pkcsslotd) and restores all of it, pass or fail, as the interop suites do:
//!
//! ```sh
//! PKCSCCA_BENCH_SIDE_BY_SIDE=1 flock /work/system.lock cargo bench --bench side_by_side
//! ```
//!
//! The script calls this binary back for the two steps that are Rust:
//!
//! * `floor DIR`: the I/O floor of a commit on the token directory DIR: write one
//!   temporary file per object listed in `TOK_OBJ/OBJ.IDX`, of the object's size,
//!   then one `syncfs`, then rename every temporary file over its object, then one
//!   `fsync` of `TOK_OBJ`. Prints the time of each phase.
//! * `build-store`: a store of more keys than openCryptoki 3.8.1 holds well, made
//!   with our test kit in 3.8.1's layout (see [`build_store`]).
//!
//! Exit status: the script's (non-zero when a tool migrated a key wrongly or a step
//! failed).
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/floor.rs"]
mod floor;

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use pkcscca::cca::rules::{Keyword, RuleArray};
use pkcscca::cca::{Csulcca, Verb};
use pkcscca::pkcs11::AttrType;
use pkcscca::store::{CreateOptions, Format, TokenStore};

/// The environment variable that turns the benchmark on.
const SWITCH: &str = "PKCSCCA_BENCH_SIDE_BY_SIDE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("floor") => floor(&args[1..]),
        Some("build-store") => build_store(&args[1..]),
        _ => entry(),
    }
}

/// `cargo bench` lands here: run the script, or say how to.
fn entry() -> ExitCode {
    let root = rustix::process::geteuid().is_root();
    let on = std::env::var(SWITCH).is_ok_and(|v| v == "1");
    if !root || !on {
        println!(
            "side_by_side: skipped ({}). This benchmark installs and runs openCryptoki 3.8.1\n\
             (Debian bookworm, x86_64) and restores the system afterwards; run it as root:\n\
             \n    {SWITCH}=1 flock /work/system.lock cargo bench --bench side_by_side\n\
             \n\
             Knobs: PKCSCCA_BENCH_RUNS (runs per tool, default 3), PKCSCCA_BENCH_STAGES\n\
             (default \"500 1000 2000 2000+2000\": private[+public] keys made by openCryptoki),\n\
             PKCSCCA_BENCH_BIG (default 4096: keys of the test-kit store for ours alone),\n\
             PKCSCCA_BENCH_LATENCY_US (default 500), PKCSCCA_BENCH_SINGLE (sizes of the\n\
             single-tool bench, default 500,4096), PKCSCCA_BENCH_KEEP=1 (keep the work dir).\n\
             See benches/side_by_side.sh.",
            if root {
                format!("{SWITCH} is not 1")
            } else {
                "not root".to_owned()
            }
        );
        return ExitCode::SUCCESS;
    }
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().expect("path of this benchmark binary");
    let status = Command::new("bash")
        .arg(root_dir.join("benches/side_by_side.sh"))
        .env("SBS_EXE", exe)
        .env("CARGO", env!("CARGO"))
        .current_dir(root_dir)
        .status()
        .expect("run bash benches/side_by_side.sh");
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// `floor DIR`: see the module docs. Prints one line of `key=value` fields.
fn floor(args: &[String]) -> ExitCode {
    let [dir] = args else {
        eprintln!("usage: side_by_side floor TOKEN_DIR");
        return ExitCode::from(2);
    };
    let f = floor::measure(Path::new(dir));
    println!(
        "files={} bytes={} write_s={:.4} syncfs_s={:.4} rename_s={:.4} dirsync_s={:.4} total_s={:.4}",
        f.files,
        f.bytes,
        f.write.as_secs_f64(),
        f.syncfs.as_secs_f64(),
        f.rename.as_secs_f64(),
        f.dirsync.as_secs_f64(),
        f.total().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// `build-store --lib LIB --like STORE --out DIR --private P --public Q --state FILE`:
/// a 3.8.1-layout store (old format, 3.8.1's NVTOK.DAT and object names, 64-byte
/// master key) with P private and Q public AES-256 keys, made with our test kit
/// (`TokenStore::create`, `add_object`). Each key's attributes are those of a key
/// openCryptoki 3.8.1 generated in STORE (its first private or public secret key),
/// with a new label and a new secure key token from the emulator LIB
/// (CSNBKTB + CSNBKGN under the card's CURRENT AES master key). Appends one line per
/// key to FILE in the format of `ock-drill bulk-keys` (label, token, plaintext,
/// ciphertext from CSNBSAE), so `ock-drill bulk-verify` checks it the same way.
/// The PINs are the harness's (`CreateOptions` defaults).
fn build_store(args: &[String]) -> ExitCode {
    let mut opt = std::collections::HashMap::new();
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            eprintln!("build-store: options come in pairs");
            return ExitCode::from(2);
        };
        opt.insert(k.trim_start_matches("--").to_owned(), v.clone());
    }
    let get = |k: &str| {
        opt.get(k)
            .unwrap_or_else(|| panic!("build-store needs --{k}"))
    };
    let count = |k: &str| get(k).parse::<usize>().expect("a number");
    let cca = Csulcca::open_path(Path::new(get("lib")), Verb::ALL).expect("load the emulator");

    // Prototypes: the first private and the first public secret key of STORE.
    let like = TokenStore::open(get("like")).expect("open the store to copy from");
    let like_mk = like
        .login_user(b"11223344")
        .expect("user PIN of that store");
    let objects = like.load_objects(&like_mk).expect("load its objects");
    let proto = |private: bool| {
        objects
            .iter()
            .find(|o| o.private == private && o.template.get(AttrType::IBM_OPAQUE).is_some())
            .map(|o| o.template.clone())
            .unwrap_or_else(|| panic!("no {} key in the store to copy", private))
    };
    let (proto_priv, proto_pub) = (proto(true), proto(false));

    let mut opts = CreateOptions::new(Format::Old);
    opts.opencryptoki_3_8_1 = true;
    opts.legacy_cca_mk = true;
    opts.label = "pkcscca side-by-side".into();
    let (mut store, mk) = TokenStore::create(get("out"), opts).expect("create the store");
    let rule = RuleArray::new(&[
        Keyword::new("INTERNAL"),
        Keyword::new("AES"),
        Keyword::new("NO-KEY"),
        Keyword::new("KEYLN32"),
    ]);
    let iv = *b"0123456789abcdef";
    let mut state = String::new();
    let start = Instant::now();
    for (private, n) in [(true, count("private")), (false, count("public"))] {
        for i in 0..n {
            let label = format!("bench-{}-{i:06}", if private { "priv" } else { "pub" });
            let mut token = cca.csnbktb(Keyword::new("DATA"), &rule).expect("CSNBKTB");
            cca.csnbkgn(Keyword::new(""), Keyword::new("AESTOKEN"), &mut token)
                .expect("CSNBKGN");
            let mut pt = format!("{label:.<32}").into_bytes();
            pt.truncate(32);
            let ct = cca.csnbsae(&token, &iv, &pt).expect("CSNBSAE");
            let mut t = if private { &proto_priv } else { &proto_pub }.clone();
            t.set(AttrType::LABEL, label.clone().into_bytes());
            t.set(AttrType::IBM_OPAQUE, token.to_vec());
            store.add_object(&mk, t).expect("add object");
            let _ = writeln!(state, "{label} {} {} {}", hex(&token), hex(&pt), hex(&ct));
        }
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(get("state"))
        .expect("open the state file");
    f.write_all(state.as_bytes()).expect("write the state file");
    println!(
        "built {} private + {} public AES-256 keys with the test kit in {:.1} s",
        count("private"),
        count("public"),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}
