//! Every prefix of every vector file, and arbitrary or mutated bytes, give
//! an error and never a panic.
// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::{temp_copy, SO_PIN, USER_PIN};
use pkcscca::store::{
    fuzz_parse, ByteOrder, FuzzKind, MasterKey, ObjectName, StoreError, TokenStore,
};
use proptest::prelude::*;

/// Opens, logs in and loads everything.
fn full_run(dir: &Path, so: &[u8], user: &[u8]) -> Result<usize, StoreError> {
    let store = TokenStore::open(dir)?;
    store.login_so(so)?;
    let mk = store.login_user(user)?;
    Ok(store.load_objects(&mk)?.len())
}

#[test]
fn truncated_nvtok_and_mk_files_fail() {
    for v in common::VECTORS.iter().filter(|v| v.user_pin.is_some()) {
        let t = temp_copy(&v.dir());
        for file in ["NVTOK.DAT", "MK_SO", "MK_USER"] {
            let p = t.dir.join(file);
            let full = std::fs::read(&p).unwrap();
            for cut in 0..full.len() {
                std::fs::write(&p, &full[..cut]).unwrap();
                // Only the step that reads the file (keeps PBKDF2 runs few).
                let r = match file {
                    "MK_SO" => TokenStore::open(&t.dir).and_then(|s| s.login_so(v.so_pin)),
                    "MK_USER" => {
                        TokenStore::open(&t.dir).and_then(|s| s.login_user(USER_PIN).map(drop))
                    }
                    _ => full_run(&t.dir, v.so_pin, USER_PIN).map(drop),
                };
                assert!(r.is_err(), "{} {file} cut at {cut} was accepted", v.rel);
            }
            std::fs::write(&p, &full).unwrap();
        }
    }
}

#[test]
fn truncated_index_fails_or_lists_exactly_the_complete_lines() {
    for v in common::vectors_with_objects() {
        let t = temp_copy(&v.dir());
        let p = t.dir.join("TOK_OBJ/OBJ.IDX");
        let full = std::fs::read(&p).unwrap();
        let store = TokenStore::open(&t.dir).unwrap();
        for cut in 0..full.len() {
            std::fs::write(&p, &full[..cut]).unwrap();
            match store.read_index() {
                Ok(names) => {
                    // Whole lines; the last may lack its LF (openCryptoki reads it too).
                    assert!(cut % 9 == 0 || cut % 9 == 8, "{} cut {cut}", v.rel);
                    assert_eq!(names.len(), cut.div_ceil(9));
                }
                Err(StoreError::EmptyIndex { .. }) => assert_eq!(cut, 0),
                Err(StoreError::BadName { .. }) => assert!(cut % 9 != 0 && cut % 9 != 8),
                Err(e) => panic!("{}: unexpected {e}", v.rel),
            }
        }
    }
}

#[test]
fn truncated_object_files_and_flattened_bodies_fail() {
    let mut files = 0;
    for v in common::vectors_with_objects() {
        let store = TokenStore::open(v.dir()).unwrap();
        let mk = store.login_user(USER_PIN).unwrap();
        for o in store.load_objects(&mk).unwrap() {
            let full = std::fs::read(store.object_path(o.name)).unwrap();
            for cut in 0..full.len() {
                let r = store.decode_object_bytes(o.name, full[..cut].to_vec(), Some(&mk));
                assert!(r.is_err(), "{} {} cut at {cut} accepted", v.rel, o.name);
            }
            let flat = o.flattened();
            for cut in 0..flat.len() {
                assert!(!fuzz_parse(FuzzKind::Flat, &flat[..cut], ByteOrder::Little));
            }
            assert!(fuzz_parse(FuzzKind::Flat, &flat, ByteOrder::Little));
            files += 1;
        }
    }
    assert_eq!(files, 131);
}

