//! A hostile data store: something other than a regular file (or directory) planted
//! in every position of the store, against the real binary.
//!
//! A data store is writable by the token group, and the migration runs as root over
//! it. For each position (NVTOK.DAT, MK_SO, MK_USER, TOK_OBJ itself, TOK_OBJ/OBJ.IDX,
//! an AES key object) and each plant (a FIFO, a character device like `/dev/null`, a
//! socket, a directory, symbolic links to `/dev/zero`, to a FIFO and to an 8 GiB
//! sparse file, and an 8 GiB sparse file itself), `pkcscca -m keys -k aes` runs on a
//! copy of a sample store whose AES keys are under the OLD master key (so a normal run
//! would rewrite them), with:
//!
//! * a watchdog of 2 s: a run still going then is killed, and that is a failure (a
//!   FIFO used to block the run forever while it held the token's lock);
//! * a data size limit of 64 MiB (`ulimit -d`: heap and private mappings) and its
//!   peak resident memory (`VmHWM`) sampled while it runs, which must stay below
//!   64 MiB (a link to `/dev/zero` used to grow without bound).
//!
//! Each run must end by itself with a non-zero status, print one line on stderr that
//! names the file and what is there ("is a FIFO, not a regular file", "is a symbolic
//! link", "too large ..."), and write nothing: the store is compared before and
//! after. An oversized object file is the one exception to the last point: it is
//! reported as an unreadable object, left untouched, and the other keys are migrated
//! (exit 3), as for any other damaged object. Device plants need root (`mknod`); as
//! another user they are skipped with a printed reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test: a panic is a failure"
)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{Lab, PINS};

const WATCHDOG: Duration = Duration::from_secs(2);
const MEMORY_LIMIT_KIB: u64 = 64 * 1024;
const SPARSE_SIZE: u64 = 8 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    NvtokDat,
    MkSo,
    MkUser,
    TokObj,
    ObjIdx,
    Object,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plant {
    Fifo,
    CharDevice,
    Socket,
    Directory,
    LinkToDevZero,
    LinkToFifo,
    LinkToSparse,
    Sparse,
}

const POSITIONS: [Position; 6] = [
    Position::NvtokDat,
    Position::MkSo,
    Position::MkUser,
    Position::TokObj,
    Position::ObjIdx,
    Position::Object,
];

const PLANTS: [Plant; 8] = [
    Plant::Fifo,
    Plant::CharDevice,
    Plant::Socket,
    Plant::Directory,
    Plant::LinkToDevZero,
    Plant::LinkToFifo,
    Plant::LinkToSparse,
    Plant::Sparse,
];

/// What the run must say about the planted path.
fn expected_phrase(position: Position, plant: Plant) -> &'static str {
    let dir = position == Position::TokObj;
    match plant {
        Plant::Fifo if dir => "is a FIFO, not a directory",
        Plant::Fifo => "is a FIFO, not a regular file",
        Plant::CharDevice if dir => "is a character device, not a directory",
        Plant::CharDevice => "is a character device, not a regular file",
        Plant::Socket if dir => "is a socket, not a directory",
        Plant::Socket => "is a socket, not a regular file",
        Plant::Directory => "is a directory, not a regular file",
        Plant::LinkToDevZero | Plant::LinkToFifo | Plant::LinkToSparse => "is a symbolic link",
        Plant::Sparse if dir => "is a regular file, not a directory",
        Plant::Sparse => "too large",
    }
}

/// The store path of `position` (the object: the first AES key's file).
fn target(lab: &Lab, store: &Path, position: Position) -> PathBuf {
    match position {
        Position::NvtokDat => store.join("NVTOK.DAT"),
        Position::MkSo => store.join("MK_SO"),
        Position::MkUser => store.join("MK_USER"),
        Position::TokObj => store.join("TOK_OBJ"),
        Position::ObjIdx => store.join("TOK_OBJ/OBJ.IDX"),
        Position::Object => store
            .join("TOK_OBJ")
            .join(lab.object_named("aes128-data-priv-ext")),
    }
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o660),
    )
    .unwrap();
}

