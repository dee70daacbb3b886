//! `pkcscca::cca::Csulcca` driving the software CCA library (`libcsulcca.so`
//! from `tests/csulcca-emu`): verbs through the real C ABI, master-key
//! changes, re-encipherment, error codes, test knobs, and state shared with
//! the admin tool in another process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a test failure"
)]

mod common;

use std::time::{Duration, Instant};

use common::emu::{self, EmuSession};
use pkcscca::cca::rules::{self, Keyword, RuleArray};
use pkcscca::cca::token::{self, MkType, TokenKind};
use pkcscca::cca::{CcaError, Csulcca, LoadError, RegisterState, Verb};

fn new_mk(cca: &Csulcca, t: MkType) {
    cca.csnbmkp(t, rules::RANDOM, &[]).unwrap();
    cca.csnbmkp(t, rules::SET, &[]).unwrap();
}

fn des_key(cca: &Csulcca) -> [u8; 64] {
    let mut t = [0u8; 64];
    cca.csnbkgn(Keyword::new("KEYLN24"), Keyword::new("DATA"), &mut t)
        .unwrap();
    t
}

fn ecc_key(cca: &Csulcca) -> Vec<u8> {
    let skel = cca
        .csndpkb(
            &RuleArray::new(&[rules::ECC_PAIR, rules::KEY_MGMT]),
            &[0, 0, 1, 0, 0, 0, 0, 0],
        )
        .unwrap();
    cca.csndpkg(&skel).unwrap()
}

fn rsa_crt_key(cca: &Csulcca) -> Vec<u8> {
    let mut kvs = vec![0u8; 21];
    kvs[0..2].copy_from_slice(&2048u16.to_be_bytes());
    kvs[4..6].copy_from_slice(&3u16.to_be_bytes());
    kvs[18..21].copy_from_slice(&[1, 0, 1]);
    let skel = cca
        .csndpkb(&RuleArray::new(&[rules::RSA_CRT, rules::KEY_MGMT]), &kvs)
        .unwrap();
    cca.csndpkg(&skel).unwrap()
}

fn current_vp(cca: &Csulcca, t: MkType) -> Vec<u8> {
    cca.mk_status(t).unwrap().current.mkvp.unwrap()
}

fn rtcmk() -> RuleArray {
    RuleArray::new(&[rules::RTCMK])
}

#[test]
fn loader_reports_missing_library_and_version() {
    let Some(s) = EmuSession::isolated("loader") else {
        return;
    };
    match Csulcca::open_path(
        std::path::Path::new("/nonexistent/libcsulcca.so"),
        Verb::ALL,
    ) {
        Err(LoadError::Open { name, .. }) => assert!(name.contains("nonexistent")),
        other => panic!("unexpected {other:?}"),
    }
    // A library without the CCA verbs is reported by the first missing verb.
    match Csulcca::open_path(std::path::Path::new("libc.so.6"), Verb::ALL) {
        Err(LoadError::MissingSymbol { symbol, .. }) => assert_eq!(symbol, "CSNBKTC"),
        other => panic!("unexpected {other:?}"),
    }
    let cca = s.open();
    let v = cca.csuacfv().unwrap();
    assert!(v.starts_with("8.4.0z"), "{v}");
}

#[test]
fn every_upstream_symbol_is_exported() {
    let Some(_s) = EmuSession::isolated("symbols") else {
        return;
    };
    // nm comes with binutils, which linking Rust needs anyway: missing, it fails.
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(emu::library())
        .output()
        .expect("nm (binutils) is needed to read the library's symbols");
    assert!(out.status.success(), "nm failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let defined: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for name in pkcscca::cca::abi::ALL_VERBS {
        assert!(defined.contains(&name), "{name} not exported");
    }
}

