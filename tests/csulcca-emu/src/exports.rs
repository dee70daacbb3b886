//! The C entry points of `libcsulcca.so`: the emulator's only unsafe code.
//!
//! Each export turns its pointer arguments into slices (NULL or a zero
//! length reads as empty, cca.md §4.1/§7.2), runs the safe verb logic from
//! [`crate::verbs`] under `catch_unwind` (a panic becomes 16/336 instead of
//! aborting the host process), and copies outputs back only on success.
//! Signatures are checked at compile time against the function-pointer
//! types in `pkcscca::cca::abi`. Verbs not emulated answer 16/336.
#![allow(unsafe_code)]
#![allow(non_snake_case, reason = "CCA verb names are the C symbol names")]
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is the CCA verb's C contract"
)]

use std::os::raw::{c_long, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pkcscca::cca::abi::{self, PBytes, PLong};
use pkcscca::cca::Verb;

use crate::codes::*;
use crate::state::Store;
use crate::verbs::{self, keys, pka, query, sign, usage};
use crate::{knobs, Fail};

/// Largest length we accept from a caller for any one buffer.
const MAX_LEN: i64 = 1 << 24;

/// Reads a `long *` (NULL reads as 0).
///
/// # Safety
/// `p` is NULL or points to a readable `long`.
unsafe fn rd(p: PLong) -> i64 {
    if p.is_null() {
        0
    } else {
        // SAFETY: non-NULL and readable per the caller's contract.
        unsafe { *p }
    }
}

/// Writes a `long *` if it is not NULL.
///
/// # Safety
/// `p` is NULL or points to a writable `long`.
unsafe fn wr(p: PLong, v: i64) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { *p = v as c_long };
    }
}

/// The `len` bytes at `p` as a slice (empty for NULL or `len <= 0`).
///
/// # Safety
/// When `p` is non-NULL and `len > 0`, `p` points to at least `len`
/// readable bytes that stay valid and unaliased by writes for `'a`.
unsafe fn bytes<'a>(p: *const u8, len: i64) -> Result<&'a [u8], Fail> {
    if p.is_null() || len <= 0 {
        return Ok(&[]);
    }
    if len > MAX_LEN {
        return Err(SHORT_BUFFER);
    }
    // SAFETY: per the function contract; the length is bounded above.
    Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
}

/// Writes `src` to `p`, which the caller sized for at least `src.len()`.
///
/// # Safety
/// `p` is NULL (then nothing is written) or points to `src.len()` writable
/// bytes not overlapping `src`.
unsafe fn put(p: *mut u8, src: &[u8]) {
    if !p.is_null() && !src.is_empty() {
        // SAFETY: per the function contract.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
    }
}

/// A rule array of `*count` keywords.
///
/// # Safety
/// As for [`bytes`], with `count * 8` bytes.
unsafe fn rule<'a>(count: PLong, p: *const u8) -> Result<(&'a [u8], i64), Fail> {
    // SAFETY: forwarded contract.
    let n = unsafe { rd(count) };
    if !(0..=64).contains(&n) {
        return Err(BAD_COUNT);
    }
    // SAFETY: forwarded contract.
    Ok((unsafe { bytes(p, n * 8) }?, n))
}

/// Output buffer copied back only when it fits `cap` (else 8/72).
fn fits(out: &[u8], cap: i64) -> Result<(), Fail> {
    if i64::try_from(out.len()).unwrap_or(i64::MAX) > cap {
        Err(SHORT_BUFFER)
    } else {
        Ok(())
    }
}

/// Copies a variable-length output to `out` and its length to `*len`,
/// when it fits the caller's buffer (`*len` on input); else 8/72.
///
/// # Safety
/// `len` is NULL or a readable and writable `long`; `out` points to `*len`
/// writable bytes.
unsafe fn put_out(out: *mut u8, len: PLong, o: &[u8]) -> Result<(), Fail> {
    // SAFETY: forwarded contract.
    unsafe {
        fits(o, rd(len))?;
        put(out, o);
        wr(len, o.len() as i64);
    }
    Ok(())
}

