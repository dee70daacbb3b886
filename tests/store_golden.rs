//! Golden text dumps of decoded vector stores (secrets shown as lengths).
//! `PKCSCCA_UPDATE_GOLDEN=1 cargo test --test store_golden` rewrites
//! `tests/golden/store-*.dump`; review the diff before committing.

// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

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
    common::assert_golden(&name, &dump_store(rel));
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
