//! The software CCA library for tests: built once per test binary with
//! `$CARGO build -p csulcca-emu`, then loaded through
//! `pkcscca::cca::Csulcca::open_path` or handed to child processes through
//! `LD_LIBRARY_PATH`.
//!
//! The library reads its state file and test knobs from the environment on
//! every call, and the environment is per process. So a test that loads the
//! library into its own process does not change its environment (other tests
//! run in threads beside it): [`EmuSession::isolated`] runs the test again, by
//! itself, in a child process that gets `CSULCCA_EMU_STATE`, the seed and the
//! knobs in its environment from the start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use pkcscca::cca::{Csulcca, Verb};

/// `target/<profile>` of this workspace.
fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug")
}

/// Names, in the child process [`EmuSession::isolated`] starts, the test it runs.
const ISOLATED: &str = "PKCSCCA_TEST_ISOLATED";
/// Hands the built emulator's directory to that child (it need not build again).
const EMU_DIR: &str = "PKCSCCA_TEST_EMU_DIR";

/// Builds the emulator (once) and returns the directory holding
/// `libcsulcca.so` and `csulcca-emu-admin`.
pub fn emulator_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(EMU_DIR) {
            return PathBuf::from(dir);
        }
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "csulcca-emu"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p csulcca-emu");
        assert!(status.success(), "building the CCA emulator failed");
        let dir = target_dir();
        assert!(
            dir.join("libcsulcca.so").is_file(),
            "no libcsulcca.so in {}",
            dir.display()
        );
        dir
    })
}

/// Path of the built `libcsulcca.so`.
pub fn library() -> PathBuf {
    emulator_dir().join("libcsulcca.so")
}

/// Path of the built admin tool.
pub fn admin_tool() -> PathBuf {
    emulator_dir().join("csulcca-emu-admin")
}

/// Use of the emulator, loaded into this process, with a state file of its own.
pub struct EmuSession {
    state: PathBuf,
    /// Keeps a state file made for a single-threaded program alive.
    _dir: Option<tempfile::TempDir>,
}

impl EmuSession {
    /// For a test that loads the emulator into its own process. In the test's
    /// process: runs the same test again, alone, in a child process whose
    /// environment holds a fresh state file (seed `seed`) and no knobs, prints
    /// what the child printed, asserts that it passed, and returns `None` (the
    /// caller returns). In that child: returns the session. The test is named
    /// by its thread, as libtest names it.
    pub fn isolated(seed: &str) -> Option<EmuSession> {
        EmuSession::isolated_with(seed, &[])
    }

    /// [`EmuSession::isolated`] with emulator knobs (`CSULCCA_EMU_FAIL`,
    /// `CSULCCA_EMU_LATENCY_US`) set in the child's environment from its start.
    pub fn isolated_with(seed: &str, knobs: &[(&str, &str)]) -> Option<EmuSession> {
        let thread = std::thread::current();
        let test = thread
            .name()
            .filter(|n| *n != "main")
            .expect("EmuSession::isolated is called on a test's own thread");
        if std::env::var(ISOLATED).as_deref() == Ok(test) {
            let state = std::env::var_os("CSULCCA_EMU_STATE").expect("CSULCCA_EMU_STATE");
            return Some(EmuSession {
                state: PathBuf::from(state),
                _dir: None,
            });
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                test,
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ISOLATED, test)
            .env(EMU_DIR, emulator_dir())
            .env("CSULCCA_EMU_STATE", dir.path().join("state"))
            .env("CSULCCA_EMU_SEED", seed)
            .env_remove("CSULCCA_EMU_FAIL")
            .env_remove("CSULCCA_EMU_LATENCY_US")
            .envs(knobs.iter().copied())
            .output()
            .expect("run the test binary again");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{test} failed in its own process ({})",
            out.status
        );
        assert!(
            stdout.contains("test result: ok. 1 passed;"),
            "the child process ran no test named {test}"
        );
        None
    }

    /// For a single-threaded program (the benchmark): points this process's
    /// environment at a fresh state file with seed `seed`. Never in a test.
    pub fn new(seed: &str) -> EmuSession {
        emulator_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        std::env::set_var("CSULCCA_EMU_STATE", &state);
        std::env::set_var("CSULCCA_EMU_SEED", seed);
        EmuSession {
            state,
            _dir: Some(dir),
        }
    }

    /// Sets an emulator knob for the rest of this isolated test (its process runs
    /// no other test).
    pub fn set_knob(&self, name: &str, value: &str) {
        assert!(
            std::env::var_os(ISOLATED).is_some(),
            "knobs are set only in a test's own process (EmuSession::isolated)"
        );
        std::env::set_var(name, value);
    }

    /// The state file.
    pub fn state_file(&self) -> PathBuf {
        self.state.clone()
    }

    /// The library, loaded from the build directory, with every verb resolved.
    pub fn open(&self) -> Csulcca {
        Csulcca::open_path(&library(), Verb::ALL).expect("load libcsulcca.so")
    }

    /// Environment for a child process using the emulator (library by bare
    /// name via `LD_LIBRARY_PATH`, this session's state file).
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut ld = emulator_dir().display().to_string();
        if let Ok(old) = std::env::var("LD_LIBRARY_PATH") {
            ld = format!("{ld}:{old}");
        }
        vec![
            ("LD_LIBRARY_PATH".into(), ld),
            (
                "CSULCCA_EMU_STATE".into(),
                self.state_file().display().to_string(),
            ),
            (
                "CSULCCA_EMU_SEED".into(),
                std::env::var("CSULCCA_EMU_SEED").unwrap_or_default(),
            ),
        ]
    }

    /// Runs `csulcca-emu-admin ARGS` on this session's state file.
    pub fn admin(&self, args: &[&str]) -> Output {
        self.admin_input(args, b"")
    }

    /// Runs `csulcca-emu-admin ARGS` with `input` on its standard input (key parts
    /// are read from there, never from the command line).
    pub fn admin_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(admin_tool())
            .args(args)
            .envs(self.child_env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run csulcca-emu-admin");
        if let Some(mut i) = child.stdin.take() {
            // The tool may exit before reading (bad arguments).
            let _ = i.write_all(input);
        }
        child
            .wait_with_output()
            .expect("wait for csulcca-emu-admin")
    }
}
