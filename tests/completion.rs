//! The bash completion (`completions/pkcscca.bash`), driven as bash drives it:
//! a `bash --norc` with the file sourced, `COMP_WORDS`/`COMP_CWORD` set to a
//! command line being typed, the registered completion function called, and
//! `COMPREPLY` compared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/pkcscca.bash")
}

/// Runs the completion for `words` (the last one is the word under the
/// cursor) with `conf` as `PKCSCCA_OPENCRYPTOKI_CONF`; returns `COMPREPLY`,
/// sorted. Fails on any output to standard error.
fn complete_in(dir: Option<&Path>, conf: Option<&Path>, words: &[&str]) -> Vec<String> {
    // The function registered for `pkcscca` is called the way bash calls it:
    // with the command name, the current word and the previous word.
    let driver = r#"
        set -u
        source "$SCRIPT" || exit 90
        spec=$(complete -p pkcscca) || exit 91
        func=${spec#*-F }; func=${func%% *}
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        prev=''
        (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
        "$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "$prev" || exit 92
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", driver, "bash"])
        .args(words)
        .env("SCRIPT", script())
        .env_remove("PKCSCCA_OPENCRYPTOKI_CONF");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    match conf {
        Some(c) => cmd.env("PKCSCCA_OPENCRYPTOKI_CONF", c),
        // A path that does not exist: the machine's own file must not matter.
        None => cmd.env(
            "PKCSCCA_OPENCRYPTOKI_CONF",
            "/nonexistent/opencryptoki.conf",
        ),
    };
    let out = cmd.output().expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{words:?}: {:?} {stderr}", out.status);
    assert!(stderr.is_empty(), "{words:?}: stderr: {stderr}");
    let mut reply: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    reply.sort();
    reply
}

fn complete(words: &[&str]) -> Vec<String> {
    complete_in(None, None, words)
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn registers_a_function_for_pkcscca() {
    let out = Command::new("bash")
        .args([
            "--norc",
            "--noprofile",
            "-c",
            "source \"$1\" && complete -p pkcscca",
        ])
        .arg("bash")
        .arg(script())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "complete -F _pkcscca pkcscca\n"
    );
}

#[test]
fn modes_after_dash_m() {
    assert_eq!(
        complete(&["pkcscca", "-m", ""]),
        sorted(&["v2objectsv3", "keys", "oldrsakeys", "status", "restore"])
    );
    assert_eq!(complete(&["pkcscca", "-m", "k"]), sorted(&["keys"]));
    assert_eq!(
        complete(&["pkcscca", "-s", "2", "-m", "o"]),
        sorted(&["oldrsakeys"])
    );
}

#[test]
fn key_types_after_dash_k() {
    assert_eq!(
        complete(&["pkcscca", "-m", "keys", "-k", ""]),
        sorted(&["aes", "apka", "asym", "sym", "all"])
    );
    assert_eq!(
        complete(&["pkcscca", "-k", "a"]),
        sorted(&["aes", "apka", "asym", "all"])
    );
    assert_eq!(complete(&["pkcscca", "-k", "s"]), sorted(&["sym"]));
}

#[test]
fn verbose_levels_and_the_optional_level() {
    let levels = sorted(&["none", "error", "warn", "info", "devel", "debug"]);
    assert_eq!(complete(&["pkcscca", "-v", ""]), levels);
    assert_eq!(complete(&["pkcscca", "--verbose", ""]), levels);
    assert_eq!(complete(&["pkcscca", "--verbose", "=", ""]), levels);
    assert_eq!(
        complete(&["pkcscca", "--verb", "d"]),
        sorted(&["devel", "debug"])
    );
    // The level is optional, so after -v an option may follow.
    assert_eq!(complete(&["pkcscca", "-v", "--dr"]), sorted(&["--dry-run"]));
    // --vers is --version, which takes no level.
    assert_eq!(
        complete(&["pkcscca", "--version", ""]),
        Vec::<String>::new()
    );
}

#[test]
fn options() {
    let all = complete(&["pkcscca", "-"]);
    for opt in [
        "-h",
        "-m",
        "-k",
        "-s",
        "-d",
        "-v",
        "--help",
        "--version",
        "--slotid=",
        "--datastore=",
        "--verbose",
        "--dry-run",
        "--json",
        "--no-backup",
        "--from=",
        "--threads=",
    ] {
        assert!(all.contains(&opt.to_string()), "{opt} missing from {all:?}");
    }
    assert_eq!(
        complete(&["pkcscca", "--d"]),
        sorted(&["--datastore=", "--dry-run"])
    );
    assert_eq!(complete(&["pkcscca", "--j"]), sorted(&["--json"]));
    assert_eq!(complete(&["pkcscca", "--n"]), sorted(&["--no-backup"]));
    // Not after a plain word either.
    assert_eq!(complete(&["pkcscca", "x"]), Vec::<String>::new());
}

#[test]
fn threads_are_numbers() {
    let reply = complete(&["pkcscca", "--threads", ""]);
    assert!(reply.contains(&"1".to_string()), "{reply:?}");
    assert!(reply.iter().all(|n| n.parse::<u32>().is_ok()), "{reply:?}");
    assert_eq!(
        complete(&["pkcscca", "--threads", "=", "1"])
            .first()
            .unwrap(),
        "1"
    );
}

fn dirs_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("ccatok")).unwrap();
    std::fs::create_dir(tmp.path().join("ccatok.pkcscca-backup.20261101T000000Z")).unwrap();
    std::fs::create_dir(tmp.path().join("swtok")).unwrap();
    std::fs::write(tmp.path().join("ccatok.tar"), b"not a directory").unwrap();
    tmp
}

