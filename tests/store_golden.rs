//! Golden text dumps of decoded vector stores (secrets shown as lengths).
//! `PKCSCCA_UPDATE_GOLDEN=1 cargo test --test store_golden` rewrites
//! `tests/golden/store-*.dump`; review the diff before committing.

// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use pkcscca::store::TokenStore;

fn dump_store(rel: &str) -> String {
    let store = TokenStore::open(common::data_dir().join(rel)).unwrap();
    let mk = store.login_user(common::USER_PIN).unwrap();
    let mut out = format!(
        "store {rel}\nformat {:?}\nbyte order {:?}\nlabel {}\nflags {:#010x}\n",
        store.format(),
        store.byte_order(),
        store.label(),
        store.token_flags()
    );
    for o in store.load_objects(&mk).unwrap() {
        out.push('\n');
        out.push_str(&o.dump(false));
    }
    out
}

fn check(rel: &str) {
    let name = format!("store-{}.dump", rel.replace('/', "-"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let got = dump_store(rel);
    if std::env::var_os("PKCSCCA_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with PKCSCCA_UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(got, want, "{} differs", path.display());
}

#[test]
fn golden_381_swtok_sample() {
    check("ock-3.8.1/swtok-sample");
}

#[test]
fn golden_381_ccatok_sample() {
    check("ock-3.8.1/ccatok-sample");
}

#[test]
fn golden_327_ccatok_new_sample() {
    check("ock-3.27/ccatok-new-sample");
}