fn sparse(path: &Path) {
    fs::File::create(path)
        .unwrap()
        .set_len(SPARSE_SIZE)
        .unwrap();
}

/// Puts `plant` at `path` (removing what is there); `Err` with a reason to skip.
fn plant_at(path: &Path, plant: Plant, outside: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::rename(path, path.with_extension("moved-away")).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    match plant {
        Plant::Fifo => mkfifo(path),
        Plant::CharDevice => {
            let dev = rustix::fs::makedev(1, 3);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o660),
                dev,
            )
            .map_err(|e| format!("mknod needs root here ({e})"))?;
        }
        Plant::Socket => {
            // The socket file stays when the listener is closed.
            drop(std::os::unix::net::UnixListener::bind(path).unwrap());
        }
        Plant::Directory => fs::create_dir(path).unwrap(),
        Plant::LinkToDevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        Plant::LinkToFifo => {
            let fifo = outside.join("a-fifo");
            if !fifo.exists() {
                mkfifo(&fifo);
            }
            std::os::unix::fs::symlink(&fifo, path).unwrap();
        }
        Plant::LinkToSparse => {
            let big = outside.join("big-sparse");
            if !big.exists() {
                sparse(&big);
            }
            std::os::unix::fs::symlink(&big, path).unwrap();
        }
        Plant::Sparse => sparse(path),
    }
    Ok(())
}

/// Everything under `dir` without reading anything but small regular files (a FIFO
/// or device is never opened): type, size, mode, inode, content or link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for ent in fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let content = if md.file_type().is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if md.is_file() && md.len() <= 1 << 20 {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            if md.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p, (md.mode(), md.len(), md.ino(), content));
        }
    }
    out
}

/// Peak resident memory of `pid` in KiB, if it still runs.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// How one run went.
struct Outcome {
    /// Exit code; `None` if killed by a signal (our watchdog included).
    code: Option<i32>,
    stderr: String,
    timed_out: bool,
    elapsed: Duration,
    peak_kib: u64,
}

