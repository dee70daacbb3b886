//! Installing and removing pkcscca: `packaging/install.sh` under a prefix
//! (any user), and, as root on Debian, the `pkcscca-rs` package built by
//! cargo-deb and the script's `--divert`, both beside openCryptoki's
//! `/usr/sbin/pkcscca` (tests run by .ci/run with `--ignored`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    root().join("packaging/install.sh")
}

fn built_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pkcscca"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; returns its standard output.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file and link under `dir` (relative path → mode), directories left out.
fn files_under(dir: &Path) -> BTreeMap<String, u32> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, u32>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                walk(base, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, meta.permissions().mode() & 0o7777);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `pkcscca --version` prints the crate version.
fn check_version(bin: &Path) {
    let out = run(Command::new(bin).arg("--version"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{bin:?} --version: {stderr}");
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "{bin:?} --version: {stdout}"
    );
}

/// `pkcscca -h` runs and prints upstream's help text.
fn check_help(bin: &Path) {
    let out = ok(Command::new(bin).arg("-h"));
    assert!(out.contains(" -m keys\t\t\tUnwraps private keys"), "{out}");
}

#[test]
fn install_script_installs_under_a_prefix_and_uninstalls_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr-local");
    let out = ok(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binary")
        .arg(built_binary()));
    assert!(out.contains("installed "), "{out}");

    let want: BTreeMap<String, u32> = [
        ("sbin/pkcscca", 0o755),
        ("share/man/man1/pkcscca.1", 0o644),
        ("share/bash-completion/completions/pkcscca", 0o644),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m))
    .collect();
    assert_eq!(files_under(&prefix), want);
    assert_eq!(
        fs::read(prefix.join("sbin/pkcscca")).unwrap(),
        fs::read(built_binary()).unwrap()
    );
    assert_eq!(
        fs::read(prefix.join("share/man/man1/pkcscca.1")).unwrap(),
        fs::read(root().join("man/pkcscca.1")).unwrap()
    );
    assert_eq!(
        fs::read(prefix.join("share/bash-completion/completions/pkcscca")).unwrap(),
        fs::read(root().join("completions/pkcscca.bash")).unwrap()
    );
    check_help(&prefix.join("sbin/pkcscca"));

    // man finds the page under the prefix (where man is installed).
    if let Ok(out) = Command::new("man")
        .args(["-w", "pkcscca"])
        .env("MANPATH", prefix.join("share/man"))
        .output()
    {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            prefix
                .join("share/man/man1/pkcscca.1")
                .display()
                .to_string()
        );
    }

    // Installing again over it is fine; so is uninstalling twice.
    ok(Command::new("bash")
        .arg(script())
        .arg(format!("--prefix={}", prefix.display()))
        .arg(format!("--binary={}", built_binary().display())));
    let out = ok(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--uninstall"));
    assert_eq!(out.matches("removed ").count(), 3, "{out}");
    assert_eq!(files_under(&prefix), BTreeMap::new());
    assert!(!prefix.join("share/bash-completion").exists());
    ok(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--uninstall"));
}

#[test]
fn install_script_refuses_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["--bogus"],
        vec!["--prefix"],
        vec!["--prefix", "/", "--binary", "/bin/true"],
    ] {
        let out = run(Command::new("bash").arg(script()).args(&args));
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("install.sh: "),
            "{args:?}: {out:?}"
        );
    }
    // A --binary that is not there: nothing is installed.
    let prefix = tmp.path().join("p");
    let out = run(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binary")
        .arg(tmp.path().join("missing")));
    assert!(!out.status.success());
    assert!(!prefix.exists());
    // --help prints the header comment.
    let help = ok(Command::new("bash").arg(script()).arg("--help"));
    assert!(help.contains("--uninstall"), "{help}");
    assert!(help.contains("dpkg-divert --local --rename --remove /usr/sbin/pkcscca"));
}

// ---------------------------------------------------------------------------
// Root only: the system's /usr/sbin/pkcscca.

const SBIN: &str = "/usr/sbin/pkcscca";
const SBIN_OCK: &str = "/usr/sbin/pkcscca.opencryptoki";
const MAN: &str = "/usr/share/man/man1/pkcscca.1.gz";
const MAN_OCK: &str = "/usr/share/man/man1/pkcscca.opencryptoki.1.gz";