/// Runs one verb: counts, latency, injected faults, panic guard, status.
///
/// # Safety
/// `rc` and `reason` are NULL or writable `long`s.
unsafe fn run(name: &str, rc: PLong, reason: PLong, body: impl FnOnce(&Store) -> Result<(), Fail>) {
    let res = catch_unwind(AssertUnwindSafe(|| {
        if let Some(f) = knobs::on_call(name) {
            return Err(f);
        }
        body(&Store::from_env())
    }));
    let status = match res {
        Ok(Ok(())) => Fail::new(0, 0),
        Ok(Err(f)) => f,
        Err(_) => COMPONENT,
    };
    // SAFETY: forwarded contract.
    unsafe {
        wr(rc, status.rc);
        wr(reason, status.reason);
    }
}

macro_rules! not_emulated {
    ($($name:ident),* $(,)?) => {
        /// Exported verbs that are not emulated (16/336).
        pub const NOT_EMULATED: &[&str] = &[$(stringify!($name)),*];
        $(
        #[doc = concat!("`", stringify!($name), "`: not emulated, answers 16/336.")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(rc: PLong, reason: PLong) {
            log::debug!("csulcca-emu: {} is not emulated", stringify!($name));
            // SAFETY: the first two parameters of every verb are the status pointers.
            unsafe { run(stringify!($name), rc, reason, |_| Err(COMPONENT)) }
        }
        const _: abi::UnimplementedFn = $name;
    )*};
}

/// Exported verbs with an implementation.
pub const EMULATED: &[&str] = &[
    "CSNBKTC", "CSNBKTC2", "CSNDKTC", "CSUACFQ", "CSUACFV", "CSUAACM", "CSUACRA", "CSUACRD",
    "CSNBMKP", "CSNBENC", "CSNBDEC", "CSNBSAE", "CSNBSAD", "CSNDPKT", "CSNDPKX", "CSNBKGN",
    "CSNBKGN2", "CSNBKTB", "CSNBKTB2", "CSNBCKM", "CSNBKPI2", "CSNDPKB", "CSNDPKG", "CSNBRNG",
    "CSNBRNGL", "CSNDDSG", "CSNDDSV", "CSNDPKE", "CSNDPKD", "CSNBHMG", "CSNBHMV", "CSNBOWH",
];

not_emulated!(
    CSNBCKI, CSNBDKX, CSNBDKM, CSNBKEX, CSNBKIM, CSNBKPI, CSNBKSI, CSNBKRC, CSNBAKRC, CSNBKRD,
    CSNBKRL, CSNBKRR, CSNBKRW, CSNDKRC, CSNDKRD, CSNDKRL, CSNDKRR, CSNDKRW, CSNBKYT, CSNBKYTX,
    CSNBKTR, CSNBMGN, CSNBMVR, CSNDPKI, CSNDSYI, CSNDSYI2, CSNDSYX, CSUACFC, CSNDSBC, CSNDSBD,
    CSUALCT, CSUAACI, CSNDPKH, CSNDPKR, CSUAMKD, CSNDRKD, CSNDRKL, CSNDSYG, CSNBPTR, CSNBCPE,
    CSNBCPA, CSNBPGN, CSNBPVR, CSNBDKG, CSNBEPG, CSNBCVE, CSNBCSG, CSNBCSV, CSNBCVG, CSNBKTP,
    CSNBPEX, CSNBPEXX, CSUARNT, CSNBCVT, CSNBMDG, CSNBTRV, CSNBSKY, CSNBSPN, CSNBPCU, CSNDEDH,
    CSUAPRB, CSNDTBC, CSNDRKX, CSNBKET, CSNBCTT2, CSNBRKA, CSNBKTR2, CSUADHK, CSUADHQ, CSUAPCV,
);

/// CSNBKTC: Key Token Change for 64-byte DES / AES DATA tokens.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKTC(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key: PBytes,
) {
    // SAFETY: CCA contract: rule array of `*count` keywords, 64-byte token.
    unsafe {
        run("CSNBKTC", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let mut t = bytes(key, 64)?.to_vec();
            knobs::on_token("CSNBKTC", &t)?;
            if t.len() != 64 {
                return Err(UNUSABLE);
            }
            verbs::key_token_change(st, Verb::Csnbktc, r, n, &mut t)?;
            put(key, &t);
            Ok(())
        })
    }
}
const _: abi::CsnbktcFn = CSNBKTC;