#[test]
fn des_token_migrates_and_still_decrypts() {
    let Some(s) = EmuSession::isolated("des") else {
        return;
    };
    let cca = s.open();
    let key = des_key(&cca);
    let data = *b"sixteen byte msgsixteen byte msg";
    let iv = *b"10293847";
    let ct = cca.csnbenc(&key, &iv, &data).unwrap();
    assert_ne!(&ct[..], &data[..]);
    let before = cca.mk_status(MkType::Sym).unwrap();
    new_mk(&cca, MkType::Sym);
    let after = cca.mk_status(MkType::Sym).unwrap();
    assert_eq!(after.old.mkvp, before.current.mkvp, "CURRENT moved to OLD");
    assert_eq!(
        (after.new.state, after.current.state, after.old.state),
        (
            RegisterState::Empty,
            RegisterState::Loaded,
            RegisterState::Loaded
        )
    );

    let mut t = key;
    cca.csnbktc(&rtcmk(), &mut t).unwrap();
    assert_eq!(&t[8..16], &after.current.mkvp.clone().unwrap()[..]);
    assert!(token::tvv_valid(&t));
    assert_eq!(cca.csnbdec(&t, &iv, &ct).unwrap(), data);
    let mut again = t;
    cca.csnbktc(&rtcmk(), &mut again).unwrap();
    assert_eq!(again, t, "already CURRENT: unchanged");

    new_mk(&cca, MkType::Sym);
    let mut lost = key;
    let e = cca.csnbktc(&rtcmk(), &mut lost).unwrap_err();
    assert_eq!(
        e,
        CcaError {
            verb: Verb::Csnbktc,
            rc: 8,
            reason: 48
        }
    );
    assert!(e.is_unknown_mk());
    assert_eq!(lost, key, "buffer untouched on error");
    assert!(cca.csnbdec(&key, &iv, &ct).unwrap_err().is_unknown_mk());
    assert_eq!(
        cca.csnbdec(&t, &iv, &ct).unwrap(),
        data,
        "migrated key works under OLD"
    );
}

#[test]
fn aes_data_token_migrates_and_still_decrypts() {
    let Some(s) = EmuSession::isolated("aes") else {
        return;
    };
    let cca = s.open();
    let skel = cca
        .csnbktb(
            Keyword::new("DATA"),
            &RuleArray::new(&[rules::INTERNAL, rules::AES, rules::NO_KEY, rules::KEYLN32]),
        )
        .unwrap();
    let mut key = skel;
    cca.csnbkgn(Keyword::new(""), Keyword::new("AESTOKEN"), &mut key)
        .unwrap();
    assert_eq!(u16::from_be_bytes([key[56], key[57]]), 256);
    let data = [0x5Au8; 48];
    let iv = [3u8; 16];
    let ct = cca.csnbsae(&key, &iv, &data).unwrap();
    new_mk(&cca, MkType::Aes);
    let mut t = key;
    cca.csnbktc(&RuleArray::new(&[rules::RTCMK, rules::AES]), &mut t)
        .unwrap();
    assert_eq!(&t[8..16], &current_vp(&cca, MkType::Aes)[..]);
    assert!(token::tvv_valid(&t));
    assert_eq!(
        &t[56..60],
        &key[56..60],
        "bit length and enciphered length unchanged"
    );
    assert_eq!(t[7], key[7], "LRC of the clear key unchanged");
    assert_eq!(cca.csnbsad(&t, &iv, &ct).unwrap(), data);
    // The DES default of CSNBKTC does not match an AES token.
    let mut wrong = t;
    assert_eq!(cca.csnbktc(&rtcmk(), &mut wrong).unwrap_err().reason, 47);
}

