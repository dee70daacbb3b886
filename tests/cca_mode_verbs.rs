//! Each mode resolves only the verbs it calls: against a CCA library that
//! exports nothing but the verbs `-m keys -k aes` requires (CSNBKTC and
//! CSNBKTC2, the ones upstream needs; not even CSUACFQ, which we use when
//! present), that mode starts and migrates, while `-m oldrsakeys` and
//! `-m keys -k apka` are refused before any prompt, with upstream's line
//! naming the missing verb as the loader's message does.
//!
//! The partial library is a C shim written here from pkcscca's own verb table
//! (`abi::C_PARAMETERS`) and compiled with the C compiler Rust links with
//! (`$CC`, else `cc`): each of its functions forwards to the software CCA's
//! function of the same name, which it loads by absolute path.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::emu::{self, EmuSession};
use common::lab::{Lab, PINS};
use pkcscca::cca::abi::C_PARAMETERS;
use pkcscca::cca::rules::{self, RuleArray};
use pkcscca::cca::{self, Csulcca, LoadError, MkType, Verb};

/// C source of a library named `libcsulcca.so` that exports exactly `verbs`,
/// each forwarding to the same symbol of the library at `target`.
fn shim_source(verbs: &[Verb], target: &Path) -> String {
    let mut c = String::from("#include <dlfcn.h>\n#include <stdio.h>\n#include <stdlib.h>\n\n");
    let target = target
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    writeln!(c, "static void *lib;").unwrap();
    writeln!(c, "__attribute__((constructor)) static void load(void) {{").unwrap();
    writeln!(c, "    lib = dlopen(\"{target}\", RTLD_NOW | RTLD_LOCAL);").unwrap();
    writeln!(c, "}}\n").unwrap();
    writeln!(c, "static void *target(const char *name) {{").unwrap();
    writeln!(c, "    void *f = lib ? dlsym(lib, name) : NULL;").unwrap();
    writeln!(
        c,
        "    if (!f) {{ fprintf(stderr, \"shim: no %s: %s\\n\", name, dlerror()); abort(); }}"
    )
    .unwrap();
    writeln!(c, "    return f;\n}}\n").unwrap();
    for verb in verbs {
        let name = verb.name();
        let (_, types) = C_PARAMETERS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("every verb pkcscca calls has a signature in the table");
        let params: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{t}a{i}"))
            .collect();
        let args: Vec<String> = (0..types.len()).map(|i| format!("a{i}")).collect();
        writeln!(c, "void {name}({}) {{", params.join(", ")).unwrap();
        writeln!(
            c,
            "    ((void (*)({}))target(\"{name}\"))({});\n}}\n",
            types.join(", "),
            args.join(", ")
        )
        .unwrap();
    }
    c
}

/// Compiles the shim for `verbs` into `dir/libcsulcca.so`.
fn build_shim(dir: &Path, verbs: &[Verb]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("shim.c");
    std::fs::write(&src, shim_source(verbs, &emu::library())).unwrap();
    let lib = dir.join("libcsulcca.so");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| panic!("run the C compiler {cc:?} (set CC): {e}"));
    assert!(
        out.status.success(),
        "compiling the shim failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// The verbs `-m keys -k aes` requires, the library this file tests against.
fn aes_verbs() -> Vec<Verb> {
    cca::keys_verbs(MkType::Aes).required
}

#[test]
fn the_shim_exports_exactly_the_verbs_it_was_built_for() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = build_shim(tmp.path(), &aes_verbs());
    Csulcca::open_path(&lib, &aes_verbs()).expect("every -k aes verb is exported");
    for &verb in Verb::ALL {
        match Csulcca::open_path(&lib, &[verb]) {
            Ok(_) => assert!(aes_verbs().contains(&verb), "{verb} is exported"),
            Err(LoadError::MissingSymbol { symbol, .. }) => {
                assert!(!aes_verbs().contains(&verb), "{verb} is missing");
                assert_eq!(symbol, verb.name());
            }
            Err(e) => panic!("{verb}: {e}"),
        }
    }
}

#[test]
fn a_verb_not_resolved_is_an_error_not_a_call() {
    let Some(_s) = EmuSession::isolated("not-resolved") else {
        return;
    };
    let cca = Csulcca::open_path(&emu::library(), &[Verb::Csuacfq]).unwrap();
    cca.mk_status(MkType::Aes).expect("CSUACFQ was resolved");
    let mut token = [0u8; 64];
    let e = cca
        .csnbktc(&RuleArray::new(&[rules::RTCMK]), &mut token)
        .unwrap_err();
    assert!(e.is_not_resolved(), "{e:?}");
    assert_eq!(e.verb, Verb::Csnbktc);
    assert_eq!(
        e.to_string(),
        "CSNBKTC was not resolved from the CCA library"
    );
    assert_eq!(token, [0u8; 64], "nothing was called");
    let e = cca.csndpkx(&[0x1F; 8]).unwrap_err();
    assert!(e.is_not_resolved() && e.verb == Verb::Csndpkx, "{e:?}");
    // The full set works on the same library.
    let all = Csulcca::open_path(&emu::library(), Verb::ALL).unwrap();
    assert!(!all.csuacfv().unwrap().is_empty());
}

#[test]
fn keys_aes_migrates_against_a_library_with_only_its_verbs() {
    let mut lab = Lab::new(&["--format", "new"]);
    let shim = lab.root().join("aes-only");
    build_shim(&shim, &aes_verbs());
    lab.change_mk("aes", 1);
    assert_eq!(
        lab.check(Some("aes")).code,
        1,
        "keys under OLD fail the check"
    );

    let store_before = common::snapshot(&lab.store);
    lab.extra_env
        .push(("LD_LIBRARY_PATH".into(), shim.display().to_string()));

    // Modes needing a verb the library lacks stop at the loader, before the
    // prompts and before the store is read, with upstream's line and exit status.
    let store = lab.store.display().to_string();
    let refusals: [(&[&str], &str, &str); 3] = [
        (
            &["-m", "oldrsakeys", "-s", "2", "-d", &store],
            "CSNDPKT",
            "oldrsakeys/library-lacks-a-verb",
        ),
        // Ours: -m status cannot do without the master key registers.
        (
            &["-m", "status", "-d", &store],
            "CSUACFQ",
            "status/library-lacks-a-verb",
        ),
        (
            &["-m", "keys", "-s", "2", "-k", "apka", "-d", &store],
            "CSNDKTC",
            "keys/library-lacks-a-verb",
        ),
    ];
    for (args, missing, case) in refusals {
        let r = lab.pkcscca(args, PINS);
        lab.check_golden(case, args, PINS, &r);
        assert_eq!(r.code, 255, "{args:?}: {r:?}");
        assert_eq!(r.stdout, "", "no prompt: {args:?}");
        let line = r.stderr.lines().last().unwrap_or_default();
        assert!(
            line.starts_with("pkcscca: Cannot find required CCA symbols in libcsulcca.so: ")
                && line.ends_with(&format!("undefined symbol: {missing}")),
            "{args:?}: {r:?}"
        );
        assert_eq!(common::snapshot(&lab.store), store_before, "{args:?}");
    }

    let r = lab.migrate("aes", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.ends_with(
            "Successfully migrated: AES: 7. HMAC: 2. \n\
             Re-enciphered: 9. Already current: 0. Failed: 0. Object files rewritten: 9.\n"
        ),
        "{r:?}"
    );
    lab.extra_env.clear();
    let check = lab.check(Some("aes"));
    assert_eq!(
        check.code, 0,
        "every AES and HMAC key is under CURRENT: {check:?}"
    );
}
