//! opencryptoki.conf in both grammars, slot → data store resolution, errors
//! with file:line.
// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::ffi::OsString;
use std::path::PathBuf;

use pkcscca::config::{
    parse_str, parse_with, resolve_slot, shm_name, stdll_subdir, Grammar, ResolveError, SystemPaths,
};
use pkcscca::store::Format;

/// The configuration Debian's openCryptoki 3.8.1 ships.
const CONF_381: &str = "\
version opencryptoki-3.1

# The following defined slots are here as examples.
#
slot 0
{
stdll = libpkcs11_tpm.so
}

slot 1
{
stdll = libpkcs11_ica.so
}

slot 2
{
stdll = libpkcs11_cca.so
}

slot 3
{
stdll = libpkcs11_sw.so
}

slot 4
{
stdll = libpkcs11_ep11.so
confname = ep11tok.conf
}
";

/// A current-style configuration using every feature of the new grammar.
const CONF_CURRENT: &str = "\
# opencryptoki.conf
version opencryptoki-3.27

disable-event-support
statistics (on, implicit,
            internal)

slot 0x2
{
    stdll = libpkcs11_cca.so
    confname = ccatok.conf
    tokversion = 3.12   # new data store
    usergroup = \"pkcs11\"
    hwversion = \"1.2\"
    description = \"CCA token, slot 2\"
}

slot 7 {
    stdll = \"/usr/lib/opencryptoki/stdll/libpkcs11_cca.so\"
    tokname = cca7
    tokversion = \"3.11\"
    manufacturer = IBM
}
slot 10
{
    stdll = libpkcs11_sw.so
    tokname = soft-10
}
";

#[test]
fn grammar_381() {
    for g in [Grammar::Auto, Grammar::V381] {
        let slots = parse_with(CONF_381, "opencryptoki.conf", g).unwrap();
        assert_eq!(slots.len(), 5);
        assert_eq!(slots[2].slot, 2);
        assert_eq!(slots[2].stdll.as_deref(), Some("libpkcs11_cca.so"));
        assert_eq!(slots[2].line, 15);
        assert_eq!(slots[4].confname.as_deref(), Some("ep11tok.conf"));
        assert_eq!(slots[4].tokversion, None);
    }
    // Keys match by prefix; values may start with digits or contain '-'.
    let s = parse_with(
        "slot 3\n{\nstd = libpkcs11_cca.so\ntok = 2nd-cca\nhw = 1.0\n}\n",
        "x.conf",
        Grammar::V381,
    )
    .unwrap();
    assert_eq!(s[0].stdll.as_deref(), Some("libpkcs11_cca.so"));
    assert_eq!(s[0].tokname.as_deref(), Some("2nd-cca"));
    // Auto falls back to 3.8.1 for what the current grammar rejects.
    let s = parse_str("slot 3\n{\nstd = libpkcs11_cca.so\n}\n", "x.conf").unwrap();
    assert_eq!(s[0].stdll.as_deref(), Some("libpkcs11_cca.so"));
    // 3.8.1 knows no tokversion.
    let e = parse_with("slot 1 {\ntokversion = 3.12\n}\n", "x.conf", Grammar::V381).unwrap_err();
    assert_eq!((e.line, e.file.as_str()), (2, "x.conf"));
}

#[test]
fn grammar_current() {
    for g in [Grammar::Auto, Grammar::Current] {
        let slots = parse_with(CONF_CURRENT, "/etc/opencryptoki/opencryptoki.conf", g).unwrap();
        assert_eq!(slots.len(), 3);
        let s = &slots[0];
        assert_eq!((s.slot, s.line), (2, 8));
        assert_eq!(s.tokversion, Some(0x0003_000C));
        assert_eq!(s.usergroup.as_deref(), Some("pkcs11"));
        assert_eq!(s.description.as_deref(), Some("CCA token, slot 2"));
        let s = &slots[1];
        assert_eq!(s.slot, 7);
        assert_eq!(s.tokname.as_deref(), Some("cca7"));
        assert_eq!(s.tokversion, Some(0x0003_000B));
        assert_eq!(
            s.stdll.as_deref(),
            Some("/usr/lib/opencryptoki/stdll/libpkcs11_cca.so")
        );
        assert_eq!(slots[2].tokname.as_deref(), Some("soft-10"));
    }
    // The 3.8.1 file is valid in the current grammar too.
    assert_eq!(
        parse_with(CONF_381, "f", Grammar::Current).unwrap().len(),
        5
    );
}

#[test]
fn errors_carry_file_and_line() {
    let cases: &[(&str, u32, &str)] = &[
        (
            "slot 1 {\n  stdll = libpkcs11_cca.so\n  bogus = 1\n}\n",
            3,
            "bogus",
        ),
        ("slot 1 {\n  stdll = libpkcs11_cca.so\n", 2, "missing"),
        ("\n\nstatistics (on, sometimes)\n", 3, "sometimes"),
        (
            "slot 1 {\n stdll = a.so\n}\nslot 1 {\n stdll = b.so\n}\n",
            4,
            "duplicate",
        ),
        ("slot 1024 {\n stdll = a.so\n}\n", 1, "1024"),
        (
            "slot 1 {\n stdll = a.so\n tokname = \"a/b\"\n}\n",
            1,
            "tokname",
        ),
        (
            "slot 1 {\n stdll = a.so\n tokname = x\n}\nslot 2 {\n stdll = b.so\n tokname = x\n}\n",
            5,
            "tokname",
        ),
        (
            "slot 1 {\n stdll = a.so\n}\nslot 2 {\n stdll = a.so\n}\n",
            4,
            "same stdll",
        ),
        ("slot 1 {\n tokversion = 3\n}\n", 2, "tokversion"),
        ("slot 1 {\n stdll = \"unterminated\n}\n", 2, "unterminated"),
    ];
    for (text, line, word) in cases {
        let e = parse_str(text, "/etc/opencryptoki/opencryptoki.conf").unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.line, *line, "{text:?}: {msg}");
        assert!(
            msg.starts_with(&format!("/etc/opencryptoki/opencryptoki.conf:{line}: ")),
            "{msg}"
        );
        assert!(msg.contains(word), "{text:?}: {msg}");
    }
}