/// Shared body of CSNBKTC2 and CSNDKTC.
#[allow(clippy::too_many_arguments, reason = "mirrors the C parameter list")]
///
/// # Safety
/// CCA contract: `*len` bytes at `key`, rule array of `*count` keywords.
unsafe fn ktc_var(
    name: &str,
    verb: Verb,
    rc: PLong,
    reason: PLong,
    count: PLong,
    rule_a: PBytes,
    len: PLong,
    key: PBytes,
) {
    // SAFETY: forwarded contract.
    unsafe {
        run(name, rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let mut t = bytes(key, rd(len))?.to_vec();
            knobs::on_token(name, &t)?;
            let out = verbs::key_token_change(st, verb, r, n, &mut t)?;
            put(key, t.get(..out).ok_or(COMPONENT)?);
            wr(len, out as i64);
            Ok(())
        })
    }
}

/// CSNBKTC2: Key Token Change2 for variable-length AES CIPHER / HMAC tokens.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKTC2(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    len: PLong,
    key: PBytes,
) {
    // SAFETY: CCA contract of CSNBKTC2.
    unsafe {
        ktc_var(
            "CSNBKTC2",
            Verb::Csnbktc2,
            rc,
            reason,
            count,
            rule_a,
            len,
            key,
        )
    }
}
const _: abi::Csnbktc2Fn = CSNBKTC2;

/// CSNDKTC: PKA Key Token Change.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDKTC(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    len: PLong,
    key: PBytes,
) {
    // SAFETY: CCA contract of CSNDKTC.
    unsafe {
        ktc_var(
            "CSNDKTC",
            Verb::Csndktc,
            rc,
            reason,
            count,
            rule_a,
            len,
            key,
        )
    }
}
const _: abi::CsndktcFn = CSNDKTC;

/// CSUACFQ: Cryptographic Facility Query.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUACFQ(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    vd_len: PLong,
    vd: PBytes,
) {
    // SAFETY: CCA contract; the caller sizes the rule array for the
    // documented output count of the keyword it asks for.
    unsafe {
        run("CSUACFQ", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let q = query::facility_query(st, r, n, usize::try_from(rd(vd_len)).unwrap_or(0))?;
            if let Some(ra) = q.rule_array {
                let flat: Vec<u8> = ra.iter().flat_map(|k| k.0).collect();
                put(rule_a, &flat);
                wr(count, ra.len() as i64);
            }
            if !q.verb_data.is_empty() {
                put(vd, &q.verb_data);
                wr(vd_len, q.verb_data.len() as i64);
            }
            Ok(())
        })
    }
}
const _: abi::CsuacfqFn = CSUACFQ;

/// CSUACFV: Cryptographic Facility Version.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUACFV(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    len: PLong,
    buf: PBytes,
) {
    // SAFETY: CCA contract: `*len` writable bytes at `buf`.
    unsafe {
        run("CSUACFV", rc, reason, |_| {
            let mut v = query::VERSION.as_bytes().to_vec();
            v.push(0);
            put_out(buf, len, &v)?;
            Ok(())
        })
    }
}
const _: abi::CsuacfvFn = CSUACFV;

/// CSUAACM: Access Control Maintenance (`LSTROLES`, `GET-ROLE`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUAACM(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    name: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract: 8-byte name, `*out_len` writable bytes at `out`.
    unsafe {
        run("CSUAACM", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let o = query::access_control(r, n, bytes(name, 8)?)?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}
const _: abi::CsuaacmFn = CSUAACM;

/// CSUACRA: Cryptographic Resource Allocate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUACRA(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    res_len: PLong,
    res: PBytes,
) {
    // SAFETY: CCA contract.
    unsafe {
        run("CSUACRA", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            query::resource(r, n, bytes(res, rd(res_len))?)
        })
    }
}
const _: abi::CsuacraFn = CSUACRA;

