//! A per-test migration lab: a sample CCA token store made by
//! `csulcca-emu-sample` over its own emulator state file, and helpers to run
//! the emulator's admin tool, the sample checker and the built `pkcscca`
//! binary against them as child processes.
//!
//! Nothing here changes the test process's environment: every child gets its
//! emulator state file, seed, library path and lock directory explicitly, so
//! labs run in parallel.
#![allow(
    clippy::expect_used,
    reason = "test helpers: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::emu;

/// SO PIN of every sample store.
pub const SO_PIN: &str = "76543210";
/// USER PIN of every sample store.
pub const USER_PIN: &str = "11223344";
/// Both PINs as an admin's script pipes them.
pub const PINS: &[u8] = b"76543210\n11223344\n";
/// Seed of every lab's emulator state (so MKVPs in golden output are stable).
pub const SEED: &str = "pkcscca-e2e";

/// The built `csulcca-emu-sample`.
pub fn sample_tool() -> PathBuf {
    emu::emulator_dir().join("csulcca-emu-sample")
}

/// The built `pkcscca` binary under test.
pub fn pkcscca_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pkcscca"))
}

/// Waits until no `tests/ock381` harness runs, and keeps it from starting
/// while the guard lives.
///
/// That harness runs a real pkcsslotd (pid file under `/run`) while it holds an
/// exclusive `flock` on `/usr/sbin/pkcsslotd`, and `pkcscca` rightly refuses
/// to migrate while a pkcsslotd runs. A shared lock on the same file makes the
/// two wait for each other instead of failing. `None` when openCryptoki is not
/// installed (then no harness can run either).
pub fn no_pkcsslotd_guard() -> Option<fs::File> {
    let f = fs::File::open("/usr/sbin/pkcsslotd").ok()?;
    f.lock_shared().ok()?;
    Some(f)
}

/// One test's store, checks file and emulated card.
pub struct Lab {
    /// Keeps everything alive; removed on drop.
    pub tmp: tempfile::TempDir,
    /// The data store.
    pub store: PathBuf,
    /// The proofs recorded at creation.
    pub checks: PathBuf,
    /// The emulator's state file.
    pub state: PathBuf,
    /// `PKCSCCA_LOCK_DIR`.
    pub lock_dir: PathBuf,
    /// Extra environment for child processes (fault and latency knobs).
    pub extra_env: Vec<(String, String)>,
}

/// Result of a child process, as text.
#[derive(Debug)]
pub struct Run {
    /// Exit status code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Lab {
    /// A lab with a sample store made by `csulcca-emu-sample create ARGS`
    /// (`--dir` and `--checks` are added; new-format stores use 1000 PBKDF2
    /// iterations to keep debug runs fast).
    pub fn new(create_args: &[&str]) -> Lab {
        let tmp = tempfile::tempdir().expect("temp dir");
        let lab = Lab {
            store: tmp.path().join("ccatok"),
            checks: tmp.path().join("checks.txt"),
            state: tmp.path().join("card.state"),
            lock_dir: tmp.path().join("lock"),
            tmp,
            extra_env: Vec::new(),
        };
        let mut args = vec!["create", "--dir"];
        let store = lab.store.display().to_string();
        let checks = lab.checks.display().to_string();
        args.push(&store);
        args.extend(["--checks", &checks, "--pbkdf2-iterations", "1000"]);
        args.extend_from_slice(create_args);
        let r = lab.sample(&args);
        assert_eq!(r.code, 0, "sample create failed: {r:?}");
        lab
    }

    /// The lab's temporary directory.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Sets the emulator environment of a child: library by bare name through
    /// `LD_LIBRARY_PATH`, this lab's card, no knobs unless [`Lab::extra_env`].
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("LD_LIBRARY_PATH", emu::emulator_dir())
            .env("CSULCCA_EMU_STATE", &self.state)
            .env("CSULCCA_EMU_SEED", SEED)
            .env("PKCSCCA_LOCK_DIR", &self.lock_dir)
            .env(
                "PKCSCCA_OPENCRYPTOKI_CONF",
                self.root().join("no-opencryptoki.conf"),
            )
            // Audit records go nowhere unless a test listens (no socket there).
            .env("PKCSCCA_SYSLOG_SOCKET", self.root().join("no-syslog"))
            .env_remove("CSULCCA_EMU_FAIL")
            .env_remove("CSULCCA_EMU_LATENCY_US")
            .env_remove("CSULCCA_SAMPLE_SO_PIN")
            .env_remove("CSULCCA_SAMPLE_USER_PIN")
            .env_remove("POSIXLY_CORRECT");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    /// Runs `prog ARGS` with `stdin` piped in.
    pub fn run_with_stdin(&self, mut cmd: Command, stdin: &[u8]) -> Run {
        let _guard = no_pkcsslotd_guard();
        self.env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        if let Some(mut i) = child.stdin.take() {
            // The child may exit before reading everything (e.g. refused runs).
            let _ = i.write_all(stdin);
        }
        child.wait_with_output().expect("wait").into()
    }

