//! Helpers shared by the integration tests: test data locations, copying
//! token directories, snapshots of a directory tree (to prove nothing
//! changed), hex. Keep it generic; add helpers for other areas freely.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

/// The software CCA library (`libcsulcca.so`) for tests.
pub mod emu;
/// The one golden harness: case files of `tests/cmd`, text snapshots of `tests/golden`.
pub mod golden;
/// Per-test migration labs: sample stores over the emulator and the tools run on them.
pub mod lab;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

/// SO PIN of the vector stores whose SO PIN was changed.
pub const SO_PIN: &[u8] = b"76543210";
/// USER PIN of the vector stores.
pub const USER_PIN: &[u8] = b"11223344";
/// openCryptoki's default SO PIN.
pub const DEFAULT_SO_PIN: &[u8] = b"87654321";

/// One token store from the vector set.
#[derive(Debug, Clone, Copy)]
pub struct Vector {
    /// Path under `tests/data`.
    pub rel: &'static str,
    /// SO PIN.
    pub so_pin: &'static [u8],
    /// USER PIN, if the store has one.
    pub user_pin: Option<&'static [u8]>,
    /// Number of objects in OBJ.IDX (0 = no OBJ.IDX).
    pub objects: usize,
    /// Whether a `<rel>.objects-via-pkcs11.json` reference exists.
    pub json: bool,
    /// New data store format.
    pub new_format: bool,
}

const fn v(rel: &'static str, objects: usize, json: bool, new_format: bool) -> Vector {
    Vector {
        rel,
        so_pin: SO_PIN,
        user_pin: Some(USER_PIN),
        objects,
        json,
        new_format,
    }
}

const fn virgin(rel: &'static str, new_format: bool) -> Vector {
    Vector {
        rel,
        so_pin: DEFAULT_SO_PIN,
        user_pin: None,
        objects: 0,
        json: false,
        new_format,
    }
}

/// Every store of `tests/data` (see its README).
pub const VECTORS: &[Vector] = &[
    virgin("ock-3.8.1/swtok-virgin", false),
    virgin("ock-3.8.1/ccatok-virgin", false),
    v("ock-3.8.1/swtok-sample", 14, true, false),
    v("ock-3.8.1/ccatok-before-keys", 2, false, false),
    v("ock-3.8.1/ccatok-sample", 13, false, false),
    v("ock-3.27/swtok-new-virgin", 0, false, true),
    v("ock-3.27/swtok-old-virgin", 0, false, false),
    v("ock-3.27/swtok-new-sample", 20, true, true),
    v("ock-3.27/swtok-old-sample", 20, true, false),
    v("ock-3.27/ccatok-new-virgin", 0, false, true),
    v("ock-3.27/ccatok-old-virgin", 0, false, false),
    virgin("ock-3.27/ccatok-new-virgin-uninit", true),
    v("ock-3.27/ccatok-new-sample", 31, true, true),
    v("ock-3.27/ccatok-old-sample", 31, true, false),
];

impl Vector {
    /// The store directory in `tests/data`.
    pub fn dir(&self) -> PathBuf {
        data_dir().join(self.rel)
    }

    /// The JSON reference file.
    pub fn json_path(&self) -> PathBuf {
        data_dir().join(format!("{}.objects-via-pkcs11.json", self.rel))
    }
}

/// The vectors that hold objects.
pub fn vectors_with_objects() -> impl Iterator<Item = &'static Vector> {
    VECTORS
        .iter()
        .filter(|v| v.dir().join("TOK_OBJ").join("OBJ.IDX").exists())
}

/// Copies a directory tree (regular files and directories only), making the
/// copy writable by its owner.
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(0o770)).unwrap();
    for ent in fs::read_dir(src).unwrap() {
        let ent = ent.unwrap();
        let to = dst.join(ent.file_name());
        let ft = ent.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&ent.path(), &to);
        } else if ft.is_file() {
            fs::copy(ent.path(), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o660)).unwrap();
        }
    }
}

/// A temporary copy of a store; the directory is removed on drop.
pub struct TempStore {
    /// Keeps the temporary directory alive.
    pub tmp: tempfile::TempDir,
    /// The store directory inside it.
    pub dir: PathBuf,
}

/// Copies `src` into a fresh temporary directory (as `<tmp>/store`).
pub fn temp_copy(src: &Path) -> TempStore {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_tree(src, &dir);
    TempStore { tmp, dir }
}

/// What we record about one path in a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File content (empty for directories), or the link target for symlinks.
    pub content: Vec<u8>,
    /// Mode bits including the file type.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Inode (detects replacement by rename).
    pub ino: u64,
}

/// The backup directory a writing run named on `stderr` for `store` (its line is
/// `pkcscca: backup of STORE in DIR (...)`); panics when there is none.
#[allow(dead_code, reason = "not every test binary checks backups")]
pub fn backup_named_in(stderr: &str, store: &Path) -> PathBuf {
    let head = format!("pkcscca: backup of {} in ", store.display());
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .unwrap_or_else(|| panic!("no backup line for {}: {stderr:?}", store.display()));
    let dir = line.split(" (").next().unwrap_or(line);
    PathBuf::from(dir)
}

/// Every path under `dir` (relative) with content and metadata, sorted.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    for ent in fs::read_dir(dir).unwrap() {
        let ent = ent.unwrap();
        let p = ent.path();
        let md = fs::symlink_metadata(&p).unwrap();
        let content = if md.file_type().is_symlink() {
            fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            Entry {
                content,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                ino: md.ino(),
            },
        );
        if md.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses hex (whitespace ignored).
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Fixes the seed of every randomised test (a decimal `u64`).
pub const SEED_VAR: &str = "PKCSCCA_TEST_SEED";

/// The seed of a randomised test: `PKCSCCA_TEST_SEED` when set, else a fresh one.
/// It is printed with the command that reruns the test with it (libtest shows a
/// test's output when it fails).
pub fn test_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("TEST");
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v:?} is not a decimal u64")),
        Err(_) => std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish(),
    };
    eprintln!(
        "{test}: seed {seed} (rerun with: {SEED_VAR}={seed} cargo test -p pkcscca --test {} -- --exact {test})",
        env!("CARGO_CRATE_NAME")
    );
    seed
}

/// A proptest configuration running `cases` cases from [`test_seed`]. A failing
/// case is shrunk, printed, and also kept in `tests/<binary>.proptest-regressions`,
/// which proptest replays before anything else on every later run (commit the
/// file to keep the case as a regression test).
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};
    Config {
        cases,
        rng_seed: RngSeed::Fixed(test_seed()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Whether the tests run as root (ownership tests need it).
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Compares `got` with the golden file `tests/golden/<rel>`, or rewrites that file
/// when `PKCSCCA_UPDATE_GOLDEN` is set (see [`golden::assert_text`]).
pub fn assert_golden(rel: &str, got: &str) {
    golden::assert_text(rel, got);
}