/// CSUACRD: Cryptographic Resource Deallocate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUACRD(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    res_len: PLong,
    res: PBytes,
) {
    // SAFETY: CCA contract.
    unsafe {
        run("CSUACRD", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            query::resource(r, n, bytes(res, rd(res_len))?)
        })
    }
}
const _: abi::CsuacraFn = CSUACRD;

/// CSNBMKP: Master Key Process.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBMKP(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    part: PBytes,
) {
    // SAFETY: CCA contract: key part of the register's size (24 or 32) when
    // the action takes one.
    unsafe {
        run("CSNBMKP", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let has = |s: &[u8]| r.chunks_exact(8).any(|k| k.starts_with(s));
            let len = if has(b"AES-MK") || has(b"APKA-MK") {
                32
            } else {
                24
            };
            let takes = has(b"FIRST") || has(b"MIDDLE") || has(b"LAST");
            let p = zeroize::Zeroizing::new(if takes {
                bytes(part, len)?.to_vec()
            } else {
                Vec::new()
            });
            verbs::master_key_process(st, r, n, &p)
        })
    }
}
const _: abi::CsnbmkpFn = CSNBMKP;

/// CSNBENC: Encipher (DES/TDES CBC).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBENC(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    key: PBytes,
    len: PLong,
    text: PBytes,
    iv: PBytes,
    count: PLong,
    rule_a: PBytes,
    _pad: PLong,
    _chain: PBytes,
    out: PBytes,
) {
    // SAFETY: CCA contract: 64-byte key token, `*len` bytes in and out, 8-byte IV.
    unsafe {
        run("CSNBENC", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, 64)?;
            knobs::on_token("CSNBENC", k)?;
            let iv: [u8; 8] = bytes(iv, 8)?.try_into().map_err(|_| SHORT_BUFFER)?;
            let o = usage::des_cipher(st, true, k, r, n, &iv, bytes(text, rd(len))?)?;
            put(out, &o);
            Ok(())
        })
    }
}
const _: abi::CsnbencFn = CSNBENC;

/// CSNBDEC: Decipher (DES/TDES CBC).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBDEC(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    key: PBytes,
    len: PLong,
    text: PBytes,
    iv: PBytes,
    count: PLong,
    rule_a: PBytes,
    _chain: PBytes,
    out: PBytes,
) {
    // SAFETY: CCA contract: 64-byte key token, `*len` bytes in and out, 8-byte IV.
    unsafe {
        run("CSNBDEC", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, 64)?;
            knobs::on_token("CSNBDEC", k)?;
            let iv: [u8; 8] = bytes(iv, 8)?.try_into().map_err(|_| SHORT_BUFFER)?;
            let o = usage::des_cipher(st, false, k, r, n, &iv, bytes(text, rd(len))?)?;
            put(out, &o);
            Ok(())
        })
    }
}
const _: abi::CsnbdecFn = CSNBDEC;