#[test]
fn pka_tokens_migrate_and_translate() {
    let Some(s) = EmuSession::isolated("pka") else {
        return;
    };
    let cca = s.open();
    let ec = ecc_key(&cca);
    let crt = rsa_crt_key(&cca);
    let ec_pub = cca.csndpkx(&ec).unwrap();
    assert_eq!((ec_pub[0], ec_pub[8]), (0x1E, 0x21));

    new_mk(&cca, MkType::Apka);
    new_mk(&cca, MkType::Asym);
    let mut e = ec.clone();
    cca.csndktc(&RuleArray::new(&[rules::RTCMK, rules::ECC]), &mut e)
        .unwrap();
    let info = token::classify(&e).unwrap();
    assert_eq!(info.kind, TokenKind::Ecc);
    assert_eq!(info.mkvp(&e), &current_vp(&cca, MkType::Apka)[..]);
    assert_eq!(e.len(), ec.len());
    assert_eq!(cca.csndpkx(&e).unwrap(), ec_pub, "same public key");

    let mut r = crt.clone();
    cca.csndktc(&rtcmk(), &mut r).unwrap();
    let ri = token::classify(&r).unwrap();
    assert_eq!(ri.mkvp(&r), &current_vp(&cca, MkType::Asym)[..]);
    // INTDWAKW: RSA-CRT under ASYM becomes RSA-AESC under APKA, same key.
    let aesc = cca
        .csndpkt(&RuleArray::new(&[rules::INTDWAKW]), &r)
        .unwrap();
    let ai = token::classify(&aesc).unwrap();
    assert_eq!(ai.kind, TokenKind::RsaAesc);
    assert_eq!(ai.mkvp(&aesc), &current_vp(&cca, MkType::Apka)[..]);
    assert_eq!(cca.csndpkx(&aesc).unwrap(), cca.csndpkx(&crt).unwrap());
    let mut none = aesc.clone();
    cca.csndktc(&RuleArray::new(&[rules::RTCMK, rules::RSA]), &mut none)
        .unwrap();
    assert_eq!(none, aesc, "already CURRENT");
}

#[test]
fn error_codes_through_the_library() {
    let Some(s) = EmuSession::isolated("errors") else {
        return;
    };
    let cca = s.open();
    let key = des_key(&cca);
    let mut bad = key;
    bad[30] ^= 0x40;
    assert_eq!(cca.csnbktc(&rtcmk(), &mut bad).unwrap_err().reason, 29);
    let mut t = key;
    let e = cca
        .csnbktc(
            &RuleArray::new(&[rules::RTCMK, Keyword::new("NOPE")]),
            &mut t,
        )
        .unwrap_err();
    assert_eq!((e.rc, e.reason), (8, 33));
    let e = cca
        .csuacfq(&RuleArray::new(&[Keyword::new("STATNOPE")]), 0)
        .unwrap_err();
    assert_eq!((e.verb, e.rc, e.reason), (Verb::Csuacfq, 8, 33));
    let out = s.admin(&["clear-current", "sym"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cca
        .csnbktc(&rtcmk(), &mut t)
        .unwrap_err()
        .is_mk_not_loaded());
    assert_eq!(
        cca.mk_status(MkType::Sym).unwrap().current.state,
        RegisterState::Empty
    );
}

#[test]
fn state_is_shared_with_the_admin_tool() {
    let Some(s) = EmuSession::isolated("shared") else {
        return;
    };
    let cca = s.open();
    let aes_before = current_vp(&cca, MkType::Aes);
    let part = "11".repeat(32);
    for flag in ["--first", "--last"] {
        let o = s.admin_input(&["load-new", "aes", flag], format!("{part}\n").as_bytes());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Parts XOR to zero: a full NEW register holding the all-zero key.
    let st = cca.mk_status(MkType::Aes).unwrap();
    assert_eq!(st.new.state, RegisterState::Loaded);
    assert!(st.new.mkvp.is_some());
    assert!(s.admin(&["set", "aes"]).status.success());
    let st = cca.mk_status(MkType::Aes).unwrap();
    assert_eq!(st.old.mkvp.as_deref(), Some(&aes_before[..]));
    let status = String::from_utf8(s.admin(&["status"]).stdout).unwrap();
    let hex: String = st
        .current
        .mkvp
        .unwrap()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(status.contains(&hex), "{status}");
    assert!(
        !status.to_lowercase().contains(&"0".repeat(64)),
        "key values never printed"
    );
    // The library's own CSNBMKP is visible to the admin tool.
    cca.csnbmkp(MkType::Apka, rules::RANDOM, &[]).unwrap();
    let status = String::from_utf8(s.admin(&["status"]).stdout).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("APKA NEW 3 ")),
        "{status}"
    );
    // Refuses to SET a NEW key equal to CURRENT.
    let zero = "00".repeat(32);
    for flag in ["--first", "--last"] {
        let o = s.admin_input(&["load-new", "aes", flag], zero.as_bytes());
        assert!(o.status.success());
    }
    assert!(!s.admin(&["set", "aes"]).status.success());
    // Bad input is refused without touching the registers.
    let before = cca.mk_status(MkType::Sym).unwrap();
    let sym_part = "11".repeat(24);
    for (bad, input) in [
        (vec!["load-new", "sym", "--first"], "1122\n".to_string()),
        (vec!["load-new", "des", "--random"], String::new()),
        (vec!["load-new", "sym", "--middle"], "zz".repeat(24)),
        // A key part on the command line is refused, even a well-formed one.
        (vec!["load-new", "sym", "--first", &sym_part], String::new()),
        (vec!["frobnicate"], String::new()),
    ] {
        let o = s.admin_input(&bad, input.as_bytes());
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(!o.stderr.is_empty());
    }
    assert_eq!(cca.mk_status(MkType::Sym).unwrap(), before);
}

