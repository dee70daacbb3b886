//! Bad PINs and damaged stores give one clear error naming the file, and
//! nothing on disk changes.
// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use common::{snapshot, temp_copy, SO_PIN, USER_PIN};
use pkcscca::store::{StoreError, TokenStore};

/// Runs `f` on a fresh copy of `rel` after `damage`, checks that the error
/// names `file_part` and that the tree is unchanged by `f`.
fn check(
    rel: &str,
    damage: impl FnOnce(&Path),
    f: impl FnOnce(&Path) -> Result<(), StoreError>,
    file_part: &str,
) -> StoreError {
    let t = temp_copy(&common::data_dir().join(rel));
    damage(&t.dir);
    let before = snapshot(&t.dir);
    let e = f(&t.dir).expect_err("expected an error");
    assert_eq!(before, snapshot(&t.dir), "{rel}: tree changed");
    let msg = e.to_string();
    assert!(
        msg.contains(file_part),
        "{rel}: '{msg}' does not name {file_part}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    e
}

/// Open, log in and load everything, then commit everything.
fn full_run(dir: &Path) -> Result<(), StoreError> {
    let store = TokenStore::open(dir)?;
    store.login_so(SO_PIN)?;
    let mk = store.login_user(USER_PIN)?;
    let objs = store.load_objects(&mk)?;
    let refs: Vec<_> = objs.iter().collect();
    store.commit(&mk, &refs)?;
    Ok(())
}

const OLD: &str = "ock-3.27/swtok-old-sample";
const NEW: &str = "ock-3.27/swtok-new-sample";
const OLD381: &str = "ock-3.8.1/ccatok-sample";

#[test]
fn wrong_so_pin() {
    for rel in [OLD, NEW, OLD381] {
        let e = check(
            rel,
            |_| {},
            |d| TokenStore::open(d)?.login_so(b"76543211"),
            "NVTOK.DAT",
        );
        assert!(matches!(e, StoreError::WrongSoPin { .. }), "{e}");
        assert!(e.to_string().contains("SO PIN is incorrect"));
    }
}

#[test]
fn wrong_user_pin() {
    for rel in [OLD, NEW, OLD381] {
        let e = check(
            rel,
            |_| {},
            |d| TokenStore::open(d)?.login_user(b"11223345").map(drop),
            "NVTOK.DAT",
        );
        assert!(matches!(e, StoreError::WrongUserPin { .. }), "{e}");
        // The SO PIN is not the USER PIN either.
        let e = check(
            rel,
            |_| {},
            |d| TokenStore::open(d)?.login_user(SO_PIN).map(drop),
            "NVTOK.DAT",
        );
        assert!(matches!(e, StoreError::WrongUserPin { .. }), "{e}");
    }
}

#[test]
fn mk_file_that_does_not_open_is_a_pin_error_naming_it() {
    for rel in [OLD, NEW] {
        let e = check(
            rel,
            |d| {
                let p = d.join("MK_USER");
                let mut b = std::fs::read(&p).unwrap();
                b[10] ^= 1;
                std::fs::write(p, b).unwrap();
            },
            |d| TokenStore::open(d)?.login_user(USER_PIN).map(drop),
            "MK_USER",
        );
        assert!(matches!(e, StoreError::WrongUserPin { .. }), "{e}");
    }
}

#[test]
fn missing_mk_user() {
    for rel in [OLD, NEW] {
        let e = check(
            rel,
            |d| std::fs::remove_file(d.join("MK_USER")).unwrap(),
            full_run,
            "MK_USER",
        );
        assert!(matches!(e, StoreError::MissingMkUser { .. }), "{e}");
    }
}

#[test]
fn missing_and_empty_index() {
    for rel in [OLD, NEW] {
        let e = check(
            rel,
            |d| std::fs::remove_file(d.join("TOK_OBJ/OBJ.IDX")).unwrap(),
            full_run,
            "OBJ.IDX",
        );
        assert!(matches!(e, StoreError::MissingIndex { .. }), "{e}");
        let e = check(
            rel,
            |d| std::fs::write(d.join("TOK_OBJ/OBJ.IDX"), b"").unwrap(),
            full_run,
            "OBJ.IDX",
        );
        assert!(matches!(e, StoreError::EmptyIndex { .. }), "{e}");
    }
}

#[test]
fn missing_nvtok() {
    let e = check(
        OLD,
        |d| std::fs::remove_file(d.join("NVTOK.DAT")).unwrap(),
        full_run,
        "NVTOK.DAT",
    );
    assert!(matches!(e, StoreError::Missing { .. }), "{e}");
}

fn first_object(d: &Path) -> std::path::PathBuf {
    let idx = std::fs::read_to_string(d.join("TOK_OBJ/OBJ.IDX")).unwrap();
    d.join("TOK_OBJ").join(idx.lines().next().unwrap())
}

fn last_private_object(d: &Path) -> std::path::PathBuf {
    let idx = std::fs::read_to_string(d.join("TOK_OBJ/OBJ.IDX")).unwrap();
    idx.lines()
        .map(|n| d.join("TOK_OBJ").join(n))
        .rfind(|p| std::fs::read(p).unwrap()[4] == 1)
        .unwrap()
}

#[test]
fn truncated_object() {
    for rel in [OLD, NEW] {
        for pick in [
            first_object as fn(&Path) -> std::path::PathBuf,
            last_private_object,
        ] {
            let mut name = String::new();
            let e = check(
                rel,
                |d| {
                    let p = pick(d);
                    name = p.file_name().unwrap().to_str().unwrap().to_string();
                    let b = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &b[..b.len() - 3]).unwrap();
                },
                full_run,
                "TOK_OBJ/",
            );
            assert!(e.to_string().contains(&name), "{e}");
            assert!(
                matches!(
                    e,
                    StoreError::Truncated { .. } | StoreError::Oversized { .. }
                ),
                "{rel}: {e}"
            );
        }
    }
}

