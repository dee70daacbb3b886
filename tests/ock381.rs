//! Interop check against the real openCryptoki 3.8.1 (Debian bookworm's
//! packages) running over our software CCA library.
//!
//! The work is done by `tests/ock381/run.sh`; this wrapper runs it and turns its
//! exit status into a test result, printing its whole log on failure.

use std::path::Path;
use std::process::Command;

/// Runs `tests/ock381/run.sh`: pkcsslotd and the CCA STDLL of openCryptoki
/// 3.8.1 over `libcsulcca.so`, token initialisation, key generation and
/// encryption through PKCS#11, an emulated master key change, the real
/// `/usr/sbin/pkcscca -m keys` for `sym`, `aes`, `apka` and `asym`,
/// decryption of the old ciphertexts with the migrated keys, and a second
/// change that shows the keys 3.8.1's pkcscca skips are lost.
///
/// The script needs root and the Debian package registry, installs
/// `opencryptoki` and `python3` when missing, and temporarily replaces
/// `/etc/opencryptoki/opencryptoki.conf` and runs a pkcsslotd (it backs up and
/// restores everything it touches). That is why the test is `#[ignore]`d, so
/// `cargo test --workspace` leaves the machine alone, and why it additionally
/// refuses to run unless `PKCSCCA_OCK381=1` says the machine may be changed.
/// `.ci/run` sets the variable and runs
/// `cargo test --test ock381 -- --ignored`.
#[test]
#[ignore = "needs root and apt; run by .ci/run"]
fn real_opencryptoki_381_over_emulator() {
    assert_eq!(
        std::env::var("PKCSCCA_OCK381").as_deref(),
        Ok("1"),
        "this test changes system state (packages, /etc/opencryptoki, pkcsslotd); \
         set PKCSCCA_OCK381=1 to allow it, as .ci/run does"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new("bash")
        .arg(root.join("tests/ock381/run.sh"))
        .env("CARGO", cargo)
        .current_dir(root)
        .output()
        .expect("run bash tests/ock381/run.sh");
    let log = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "tests/ock381/run.sh failed ({}):\n{log}",
        out.status
    );
    assert!(
        log.contains("PASS: real openCryptoki 3.8.1 over libcsulcca.so"),
        "tests/ock381/run.sh exited 0 without its PASS line:\n{log}"
    );
    println!("{log}");
}