/// Shared body of CSNBSAE / CSNBSAD.
///
/// # Safety
/// CCA contract of CSNBSAE.
#[allow(clippy::too_many_arguments, reason = "mirrors the C parameter list")]
unsafe fn sae(
    name: &str,
    enc: bool,
    rc: PLong,
    reason: PLong,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    iv_len: PLong,
    iv: PBytes,
    text_len: PLong,
    text: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: forwarded contract.
    unsafe {
        run(name, rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            knobs::on_token(name, k)?;
            let o = usage::aes_cipher(
                st,
                enc,
                k,
                r,
                n,
                bytes(iv, rd(iv_len))?,
                bytes(text, rd(text_len))?,
            )?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}

/// CSNBSAE: Symmetric Algorithm Encipher (AES).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBSAE(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    _kp_len: PLong,
    _kp: PBytes,
    _block_size: PLong,
    iv_len: PLong,
    iv: PBytes,
    _ch_len: PLong,
    _ch: PBytes,
    text_len: PLong,
    text: PBytes,
    out_len: PLong,
    out: PBytes,
    _opt_len: PLong,
    _opt: PBytes,
) {
    // SAFETY: CCA contract of CSNBSAE.
    unsafe {
        sae(
            "CSNBSAE", true, rc, reason, count, rule_a, key_len, key, iv_len, iv, text_len, text,
            out_len, out,
        )
    }
}
const _: abi::CsnbsaeFn = CSNBSAE;

/// CSNBSAD: Symmetric Algorithm Decipher (AES).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBSAD(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    _kp_len: PLong,
    _kp: PBytes,
    _block_size: PLong,
    iv_len: PLong,
    iv: PBytes,
    _ch_len: PLong,
    _ch: PBytes,
    text_len: PLong,
    text: PBytes,
    out_len: PLong,
    out: PBytes,
    _opt_len: PLong,
    _opt: PBytes,
) {
    // SAFETY: CCA contract of CSNBSAD.
    unsafe {
        sae(
            "CSNBSAD", false, rc, reason, count, rule_a, key_len, key, iv_len, iv, text_len, text,
            out_len, out,
        )
    }
}
const _: abi::CsnbsaeFn = CSNBSAD;

/// CSNDPKT: PKA Key Translate (`INTDWAKW`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKT(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    src_len: PLong,
    src: PBytes,
    _s_len: PLong,
    _s: PBytes,
    _t_len: PLong,
    _t: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNDPKT.
    unsafe {
        run("CSNDPKT", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let s = bytes(src, rd(src_len))?;
            knobs::on_token("CSNDPKT", s)?;
            let o = pka::key_translate(st, r, n, s)?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}
const _: abi::CsndpktFn = CSNDPKT;

/// CSNDPKX: PKA Public Key Extract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKX(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    src_len: PLong,
    src: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNDPKX.
    unsafe {
        run("CSNDPKX", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let s = bytes(src, rd(src_len))?;
            knobs::on_token("CSNDPKX", s)?;
            let o = pka::public_key_extract(r, n, s)?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}
const _: abi::CsndpkxFn = CSNDPKX;

/// CSNBKGN: Key Generate (DES `DATA`, AES `AESTOKEN`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKGN(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    form: PBytes,
    length: PBytes,
    ty1: PBytes,
    _ty2: PBytes,
    _kek1: PBytes,
    _kek2: PBytes,
    gen1: PBytes,
    _gen2: PBytes,
) {
    // SAFETY: CCA contract: 4-byte key form, 8-byte keywords, 64-byte tokens.
    unsafe {
        run("CSNBKGN", rc, reason, |st| {
            let mut t = [0u8; 64];
            t.copy_from_slice(bytes(gen1, 64)?.get(..64).ok_or(SHORT_BUFFER)?);
            keys::key_generate(
                st,
                bytes(form, 4)?,
                bytes(length, 8)?,
                bytes(ty1, 8)?,
                &mut t,
            )?;
            put(gen1, &t);
            Ok(())
        })
    }
}
const _: abi::CsnbkgnFn = CSNBKGN;

/// CSNBKGN2: Key Generate2 (AES CIPHER, HMAC).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKGN2(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    bits: PLong,
    _ty1: PBytes,
    _ty2: PBytes,
    _n1l: PLong,
    _n1: PBytes,
    _n2l: PLong,
    _n2: PBytes,
    _u1l: PLong,
    _u1: PBytes,
    _u2l: PLong,
    _u2: PBytes,
    _k1l: PLong,
    _k1: PBytes,
    _k2l: PLong,
    _k2: PBytes,
    g1_len: PLong,
    g1: PBytes,
    _g2l: PLong,
    _g2: PBytes,
) {
    // SAFETY: CCA contract of CSNBKGN2.
    unsafe {
        run("CSNBKGN2", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let cap = rd(g1_len);
            let o = keys::key_generate2(st, r, n, rd(bits), bytes(g1, cap)?)?;
            fits(&o, cap)?;
            put(g1, &o);
            wr(g1_len, o.len() as i64);
            Ok(())
        })
    }
}
const _: abi::Csnbkgn2Fn = CSNBKGN2;

