//! The only unsafe module of the crate: loading `libcsulcca.so` and calling
//! its verbs.
//!
//! Mirrors `pkcscca.c: main()`'s `dlopen("libcsulcca.so", RTLD_GLOBAL|RTLD_NOW)`
//! and the STDLL's `dlsym` loop, with one difference: every verb we call is
//! resolved up front and a missing one is reported by name before any work
//! starts. Each call method takes Rust slices, derives every length it hands
//! to C from those slices, and returns the raw return/reason pair; the safe
//! layer in [`super`] turns that into a `Result` in one place.
#![allow(unsafe_code)]

use std::os::raw::c_long;
use std::ptr;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

use super::abi::*;

/// Raw status of one verb call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw {
    pub rc: c_long,
    pub reason: c_long,
}

/// Why the library could not be loaded.
#[derive(Debug)]
pub(crate) enum OpenError {
    Open(String),
    Missing(&'static str),
}

macro_rules! verbs {
    ($($field:ident : $ty:ty = $name:literal,)*) => {
        /// Every verb this crate calls, resolved at load time.
        struct Verbs { $($field: $ty,)* }

        fn resolve(lib: &Library) -> Result<Verbs, OpenError> {
            Ok(Verbs {
                $($field: {
                    // SAFETY: the symbol is a CCA verb whose C prototype
                    // (openCryptoki csulincl.h) is exactly `$ty`; we copy the
                    // function pointer out and keep `lib` alive in `Lib` for
                    // as long as the pointer is used.
                    let sym = unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) };
                    *sym.map_err(|_| OpenError::Missing($name))?
                },)*
            })
        }
    };
}

verbs! {
    csnbktc: CsnbktcFn = "CSNBKTC",
    csnbktc2: Csnbktc2Fn = "CSNBKTC2",
    csndktc: CsndktcFn = "CSNDKTC",
    csuacfq: CsuacfqFn = "CSUACFQ",
    csuacfv: CsuacfvFn = "CSUACFV",
    csnbmkp: CsnbmkpFn = "CSNBMKP",
    csnbdec: CsnbdecFn = "CSNBDEC",
    csnbenc: CsnbencFn = "CSNBENC",
    csnbsae: CsnbsaeFn = "CSNBSAE",
    csnbsad: CsnbsaeFn = "CSNBSAD",
    csndpkt: CsndpktFn = "CSNDPKT",
    csndpkx: CsndpkxFn = "CSNDPKX",
    csnddsg: CsnddsgFn = "CSNDDSG",
    csnddsv: CsnddsvFn = "CSNDDSV",
    csnbkgn: CsnbkgnFn = "CSNBKGN",
    csnbktb: CsnbktbFn = "CSNBKTB",
    csndpkb: CsndpkbFn = "CSNDPKB",
    csndpkg: CsndpkgFn = "CSNDPKG",
    csnbktb2: Csnbktb2Fn = "CSNBKTB2",
    csnbkgn2: Csnbkgn2Fn = "CSNBKGN2",
}

/// The loaded library and its resolved verbs. Field order keeps the pointers
/// next to the library that owns them.
pub(crate) struct Lib {
    verbs: Verbs,
    _lib: Library,
}

fn len_of(buf: &[u8]) -> c_long {
    c_long::try_from(buf.len()).unwrap_or(c_long::MAX)
}

/// A returned length, clamped to the buffer it describes.
fn clamp(len: c_long, cap: usize) -> usize {
    usize::try_from(len).unwrap_or(0).min(cap)
}