fn paths(root: &str) -> SystemPaths {
    SystemPaths {
        data_root: PathBuf::from(root).join("lib"),
        lock_root: PathBuf::from(root).join("lock"),
        ..SystemPaths::default()
    }
}

#[test]
fn slot_resolution() {
    let slots = parse_str(CONF_CURRENT, "c").unwrap();
    let p = paths("/t");
    // Default subdir of the STDLL.
    let l = resolve_slot(&slots, 2, &p, None, "c").unwrap();
    assert_eq!(l.dir, PathBuf::from("/t/lib/ccatok"));
    assert_eq!(l.lock_file, PathBuf::from("/t/lock/ccatok/LCK..ccatok"));
    assert_eq!(l.shm_name, "/t.lib.ccatok");
    assert_eq!(l.format, Format::New);
    assert_eq!(l.usergroup.as_deref(), Some("pkcs11"));
    // tokname, and a tokversion below 3.12 selects the old format.
    let l = resolve_slot(&slots, 7, &p, None, "c").unwrap();
    assert_eq!(l.dir, PathBuf::from("/t/lib/cca7"));
    assert_eq!(l.lock_file, PathBuf::from("/t/lock/cca7/LCK..cca7"));
    assert_eq!(l.format, Format::Old);
    // PKCS_APP_STORE: <store>/<default subdir>, tokname ignored, lock name kept.
    let l = resolve_slot(&slots, 7, &p, Some(OsString::from("/home/u/store")), "c").unwrap();
    assert_eq!(l.dir, PathBuf::from("/home/u/store/ccatok"));
    assert_eq!(l.lock_name, "cca7");
    let l = resolve_slot(&slots, 10, &p, Some(OsString::from("/s")), "c").unwrap();
    assert_eq!(l.dir, PathBuf::from("/s/swtok"));
    // Unknown slot.
    assert!(matches!(
        resolve_slot(&slots, 3, &p, None, "c"),
        Err(ResolveError::NoSuchSlot { slot: 3, .. })
    ));
    // 3.8.1 file, default paths: the usual CCA store, old format.
    let slots = parse_str(CONF_381, "c").unwrap();
    let l = resolve_slot(&slots, 2, &SystemPaths::default(), None, "c").unwrap();
    assert_eq!(l.dir, PathBuf::from("/var/lib/opencryptoki/ccatok"));
    assert_eq!(
        l.lock_file,
        PathBuf::from("/var/lock/opencryptoki/ccatok/LCK..ccatok")
    );
    assert_eq!(l.shm_name, "/var.lib.opencryptoki.ccatok");
    assert_eq!(
        l.shm_file(&SystemPaths::default()),
        PathBuf::from("/dev/shm/var.lib.opencryptoki.ccatok")
    );
    assert_eq!((l.tokversion, l.format), (0, Format::Old));
    for (slot, sub) in [(0, "tpm"), (1, "lite"), (3, "swtok"), (4, "ep11tok")] {
        let l = resolve_slot(&slots, slot, &SystemPaths::default(), None, "c").unwrap();
        assert!(l.dir.ends_with(sub), "{slot}");
    }
    // An unknown STDLL without tokname has no known directory.
    let slots = parse_str("slot 5 {\n stdll = libfoo.so\n}\n", "c").unwrap();
    let e = resolve_slot(&slots, 5, &p, None, "c").unwrap_err();
    assert!(e.to_string().starts_with("c:1: slot 5"), "{e}");
}

#[test]
fn stdll_names_and_shm() {
    assert_eq!(stdll_subdir("libpkcs11_icsf.so"), Some("icsf"));
    assert_eq!(
        stdll_subdir("/usr/lib/x/libpkcs11_cca.so.0"),
        Some("ccatok")
    );
    assert_eq!(stdll_subdir("libpkcs11_ccax.so"), None);
    assert_eq!(
        shm_name(std::path::Path::new("/var/lib/opencryptoki/lite")),
        "/var.lib.opencryptoki.lite"
    );
}

/// The machine's own file, as Debian's openCryptoki 3.8.1 package installs it.
#[test]
#[ignore = "needs openCryptoki installed (apt-get install opencryptoki); .ci/run runs it after the 3.8.1 suite"]
fn installed_381_config_parses() {
    let p = std::path::Path::new("/etc/opencryptoki/opencryptoki.conf");
    let text = std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e} (apt-get install opencryptoki)", p.display()));
    let slots = parse_str(&text, &p.display().to_string()).unwrap();
    assert!(!slots.is_empty());
}