/// Contents of a path (following no link), or `None`.
fn contents(path: &str) -> Option<Vec<u8>> {
    let meta = fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).unwrap();
        return Some(format!("-> {}", target.display()).into_bytes());
    }
    Some(fs::read(path).unwrap())
}

/// Who diverts `path` ("" when nobody).
fn diverter(path: &str) -> String {
    ok(Command::new("dpkg-divert").args(["--listpackage", path]))
        .trim()
        .to_string()
}

fn package_status() -> Option<String> {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "pkcscca-rs"]));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        .filter(|s| !s.contains("not-installed"))
}

/// What openCryptoki's package (if installed) and the dpkg database say
/// about the pkcscca paths before a test; the test must leave exactly this.
#[derive(Debug, PartialEq, Eq)]
struct SystemState {
    sbin: Option<Vec<u8>>,
    sbin_ock: Option<Vec<u8>>,
    man: Option<Vec<u8>>,
    man_ock: Option<Vec<u8>>,
    diversions: String,
}

fn system_state() -> SystemState {
    SystemState {
        sbin: contents(SBIN),
        sbin_ock: contents(SBIN_OCK),
        man: contents(MAN),
        man_ock: contents(MAN_OCK),
        diversions: ok(Command::new("dpkg-divert").args(["--list", "*pkcscca*"])),
    }
}

/// Root-test preconditions and the lock shared with the tests/ock381 harness
/// (which runs openCryptoki's /usr/sbin/pkcscca while it holds an exclusive
/// lock on /usr/sbin/pkcsslotd).
fn root_preconditions() -> Option<fs::File> {
    assert!(
        ok(Command::new("id").arg("-u")).trim() == "0",
        "must run as root (it installs a package and diverts /usr/sbin/pkcscca)"
    );
    assert!(Path::new("/usr/bin/dpkg").exists(), "needs Debian's dpkg");
    let lock = fs::File::open("/usr/sbin/pkcsslotd").ok();
    if let Some(f) = &lock {
        f.lock().unwrap();
    }
    assert_eq!(package_status(), None, "pkcscca-rs is installed already");
    lock
}

/// Removes what a failed test may leave behind.
struct Cleanup {
    prefix: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if package_status().is_some() {
            let _ = Command::new("dpkg")
                .args(["--purge", "pkcscca-rs"])
                .status();
        }
        let _ = Command::new("dpkg")
            .args(["--purge", STANDIN])
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(p) = &self.prefix {
            let _ = Command::new("bash")
                .arg(script())
                .arg("--prefix")
                .arg(p)
                .arg("--uninstall")
                .status();
        }
    }
}

/// Builds the package with cargo-deb into `dir`; returns the .deb.
fn build_deb(dir: &Path) -> PathBuf {
    let out = run(Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .current_dir(root()));
    assert!(
        out.status.success(),
        "cargo-deb is not installed (.ci/run installs it): {out:?}"
    );
    ok(Command::new(env!("CARGO"))
        .args(["deb", "-p", "pkcscca", "--locked", "-o"])
        .arg(dir)
        .current_dir(root()));
    let debs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// A stand-in for Debian's opencryptoki package, for machines without it:
/// it ships the two files opencryptoki ships under those names.
const STANDIN: &str = "pkcscca-test-standin";

/// Whether a package owns `path`.
fn packaged(path: &str) -> bool {
    run(Command::new("dpkg-query").args(["-S", path]))
        .status
        .success()
}

/// Builds the stand-in package in `dir`.
fn standin_deb(dir: &Path) -> PathBuf {
    let tree = dir.join("standin");
    fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    fs::create_dir_all(tree.join("usr/sbin")).unwrap();
    fs::create_dir_all(tree.join("usr/share/man/man1")).unwrap();
    fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {STANDIN}\nVersion: 1\nArchitecture: all\nMaintainer: tests <t@example.invalid>\n\
             Description: stand-in for opencryptoki's pkcscca (pkcscca-rs tests)\n"
        ),
    )
    .unwrap();
    let bin = tree.join("usr/sbin/pkcscca");
    fs::write(&bin, "#!/bin/sh\necho stand-in pkcscca\n").unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let page = tree.join("usr/share/man/man1/pkcscca.1");
    fs::write(&page, ".TH PKCSCCA 1\n.SH NAME\npkcscca \\- stand-in\n").unwrap();
    ok(Command::new("gzip").arg("-n9").arg(&page));
    let deb = dir.join("standin.deb");
    ok(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb));
    deb
}