#[test]
fn oversized_object() {
    for rel in [OLD, NEW] {
        // Extra bytes after the declared length.
        let e = check(
            rel,
            |d| {
                let p = first_object(d);
                let mut b = std::fs::read(&p).unwrap();
                b.extend_from_slice(b"junk");
                std::fs::write(&p, b).unwrap();
            },
            full_run,
            "TOK_OBJ/",
        );
        assert!(matches!(e, StoreError::Oversized { .. }), "{rel}: {e}");
        // A length field of 2 GiB.
        let e = check(
            rel,
            |d| {
                let p = last_private_object(d);
                let mut b = std::fs::read(&p).unwrap();
                if rel == OLD {
                    b[..4].copy_from_slice(&0x8000_0000u32.to_le_bytes());
                } else {
                    b[60..64].copy_from_slice(&0x8000_0000u32.to_be_bytes());
                }
                std::fs::write(&p, b).unwrap();
            },
            full_run,
            "TOK_OBJ/",
        );
        assert!(matches!(e, StoreError::Oversized { .. }), "{rel}: {e}");
        assert!(e.to_string().contains("too large"), "{e}");
    }
}

#[test]
fn index_line_escaping_tok_obj() {
    for line in ["../x", "../xxxxx", "..", "ab/cdefg", "OBabcd"] {
        let e = check(
            OLD,
            |d| {
                let p = d.join("TOK_OBJ/OBJ.IDX");
                let mut s = std::fs::read_to_string(&p).unwrap();
                s.push_str(line);
                s.push('\n');
                std::fs::write(p, s).unwrap();
            },
            full_run,
            "OBJ.IDX",
        );
        assert!(
            matches!(e, StoreError::BadName { line: 21, .. }),
            "{line}: {e}"
        );
        assert!(e.to_string().contains("line 21"), "{e}");
    }
}

