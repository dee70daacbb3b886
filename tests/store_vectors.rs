//! Every store written by real openCryptoki opens with its PINs, every object
//! decodes, and the attributes equal what openCryptoki returned through
//! PKCS#11 (`*.objects-via-pkcs11.json`).
// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{Vector, VECTORS};
use pkcscca::pkcs11::{AttrType, ObjectClass};
use pkcscca::store::{ByteOrder, Format, StoreError, StoredObject, TokenStore};

/// One JSON reference object: (type, value) pairs.
fn reference(v: &Vector) -> Vec<Vec<(AttrType, Vec<u8>)>> {
    let text = std::fs::read_to_string(v.json_path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o.as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.as_str() != "handle")
                .map(|(k, val)| {
                    let hexty = k.split("(0x").nth(1).unwrap().trim_end_matches(')');
                    let ty = AttrType(u32::from_str_radix(hexty, 16).unwrap());
                    (ty, common::unhex(val.as_str().unwrap()))
                })
                .collect()
        })
        .collect()
}

fn matches(obj: &StoredObject, r: &[(AttrType, Vec<u8>)]) -> bool {
    r.iter()
        .all(|(ty, val)| obj.template.get(*ty) == Some(val.as_slice()))
}

/// Opens and loads with the USER PIN (the SO PIN is checked in
/// `every_store_opens_with_its_pins`; PBKDF2 is slow enough to ration).
fn open_and_load(v: &Vector) -> (TokenStore, Vec<StoredObject>) {
    let store = TokenStore::open(v.dir()).unwrap();
    let mk = store.login_user(v.user_pin.unwrap()).unwrap();
    let objs = store.load_objects(&mk).unwrap();
    (store, objs)
}

#[test]
fn every_store_opens_with_its_pins() {
    for v in VECTORS {
        let store = TokenStore::open(v.dir()).unwrap_or_else(|e| panic!("{}: {e}", v.rel));
        let want = if v.new_format {
            Format::New
        } else {
            Format::Old
        };
        assert_eq!(store.format(), want, "{}", v.rel);
        assert_eq!(store.byte_order(), ByteOrder::Little, "{}", v.rel);
        // so_master_key = login_so (verifier + MK_SO) returning the key.
        let so_mk = store
            .so_master_key(v.so_pin)
            .unwrap_or_else(|e| panic!("{}: {e}", v.rel));
        match v.user_pin {
            Some(pin) => {
                let mk = store
                    .login_user(pin)
                    .unwrap_or_else(|e| panic!("{}: {e}", v.rel));
                assert!(mk.same_as(&so_mk), "{}: MK_SO and MK_USER differ", v.rel);
                let expect_len = match (v.new_format, v.rel.starts_with("ock-3.8.1/ccatok")) {
                    (true, _) => 32,
                    (false, true) => 64,
                    (false, false) => 24,
                };
                assert_eq!(mk.len(), expect_len, "{}", v.rel);
                if v.objects == 0 {
                    assert!(matches!(
                        store.load_objects(&mk),
                        Err(StoreError::MissingIndex { .. })
                    ));
                } else {
                    assert_eq!(
                        store.load_objects(&mk).unwrap().len(),
                        v.objects,
                        "{}",
                        v.rel
                    );
                }
            }
            None => {
                assert!(!store.user_pin_initialized(), "{}", v.rel);
                assert!(so_mk.len() >= 24);
                let e = store.login_user(b"12345678").err().unwrap();
                assert!(
                    matches!(e, StoreError::UserPinNotInitialized { .. }),
                    "{}: {e}",
                    v.rel
                );
            }
        }
    }
}

#[test]
fn all_131_objects_decode_and_index_order_is_kept() {
    let mut total = 0;
    for v in common::vectors_with_objects() {
        let (store, objs) = open_and_load(v);
        let idx = std::fs::read_to_string(store.index_path()).unwrap();
        let names: Vec<&str> = idx.lines().collect();
        let got: Vec<&str> = objs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(got, names, "{}", v.rel);
        for o in &objs {
            // Header flag agrees with CKA_PRIVATE (absent counts as private).
            let p = o.template.get_bool(AttrType::PRIVATE).unwrap_or(true);
            assert_eq!(p, o.private, "{} {}", v.rel, o.name);
            assert!(o.template.class().is_some(), "{} {}", v.rel, o.name);
        }
        total += objs.len();
    }
    assert_eq!(total, 131);
}