/// `man -w NAME` with a PATH that maps to /usr/share/man first.
fn man_w(name: &str) -> Output {
    run(Command::new("man")
        .args(["-w", name])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("MANPATH"))
}

#[test]
#[ignore = "root and Debian: installs the pkcscca-rs package (.ci/run runs it)"]
fn deb_package_installs_beside_opencryptoki_and_removes_cleanly() {
    let _lock = root_preconditions();
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    let _cleanup = Cleanup { prefix: None };
    let pristine = system_state();

    // openCryptoki's files, or a stand-in package's where opencryptoki is not
    // installed, so that the diversion of a packaged file is always tested.
    let standin = if packaged(SBIN) {
        eprintln!("diverting the installed opencryptoki's {SBIN}");
        None
    } else {
        eprintln!("opencryptoki is not installed: using the stand-in package {STANDIN}");
        let standin = standin_deb(tmp.path());
        ok(Command::new("dpkg").arg("-i").arg(&standin));
        Some(standin)
    };
    let before = system_state();
    assert!(before.sbin.is_some() && before.man.is_some(), "{before:?}");

    // Metadata: libc only, the files we ship.
    let fields = ok(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Depends"]));
    assert!(fields.contains("Package: pkcscca-rs\n"), "{fields}");
    let depends = fields
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .expect("Depends");
    assert!(
        depends.split(", ").all(|d| d.starts_with("libc6")),
        "depends on more than libc: {depends}"
    );

    ok(Command::new("dpkg").arg("-i").arg(&deb));
    let listed = ok(Command::new("dpkg").args(["-L", "pkcscca-rs"]));
    for f in [
        SBIN,
        MAN,
        "/usr/share/bash-completion/completions/pkcscca",
        "/usr/share/doc/pkcscca-rs/copyright",
    ] {
        assert!(
            listed.lines().any(|l| l == f),
            "dpkg -L lacks {f}:\n{listed}"
        );
    }
    let copyright = fs::read_to_string("/usr/share/doc/pkcscca-rs/copyright").unwrap();
    assert!(copyright.contains("License: MIT"), "{copyright}");

    // Ours is /usr/sbin/pkcscca now; openCryptoki's moved aside.
    assert_eq!(diverter(SBIN), "pkcscca-rs");
    assert_eq!(diverter(MAN), "pkcscca-rs");
    check_help(Path::new(SBIN));
    check_version(Path::new(SBIN));
    assert_eq!(contents(SBIN_OCK), before.sbin, "openCryptoki's program");
    assert_eq!(contents(MAN_OCK), before.man, "openCryptoki's man page");
    let out = man_w("pkcscca.opencryptoki");
    assert!(out.status.success(), "man -w pkcscca.opencryptoki: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), MAN_OCK);

    // man pkcscca finds this package's page.
    let out = man_w("pkcscca");
    assert!(out.status.success(), "man -w pkcscca: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), MAN);
    let page = ok(Command::new("man")
        .arg("pkcscca")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80"));
    assert!(page.contains("DIFFERENCES FROM OPENCRYPTOKI"), "{page}");

    // The completion is where bash-completion looks, and loads.
    let spec = ok(Command::new("bash").args([
        "--norc",
        "-c",
        "source /usr/share/bash-completion/completions/pkcscca && complete -p pkcscca",
    ]));
    assert_eq!(spec, "complete -F _pkcscca pkcscca\n");

    // Reinstalling (dpkg's upgrade path) keeps the diversions.
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(diverter(SBIN), "pkcscca-rs");
    assert_eq!(contents(SBIN_OCK), before.sbin);
    assert_ne!(
        contents(SBIN),
        before.sbin,
        "openCryptoki's program in place of ours"
    );

    // Remove: our files go, the diversions go, openCryptoki's files are back.
    ok(Command::new("dpkg").args(["-r", "pkcscca-rs"]));
    assert_eq!(system_state(), before, "dpkg -r did not restore the system");
    for f in listed.lines() {
        let p = Path::new(f);
        if p.is_dir() || f == SBIN || f == MAN {
            continue;
        }
        assert!(!p.exists(), "{f} left behind by dpkg -r");
    }
    ok(Command::new("dpkg").args(["--purge", "pkcscca-rs"]));
    assert_eq!(package_status(), None);
    assert_eq!(system_state(), before, "dpkg --purge changed the system");

    if let Some(standin) = standin {
        // The other order: openCryptoki installed (or upgraded) while this
        // package is in place lands in the diverted names, and comes back on
        // removal.
        ok(Command::new("dpkg").args(["--purge", STANDIN]));
        ok(Command::new("dpkg").arg("-i").arg(&deb));
        assert_eq!(contents(SBIN_OCK), None);
        ok(Command::new("dpkg").arg("-i").arg(&standin));
        assert_eq!(contents(SBIN_OCK), before.sbin, "stand-in not diverted");
        assert_eq!(contents(MAN_OCK), before.man);
        check_help(Path::new(SBIN));
        ok(Command::new("dpkg").args(["--purge", "pkcscca-rs"]));
        assert_eq!(system_state(), before);
        ok(Command::new("dpkg").args(["--purge", STANDIN]));
    }
    assert_eq!(system_state(), pristine, "the system is not as it was");
}

#[test]
#[ignore = "root and Debian: diverts /usr/sbin/pkcscca (.ci/run runs it)"]
fn install_script_divert_replaces_usr_sbin_and_uninstall_restores_it() {
    let _lock = root_preconditions();
    let pristine = system_state();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("local");
    let _cleanup = Cleanup {
        prefix: Some(prefix.clone()),
    };
    let standin = !packaged(SBIN);
    if standin {
        ok(Command::new("dpkg").arg("-i").arg(standin_deb(tmp.path())));
    }
    let before = system_state();

    let out = ok(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binary")
        .arg(built_binary())
        .arg("--divert"));
    assert!(out.contains("/usr/sbin/pkcscca -> "), "{out}");
    assert_eq!(diverter(SBIN), "LOCAL");
    assert_eq!(
        fs::read_link(SBIN).unwrap(),
        prefix.join("sbin/pkcscca"),
        "/usr/sbin/pkcscca is not the link"
    );
    assert_eq!(contents(SBIN_OCK), before.sbin, "openCryptoki's program");
    check_help(Path::new(SBIN));
    // Idempotent.
    ok(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binary")
        .arg(built_binary())
        .arg("--divert"));
    assert_eq!(diverter(SBIN), "LOCAL");

    // The package refuses to install over the local diversion, and says why.
    let deb_dir = tmp.path().join("deb");
    fs::create_dir(&deb_dir).unwrap();
    let deb = build_deb(&deb_dir);
    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(
        !out.status.success(),
        "dpkg -i over a local diversion succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("packaging/install.sh --uninstall"),
        "{out:?}"
    );
    // dpkg backed out cleanly: no half-installed package to repair.
    assert_eq!(package_status(), None, "after the refused install");
    ok(Command::new("dpkg").args(["--purge", "pkcscca-rs"]));
    assert_eq!(diverter(SBIN), "LOCAL");
    assert_eq!(contents(SBIN_OCK), before.sbin);

    let out = ok(Command::new("bash")
        .arg(script())
        .arg("--prefix")
        .arg(&prefix)
        .arg("--uninstall"));
    assert!(out.contains("removed /usr/sbin/pkcscca"), "{out}");
    assert_eq!(
        system_state(),
        before,
        "--uninstall did not restore the system"
    );
    assert_eq!(files_under(&prefix), BTreeMap::new());
    if standin {
        ok(Command::new("dpkg").args(["--purge", STANDIN]));
    }
    assert_eq!(system_state(), pristine, "the system is not as it was");
}