/// The latency knob delays the verb it names by at least the time given (a
/// lower bound: a sleep never ends early). Which verbs a value delays is the
/// emulator's own unit test (`knobs::tests::latency_syntax`); how long a run
/// takes belongs in the benchmark.
#[test]
fn knob_latency() {
    let knobs = [("CSULCCA_EMU_LATENCY_US", "CSNBKTC=150000,*=0")];
    let Some(s) = EmuSession::isolated_with("latency", &knobs) else {
        return;
    };
    let cca = s.open();
    let mut t = des_key(&cca);
    let start = Instant::now();
    cca.csnbktc(&rtcmk(), &mut t).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
}

/// The child half of `knob_stats_written_at_exit`, run in a process of its
/// own: loads the library, calls one verb and lets the process exit.
#[test]
#[ignore = "a child process of knob_stats_written_at_exit"]
fn knob_stats_child() {
    if std::env::var_os("CSULCCA_EMU_STATS").is_none() {
        eprintln!("run by knob_stats_written_at_exit, with CSULCCA_EMU_STATS set");
        return;
    }
    // Alone in its process (run by the test above): setting the environment is safe.
    let s = EmuSession::new("stats-child");
    s.open().csuacfv().unwrap();
}

#[test]
fn knob_stats_written_at_exit() {
    let Some(_s) = EmuSession::isolated("stats") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats");
    for _ in 0..2 {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "knob_stats_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env("CSULCCA_EMU_STATS", &stats)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&stats).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per process, appended: {text:?}");
    for line in lines {
        let (calls, nanos) = line
            .strip_prefix("calls=")
            .and_then(|l| l.split_once(" nanos="))
            .unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(calls, "1", "{line:?}");
        assert!(nanos.parse::<u64>().unwrap() > 0, "{line:?}");
    }
}

#[test]
fn knob_fail_nth_call() {
    let knobs = [("CSULCCA_EMU_FAIL", "CSNBKTC:3:8:48")];
    let Some(s) = EmuSession::isolated_with("nth", &knobs) else {
        return;
    };
    let cca = s.open();
    let key = des_key(&cca);
    let mut results = Vec::new();
    for _ in 0..4 {
        let mut t = key;
        results.push(
            cca.csnbktc(&rtcmk(), &mut t)
                .map_err(|e| (e.rc, e.reason))
                .map(|_| ()),
        );
    }
    assert_eq!(results, vec![Ok(()), Ok(()), Err((8, 48)), Ok(())]);
}