#[test]
fn symlinked_object_file_and_tok_obj() {
    for rel in [OLD, NEW] {
        let e = check(
            rel,
            |d| {
                let p = first_object(d);
                let target = d.join("elsewhere");
                std::fs::rename(&p, &target).unwrap();
                std::os::unix::fs::symlink(&target, &p).unwrap();
            },
            full_run,
            "TOK_OBJ/",
        );
        assert!(matches!(e, StoreError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"));
    }
    // A symlinked TOK_OBJ is refused at commit (reads through it are
    // harmless, but we never replace files behind a link).
    let e = check(
        OLD,
        |d| {
            std::fs::rename(d.join("TOK_OBJ"), d.join("real")).unwrap();
            std::os::unix::fs::symlink(d.join("real"), d.join("TOK_OBJ")).unwrap();
        },
        full_run,
        "TOK_OBJ",
    );
    assert!(matches!(e, StoreError::Symlink { .. }), "{e}");
}

#[test]
fn stale_or_planted_temp_path_is_refused_and_originals_untouched() {
    let t = temp_copy(&common::data_dir().join(OLD));
    let store = TokenStore::open(&t.dir).unwrap();
    let mk = store.login_user(USER_PIN).unwrap();
    let objs = store.load_objects(&mk).unwrap();
    // A symlink planted where the temp file of the 3rd object would go.
    let victim = t.dir.join("victim");
    std::fs::write(&victim, b"do not touch").unwrap();
    let planted = store
        .tok_obj_dir()
        .join(format!(".{}.pkcscca.tmp", objs[2].name));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let before = snapshot(&t.dir);
    let refs: Vec<_> = objs.iter().collect();
    let e = store.commit(&mk, &refs).unwrap_err();
    assert!(matches!(e, StoreError::Symlink { .. }), "{e}");
    assert_eq!(
        before,
        snapshot(&t.dir),
        "our temps removed, originals untouched"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
    // The cleanup helper removes it; then the commit goes through.
    let removed = pkcscca::store::remove_stale_temps(&store.tok_obj_dir()).unwrap();
    assert_eq!(removed, vec![planted]);
    store.commit(&mk, &refs).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not touch");
}

#[test]
fn wrong_master_key_is_a_decrypt_error() {
    let a = TokenStore::open(common::data_dir().join("ock-3.27/swtok-old-sample")).unwrap();
    let b = TokenStore::open(common::data_dir().join("ock-3.27/ccatok-old-sample")).unwrap();
    let mk_b = b.login_user(USER_PIN).unwrap();
    let e = a.load_objects(&mk_b).err().unwrap();
    assert!(matches!(e, StoreError::Decrypt { .. }), "{e}");
    let n = TokenStore::open(common::data_dir().join(NEW)).unwrap();
    let e = n.load_objects(&mk_b).err().unwrap();
    assert!(matches!(e, StoreError::Decrypt { .. }), "{e}");
}

#[test]
fn format_mismatch_with_configuration() {
    use pkcscca::store::{Format, OpenOptions};
    let e = TokenStore::open_with(
        common::data_dir().join(OLD),
        OpenOptions {
            format: Some(Format::New),
            byte_order: None,
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, StoreError::BadSize { size: 232, .. }), "{e}");
}

#[test]
fn repeated_index_lines_are_skipped() {
    let t = temp_copy(&common::data_dir().join(OLD));
    let idx = t.dir.join("TOK_OBJ/OBJ.IDX");
    let mut s = std::fs::read_to_string(&idx).unwrap();
    let first = s.lines().next().unwrap().to_string();
    s.push_str(&format!("{first}\n"));
    std::fs::write(&idx, s).unwrap();
    let store = TokenStore::open(&t.dir).unwrap();
    let mk = store.login_user(USER_PIN).unwrap();
    let objs = store.load_objects(&mk).unwrap();
    assert_eq!(objs.len(), 20);
    assert_eq!(objs[0].name.as_str(), first);
}

#[test]
fn wrong_explicit_byte_order_is_an_error_not_garbage() {
    use pkcscca::store::{ByteOrder, OpenOptions};
    for rel in [OLD, NEW] {
        let store = TokenStore::open_with(
            common::data_dir().join(rel),
            OpenOptions {
                format: None,
                byte_order: Some(ByteOrder::Big),
            },
        )
        .unwrap();
        let e = store
            .login_user(USER_PIN)
            .and_then(|mk| store.load_objects(&mk))
            .err()
            .unwrap();
        assert!(e.to_string().contains(rel), "{e}");
    }
}

#[test]
fn an_object_changed_since_it_was_loaded_stops_the_commit() {
    let t = temp_copy(&common::data_dir().join(OLD));
    let store = TokenStore::open(&t.dir).unwrap();
    let mk = store.login_user(USER_PIN).unwrap();
    let objs = store.load_objects(&mk).unwrap();
    let refs: Vec<_> = objs.iter().collect();

    // Rewritten in place with bytes of the same length, as openCryptoki writes objects
    // (after a clock tick, so that the rewrite has a later modification time).
    let changed = store.object_path(objs[1].name);
    let original = std::fs::read(&changed).unwrap();
    let mut bytes = original.clone();
    *bytes.last_mut().unwrap() ^= 0xFF;
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&changed, &bytes).unwrap();
    let before = snapshot(&t.dir);
    let e = store.commit(&mk, &refs).unwrap_err();
    assert!(
        matches!(e, StoreError::ChangedOnDisk { ref file } if *file == changed),
        "{e}"
    );
    assert_eq!(before, snapshot(&t.dir), "nothing written");

    // Replaced by a new file (a new inode) with the bytes it had when loaded.
    std::fs::write(&changed, &original).unwrap();
    let objs = store.load_objects(&mk).unwrap();
    let refs: Vec<_> = objs.iter().collect();
    std::fs::remove_file(&changed).unwrap();
    std::fs::write(&changed, &original).unwrap();
    let e = store.commit(&mk, &refs).unwrap_err();
    assert!(matches!(e, StoreError::ChangedOnDisk { .. }), "{e}");

    // A hard link to it (a backup) is no change: the commit goes through.
    let objs = store.load_objects(&mk).unwrap();
    let refs: Vec<_> = objs.iter().collect();
    std::fs::hard_link(&changed, t.dir.join("linked-copy")).unwrap();
    store.commit(&mk, &refs).unwrap();
}
