//! The software CCA library for tests: built once per test binary with
//! `$CARGO build -p csulcca-emu`, then loaded through
//! `pkcscca::cca::Csulcca::open_path` or handed to child processes through
//! `LD_LIBRARY_PATH`.
//!
//! The library reads its state file and test knobs from the environment on
//! every call, and the environment is per process, so an [`EmuSession`]
//! holds a process-wide lock for the duration of a test, points
//! `CSULCCA_EMU_STATE` at a fresh temporary file and clears the knobs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use pkcscca::cca::{Csulcca, Verb};

/// `target/<profile>` of this workspace.
fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug")
}

/// Builds the emulator (once) and returns the directory holding
/// `libcsulcca.so` and `csulcca-emu-admin`.
pub fn emulator_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
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

static SESSION: Mutex<()> = Mutex::new(());

/// Exclusive use of the emulator in this process, with a fresh state file.
pub struct EmuSession {
    _guard: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
}

impl EmuSession {
    /// Takes the lock, builds the emulator if needed, and points it at a new
    /// state file (seed `seed`).
    pub fn new(seed: &str) -> EmuSession {
        let guard = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
        emulator_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        std::env::set_var("CSULCCA_EMU_STATE", dir.path().join("state"));
        std::env::set_var("CSULCCA_EMU_SEED", seed);
        std::env::remove_var("CSULCCA_EMU_FAIL");
        std::env::remove_var("CSULCCA_EMU_LATENCY_US");
        EmuSession { _guard: guard, dir }
    }

    /// The state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state")
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

impl Drop for EmuSession {
    fn drop(&mut self) {
        std::env::remove_var("CSULCCA_EMU_FAIL");
        std::env::remove_var("CSULCCA_EMU_LATENCY_US");
    }
}