#[test]
fn knob_fail_by_token() {
    let Some(s) = EmuSession::isolated("token") else {
        return;
    };
    let cca = s.open();
    let ec = ecc_key(&cca);
    let des = des_key(&cca);
    let vp: String = current_vp(&cca, MkType::Apka)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.set_knob("CSULCCA_EMU_FAIL", &format!("CSNDKTC:token={vp}:8:48"));
    let mut e = ec.clone();
    let err = cca
        .csndktc(&RuleArray::new(&[rules::RTCMK, rules::ECC]), &mut e)
        .unwrap_err();
    assert!(err.is_unknown_mk());
    assert_eq!(e, ec);
    let mut d = des;
    cca.csnbktc(&rtcmk(), &mut d).unwrap();
}

#[test]
fn concurrent_threads_and_processes_keep_state_consistent() {
    let Some(s) = EmuSession::isolated("concurrent") else {
        return;
    };
    let cca = s.open();
    let key = des_key(&cca);
    let sym = current_vp(&cca, MkType::Sym);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..20 {
                    let mut t = key;
                    cca.csnbktc(&rtcmk(), &mut t).unwrap();
                    assert_eq!(t, key);
                }
            });
        }
        sc.spawn(|| {
            for _ in 0..5 {
                let o = s.admin(&["load-new", "aes", "--random"]);
                assert!(o.status.success());
                assert!(s.admin(&["set", "aes"]).status.success());
            }
        });
    });
    assert_eq!(current_vp(&cca, MkType::Sym), sym);
    let st = cca.mk_status(MkType::Aes).unwrap();
    assert_eq!(
        (st.current.state, st.old.state),
        (RegisterState::Loaded, RegisterState::Loaded)
    );
}

fn kws(list: &[&str]) -> RuleArray {
    RuleArray::new(&list.iter().map(|k| Keyword::new(k)).collect::<Vec<_>>())
}

#[test]
fn variable_length_tokens_migrate_via_csnbktc2() {
    let Some(s) = EmuSession::isolated("ktc2") else {
        return;
    };
    let cca = s.open();
    let skel = cca
        .csnbktb2(&kws(&["INTERNAL", "AES", "CIPHER", "NO-KEY", "ANY-MODE"]))
        .unwrap();
    assert_eq!(skel.len(), 56);
    let cipher = cca.csnbkgn2(&kws(&["AES", "OP"]), 256, &skel).unwrap();
    assert_eq!(cipher.len(), 136);
    let hskel = cca
        .csnbktb2(&kws(&["INTERNAL", "HMAC", "MAC", "GENERATE"]))
        .unwrap();
    let hmac = cca.csnbkgn2(&kws(&["HMAC", "OP"]), 512, &hskel).unwrap();
    assert_eq!(hmac.len(), 56 + 112, "12+32+64 bytes rounded to 8");
    let iv = [9u8; 16];
    let data = [0xC3u8; 32];
    let ct = cca.csnbsae(&cipher, &iv, &data).unwrap();

    new_mk(&cca, MkType::Aes);
    let vp = current_vp(&cca, MkType::Aes);
    for (alg, orig) in [(rules::AES, &cipher), (rules::HMAC, &hmac)] {
        let mut t = orig.clone();
        t.extend_from_slice(&[0xEE; 40]); // caller's buffer larger than the token
        cca.csnbktc2(&RuleArray::new(&[alg, rules::RTCMK]), &mut t)
            .unwrap();
        assert_eq!(t.len(), orig.len(), "{alg}: length");
        assert_eq!(&t[10..18], &vp[..], "{alg}: MKVP");
        assert_eq!(&t[30..56], &orig[30..56], "{alg}: AD unchanged");
        let mut again = t.clone();
        cca.csnbktc2(&RuleArray::new(&[rules::RTCMK, alg]), &mut again)
            .unwrap();
        assert_eq!(again, t, "{alg}: already CURRENT");
        if alg == rules::AES {
            assert_eq!(cca.csnbsad(&t, &iv, &ct).unwrap(), data);
        }
        let e = cca
            .csnbktc2(&RuleArray::new(&[rules::RTCMK]), &mut t.clone())
            .unwrap_err();
        assert_eq!(
            (e.rc, e.reason),
            (8, 35),
            "CSNBKTC2 takes exactly two keywords"
        );
    }
}