/// CSNBKTB: Key Token Build (AES DATA skeletons).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKTB(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    token: PBytes,
    ty: PBytes,
    count: PLong,
    rule_a: PBytes,
    _kv: PBytes,
    _r1: *mut c_void,
    _r2: PLong,
    _r3: PBytes,
    _cv: PBytes,
    _r4: PBytes,
    _r5: PLong,
    _r6: PBytes,
    _mkvp: PBytes,
) {
    // SAFETY: CCA contract: 64-byte token, 8-byte key type.
    unsafe {
        run("CSNBKTB", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let t = keys::key_token_build(bytes(ty, 8)?, r, n)?;
            put(token, &t);
            Ok(())
        })
    }
}
const _: abi::CsnbktbFn = CSNBKTB;

/// CSNBKTB2: Key Token Build2 (AES CIPHER / HMAC skeletons).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKTB2(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    bits: PLong,
    _clr: PBytes,
    _nl: PLong,
    _n: PBytes,
    _ul: PLong,
    _u: PBytes,
    _tdl: PLong,
    _td: PBytes,
    _vdl: PLong,
    _vd: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNBKTB2.
    unsafe {
        run("CSNBKTB2", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let o = keys::key_token_build2(r, n, rd(bits))?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}
const _: abi::Csnbktb2Fn = CSNBKTB2;

/// CSNBCKM: Multiple Clear Key Import.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBCKM(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    clr_len: PLong,
    clr: PBytes,
    target: PBytes,
) {
    // SAFETY: CCA contract: `*clr_len` bytes of clear key, 64-byte target.
    unsafe {
        run("CSNBCKM", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let t = keys::clear_key_import(st, r, n, bytes(clr, rd(clr_len))?)?;
            put(target, &t);
            Ok(())
        })
    }
}
const _: abi::CsnbckmFn = CSNBCKM;

/// CSNBKPI2: Key Part Import2 (HMAC/AES; part length in bits).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBKPI2(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    part_bits: PLong,
    part: PBytes,
    key_len: PLong,
    key: PBytes,
) {
    // SAFETY: CCA contract of CSNBKPI2.
    unsafe {
        run("CSNBKPI2", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let pb = rd(part_bits);
            let p = bytes(part, (pb + 7) / 8)?;
            let cap = rd(key_len);
            let o = keys::key_part_import2(st, r, n, pb, p, bytes(key, cap)?)?;
            fits(&o, cap)?;
            put(key, &o);
            wr(key_len, o.len() as i64);
            Ok(())
        })
    }
}
const _: abi::Csnbkpi2Fn = CSNBKPI2;

/// CSNDPKB: PKA Key Token Build (skeletons for CSNDPKG).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKB(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    kvs_len: PLong,
    kvs: PBytes,
    _nl: PLong,
    _n: PBytes,
    _cl: PLong,
    _c: PBytes,
    _r2l: PLong,
    _r2: PBytes,
    _r3l: PLong,
    _r3: PBytes,
    _r4l: PLong,
    _r4: PBytes,
    _r5l: PLong,
    _r5: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNDPKB (NULL length pointers read as 0).
    unsafe {
        run("CSNDPKB", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let o = pka::token_build(r, n, bytes(kvs, rd(kvs_len))?)?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}
const _: abi::CsndpkbFn = CSNDPKB;

/// CSNDPKG: PKA Key Generate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKG(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    _rgl: PLong,
    _rg: PBytes,
    skel_len: PLong,
    skel: PBytes,
    _tk: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNDPKG.
    unsafe {
        run("CSNDPKG", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let o = pka::key_generate(st, r, n, bytes(skel, rd(skel_len))?)?;
            put_out(out, out_len, &o)?;
            Ok(())
        })
    }
}
const _: abi::CsndpkgFn = CSNDPKG;

/// CSNBRNG: 8 random bytes (`RANDOM`, `ODD`, `EVEN`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBRNG(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    form: PBytes,
    out: PBytes,
) {
    // SAFETY: CCA contract: 8-byte keyword, 8-byte output.
    unsafe {
        run("CSNBRNG", rc, reason, |_| {
            let v = keys::random_number(bytes(form, 8)?, 8)?;
            put(out, &v);
            Ok(())
        })
    }
}
const _: abi::CsnbrngFn = CSNBRNG;