struct Fixture {
    old: TokenStore,
    old_mk: MasterKey,
    new: TokenStore,
    new_mk: MasterKey,
    /// (name, private, bytes, new format?)
    files: Vec<(ObjectName, bool, Vec<u8>, bool)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let old = TokenStore::open(common::data_dir().join("ock-3.27/ccatok-old-sample")).unwrap();
        let new = TokenStore::open(common::data_dir().join("ock-3.27/ccatok-new-sample")).unwrap();
        let old_mk = old.login_user(USER_PIN).unwrap();
        let new_mk = new.login_user(USER_PIN).unwrap();
        let mut files = Vec::new();
        for (s, mk, is_new) in [(&old, &old_mk, false), (&new, &new_mk, true)] {
            for o in s.load_objects(mk).unwrap() {
                files.push((
                    o.name,
                    o.private,
                    std::fs::read(s.object_path(o.name)).unwrap(),
                    is_new,
                ));
            }
        }
        Fixture {
            old,
            old_mk,
            new,
            new_mk,
            files,
        }
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    SetU32(usize, u32),
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = b.len().max(1);
        match *m {
            Mutation::Flip(i, x) => {
                if !b.is_empty() {
                    b[i % n] ^= x.max(1);
                }
            }
            Mutation::Insert(i, x) => b.insert(i % (b.len() + 1), x),
            Mutation::Delete(i) => {
                if !b.is_empty() {
                    b.remove(i % n);
                }
            }
            Mutation::SetU32(i, x) => {
                let i = i % n;
                for (k, byte) in x.to_le_bytes().iter().enumerate() {
                    if let Some(d) = b.get_mut(i + k) {
                        *d = *byte;
                    }
                }
            }
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        any::<usize>().prop_map(Mutation::Delete),
        (
            any::<usize>(),
            prop_oneof![Just(0u32), Just(u32::MAX), Just(0x8000_0000), any::<u32>()]
        )
            .prop_map(|(i, x)| Mutation::SetU32(i, x)),
    ]
}

proptest! {
    #![proptest_config(common::proptest_config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        for kind in [FuzzKind::Index, FuzzKind::Flat, FuzzKind::ObjectOld, FuzzKind::ObjectNew,
                     FuzzKind::MasterKeyOld, FuzzKind::NvtokProbe] {
            for order in [ByteOrder::Little, ByteOrder::Big] {
                let _ = fuzz_parse(kind, &data, order);
            }
        }
        let f = fixture();
        let name = ObjectName::parse("OBabcdef").unwrap();
        let _ = f.old.decode_object_bytes(name, data.clone(), Some(&f.old_mk));
        let _ = f.new.decode_object_bytes(name, data, Some(&f.new_mk));
    }

    #[test]
    fn mutated_objects_never_panic_and_private_ones_always_fail(
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let f = fixture();
        let (name, private, bytes, is_new) = &f.files[pick % f.files.len()];
        let mutated = apply(bytes.clone(), &muts);
        let (s, mk) = if *is_new { (&f.new, &f.new_mk) } else { (&f.old, &f.old_mk) };
        let r = s.decode_object_bytes(*name, mutated.clone(), Some(mk));
        if *private && mutated != *bytes {
            prop_assert!(r.is_err(), "mutated private object accepted");
        }
    }

    #[test]
    fn mutated_flattened_bodies_never_panic(
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..4),
        big in any::<bool>(),
    ) {
        let f = fixture();
        let (name, _, _, is_new) = &f.files[pick % f.files.len()];
        let (s, mk) = if *is_new { (&f.new, &f.new_mk) } else { (&f.old, &f.old_mk) };
        let o = s.load_object(*name, Some(mk)).unwrap();
        let flat = apply(o.flattened().to_vec(), &muts);
        let order = if big { ByteOrder::Big } else { ByteOrder::Little };
        let _ = fuzz_parse(FuzzKind::Flat, &flat, order);
    }

    #[test]
    fn mutated_index_and_mk_files_never_panic(
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let f = fixture();
        let idx = std::fs::read(f.old.index_path()).unwrap();
        let _ = fuzz_parse(FuzzKind::Index, &apply(idx, &muts), ByteOrder::Little);
        let mk = std::fs::read(f.old.dir().join("MK_SO")).unwrap();
        let m = apply(mk.clone(), &muts);
        let ok = fuzz_parse(FuzzKind::MasterKeyOld, &m, ByteOrder::Little);
        // MK_SO of this store is sealed under the changed SO PIN, not the default.
        prop_assert!(!ok || m == mk);
    }
}

#[test]
fn mutated_nvtok_never_panics() {
    // Deterministic sweep: flip each byte of each NVTOK.DAT (old format: full
    // login; new format: open only, since a damaged iteration count may make
    // PBKDF2 legitimately slow).
    for v in common::VECTORS.iter().filter(|v| v.user_pin.is_some()) {
        let t = temp_copy(&v.dir());
        let p = t.dir.join("NVTOK.DAT");
        let full = std::fs::read(&p).unwrap();
        for i in 0..full.len() {
            let mut b = full.clone();
            b[i] ^= 0x5A;
            std::fs::write(&p, &b).unwrap();
            if v.new_format {
                let _ = TokenStore::open(&t.dir);
            } else {
                let _ = full_run(&t.dir, SO_PIN, USER_PIN);
            }
        }
    }
}
