//! The C entry points of `libcsulcca.so`: the emulator's only unsafe code.
//!
//! The entry points are generated from pkcscca's verb table
//! ([`pkcscca::cca_verb_table`], the signatures of openCryptoki's
//! `csulincl.h`): each one gathers the parameters after the status prefix
//! into a struct of `args` and runs the verb's body here under `run`
//! (`catch_unwind`: a panic becomes 16/336 instead of aborting the host
//! process; the status is written last). A body turns the pointers into
//! slices (NULL or a zero length reads as empty), runs the safe verb logic
//! from [`crate::verbs`], and copies outputs back only on success. Verbs not
//! emulated answer 16/336. `run` also times every call for the
//! `CSULCCA_EMU_STATS` knob and registers, once, the `atexit` handler that
//! writes those statistics (see [`crate::knobs`]).
#![allow(unsafe_code)]
#![allow(non_snake_case, reason = "CCA verb names are the C symbol names")]
#![allow(
    clippy::missing_safety_doc,
    reason = "each export's contract is the CCA verb's C contract"
)]

use std::os::raw::{c_int, c_long};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use pkcscca::cca::abi::{self, PBytes, PLong, PVoid};
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

unsafe extern "C" {
    /// The C library's `atexit`. glibc provides it in `libc_nonshared.a`,
    /// linked into this library, as `__cxa_atexit(f, NULL, __dso_handle)`:
    /// the handler runs when the process exits normally, or earlier when
    /// this library is unloaded with `dlclose`, never after its code is gone.
    fn atexit(handler: extern "C" fn()) -> c_int;
}

/// The `atexit` handler: appends the call statistics to the
/// `CSULCCA_EMU_STATS` file. A panic must not unwind into the C library.
extern "C" fn write_stats_at_exit() {
    let _ = catch_unwind(knobs::write_stats);
}

/// Registers [`write_stats_at_exit`] with `atexit`, once per process (the
/// caller is the one call for which [`knobs::stats_first_seen`] was true).
fn register_stats_at_exit() {
    // SAFETY: `atexit` takes a function pointer, which stays valid as long
    // as this library is loaded; glibc runs it at the latest when the
    // library is unloaded (see the declaration). It has no other
    // precondition; a failure (no room for handlers) only loses the stats.
    let _ = unsafe { atexit(write_stats_at_exit) };
}

/// Runs one verb: counts, latency, injected faults, panic guard, status,
/// and the call statistics.
///
/// # Safety
/// `rc` and `reason` are NULL or writable `long`s.
unsafe fn run(name: &str, rc: PLong, reason: PLong, body: impl FnOnce(&Store) -> Result<(), Fail>) {
    let start = Instant::now();
    let res = catch_unwind(AssertUnwindSafe(|| {
        if let Some(f) = knobs::on_call(name) {
            return Err(f);
        }
        body(&Store::from_env())
    }));
    let status = match res {
        Ok(Ok(())) => OK,
        Ok(Err(f)) => f,
        Err(_) => COMPONENT,
    };
    // SAFETY: forwarded contract.
    unsafe {
        wr(rc, status.rc);
        wr(reason, status.reason);
    }
    knobs::record_call(start.elapsed());
    if knobs::stats_first_seen() {
        register_stats_at_exit();
    }
}

macro_rules! not_emulated {
    ($($name:ident),* $(,)?) => {
        /// Exported verbs that are not emulated (16/336).
        pub const NOT_EMULATED: &[&str] = &[$(stringify!($name)),*];
        $(
        #[doc = concat!("`", stringify!($name), "`: not emulated, answers 16/336.")]
        ///
        /// Declared with the status prefix alone: the C caller may pass more
        /// arguments, which the System V calling convention lets the callee ignore.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(rc: PLong, reason: PLong) {
            log::debug!("csulcca-emu: {} is not emulated", stringify!($name));
            // SAFETY: the first two parameters of every verb are the status pointers.
            unsafe { run(stringify!($name), rc, reason, |_| Err(COMPONENT)) }
        }
    )*};
}