/// CSNBRNGL: up to 8192 random bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBRNGL(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    _rl: PLong,
    _r: PBytes,
    len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract: `*len` writable bytes at `out`.
    unsafe {
        run("CSNBRNGL", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let form = if n == 0 {
                &b"RANDOM  "[..]
            } else {
                r.get(..8).ok_or(BAD_COUNT)?
            };
            let l = rd(len);
            if !(0..=8192).contains(&l) {
                return Err(SHORT_BUFFER);
            }
            let v = keys::random_number(form, l as usize)?;
            put(out, &v);
            Ok(())
        })
    }
}
const _: abi::CsnbrnglFn = CSNBRNGL;

/// CSNDDSG: Digital Signature Generate (`PKCS-1.1`, `ECDSA`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDDSG(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    hash_len: PLong,
    hash: PBytes,
    sig_len: PLong,
    sig_bits: PLong,
    sig: PBytes,
) {
    // SAFETY: CCA contract of CSNDDSG.
    unsafe {
        run("CSNDDSG", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            knobs::on_token("CSNDDSG", k)?;
            let o = sign::sign(st, r, n, k, bytes(hash, rd(hash_len))?)?;
            put_out(sig, sig_len, &o)?;
            wr(sig_bits, o.len() as i64 * 8);
            Ok(())
        })
    }
}
const _: abi::CsnddsgFn = CSNDDSG;

/// CSNDDSV: Digital Signature Verify (4/429 when the signature is bad).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDDSV(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    hash_len: PLong,
    hash: PBytes,
    sig_len: PLong,
    sig: PBytes,
) {
    // SAFETY: CCA contract of CSNDDSV.
    unsafe {
        run("CSNDDSV", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            let h = bytes(hash, rd(hash_len))?;
            sign::verify(r, n, k, h, bytes(sig, rd(sig_len))?)
        })
    }
}
const _: abi::CsnddsvFn = CSNDDSV;

/// CSNDPKE: PKA Encrypt (`PKCS-1.2`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKE(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    data_len: PLong,
    data: PBytes,
    _ds_len: PLong,
    _ds: PBytes,
    key_len: PLong,
    key: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNDPKE.
    unsafe {
        run("CSNDPKE", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            let o = sign::encrypt(r, n, k, bytes(data, rd(data_len))?)?;
            put_out(out, out_len, &o)
        })
    }
}
const _: abi::CsndpkeFn = CSNDPKE;

/// CSNDPKD: PKA Decrypt (`PKCS-1.2`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKD(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    data_len: PLong,
    data: PBytes,
    _ds_len: PLong,
    _ds: PBytes,
    key_len: PLong,
    key: PBytes,
    out_len: PLong,
    out: PBytes,
) {
    // SAFETY: CCA contract of CSNDPKD.
    unsafe {
        run("CSNDPKD", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            knobs::on_token("CSNDPKD", k)?;
            let o = sign::decrypt(st, r, n, k, bytes(data, rd(data_len))?)?;
            put_out(out, out_len, &o)
        })
    }
}
const _: abi::CsndpkeFn = CSNDPKD;

/// Writes a multi-part result: the output to `out`/`*out_len` (ONLY, LAST)
/// or the chaining vector to `cv`/`*cv_len` (FIRST, MIDDLE).
///
/// # Safety
/// As for [`put_out`], for both pairs.
unsafe fn put_part(
    r: sign::PartOut,
    out: PBytes,
    out_len: PLong,
    cv: PBytes,
    cv_len: PLong,
) -> Result<(), Fail> {
    // SAFETY: forwarded contract.
    unsafe {
        match r {
            (Some(o), _) => put_out(out, out_len, &o),
            (None, Some(c)) => put_out(cv, cv_len, &c),
            (None, None) => Err(COMPONENT),
        }
    }
}