    /// `csulcca-emu-sample ARGS` with the PINs on stdin.
    pub fn sample(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(sample_tool());
        cmd.args(args);
        self.run_with_stdin(cmd, PINS)
    }

    /// `csulcca-emu-sample check` for keys of `mk_type` (all objects when `None`).
    pub fn check(&self, mk_type: Option<&str>) -> Run {
        self.check_store(&self.store, mk_type)
    }

    /// [`Lab::check`] of a copy of the store in `store` (same card, same proofs).
    pub fn check_store(&self, store: &Path, mk_type: Option<&str>) -> Run {
        let store = store.display().to_string();
        let checks = self.checks.display().to_string();
        let mut args = vec!["check", "--dir", &store, "--checks", &checks];
        args.extend(["--expect-mk", "current"]);
        if let Some(t) = mk_type {
            args.extend(["--mk-type", t]);
        }
        self.sample(&args)
    }

    /// `csulcca-emu-admin ARGS`; panics unless it succeeds.
    pub fn admin(&self, args: &[&str]) -> String {
        self.admin_input(args, b"")
    }

    /// Runs the admin tool with `input` on its standard input (key parts).
    pub fn admin_input(&self, args: &[&str], input: &[u8]) -> String {
        let mut cmd = Command::new(emu::admin_tool());
        cmd.args(args);
        let r = self.run_with_stdin(cmd, input);
        assert_eq!(r.code, 0, "csulcca-emu-admin {args:?}: {r:?}");
        r.stdout
    }

    /// A master key change of type `ty` (`sym`, `asym`, `aes`, `apka`) to a
    /// key fixed by `generation` (so MKVPs, and golden output, are stable):
    /// load NEW in two parts, then SET (NEW → CURRENT → OLD).
    pub fn change_mk(&self, ty: &str, generation: u8) {
        let len = if matches!(ty, "sym" | "asym") { 24 } else { 32 };
        let first = super::hex(&vec![generation; len]);
        let last = super::hex(&vec![0x5A; len]);
        self.admin_input(&["load-new", ty, "--first"], first.as_bytes());
        self.admin_input(&["load-new", ty, "--last"], last.as_bytes());
        self.admin(&["set", ty]);
    }

    /// Runs the built `pkcscca ARGS` with `stdin` piped in.
    pub fn pkcscca(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut cmd = Command::new(pkcscca_bin());
        cmd.args(args);
        self.run_with_stdin(cmd, stdin)
    }

    /// `pkcscca -m keys -s 2 -k TYPE -d STORE EXTRA...` with both PINs piped.
    pub fn migrate(&self, ty: &str, extra: &[&str]) -> Run {
        let store = self.store.display().to_string();
        let mut args = vec!["-m", "keys", "-s", "2", "-k", ty, "-d", &store];
        args.extend_from_slice(extra);
        self.pkcscca(&args, PINS)
    }

    /// Compares `run` (of `pkcscca ARGS` with `stdin`) with `tests/cmd/<case>.case`
    /// (command, exit status, stdout and stderr, this lab's directory shown as
    /// `@LAB@`), or with `PKCSCCA_UPDATE_GOLDEN=1` rewrites it.
    #[allow(dead_code, reason = "not every test binary has golden cases")]
    pub fn check_golden(&self, case: &str, args: &[&str], stdin: &[u8], run: &Run) {
        let seen = super::golden::Observed {
            args,
            stdin,
            rc: run.code,
            stdout: &run.stdout,
            stderr: &run.stderr,
        };
        super::golden::check_scenario(case, self.root(), &seen);
    }

    /// Every file of `TOK_OBJ` by name, with its bytes.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        object_files(&self.store)
    }

    /// Object name → label, from the checks file.
    pub fn labels(&self) -> BTreeMap<String, String> {
        fs::read_to_string(&self.checks)
            .expect("checks file")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect()
    }

    /// The object file named for the key labelled `label`.
    pub fn object_named(&self, label: &str) -> String {
        self.labels()
            .into_iter()
            .find(|(_, l)| l == label)
            .map(|(o, _)| o)
            .unwrap_or_else(|| panic!("no object labelled {label}"))
    }
}

/// Every file of `<store>/TOK_OBJ` by name, with its bytes.
pub fn object_files(store: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(store.join("TOK_OBJ"))
        .expect("TOK_OBJ")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read object"),
            )
        })
        .collect()
}

/// The labels of the objects `check` reported `ok` / `FAILED` for.
pub fn check_lines(out: &str, word: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{word} ")))
        .filter_map(|l| l.split(' ').nth(2))
        .map(|l| l.trim_end_matches(':').to_string())
        .collect()
}