#[test]
fn attributes_equal_what_opencryptoki_returned() {
    let mut compared = 0usize;
    for v in VECTORS.iter().filter(|v| v.json) {
        let (_, objs) = open_and_load(v);
        let refs = reference(v);
        assert_eq!(refs.len(), objs.len(), "{}", v.rel);
        // Pair each reference object with exactly one stored object.
        let mut taken = vec![false; objs.len()];
        let mut order: Vec<usize> = (0..refs.len()).collect();
        let cands: Vec<Vec<usize>> = refs
            .iter()
            .map(|r| (0..objs.len()).filter(|&i| matches(&objs[i], r)).collect())
            .collect();
        order.sort_by_key(|&i| cands[i].len());
        for i in order {
            let pick = cands[i].iter().copied().find(|&c| !taken[c]);
            let Some(c) = pick else {
                panic!("{}: reference object {i} matches no stored object", v.rel);
            };
            taken[c] = true;
            compared += refs[i].len();
        }
    }
    // Errata E: 3366 attributes returned by openCryptoki across the vectors.
    assert_eq!(compared, 3366);
}

#[test]
fn cca_objects_carry_opaque_blobs() {
    for rel in [
        "ock-3.27/ccatok-new-sample",
        "ock-3.27/ccatok-old-sample",
        "ock-3.8.1/ccatok-sample",
    ] {
        let v = VECTORS.iter().find(|v| v.rel == rel).unwrap();
        let (_, objs) = open_and_load(v);
        let keys: Vec<_> = objs
            .iter()
            .filter(|o| {
                matches!(
                    o.template.class(),
                    Some(ObjectClass::SECRET_KEY | ObjectClass::PRIVATE_KEY)
                )
            })
            .collect();
        assert!(!keys.is_empty());
        for k in keys {
            let blob = k.template.get(AttrType::IBM_OPAQUE).unwrap();
            assert!(blob.len() >= 64, "{rel} {}", k.name);
        }
    }
}

#[test]
fn uninitialised_user_is_refused_even_with_default_verifier() {
    let v = VECTORS
        .iter()
        .find(|v| v.rel == "ock-3.27/ccatok-new-virgin-uninit")
        .unwrap();
    let store = TokenStore::open(v.dir()).unwrap();
    store.login_so(b"87654321").unwrap();
    assert!(matches!(
        store.login_so(b"76543210"),
        Err(StoreError::WrongSoPin { .. })
    ));
    for pin in [&b"12345678"[..], b"11223344"] {
        let e = store.login_user(pin).err().unwrap();
        assert!(matches!(e, StoreError::UserPinNotInitialized { .. }));
        assert!(e.to_string().contains("NVTOK.DAT"), "{e}");
    }
}

#[test]
fn dump_hides_secrets_unless_asked() {
    let v = VECTORS
        .iter()
        .find(|v| v.rel == "ock-3.8.1/swtok-sample")
        .unwrap();
    let (_, objs) = open_and_load(v);
    let aes = objs
        .iter()
        .find(|o| o.template.get(AttrType::LABEL) == Some(&b"aes128-known"[..]))
        .unwrap();
    let hidden = aes.dump(false);
    assert!(
        hidden.contains("CKA_VALUE (0x11) [16] <secret>"),
        "{hidden}"
    );
    assert!(!hidden.contains("000102030405060708090a0b0c0d0e0f"));
    assert!(hidden.contains("CKA_CLASS (0x0) [8] 0400000000000000 (u32 on disk) CKO_SECRET_KEY"));
    let dbg = format!("{aes:?}");
    assert!(
        dbg.contains("CKA_VALUE (0x11)[16]") && !dbg.contains("0001020304"),
        "{dbg}"
    );
    let shown = aes.dump(true);
    assert!(shown.contains("CKA_VALUE (0x11) [16] 000102030405060708090a0b0c0d0e0f"));
}
