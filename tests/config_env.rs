//! The configuration read through the environment (`PKCSCCA_OPENCRYPTOKI_CONF`,
//! `PKCS_APP_STORE`). The environment is per process and tests of one binary run in
//! threads beside each other, so this test has a binary of its own: keep it the only
//! test here.
// Test helpers outside #[test] fns may unwrap and index too (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use pkcscca::config::SystemPaths;
use pkcscca::store::Format;

/// One slot: a CCA token with its own token name and an old-format data store.
const CONF_CURRENT: &str = "\
version opencryptoki-3.27

slot 7 {
    stdll = \"/usr/lib/opencryptoki/stdll/libpkcs11_cca.so\"
    tokname = cca7
    tokversion = \"3.11\"
    manufacturer = IBM
}
";

#[test]
fn environment_conf_file_and_app_store() {
    use pkcscca::config::{locate_token, LocateError};
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("ock.conf");
    std::fs::write(&conf, CONF_CURRENT).unwrap();
    std::env::set_var("PKCSCCA_OPENCRYPTOKI_CONF", &conf);
    let mut p = SystemPaths::from_env();
    assert_eq!(p.conf_file, conf);
    p.data_root = tmp.path().join("lib");
    std::env::remove_var("PKCSCCA_OPENCRYPTOKI_CONF");
    assert_eq!(
        SystemPaths::from_env().conf_file,
        PathBuf::from("/etc/opencryptoki/opencryptoki.conf")
    );

    std::env::remove_var("PKCS_APP_STORE");
    let l = locate_token(&p, 7).unwrap();
    assert_eq!(l.dir, tmp.path().join("lib/cca7"));
    assert_eq!(l.open_options().format, Some(Format::Old));
    std::env::set_var("PKCS_APP_STORE", "/apps/store");
    let l = locate_token(&p, 7).unwrap();
    assert_eq!(l.dir, PathBuf::from("/apps/store/ccatok"));
    std::env::remove_var("PKCS_APP_STORE");

    assert!(matches!(locate_token(&p, 99), Err(LocateError::Resolve(_))));
    std::fs::write(&conf, "slot 1 {\n  nonsense = 1\n}\n").unwrap();
    let e = locate_token(&p, 1).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: ", conf.display())),
        "{e}"
    );
    p.conf_file = tmp.path().join("missing.conf");
    let e = locate_token(&p, 1).unwrap_err();
    assert!(e.to_string().contains("missing.conf"), "{e}");
}