/// From pkcscca's verb table: an entry point per verb with a signature (its
/// body is the function of the same name in `body`) and a 16/336 stub per
/// `unimplemented` name.
macro_rules! exports {
    (
        unimplemented [ $($u:ident),* $(,)? ]
        $( $(#[$doc:meta])* $v:ident $n:ident ( $($p:ident : $t:ident),* ); )*
    ) => {
        not_emulated!($($u),*);

        /// Exported verbs with an implementation.
        pub const EMULATED: &[&str] = &[$(stringify!($n)),*];

        /// The parameters of each emulated verb after the status prefix, under
        /// their `csulincl.h` names: what its body receives.
        #[allow(dead_code, reason = "a body reads only the parameters it uses")]
        #[allow(clippy::upper_case_acronyms, reason = "named after the C symbols")]
        mod args {
            use pkcscca::cca::abi::{PBytes, PLong, PVoid};
            $(
                #[derive(Clone, Copy)]
                pub(super) struct $n { $( pub(super) $p: $t, )* }
            )*
        }

        $(
            $(#[$doc])*
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $n(
                return_code: PLong,
                reason_code: PLong,
                _exit_data_length: PLong,
                _exit_data: PBytes,
                $($p: $t),*
            ) {
                let a = args::$n { $($p),* };
                // SAFETY: the caller keeps the verb's C contract, which is what
                // its body requires.
                unsafe { run(stringify!($n), return_code, reason_code, |st| body::$n(st, a)) }
            }
            const _: abi::fns::$n = $n;
        )*
    };
}

pkcscca::cca_verb_table!(exports, flat);

/// The bodies of the emulated verbs, one per entry point, in the table's order.
///
/// # Safety
/// Each body requires its verb's C contract: every pointer NULL or valid for
/// the length its paired length parameter (or the verb's fixed size) gives.
mod body {
    use super::*;

    /// CSNBKTC: rule array of `*count` keywords, 64-byte token.
    pub(super) unsafe fn CSNBKTC(st: &Store, a: args::CSNBKTC) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let mut t = bytes(a.key_identifier, 64)?.to_vec();
            knobs::on_token("CSNBKTC", &t)?;
            if t.len() != 64 {
                return Err(UNUSABLE);
            }
            verbs::key_token_change(st, Verb::Csnbktc, r, n, &mut t)?;
            put(a.key_identifier, &t);
            Ok(())
        }
    }

    /// CSNBKTC2 and CSNDKTC take the same parameters under other names: the
    /// body of `$verb` over `$a`, whose token is `*$len` bytes at `$key`.
    macro_rules! ktc_body {
        ($st:ident, $a:ident, $verb:expr, $len:ident, $key:ident) => {{
            let (r, n) = rule($a.rule_array_count, $a.rule_array)?;
            let mut t = bytes($a.$key, rd($a.$len))?.to_vec();
            knobs::on_token($verb.name(), &t)?;
            let out = verbs::key_token_change($st, $verb, r, n, &mut t)?;
            put($a.$key, t.get(..out).ok_or(COMPONENT)?);
            wr($a.$len, out as i64);
            Ok(())
        }};
    }

    /// CSNBKTC2: variable-length AES CIPHER / HMAC tokens.
    pub(super) unsafe fn CSNBKTC2(st: &Store, a: args::CSNBKTC2) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe { ktc_body!(st, a, Verb::Csnbktc2, key_identifier_length, key_identifier) }
    }

    /// CSNDKTC: PKA private tokens.
    pub(super) unsafe fn CSNDKTC(st: &Store, a: args::CSNDKTC) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe { ktc_body!(st, a, Verb::Csndktc, key_id_length, key_id) }
    }

    /// CSUACFQ: the caller sizes the rule array for the documented output
    /// count of the keyword it asks for.
    pub(super) unsafe fn CSUACFQ(st: &Store, a: args::CSUACFQ) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let vd_cap = usize::try_from(rd(a.verb_data_length)).unwrap_or(0);
            let q = query::facility_query(st, r, n, vd_cap)?;
            if let Some(ra) = q.rule_array {
                let flat: Vec<u8> = ra.iter().flat_map(|k| k.0).collect();
                put(a.rule_array, &flat);
                wr(a.rule_array_count, ra.len() as i64);
            }
            if !q.verb_data.is_empty() {
                put(a.verb_data, &q.verb_data);
                wr(a.verb_data_length, q.verb_data.len() as i64);
            }
            Ok(())
        }
    }

    /// CSNBDEC and CSNBENC: the body of `$verb` over `$a`, whose text is
    /// `*text_length` bytes in `$input` and as many out in `$output` (their
    /// names swap); 64-byte key token, 8-byte IV.
    macro_rules! des_body {
        ($st:ident, $a:ident, $verb:literal, $enc:expr, $input:ident, $output:ident) => {{
            let (r, n) = rule($a.rule_array_count, $a.rule_array)?;
            let k = bytes($a.key_identifier, 64)?;
            knobs::on_token($verb, k)?;
            let iv = bytes($a.initialization_vector, 8)?;
            let iv: [u8; 8] = iv.try_into().map_err(|_| SHORT_BUFFER)?;
            let text = bytes($a.$input, rd($a.text_length))?;
            let o = usage::des_cipher($st, $enc, k, r, n, &iv, text)?;
            put($a.$output, &o);
            Ok(())
        }};
    }

    /// CSNBDEC: Decipher (DES/TDES CBC).
    pub(super) unsafe fn CSNBDEC(st: &Store, a: args::CSNBDEC) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe { des_body!(st, a, "CSNBDEC", false, ciphertext, plaintext) }
    }

    /// CSNDPKT: PKA Key Translate (`INTDWAKW`).
    pub(super) unsafe fn CSNDPKT(st: &Store, a: args::CSNDPKT) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let s = bytes(a.source_key_identifier, rd(a.source_key_identifier_length))?;
            knobs::on_token("CSNDPKT", s)?;
            let o = pka::key_translate(st, r, n, s)?;
            put_out(a.target_key_token, a.target_key_token_length, &o)
        }
    }

    /// CSNDPKX: PKA Public Key Extract.
    pub(super) unsafe fn CSNDPKX(_st: &Store, a: args::CSNDPKX) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let s = bytes(a.source_key_identifier, rd(a.source_key_identifier_length))?;
            knobs::on_token("CSNDPKX", s)?;
            let o = pka::public_key_extract(r, n, s)?;
            put_out(a.target_key_token, a.target_key_token_length, &o)
        }
    }

    /// CSUACFV: `*len` writable bytes at the version buffer.
    pub(super) unsafe fn CSUACFV(_st: &Store, a: args::CSUACFV) -> Result<(), Fail> {
        let mut v = query::VERSION.as_bytes().to_vec();
        v.push(0);
        // SAFETY: the verb's C contract.
        unsafe { put_out(a.version_data, a.version_data_length, &v) }
    }

    /// CSNBMKP: a key part of the register's size (24 or 32) when the action
    /// takes one.
    pub(super) unsafe fn CSNBMKP(st: &Store, a: args::CSNBMKP) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let has = |s: &[u8]| r.chunks_exact(8).any(|k| k.starts_with(s));
            let len = if has(b"AES-MK") || has(b"APKA-MK") {
                32
            } else {
                24
            };
            let takes = has(b"FIRST") || has(b"MIDDLE") || has(b"LAST");
            let p = zeroize::Zeroizing::new(if takes {
                bytes(a.key_part, len)?.to_vec()
            } else {
                Vec::new()
            });
            verbs::master_key_process(st, r, n, &p)
        }
    }

    /// CSNBENC: Encipher (DES/TDES CBC); pad character and chaining vector
    /// unused.
    pub(super) unsafe fn CSNBENC(st: &Store, a: args::CSNBENC) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe { des_body!(st, a, "CSNBENC", true, plaintext, ciphertext) }
    }

    /// CSNBSAE and CSNBSAD take the same parameters; the names of the text
    /// pairs say which is the input: the body of `$verb` over `$a`.
    macro_rules! sae_body {
        ($st:ident, $a:ident, $verb:literal, $enc:expr, $in_len:ident, $input:ident,
         $out_len:ident, $output:ident) => {{
            let (r, n) = rule($a.rule_array_count, $a.rule_array)?;
            let k = bytes($a.key_identifier, rd($a.key_length))?;
            knobs::on_token($verb, k)?;
            let iv = bytes($a.initialization_vector, rd($a.initialization_vector_length))?;
            let text = bytes($a.$input, rd($a.$in_len))?;
            let o = usage::aes_cipher($st, $enc, k, r, n, iv, text)?;
            put_out($a.$output, $a.$out_len, &o)
        }};
    }

    /// CSNBSAE: Symmetric Algorithm Encipher (AES).
    pub(super) unsafe fn CSNBSAE(st: &Store, a: args::CSNBSAE) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            sae_body!(
                st,
                a,
                "CSNBSAE",
                true,
                clear_text_length,
                clear_text,
                cipher_text_length,
                cipher_text
            )
        }
    }

    /// CSNBSAD: Symmetric Algorithm Decipher (AES).
    pub(super) unsafe fn CSNBSAD(st: &Store, a: args::CSNBSAD) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            sae_body!(
                st,
                a,
                "CSNBSAD",
                false,
                cipher_text_length,
                cipher_text,
                clear_text_length,
                clear_text
            )
        }
    }

    /// CSNDDSG: Digital Signature Generate (`PKCS-1.1`, `ECDSA`).
    pub(super) unsafe fn CSNDDSG(st: &Store, a: args::CSNDDSG) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let k = bytes(a.PKA_private_key_id, rd(a.PKA_private_key_id_length))?;
            knobs::on_token("CSNDDSG", k)?;
            let o = sign::sign(st, r, n, k, bytes(a.hash, rd(a.hash_length))?)?;
            put_out(a.signature_field, a.signature_field_length, &o)?;
            wr(a.signature_bit_length, o.len() as i64 * 8);
            Ok(())
        }
    }

    /// CSNDDSV: Digital Signature Verify (4/429 when the signature is bad).
    pub(super) unsafe fn CSNDDSV(_st: &Store, a: args::CSNDDSV) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let k = bytes(a.PKA_public_key_id, rd(a.PKA_public_key_id_length))?;
            let h = bytes(a.hash, rd(a.hash_length))?;
            let sig = bytes(a.signature_field, rd(a.signature_field_length))?;
            sign::verify(r, n, k, h, sig)
        }
    }

    /// CSNBKGN: Key Generate (DES `DATA`, AES `AESTOKEN`): 4-byte key form,
    /// 8-byte keywords, 64-byte tokens.
    pub(super) unsafe fn CSNBKGN(st: &Store, a: args::CSNBKGN) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let mut t = [0u8; 64];
            let gen1 = a.generated_key_identifier_1;
            t.copy_from_slice(bytes(gen1, 64)?.get(..64).ok_or(SHORT_BUFFER)?);
            let (form, length) = (bytes(a.key_form, 4)?, bytes(a.key_length, 8)?);
            keys::key_generate(st, form, length, bytes(a.key_type_1, 8)?, &mut t)?;
            put(gen1, &t);
            Ok(())
        }
    }

    /// CSNBKTB: Key Token Build (AES DATA skeletons): 64-byte token, 8-byte
    /// key type.
    pub(super) unsafe fn CSNBKTB(_st: &Store, a: args::CSNBKTB) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let t = keys::key_token_build(bytes(a.key_type, 8)?, r, n)?;
            put(a.key_token, &t);
            Ok(())
        }
    }

    /// CSNDPKB: PKA Key Token Build (skeletons for CSNDPKG; NULL length
    /// pointers read as 0).
    pub(super) unsafe fn CSNDPKB(_st: &Store, a: args::CSNDPKB) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let kvs = bytes(a.key_values_structure, rd(a.key_values_structure_length))?;
            let o = pka::token_build(r, n, kvs)?;
            put_out(a.token, a.token_length, &o)
        }
    }

    /// CSNDPKG: PKA Key Generate.
    pub(super) unsafe fn CSNDPKG(st: &Store, a: args::CSNDPKG) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let skel = bytes(a.skeleton_key_token, rd(a.skeleton_key_token_length))?;
            let o = pka::key_generate(st, r, n, skel)?;
            put_out(
                a.generated_key_identifier,
                a.generated_key_identifier_length,
                &o,
            )
        }
    }

    /// CSNBKTB2: Key Token Build2 (AES CIPHER / HMAC skeletons).
    pub(super) unsafe fn CSNBKTB2(_st: &Store, a: args::CSNBKTB2) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let o = keys::key_token_build2(r, n, rd(a.clear_key_bit_length))?;
            put_out(a.target_key_token, a.target_key_token_length, &o)
        }
    }

    /// CSNBKGN2: Key Generate2 (AES CIPHER, HMAC).
    pub(super) unsafe fn CSNBKGN2(st: &Store, a: args::CSNBKGN2) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let (g1, g1_len) = (
                a.generated_key_identifier_1,
                a.generated_key_identifier_1_length,
            );
            let cap = rd(g1_len);
            let o = keys::key_generate2(st, r, n, rd(a.clear_key_bit_length), bytes(g1, cap)?)?;
            fits(&o, cap)?;
            put(g1, &o);
            wr(g1_len, o.len() as i64);
            Ok(())
        }
    }

    /// CSUAACM: Access Control Maintenance (`LSTROLES`, `GET-ROLE`): 8-byte
    /// name, `*output_data_length` writable bytes at the output.
    pub(super) unsafe fn CSUAACM(_st: &Store, a: args::CSUAACM) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let o = query::access_control(r, n, bytes(a.name, 8)?)?;
            put_out(a.output_data, a.output_data_length, &o)
        }
    }

    /// CSUACRA and CSUACRD: the same parameters and body.
    macro_rules! resource_body {
        ($a:ident) => {{
            let (r, n) = rule($a.rule_array_count, $a.rule_array)?;
            query::resource(r, n, bytes($a.resource_name, rd($a.resource_name_length))?)
        }};
    }

    /// CSUACRA: Cryptographic Resource Allocate.
    pub(super) unsafe fn CSUACRA(_st: &Store, a: args::CSUACRA) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe { resource_body!(a) }
    }

    /// CSUACRD: Cryptographic Resource Deallocate.
    pub(super) unsafe fn CSUACRD(_st: &Store, a: args::CSUACRD) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe { resource_body!(a) }
    }

    /// CSNBCKM: Multiple Clear Key Import: `*clear_key_length` bytes of clear
    /// key, 64-byte target.
    pub(super) unsafe fn CSNBCKM(st: &Store, a: args::CSNBCKM) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let clear = bytes(a.clear_key, rd(a.clear_key_length))?;
            let t = keys::clear_key_import(st, r, n, clear)?;
            put(a.target_key_identifier, &t);
            Ok(())
        }
    }

    /// CSNBKPI2: Key Part Import2 (HMAC/AES; part length in bits).
    pub(super) unsafe fn CSNBKPI2(st: &Store, a: args::CSNBKPI2) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let pb = rd(a.clear_key_part_length);
            let p = bytes(a.clear_key_part, (pb + 7) / 8)?;
            let (key, key_len) = (a.key_identifier, a.key_identifier_length);
            let cap = rd(key_len);
            let o = keys::key_part_import2(st, r, n, pb, p, bytes(key, cap)?)?;
            fits(&o, cap)?;
            put(key, &o);
            wr(key_len, o.len() as i64);
            Ok(())
        }
    }

    /// CSNBRNG: 8 random bytes (`RANDOM`, `ODD`, `EVEN`): 8-byte keyword,
    /// 8-byte output.
    pub(super) unsafe fn CSNBRNG(_st: &Store, a: args::CSNBRNG) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let v = keys::random_number(bytes(a.form, 8)?, 8)?;
            put(a.random_number, &v);
            Ok(())
        }
    }

    /// CSNBRNGL: up to 8192 random bytes: `*random_number_length` writable
    /// bytes at the output.
    pub(super) unsafe fn CSNBRNGL(_st: &Store, a: args::CSNBRNGL) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let form = if n == 0 {
                &b"RANDOM  "[..]
            } else {
                r.get(..8).ok_or(BAD_COUNT)?
            };
            let l = rd(a.random_number_length);
            if !(0..=8192).contains(&l) {
                return Err(SHORT_BUFFER);
            }
            let v = keys::random_number(form, l as usize)?;
            put(a.random_number, &v);
            Ok(())
        }
    }

    /// CSNDPKE: PKA Encrypt (`PKCS-1.2`).
    pub(super) unsafe fn CSNDPKE(_st: &Store, a: args::CSNDPKE) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let k = bytes(a.RSA_public_key, rd(a.RSA_public_key_length))?;
            let data = bytes(a.key_value, rd(a.key_value_length))?;
            let o = sign::encrypt(r, n, k, data)?;
            put_out(a.RSA_encipher, a.RSA_encipher_length, &o)
        }
    }

    /// CSNDPKD: PKA Decrypt (`PKCS-1.2`).
    pub(super) unsafe fn CSNDPKD(st: &Store, a: args::CSNDPKD) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let k = bytes(a.RSA_private_key, rd(a.RSA_private_key_length))?;
            knobs::on_token("CSNDPKD", k)?;
            let data = bytes(a.enciphered_key, rd(a.enciphered_key_length))?;
            let o = sign::decrypt(st, r, n, k, data)?;
            put_out(a.key_value, a.key_value_length, &o)
        }
    }

    /// CSNBHMG: HMAC Generate (single or multi-part).
    pub(super) unsafe fn CSNBHMG(st: &Store, a: args::CSNBHMG) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let k = bytes(a.key_identifier, rd(a.key_identifier_length))?;
            knobs::on_token("CSNBHMG", k)?;
            let (cv, cv_len) = (a.chaining_vector, a.chaining_vector_length);
            let chain = bytes(cv, rd(cv_len))?.to_vec();
            let msg = bytes(a.message_text, rd(a.message_text_length))?;
            let (o, c) = sign::hmac(st, r, n, k, &chain, msg)?;
            let o = o.map(|mut o| {
                let want = usize::try_from(rd(a.MAC_length)).unwrap_or(0);
                if want > 0 && want < o.len() {
                    o.truncate(want);
                }
                o
            });
            put_part((o, c), a.MAC_text, a.MAC_length, cv, cv_len)
        }
    }

    /// CSNBHMV: HMAC Verify (single or multi-part; 4/429 on mismatch).
    pub(super) unsafe fn CSNBHMV(st: &Store, a: args::CSNBHMV) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let k = bytes(a.key_identifier, rd(a.key_identifier_length))?;
            let (cv, cv_len) = (a.chaining_vector, a.chaining_vector_length);
            let chain = bytes(cv, rd(cv_len))?.to_vec();
            let msg = bytes(a.message_text, rd(a.message_text_length))?;
            match sign::hmac(st, r, n, k, &chain, msg)? {
                (Some(o), _) => {
                    let given = bytes(a.MAC_text, rd(a.MAC_length))?;
                    if given.is_empty() || o.get(..given.len()) != Some(given) {
                        return Err(BAD_SIGNATURE);
                    }
                    Ok(())
                }
                (None, Some(c)) => put_out(cv, cv_len, &c),
                (None, None) => Err(COMPONENT),
            }
        }
    }

    /// CSNBOWH: One-Way Hash (SHA-1/224/256/384/512, single or multi-part).
    pub(super) unsafe fn CSNBOWH(_st: &Store, a: args::CSNBOWH) -> Result<(), Fail> {
        // SAFETY: the verb's C contract.
        unsafe {
            let (r, n) = rule(a.rule_array_count, a.rule_array)?;
            let (cv, cv_len) = (a.chaining_vector, a.chaining_vector_length);
            let chain = bytes(cv, rd(cv_len))?.to_vec();
            let o = sign::one_way_hash(r, n, &chain, bytes(a.text, rd(a.text_length))?)?;
            put_part(o, a.hash, a.hash_length, cv, cv_len)
        }
    }
}

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