#[test]
fn directories_after_dash_d_and_from() {
    let tmp = dirs_fixture();
    let base = tmp.path().display().to_string();
    let cca = format!("{base}/ccatok");
    let backup = format!("{base}/ccatok.pkcscca-backup.20261101T000000Z");
    let want = sorted(&[&cca, &backup]);
    assert_eq!(complete(&["pkcscca", "-d", &format!("{base}/cc")]), want);
    assert_eq!(
        complete(&["pkcscca", "--datastore", &format!("{base}/cc")]),
        want
    );
    assert_eq!(
        complete(&["pkcscca", "--datastore", "=", &format!("{base}/cc")]),
        want
    );
    assert_eq!(
        complete(&[
            "pkcscca",
            "-m",
            "restore",
            "--from",
            &format!("{base}/ccatok.")
        ]),
        sorted(&[&backup])
    );
    // Relative to the working directory, files left out.
    assert_eq!(
        complete_in(Some(tmp.path()), None, &["pkcscca", "-d", ""]),
        sorted(&["ccatok", "ccatok.pkcscca-backup.20261101T000000Z", "swtok"])
    );
}

/// A configuration in the current grammar: hex and decimal slot numbers,
/// comments, quoted values, the soft token and a stanza without an STDLL.
const CONF_CURRENT: &str = r#"# openCryptoki configuration
version opencryptoki-3.27
disable-event-support

slot 0
{
stdll = libpkcs11_sw.so
tokversion = 3.12
}

slot 2 {
  stdll = libpkcs11_cca.so   # the CCA token
  tokversion = 3.12
  description = "CCA { token }"
}

slot 0x0a
{
stdll = "/usr/lib/opencryptoki/stdll/libpkcs11_cca.so.0"
tokname = ccatok2
}

slot 4 {
tokname = nostdll
}

slot 007 {
stdll = libpkcs11_ep11.so
}

slot 11 {
stdll=libpkcs11_cca.so
}
"#;

/// openCryptoki 3.8.1's grammar, as Debian bookworm writes it.
const CONF_381: &str =
    "slot 0\n{\nstdll = libpkcs11_sw.so\n}\n\nslot 1\n{\nstdll = libpkcs11_cca.so\n}\n";

#[test]
fn slots_come_from_opencryptoki_conf() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("opencryptoki.conf");
    std::fs::write(&conf, CONF_CURRENT).unwrap();
    assert_eq!(
        complete_in(None, Some(&conf), &["pkcscca", "-m", "keys", "-s", ""]),
        sorted(&["2", "10", "11"])
    );
    assert_eq!(
        complete_in(None, Some(&conf), &["pkcscca", "-s", "1"]),
        sorted(&["10", "11"])
    );
    assert_eq!(
        complete_in(None, Some(&conf), &["pkcscca", "--slotid", "=", ""]),
        sorted(&["2", "10", "11"])
    );
    assert_eq!(
        complete_in(None, Some(&conf), &["pkcscca", "--slot", ""]),
        sorted(&["2", "10", "11"])
    );

    std::fs::write(&conf, CONF_381).unwrap();
    assert_eq!(
        complete_in(None, Some(&conf), &["pkcscca", "-s", ""]),
        sorted(&["1"])
    );
}

#[test]
fn no_slots_without_a_readable_conf() {
    assert_eq!(complete(&["pkcscca", "-s", ""]), Vec::<String>::new());
    let tmp = tempfile::tempdir().unwrap();
    // A directory where the file should be, and an empty file.
    assert_eq!(
        complete_in(None, Some(tmp.path()), &["pkcscca", "-s", ""]),
        Vec::<String>::new()
    );
    let empty = tmp.path().join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(
        complete_in(None, Some(&empty), &["pkcscca", "-s", ""]),
        Vec::<String>::new()
    );
}