impl Lib {
    /// Opens `name` (a bare name is searched like `dlopen` does) with
    /// `RTLD_NOW | RTLD_GLOBAL` and resolves every verb.
    pub(crate) fn open(name: &std::ffi::OsStr) -> Result<Lib, OpenError> {
        // SAFETY: loading a shared object runs its initialisers; the CCA host
        // library (or our emulator) has no initialisers with preconditions.
        let lib = unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) }
            .map_err(|e| OpenError::Open(e.to_string()))?;
        let verbs = resolve(&lib)?;
        Ok(Lib { verbs, _lib: lib })
    }

    /// CSNBKTC over a 64-byte token, updated in place.
    pub(crate) fn csnbktc(&self, rule: &[u8], token: &mut [u8; 64]) -> Raw {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        // SAFETY: all pointers are valid for the duration of the call; the
        // rule array holds `count` keywords and the token buffer the 64 bytes
        // CSNBKTC reads and writes.
        unsafe {
            (self.verbs.csnbktc)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                token.as_mut_ptr(),
            )
        };
        r
    }

    /// CSNBKTC2 or CSNDKTC over a token buffer; returns the new token length.
    pub(crate) fn ktc_var(&self, pka: bool, rule: &[u8], token: &mut [u8]) -> (Raw, usize) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut len = len_of(token);
        let f = if pka {
            self.verbs.csndktc
        } else {
            self.verbs.csnbktc2
        };
        // SAFETY: pointers valid for the call; `len` is the token buffer's
        // true size, so the verb never writes past it.
        unsafe {
            f(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut len,
                token.as_mut_ptr(),
            )
        };
        (r, clamp(len, token.len()))
    }

    /// CSUACFQ: returns the rule-array output (whole buffer) and the verb data
    /// written.
    pub(crate) fn csuacfq(&self, rule: &[u8], vd_cap: usize) -> (Raw, Vec<u8>, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        // Room for 32 output elements; CCA writes at most 18 for any keyword.
        let mut ra = vec![b' '; 256];
        let n = rule.len().min(ra.len());
        if let (Some(d), Some(s)) = (ra.get_mut(..n), rule.get(..n)) {
            d.copy_from_slice(s);
        }
        let mut vd = vec![0u8; vd_cap];
        let mut vd_len = len_of(&vd);
        // SAFETY: the rule array buffer (256 bytes) exceeds every output the
        // verb documents; `vd_len` is the verb-data buffer's true size.
        unsafe {
            (self.verbs.csuacfq)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                ra.as_mut_ptr(),
                &mut vd_len,
                vd.as_mut_ptr(),
            )
        };
        ra.truncate(clamp(count, 32) * 8);
        vd.truncate(clamp(vd_len, vd_cap));
        (r, ra, vd)
    }

    /// CSUACFV: the version string buffer as written.
    pub(crate) fn csuacfv(&self) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut buf = vec![0u8; 64];
        let mut len = len_of(&buf);
        // SAFETY: `len` is the buffer's true size.
        unsafe {
            (self.verbs.csuacfv)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut len,
                buf.as_mut_ptr(),
            )
        };
        buf.truncate(clamp(len, 64));
        (r, buf)
    }

    /// CSNBMKP with a 32-byte key-part buffer (24-byte registers read the
    /// first 24 bytes).
    pub(crate) fn csnbmkp(&self, rule: &[u8], part: &[u8; 32]) -> Raw {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut part = *part;
        // SAFETY: pointers valid; the key part buffer holds 32 bytes, the
        // largest register.
        unsafe {
            (self.verbs.csnbmkp)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                part.as_mut_ptr(),
            )
        };
        r
    }

    /// CSNBENC (`enc`) or CSNBDEC over `data`; output has the same length.
    pub(crate) fn des_cipher(
        &self,
        enc: bool,
        key: &[u8; 64],
        iv: &[u8; 8],
        rule: &[u8],
        data: &[u8],
    ) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut key = *key;
        let mut iv = *iv;
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut input = data.to_vec();
        let mut out = vec![0u8; data.len()];
        let mut len = len_of(data);
        let mut chain = [0u8; 18];
        let mut pad: c_long = 0;
        // SAFETY: input and output buffers both hold `len` bytes; key 64,
        // IV 8 and chaining vector 18 bytes as the verb documents.
        unsafe {
            if enc {
                (self.verbs.csnbenc)(
                    &mut r.rc,
                    &mut r.reason,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    key.as_mut_ptr(),
                    &mut len,
                    input.as_mut_ptr(),
                    iv.as_mut_ptr(),
                    &mut count,
                    rule.as_mut_ptr(),
                    &mut pad,
                    chain.as_mut_ptr(),
                    out.as_mut_ptr(),
                )
            } else {
                (self.verbs.csnbdec)(
                    &mut r.rc,
                    &mut r.reason,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    key.as_mut_ptr(),
                    &mut len,
                    input.as_mut_ptr(),
                    iv.as_mut_ptr(),
                    &mut count,
                    rule.as_mut_ptr(),
                    chain.as_mut_ptr(),
                    out.as_mut_ptr(),
                )
            }
        };
        out.truncate(clamp(len, data.len()));
        (r, out)
    }

    /// CSNBSAE (`enc`) or CSNBSAD with a key token, 16-byte IV and `data`;
    /// the output buffer has room for one extra block of padding.
    pub(crate) fn aes_cipher(
        &self,
        enc: bool,
        key: &[u8],
        iv: &[u8; 16],
        rule: &[u8],
        data: &[u8],
    ) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut key = key.to_vec();
        let mut key_len = len_of(&key);
        let mut iv = *iv;
        let mut iv_len: c_long = 16;
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut input = data.to_vec();
        let mut in_len = len_of(data);
        let mut out = vec![0u8; data.len() + 16];
        let mut out_len = len_of(&out);
        let mut chain = [0u8; 128];
        let mut chain_len: c_long = 128;
        let mut zero: c_long = 0;
        let mut zero2: c_long = 0;
        let mut block_size: c_long = 16;
        let f = if enc {
            self.verbs.csnbsae
        } else {
            self.verbs.csnbsad
        };
        // SAFETY: every buffer is passed with its true length.
        unsafe {
            f(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut key_len,
                key.as_mut_ptr(),
                &mut zero,
                ptr::null_mut(),
                &mut block_size,
                &mut iv_len,
                iv.as_mut_ptr(),
                &mut chain_len,
                chain.as_mut_ptr(),
                &mut in_len,
                input.as_mut_ptr(),
                &mut out_len,
                out.as_mut_ptr(),
                &mut zero2,
                ptr::null_mut(),
            )
        };
        let cap = out.len();
        out.truncate(clamp(out_len, cap));
        (r, out)
    }

    /// CSNDPKT: translate `source` into a new token (buffer of 8000 bytes).
    pub(crate) fn csndpkt(&self, rule: &[u8], source: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut src = source.to_vec();
        let mut src_len = len_of(source);
        let mut z1: c_long = 0;
        let mut z2: c_long = 0;
        let mut out = vec![0u8; 8000];
        let mut out_len = len_of(&out);
        // SAFETY: buffers passed with their true lengths; transport keys are
        // unused (length 0, NULL).
        unsafe {
            (self.verbs.csndpkt)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut src_len,
                src.as_mut_ptr(),
                &mut z1,
                ptr::null_mut(),
                &mut z2,
                ptr::null_mut(),
                &mut out_len,
                out.as_mut_ptr(),
            )
        };
        out.truncate(clamp(out_len, 8000));
        (r, out)
    }

    /// CSNDPKX: the external public token of `source`.
    pub(crate) fn csndpkx(&self, source: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count: c_long = 0;
        let mut rule = [b' '; 8];
        let mut src = source.to_vec();
        let mut src_len = len_of(source);
        let mut out = vec![0u8; 8000];
        let mut out_len = len_of(&out);
        // SAFETY: buffers passed with their true lengths.
        unsafe {
            (self.verbs.csndpkx)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut src_len,
                src.as_mut_ptr(),
                &mut out_len,
                out.as_mut_ptr(),
            )
        };
        out.truncate(clamp(out_len, 8000));
        (r, out)
    }

    /// CSNDDSG: signs `hash` with `key`; the signature field offers 1024 bytes.
    pub(crate) fn csnddsg(&self, rule: &[u8], key: &[u8], hash: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut k = key.to_vec();
        let mut k_len = len_of(key);
        let mut h = hash.to_vec();
        let mut h_len = len_of(hash);
        let mut sig = vec![0u8; 1024];
        let mut sig_len = len_of(&sig);
        let mut sig_bits: c_long = 0;
        // SAFETY: buffers passed with their true lengths.
        unsafe {
            (self.verbs.csnddsg)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut k_len,
                k.as_mut_ptr(),
                &mut h_len,
                h.as_mut_ptr(),
                &mut sig_len,
                &mut sig_bits,
                sig.as_mut_ptr(),
            )
        };
        sig.truncate(clamp(sig_len, 1024));
        (r, sig)
    }

    /// CSNDDSV: verifies `sig` over `hash` with `key`.
    pub(crate) fn csnddsv(&self, rule: &[u8], key: &[u8], hash: &[u8], sig: &[u8]) -> Raw {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut k = key.to_vec();
        let mut k_len = len_of(key);
        let mut h = hash.to_vec();
        let mut h_len = len_of(hash);
        let mut s = sig.to_vec();
        let mut s_len = len_of(sig);
        // SAFETY: buffers passed with their true lengths.
        unsafe {
            (self.verbs.csnddsv)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut k_len,
                k.as_mut_ptr(),
                &mut h_len,
                h.as_mut_ptr(),
                &mut s_len,
                s.as_mut_ptr(),
            )
        };
        r
    }

    /// CSNBKGN: one operational key into `token` (in/out, 64 bytes).
    pub(crate) fn csnbkgn(
        &self,
        form: &[u8; 8],
        length: &[u8; 8],
        ty: &[u8; 8],
        token: &mut [u8; 64],
    ) -> Raw {
        let mut r = Raw { rc: 0, reason: 0 };
        let (mut form, mut length, mut ty) = (*form, *length, *ty);
        let mut ty2 = [0u8; 8];
        let mut kek1 = [0u8; 64];
        let mut kek2 = [0u8; 64];
        let mut gen2 = [0u8; 64];
        // SAFETY: each keyword buffer is 8 bytes, each key identifier 64.
        unsafe {
            (self.verbs.csnbkgn)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                form.as_mut_ptr(),
                length.as_mut_ptr(),
                ty.as_mut_ptr(),
                ty2.as_mut_ptr(),
                kek1.as_mut_ptr(),
                kek2.as_mut_ptr(),
                token.as_mut_ptr(),
                gen2.as_mut_ptr(),
            )
        };
        r
    }

    /// CSNBKTB: build a 64-byte token skeleton.
    pub(crate) fn csnbktb(&self, ty: &[u8; 8], rule: &[u8], token: &mut [u8; 64]) -> Raw {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut ty = *ty;
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut mkvp = [0u8; 16];
        let mut cv = [0u8; 16];
        let mut z2: c_long = 0;
        let mut z5: c_long = 0;
        let mut key_value = [0u8; 32];
        // SAFETY: token 64 bytes, key value 32, CV and MKVP 16; reserved
        // parameters are NULL or zero as callers pass them.
        unsafe {
            (self.verbs.csnbktb)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                token.as_mut_ptr(),
                ty.as_mut_ptr(),
                &mut count,
                rule.as_mut_ptr(),
                key_value.as_mut_ptr(),
                ptr::null_mut(),
                &mut z2,
                ptr::null_mut(),
                cv.as_mut_ptr(),
                ptr::null_mut(),
                &mut z5,
                ptr::null_mut(),
                mkvp.as_mut_ptr(),
            )
        };
        r
    }

    /// CSNDPKB: build a skeleton from a key-value structure.
    pub(crate) fn csndpkb(&self, rule: &[u8], kvs: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut kvs = kvs.to_vec();
        let mut kvs_len = len_of(&kvs);
        let mut zero = [0 as c_long; 6];
        let mut out = vec![0u8; 8000];
        let mut out_len = len_of(&out);
        let [z0, z1, z2, z3, z4, z5] = &mut zero;
        // SAFETY: buffers passed with their true lengths; name, customer
        // data and reserved fields have length 0 and NULL pointers.
        unsafe {
            (self.verbs.csndpkb)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut kvs_len,
                kvs.as_mut_ptr(),
                z0,
                ptr::null_mut(),
                z1,
                ptr::null_mut(),
                z2,
                ptr::null_mut(),
                z3,
                ptr::null_mut(),
                z4,
                ptr::null_mut(),
                z5,
                ptr::null_mut(),
                &mut out_len,
                out.as_mut_ptr(),
            )
        };
        out.truncate(clamp(out_len, 8000));
        (r, out)
    }

    /// CSNDPKG: generate a key pair from a skeleton (rule `MASTER`).
    pub(crate) fn csndpkg(&self, rule: &[u8], skeleton: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut regen_len: c_long = 0;
        let mut skel = skeleton.to_vec();
        let mut skel_len = len_of(&skel);
        let mut transport = [0u8; 64];
        let mut out = vec![0u8; 8000];
        let mut out_len = len_of(&out);
        // SAFETY: buffers passed with their true lengths; transport key is
        // the 64 zero bytes callers pass.
        unsafe {
            (self.verbs.csndpkg)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut regen_len,
                ptr::null_mut(),
                &mut skel_len,
                skel.as_mut_ptr(),
                transport.as_mut_ptr(),
                &mut out_len,
                out.as_mut_ptr(),
            )
        };
        out.truncate(clamp(out_len, 8000));
        (r, out)
    }

    /// CSNBKTB2: a variable-length skeleton (no clear key).
    pub(crate) fn csnbktb2(&self, rule: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut zero = [0 as c_long; 5];
        let mut out = vec![0u8; 725];
        let mut out_len = len_of(&out);
        let [z0, z1, z2, z3, z4] = &mut zero;
        // SAFETY: the target buffer is passed with its true length; every
        // other buffer has length 0 and a NULL pointer.
        unsafe {
            (self.verbs.csnbktb2)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                z0,
                ptr::null_mut(),
                z1,
                ptr::null_mut(),
                z2,
                ptr::null_mut(),
                z3,
                ptr::null_mut(),
                z4,
                ptr::null_mut(),
                &mut out_len,
                out.as_mut_ptr(),
            )
        };
        out.truncate(clamp(out_len, 725));
        (r, out)
    }

    /// CSNBKGN2: generate a `bits`-bit key into `skeleton` (key type `TOKEN`).
    pub(crate) fn csnbkgn2(&self, rule: &[u8], bits: c_long, skeleton: &[u8]) -> (Raw, Vec<u8>) {
        let mut r = Raw { rc: 0, reason: 0 };
        let mut count = len_of(rule) / 8;
        let mut rule = rule.to_vec();
        let mut bits = bits;
        let mut ty1 = *b"TOKEN   ";
        let mut ty2 = *b"        ";
        let mut zero = [0 as c_long; 7];
        let mut out = skeleton.to_vec();
        out.resize(725, 0);
        let mut out_len = len_of(&out);
        let [z0, z1, z2, z3, z4, z5, z6] = &mut zero;
        // SAFETY: the generated-key buffer is passed with its true length
        // (725, the largest variable-length token); names, user data and
        // KEKs have length 0 and NULL pointers.
        unsafe {
            (self.verbs.csnbkgn2)(
                &mut r.rc,
                &mut r.reason,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut count,
                rule.as_mut_ptr(),
                &mut bits,
                ty1.as_mut_ptr(),
                ty2.as_mut_ptr(),
                z0,
                ptr::null_mut(),
                z1,
                ptr::null_mut(),
                z2,
                ptr::null_mut(),
                z3,
                ptr::null_mut(),
                z4,
                ptr::null_mut(),
                z5,
                ptr::null_mut(),
                &mut out_len,
                out.as_mut_ptr(),
                z6,
                ptr::null_mut(),
            )
        };
        out.truncate(clamp(out_len, 725));
        (r, out)
    }
}