/// CSNBOWH: One-Way Hash (SHA-1/224/256/384/512, single or multi-part).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBOWH(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    text_len: PLong,
    text: PBytes,
    cv_len: PLong,
    cv: PBytes,
    hash_len: PLong,
    hash: PBytes,
) {
    // SAFETY: CCA contract of CSNBOWH.
    unsafe {
        run("CSNBOWH", rc, reason, |_| {
            let (r, n) = rule(count, rule_a)?;
            let chain = bytes(cv, rd(cv_len))?.to_vec();
            let o = sign::one_way_hash(r, n, &chain, bytes(text, rd(text_len))?)?;
            put_part(o, hash, hash_len, cv, cv_len)
        })
    }
}
const _: abi::CsnbowhFn = CSNBOWH;

/// CSNBHMG: HMAC Generate (single or multi-part).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBHMG(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    msg_len: PLong,
    msg: PBytes,
    cv_len: PLong,
    cv: PBytes,
    mac_len: PLong,
    mac: PBytes,
) {
    // SAFETY: CCA contract of CSNBHMG.
    unsafe {
        run("CSNBHMG", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            knobs::on_token("CSNBHMG", k)?;
            let chain = bytes(cv, rd(cv_len))?.to_vec();
            let (o, c) = sign::hmac(st, r, n, k, &chain, bytes(msg, rd(msg_len))?)?;
            let o = o.map(|mut o| {
                let want = usize::try_from(rd(mac_len)).unwrap_or(0);
                if want > 0 && want < o.len() {
                    o.truncate(want);
                }
                o
            });
            put_part((o, c), mac, mac_len, cv, cv_len)
        })
    }
}
const _: abi::CsnbhmgFn = CSNBHMG;

/// CSNBHMV: HMAC Verify (single or multi-part; 4/429 on mismatch).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBHMV(
    rc: PLong,
    reason: PLong,
    _el: PLong,
    _ed: PBytes,
    count: PLong,
    rule_a: PBytes,
    key_len: PLong,
    key: PBytes,
    msg_len: PLong,
    msg: PBytes,
    cv_len: PLong,
    cv: PBytes,
    mac_len: PLong,
    mac: PBytes,
) {
    // SAFETY: CCA contract of CSNBHMV.
    unsafe {
        run("CSNBHMV", rc, reason, |st| {
            let (r, n) = rule(count, rule_a)?;
            let k = bytes(key, rd(key_len))?;
            let chain = bytes(cv, rd(cv_len))?.to_vec();
            match sign::hmac(st, r, n, k, &chain, bytes(msg, rd(msg_len))?)? {
                (Some(o), _) => {
                    let given = bytes(mac, rd(mac_len))?;
                    if given.is_empty() || o.get(..given.len()) != Some(given) {
                        return Err(sign::BAD_SIGNATURE);
                    }
                    Ok(())
                }
                (None, Some(c)) => put_out(cv, cv_len, &c),
                (None, None) => Err(COMPONENT),
            }
        })
    }
}
const _: abi::CsnbhmgFn = CSNBHMV;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_exactly_the_upstream_union() {
        let mut ours: Vec<&str> = EMULATED.iter().chain(NOT_EMULATED).copied().collect();
        let mut want = abi::ALL_VERBS.to_vec();
        ours.sort_unstable();
        want.sort_unstable();
        assert_eq!(ours, want);
    }

    #[test]
    fn unimplemented_verb_answers_16_336_and_accepts_null() {
        let (mut rc, mut reason) = (0, 0);
        // SAFETY: valid pointers to locals.
        unsafe { CSNBMGN(&mut rc, &mut reason) };
        assert_eq!((rc, reason), (16, 336));
        // SAFETY: NULL status pointers are tolerated.
        unsafe { CSNBMGN(std::ptr::null_mut(), std::ptr::null_mut()) };
    }

    #[test]
    fn panics_become_component_errors() {
        let (mut rc, mut reason) = (0, 0);
        // SAFETY: valid pointers to locals.
        unsafe { run("TEST", &mut rc, &mut reason, |_| panic!("boom")) };
        assert_eq!((rc, reason), (16, 336));
    }
}