/// Runs `pkcscca -m keys -s 2 -k aes -d STORE` under the data limit, with the PINs on
/// stdin, killing it at `deadline`.
fn run(lab: &Lab, store: &Path, deadline: Duration) -> Outcome {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -S -d {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(common::lab::pkcscca_bin())
        .args(["-m", "keys", "-s", "2", "-k", "aes", "-d"])
        .arg(store);
    lab.env(&mut cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // PINs are small: the pipe takes them without a reader; a run refused before
    // its prompts never reads them.
    let _ = std::io::Write::write_all(&mut stdin, PINS);
    drop(stdin);
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut peak = 0;
    let mut timed_out = false;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    Outcome {
        code: status.code(),
        stderr: reader.join().unwrap(),
        timed_out,
        elapsed: started.elapsed(),
        peak_kib: peak,
    }
}

fn hostile_store(layout: &[&str]) {
    let _guard = common::lab::no_pkcsslotd_guard();
    let lab = Lab::new(layout);
    lab.change_mk("aes", 1);
    let outside = lab.root().join("outside");
    fs::create_dir(&outside).unwrap();

    // The limits alone do not fail a normal run: a copy of the store migrates.
    let control = lab.root().join("control");
    common::copy_tree(&lab.store, &control);
    let c = run(&lab, &control, Duration::from_secs(300));
    assert_eq!(c.code, Some(0), "control run: {}", c.stderr);
    eprintln!(
        "control run: exit 0 in {:?}, peak {} KiB",
        c.elapsed, c.peak_kib
    );

    let mut failures = Vec::new();
    let mut n = 0;
    for position in POSITIONS {
        for plant in PLANTS {
            if position == Position::TokObj && plant == Plant::Directory {
                continue;
            }
            n += 1;
            let store = lab.root().join(format!("case-{n}"));
            common::copy_tree(&lab.store, &store);
            let path = target(&lab, &store, position);
            if let Err(why) = plant_at(&path, plant, &outside) {
                eprintln!("{position:?} / {plant:?}: skipped: {why}");
                continue;
            }
            let before = snapshot(&store);
            let o = run(&lab, &store, WATCHDOG);
            let after = snapshot(&store);
            let phrase = expected_phrase(position, plant);
            let name = path.file_name().unwrap().to_str().unwrap();
            let lines: Vec<&str> = o
                .stderr
                .lines()
                .filter(|l| l.contains(phrase) && l.contains(name))
                .collect();
            let mut problems = Vec::new();
            if o.timed_out {
                problems.push(format!("still running after {WATCHDOG:?}: killed"));
            } else if o.code.is_none() {
                problems.push("killed by a signal (memory limit?)".to_string());
            } else if o.code == Some(0) {
                problems.push("exit status 0".to_string());
            }
            if o.peak_kib >= MEMORY_LIMIT_KIB {
                problems.push(format!("peak memory {} KiB", o.peak_kib));
            }
            if lines.len() != 1 {
                problems.push(format!("not one line with {name:?} and {phrase:?}"));
            }
            let exempt = position == Position::Object && plant == Plant::Sparse;
            if exempt {
                // Left untouched; the other keys are migrated.
                if before.get(&path) != after.get(&path) {
                    problems.push("the oversized object changed".to_string());
                }
                if o.code != Some(3) {
                    problems.push(format!("exit {:?}, expected 3", o.code));
                }
            } else if before != after {
                problems.push("the store changed".to_string());
            }
            eprintln!(
                "{position:?} / {plant:?}: exit {:?} in {:?}, peak {} KiB: {}",
                o.code,
                o.elapsed,
                o.peak_kib,
                lines.first().copied().unwrap_or("(no such line)")
            );
            if !problems.is_empty() {
                failures.push(format!(
                    "{position:?} / {plant:?}: {}\n  stderr: {}",
                    problems.join("; "),
                    o.stderr.trim_end().replace('\n', "\n          ")
                ));
            }
            // Sparse files are cheap, but do not keep 8 GiB links around.
            let _ = fs::remove_dir_all(&store);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hostile_plants_in_an_old_format_store() {
    hostile_store(&["--format", "old", "--openCryptoki-3.8.1-style"]);
}

#[test]
fn hostile_plants_in_a_new_format_store() {
    hostile_store(&["--format", "new"]);
}

/// A store the user cannot read is reported as permission denied, naming the
/// directory or file, not as a missing store ("NVTOK.DAT not found" before). As root
/// the run is made as `nobody`; otherwise the file modes alone deny it.
#[test]
fn permission_denied_is_said_with_the_path() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root = common::running_as_root();
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = common::data_dir().join("ock-3.27/ccatok-old-sample");
    // (store directory mode, NVTOK.DAT mode, the path the message must name)
    for (dir_mode, file_mode, named) in [(0o700, 0o600, ""), (0o755, 0o000, "/NVTOK.DAT")] {
        let store = tmp.path().join(format!("store-{dir_mode:o}"));
        common::copy_tree(&src, &store);
        fs::set_permissions(
            store.join("NVTOK.DAT"),
            fs::Permissions::from_mode(file_mode),
        )
        .unwrap();
        fs::set_permissions(&store, fs::Permissions::from_mode(dir_mode)).unwrap();
        let mut cmd = Command::new(common::lab::pkcscca_bin());
        cmd.args(["-m", "keys", "-s", "2", "-k", "aes", "-d"])
            .arg(&store)
            .env("PKCSCCA_OPENCRYPTOKI_CONF", tmp.path().join("none.conf"))
            .env("PKCSCCA_LOCK_DIR", tmp.path().join("lock"))
            .stdin(Stdio::null());
        if root {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let path = format!("{}{named}", store.display());
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{path}: ")) && l.ends_with("permission denied")),
            "{err}"
        );
        assert!(!err.contains("not found"), "{err}");
        eprintln!("{}", err.trim_end());
        fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
    }
}
