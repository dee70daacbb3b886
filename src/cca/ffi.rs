//! The only unsafe module of the crate: loading `libcsulcca.so` and calling
//! its verbs.
//!
//! Mirrors `usr/sbin/pkcscca/pkcscca.c: main()`: `dlopen("libcsulcca.so",
//! RTLD_GLOBAL|RTLD_NOW)`, then `dlsym` of just the verbs the chosen mode calls.
//! One difference: every verb asked for is checked, and a missing one is
//! reported by name before any work starts (upstream would call through
//! whatever `dlsym` returned).
//!
//! The verb table ([`crate::cca_verb_table`]) gives every verb pkcscca calls a
//! call method here (named after the C symbol) that supplies the common status
//! prefix and answers `None` when the verb was not resolved. The wrappers
//! below take Rust slices, derive every length they hand to C from those
//! slices, and return the raw return/reason pair; the safe layer in [`super`]
//! turns that into a `Result` in one place.
#![allow(unsafe_code)]

use std::os::raw::c_long;
use std::ptr;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

#[cfg(feature = "testkit")]
use super::abi::PVoid;
use super::abi::{self, PBytes};
use super::Verb;

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
    /// A required verb is not exported; `detail` is the loader's message.
    Missing {
        verb: &'static str,
        detail: String,
    },
}

/// The symbol `verb` of `lib` as a `T`.
///
/// # Safety
/// `T` is the function-pointer type of `verb`'s C prototype.
unsafe fn symbol<T: Copy>(lib: &Library, verb: Verb) -> Result<T, OpenError> {
    // SAFETY: `T` matches the symbol (the caller's contract); the pointer is
    // copied out, and `Lib` keeps `lib` loaded for as long as it is used.
    let sym = unsafe { lib.get::<T>(verb.name().as_bytes()) };
    Ok(*sym.map_err(|e| OpenError::Missing {
        verb: verb.name(),
        detail: e.to_string(),
    })?)
}

/// The Rust type holding one parameter of a call: a `long *` points to a
/// `c_long` of the argument struct, byte strings are pointers.
macro_rules! c_field {
    (PLong) => {
        c_long
    };
    (PBytes) => {
        PBytes
    };
    (PVoid) => {
        PVoid
    };
}

/// The initial value of a parameter: length 0, pointer NULL (what callers
/// pass for parameters they do not use, as `pkcscca.c` does).
macro_rules! c_zero {
    (PLong) => {
        0
    };
    (PBytes) => {
        ptr::null_mut()
    };
    (PVoid) => {
        ptr::null_mut()
    };
}

/// The argument a field becomes in the call.
macro_rules! c_arg {
    (PLong, $field:expr) => {
        &mut $field
    };
    (PBytes, $field:expr) => {
        $field
    };
    (PVoid, $field:expr) => {
        $field
    };
}

/// From the table's `pkcscca` and `testkit` rows: the resolved pointers, one
/// argument struct per verb, and one call method per verb (the `testkit` ones
/// only with that feature).
macro_rules! lib_verbs {
    (
        pkcscca { $( $(#[$doc:meta])* $v:ident $n:ident ( $($p:ident : $t:ident),* ); )* }
        testkit { $( $(#[$tdoc:meta])* $tv:ident $tn:ident ( $($tp:ident : $tt:ident),* ); )* }
        $($others:tt)*
    ) => {
        lib_verbs! { @rows
            $( [] $v $n ( $($p : $t),* ); )*
            $( [#[cfg(feature = "testkit")]] $tv $tn ( $($tp : $tt),* ); )*
        }
    };
    (@rows $( [$(#[$cfg:meta])*] $v:ident $n:ident ( $($p:ident : $t:ident),* ); )*) => {
        /// The verbs resolved at load time (`None`: not asked for).
        #[derive(Default)]
        #[allow(non_snake_case, reason = "named after the C symbols")]
        struct Fns {
            $( $(#[$cfg])* $n: Option<abi::fns::$n>, )*
        }

        /// Resolves `required`, in their order (the first missing one is the
        /// error), then those of `optional` the library has.
        fn resolve(lib: &Library, required: &[Verb], optional: &[Verb]) -> Result<Fns, OpenError> {
            let mut fns = Fns::default();
            let wanted = required.iter().map(|&v| (v, true));
            for (verb, needed) in wanted.chain(optional.iter().map(|&v| (v, false))) {
                match verb {
                    $( $(#[$cfg])* Verb::$v => {
                        // SAFETY: `abi::fns::$n` is the C prototype of `$n`.
                        match unsafe { symbol::<abi::fns::$n>(lib, verb) } {
                            Ok(f) => fns.$n = Some(f),
                            Err(e) if needed => return Err(e),
                            Err(_) => {}
                        }
                    } )*
                }
            }
            Ok(fns)
        }

        /// One struct per verb: its parameters after the status prefix, under
        /// their `csulincl.h` names; [`Default`] is every length 0 and every
        /// pointer NULL, so a wrapper names only what it passes.
        #[allow(
            non_snake_case,
            non_camel_case_types,
            clippy::upper_case_acronyms,
            reason = "named after the C symbols and csulincl.h"
        )]
        mod args {
            use super::*;
            $(
                $(#[$cfg])*
                pub(super) struct $n { $( pub(super) $p: c_field!($t), )* }

                $(#[$cfg])*
                impl Default for $n {
                    fn default() -> $n {
                        $n { $( $p: c_zero!($t), )* }
                    }
                }
            )*
        }

        #[allow(non_snake_case, reason = "named after the C symbols")]
        impl Lib {
            $(
                #[doc = concat!(
                    "Calls `", stringify!($n), "` with the status pointers, no exit ",
                    "data, and the parameters in `a` (lengths are passed by pointer ",
                    "and updated in place); `None` when the verb was not resolved."
                )]
                ///
                /// # Safety
                /// Every pointer in `a` is valid for what the verb reads and writes
                /// through it (its C contract, with the lengths in `a`), or NULL
                /// where the verb allows it.
                $(#[$cfg])*
                unsafe fn $n(&self, a: &mut args::$n) -> Option<Raw> {
                    let f = self.fns.$n?;
                    let mut raw = Raw { rc: 0, reason: 0 };
                    // SAFETY: `f` has the verb's C prototype and `self` keeps its
                    // library loaded; the status pointers are locals, the exit
                    // data NULL (CCA ignores it), the rest valid per the contract.
                    unsafe {
                        f(
                            &mut raw.rc,
                            &mut raw.reason,
                            ptr::null_mut(),
                            ptr::null_mut(),
                            $( c_arg!($t, a.$p) ),*
                        )
                    };
                    Some(raw)
                }
            )*
        }
    };
}

crate::cca_verb_table!(lib_verbs);

/// The loaded library and its resolved verbs. Field order keeps the pointers
/// next to the library that owns them.
pub(crate) struct Lib {
    fns: Fns,
    _lib: Library,
}

fn len_of(buf: &[u8]) -> c_long {
    c_long::try_from(buf.len()).unwrap_or(c_long::MAX)
}

/// A returned length, clamped to the buffer it describes.
fn clamp(len: c_long, cap: usize) -> usize {
    usize::try_from(len).unwrap_or(0).min(cap)
}

/// A buffer as a `long *length, unsigned char *data` pair: its true size and
/// its start.
fn pair(buf: &mut [u8]) -> (c_long, PBytes) {
    (len_of(buf), buf.as_mut_ptr())
}

/// A rule array as its `long *rule_array_count, unsigned char *rule_array`
/// pair: the number of 8-byte keywords and its start.
fn keywords(rule: &mut [u8]) -> (c_long, PBytes) {
    (len_of(rule) / 8, rule.as_mut_ptr())
}

/// `buf` cut to the `len` a verb returned, at most the whole buffer.
fn written(mut buf: Vec<u8>, len: c_long) -> Vec<u8> {
    let cap = buf.len();
    buf.truncate(clamp(len, cap));
    buf
}

/// CSNBKTC2 and CSNDKTC take the same parameters under other names: calls
/// `$verb` with `rule` and the token pair `$len`/`$key` over `token`; evaluates
/// to the status and the returned length.
macro_rules! ktc_call {
    ($lib:ident, $verb:ident, $rule:expr, $len:ident, $key:ident, $token:expr) => {{
        let mut a = args::$verb::default();
        (a.rule_array_count, a.rule_array) = keywords($rule);
        (a.$len, a.$key) = pair($token);
        // SAFETY: the length is the token buffer's true size, so the verb
        // never writes past it.
        (unsafe { $lib.$verb(&mut a) }, a.$len)
    }};
}

/// CSNBDEC and CSNBENC: the input text pair `$input` and output `$output` of
/// `$verb` (their names swap), over the buffers of `$d` (a [`DesCall`]);
/// evaluates to the status.
macro_rules! des_call {
    ($lib:ident, $verb:ident, $d:ident, $input:ident, $output:ident) => {{
        let mut a = args::$verb {
            key_identifier: $d.key.as_mut_ptr(),
            initialization_vector: $d.iv.as_mut_ptr(),
            chaining_vector: $d.chain.as_mut_ptr(),
            $output: $d.out.as_mut_ptr(),
            ..Default::default()
        };
        (a.text_length, a.$input) = pair(&mut $d.text);
        (a.rule_array_count, a.rule_array) = keywords(&mut $d.rule);
        // SAFETY: input and output buffers both hold `text_length` bytes; key
        // 64, IV 8 and chaining vector 18 bytes as the verb documents.
        let raw = unsafe { $lib.$verb(&mut a) };
        $d.len = a.text_length;
        raw
    }};
}

/// Which way [`Lib::des_cipher`] goes.
pub(crate) enum DesDirection {
    /// CSNBDEC.
    Decipher,
    /// CSNBENC (only tests encipher).
    #[cfg(feature = "testkit")]
    Encipher,
}

/// The buffers of one CSNBDEC or CSNBENC call: copies of the key token, IV,
/// rule array and text, an output as long as the text, the 18-byte chaining
/// vector, and the returned length.
struct DesCall {
    key: [u8; 64],
    iv: [u8; 8],
    rule: Vec<u8>,
    text: Vec<u8>,
    out: Vec<u8>,
    chain: [u8; 18],
    len: c_long,
}

impl DesCall {
    fn new(key: &[u8; 64], iv: &[u8; 8], rule: &[u8], data: &[u8]) -> DesCall {
        DesCall {
            key: *key,
            iv: *iv,
            rule: rule.to_vec(),
            text: data.to_vec(),
            out: vec![0u8; data.len()],
            chain: [0u8; 18],
            len: 0,
        }
    }
}

impl Lib {
    /// Opens `name` (a bare name is searched like `dlopen` does) with
    /// `RTLD_NOW | RTLD_GLOBAL` and resolves `required` and, where present, `optional`.
    pub(crate) fn open(
        name: &std::ffi::OsStr,
        required: &[Verb],
        optional: &[Verb],
    ) -> Result<Lib, OpenError> {
        // SAFETY: loading a shared object runs its initialisers; the CCA host
        // library (or our emulator) has no initialisers with preconditions.
        let lib = unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) }
            .map_err(|e| OpenError::Open(e.to_string()))?;
        let fns = resolve(&lib, required, optional)?;
        Ok(Lib { fns, _lib: lib })
    }

    /// CSNBKTC over a 64-byte token, updated in place.
    pub(crate) fn csnbktc(&self, rule: &[u8], token: &mut [u8; 64]) -> Option<Raw> {
        let mut rule = rule.to_vec();
        let mut a = args::CSNBKTC {
            key_identifier: token.as_mut_ptr(),
            ..Default::default()
        };
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        // SAFETY: the rule array holds `count` keywords and the token buffer
        // the 64 bytes CSNBKTC reads and writes.
        unsafe { self.CSNBKTC(&mut a) }
    }

    /// CSNBKTC2 or CSNDKTC over a token buffer; returns the new token length.
    pub(crate) fn ktc_var(&self, pka: bool, rule: &[u8], token: &mut [u8]) -> Option<(Raw, usize)> {
        let mut rule = rule.to_vec();
        let (raw, len) = if pka {
            ktc_call!(self, CSNDKTC, &mut rule, key_id_length, key_id, token)
        } else {
            ktc_call!(
                self,
                CSNBKTC2,
                &mut rule,
                key_identifier_length,
                key_identifier,
                token
            )
        };
        Some((raw?, clamp(len, token.len())))
    }

    /// CSUACFQ: returns the rule-array output (whole buffer) and the verb data
    /// written.
    pub(crate) fn csuacfq(&self, rule: &[u8], vd_cap: usize) -> Option<(Raw, Vec<u8>, Vec<u8>)> {
        // Room for 32 output elements; CCA writes at most 18 for any keyword.
        let mut ra = vec![b' '; 256];
        let n = rule.len().min(ra.len());
        if let (Some(d), Some(s)) = (ra.get_mut(..n), rule.get(..n)) {
            d.copy_from_slice(s);
        }
        let mut vd = vec![0u8; vd_cap];
        let mut a = args::CSUACFQ {
            rule_array_count: len_of(rule) / 8,
            rule_array: ra.as_mut_ptr(),
            ..Default::default()
        };
        (a.verb_data_length, a.verb_data) = pair(&mut vd);
        // SAFETY: the rule array buffer (256 bytes) exceeds every output the
        // verb documents; the verb-data length is its buffer's true size.
        let raw = unsafe { self.CSUACFQ(&mut a) }?;
        ra.truncate(clamp(a.rule_array_count, 32) * 8);
        Some((raw, ra, written(vd, a.verb_data_length)))
    }

    /// CSNBDEC, or CSNBENC (`dir`), over `data` (a multiple of 8 bytes, no
    /// padding character); output has the same length.
    pub(crate) fn des_cipher(
        &self,
        dir: DesDirection,
        key: &[u8; 64],
        iv: &[u8; 8],
        rule: &[u8],
        data: &[u8],
    ) -> Option<(Raw, Vec<u8>)> {
        let mut d = DesCall::new(key, iv, rule, data);
        let raw = match dir {
            DesDirection::Decipher => des_call!(self, CSNBDEC, d, ciphertext, plaintext),
            #[cfg(feature = "testkit")]
            DesDirection::Encipher => des_call!(self, CSNBENC, d, plaintext, ciphertext),
        }?;
        Some((raw, written(d.out, d.len)))
    }

    /// CSNDPKT: translate `source` into a new token (buffer of 8000 bytes);
    /// transport keys unused (length 0, NULL).
    pub(crate) fn csndpkt(&self, rule: &[u8], source: &[u8]) -> Option<(Raw, Vec<u8>)> {
        let (mut rule, mut src, mut out) = (rule.to_vec(), source.to_vec(), vec![0u8; 8000]);
        let mut a = args::CSNDPKT::default();
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (a.source_key_identifier_length, a.source_key_identifier) = pair(&mut src);
        (a.target_key_token_length, a.target_key_token) = pair(&mut out);
        // SAFETY: buffers passed with their true lengths.
        let raw = unsafe { self.CSNDPKT(&mut a) }?;
        Some((raw, written(out, a.target_key_token_length)))
    }

    /// CSNDPKX: the external public token of `source`.
    pub(crate) fn csndpkx(&self, source: &[u8]) -> Option<(Raw, Vec<u8>)> {
        // No keywords: count 0, one blank element for a verb that reads anyway.
        let (mut rule, mut src) = ([b' '; 8], source.to_vec());
        let mut out = vec![0u8; 8000];
        let mut a = args::CSNDPKX {
            rule_array: rule.as_mut_ptr(),
            ..Default::default()
        };
        (a.source_key_identifier_length, a.source_key_identifier) = pair(&mut src);
        (a.target_key_token_length, a.target_key_token) = pair(&mut out);
        // SAFETY: buffers passed with their true lengths.
        let raw = unsafe { self.CSNDPKX(&mut a) }?;
        Some((raw, written(out, a.target_key_token_length)))
    }
}

/// CSNBSAE and CSNBSAD take the same parameters; the names of the text pairs
/// say which is the input. Calls `$verb` with the buffers of `$c` (an
/// [`AesCall`]); evaluates to the status and the output length.
#[cfg(feature = "testkit")]
macro_rules! aes_call {
    ($lib:ident, $verb:ident, $c:ident, $in_len:ident, $input:ident, $out_len:ident, $output:ident) => {{
        let mut a = args::$verb {
            block_size: 16,
            ..Default::default()
        };
        (a.rule_array_count, a.rule_array) = keywords(&mut $c.rule);
        (a.key_length, a.key_identifier) = pair(&mut $c.key);
        (a.initialization_vector_length, a.initialization_vector) = pair(&mut $c.iv);
        (a.chain_data_length, a.chain_data) = pair(&mut $c.chain);
        (a.$in_len, a.$input) = pair(&mut $c.input);
        (a.$out_len, a.$output) = pair(&mut $c.out);
        // SAFETY: every buffer is passed with its true length.
        (unsafe { $lib.$verb(&mut a) }, a.$out_len)
    }};
}

/// The buffers of one CSNBSAE or CSNBSAD call: copies of the rule array, key
/// token, IV and input; an output one block longer than the input (padding)
/// and a 128-byte chaining vector.
#[cfg(feature = "testkit")]
struct AesCall {
    rule: Vec<u8>,
    key: Vec<u8>,
    iv: [u8; 16],
    chain: [u8; 128],
    input: Vec<u8>,
    out: Vec<u8>,
}

/// The verbs only tests, benches and the emulator's tools call.
#[cfg(feature = "testkit")]
impl Lib {
    /// CSUACFV: the version string buffer as written.
    pub(crate) fn csuacfv(&self) -> Option<(Raw, Vec<u8>)> {
        let mut out = vec![0u8; 64];
        let mut a = args::CSUACFV::default();
        (a.version_data_length, a.version_data) = pair(&mut out);
        // SAFETY: the length is the buffer's true size.
        let raw = unsafe { self.CSUACFV(&mut a) }?;
        Some((raw, written(out, a.version_data_length)))
    }

    /// CSNBMKP with a 32-byte key-part buffer (24-byte registers read the
    /// first 24 bytes).
    pub(crate) fn csnbmkp(&self, rule: &[u8], part: &mut [u8; 32]) -> Option<Raw> {
        let mut rule = rule.to_vec();
        let mut a = args::CSNBMKP {
            key_part: part.as_mut_ptr(),
            ..Default::default()
        };
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        // SAFETY: the key part buffer holds 32 bytes, the largest register.
        unsafe { self.CSNBMKP(&mut a) }
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
    ) -> Option<(Raw, Vec<u8>)> {
        let mut c = AesCall {
            rule: rule.to_vec(),
            key: key.to_vec(),
            iv: *iv,
            chain: [0u8; 128],
            input: data.to_vec(),
            out: vec![0u8; data.len() + 16],
        };
        let (raw, len) = if enc {
            aes_call!(
                self,
                CSNBSAE,
                c,
                clear_text_length,
                clear_text,
                cipher_text_length,
                cipher_text
            )
        } else {
            aes_call!(
                self,
                CSNBSAD,
                c,
                cipher_text_length,
                cipher_text,
                clear_text_length,
                clear_text
            )
        };
        Some((raw?, written(c.out, len)))
    }

    /// CSNDDSG: signs `hash` with `key`; the signature field offers 1024 bytes.
    pub(crate) fn csnddsg(&self, rule: &[u8], key: &[u8], hash: &[u8]) -> Option<(Raw, Vec<u8>)> {
        let (mut rule, mut key, mut hash) = (rule.to_vec(), key.to_vec(), hash.to_vec());
        let mut sig = vec![0u8; 1024];
        let mut a = args::CSNDDSG::default();
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (a.PKA_private_key_id_length, a.PKA_private_key_id) = pair(&mut key);
        (a.hash_length, a.hash) = pair(&mut hash);
        (a.signature_field_length, a.signature_field) = pair(&mut sig);
        // SAFETY: buffers passed with their true lengths.
        let raw = unsafe { self.CSNDDSG(&mut a) }?;
        Some((raw, written(sig, a.signature_field_length)))
    }

    /// CSNDDSV: verifies `sig` over `hash` with `key`.
    pub(crate) fn csnddsv(&self, rule: &[u8], key: &[u8], hash: &[u8], sig: &[u8]) -> Option<Raw> {
        let (mut rule, mut key) = (rule.to_vec(), key.to_vec());
        let (mut hash, mut sig) = (hash.to_vec(), sig.to_vec());
        let mut a = args::CSNDDSV::default();
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (a.PKA_public_key_id_length, a.PKA_public_key_id) = pair(&mut key);
        (a.hash_length, a.hash) = pair(&mut hash);
        (a.signature_field_length, a.signature_field) = pair(&mut sig);
        // SAFETY: buffers passed with their true lengths.
        unsafe { self.CSNDDSV(&mut a) }
    }

    /// CSNBKGN: one operational key into `token` (in/out, 64 bytes); the
    /// second key type is 8 zero bytes, the KEKs and second key 64.
    pub(crate) fn csnbkgn(
        &self,
        form: &[u8; 8],
        length: &[u8; 8],
        ty: &[u8; 8],
        token: &mut [u8; 64],
    ) -> Option<Raw> {
        let (mut form, mut length, mut ty, mut ty2) = (*form, *length, *ty, [0u8; 8]);
        let (mut kek1, mut kek2, mut gen2) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        let mut a = args::CSNBKGN {
            key_form: form.as_mut_ptr(),
            key_length: length.as_mut_ptr(),
            key_type_1: ty.as_mut_ptr(),
            key_type_2: ty2.as_mut_ptr(),
            KEK_key_identifier_1: kek1.as_mut_ptr(),
            KEK_key_identifier_2: kek2.as_mut_ptr(),
            generated_key_identifier_1: token.as_mut_ptr(),
            generated_key_identifier_2: gen2.as_mut_ptr(),
        };
        // SAFETY: each keyword buffer is 8 bytes, each key identifier 64.
        unsafe { self.CSNBKGN(&mut a) }
    }

    /// CSNBKTB: build a 64-byte token skeleton (key value 32 zero bytes, CV
    /// and MKVP 16; reserved parameters 0 or NULL).
    pub(crate) fn csnbktb(&self, ty: &[u8; 8], rule: &[u8], token: &mut [u8; 64]) -> Option<Raw> {
        let (mut ty, mut rule) = (*ty, rule.to_vec());
        let (mut key_value, mut cv, mut mkvp) = ([0u8; 32], [0u8; 16], [0u8; 16]);
        let mut a = args::CSNBKTB {
            key_token: token.as_mut_ptr(),
            key_type: ty.as_mut_ptr(),
            key_value: key_value.as_mut_ptr(),
            control_vector: cv.as_mut_ptr(),
            master_key_verification_number: mkvp.as_mut_ptr(),
            ..Default::default()
        };
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        // SAFETY: every buffer has the size the verb documents.
        unsafe { self.CSNBKTB(&mut a) }
    }

    /// CSNDPKB: build a skeleton from a key-value structure (name, customer
    /// data and reserved fields: length 0, NULL).
    pub(crate) fn csndpkb(&self, rule: &[u8], kvs: &[u8]) -> Option<(Raw, Vec<u8>)> {
        let (mut rule, mut kvs, mut out) = (rule.to_vec(), kvs.to_vec(), vec![0u8; 8000]);
        let mut a = args::CSNDPKB::default();
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (a.key_values_structure_length, a.key_values_structure) = pair(&mut kvs);
        (a.token_length, a.token) = pair(&mut out);
        // SAFETY: buffers passed with their true lengths.
        let raw = unsafe { self.CSNDPKB(&mut a) }?;
        Some((raw, written(out, a.token_length)))
    }

    /// CSNDPKG: generate a key pair from a skeleton (rule `MASTER`, no
    /// regeneration data, transport key 64 zero bytes).
    pub(crate) fn csndpkg(&self, rule: &[u8], skeleton: &[u8]) -> Option<(Raw, Vec<u8>)> {
        let (mut rule, mut skel, mut out) = (rule.to_vec(), skeleton.to_vec(), vec![0u8; 8000]);
        let mut transport = [0u8; 64];
        let mut a = args::CSNDPKG {
            transport_key_identifier: transport.as_mut_ptr(),
            ..Default::default()
        };
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (a.skeleton_key_token_length, a.skeleton_key_token) = pair(&mut skel);
        (
            a.generated_key_identifier_length,
            a.generated_key_identifier,
        ) = pair(&mut out);
        // SAFETY: buffers passed with their true lengths.
        let raw = unsafe { self.CSNDPKG(&mut a) }?;
        Some((raw, written(out, a.generated_key_identifier_length)))
    }

    /// CSNBKTB2: a variable-length skeleton (no clear key; every other input
    /// length 0, NULL).
    pub(crate) fn csnbktb2(&self, rule: &[u8]) -> Option<(Raw, Vec<u8>)> {
        let (mut rule, mut out) = (rule.to_vec(), vec![0u8; 725]);
        let mut a = args::CSNBKTB2::default();
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (a.target_key_token_length, a.target_key_token) = pair(&mut out);
        // SAFETY: the target buffer is passed with its true length.
        let raw = unsafe { self.CSNBKTB2(&mut a) }?;
        Some((raw, written(out, a.target_key_token_length)))
    }

    /// CSNBKGN2: generate a `bits`-bit key into `skeleton` (key type `TOKEN`;
    /// names, user data and KEKs: length 0, NULL).
    pub(crate) fn csnbkgn2(
        &self,
        rule: &[u8],
        bits: c_long,
        skeleton: &[u8],
    ) -> Option<(Raw, Vec<u8>)> {
        let (mut ty1, mut ty2) = (*b"TOKEN   ", *b"        ");
        let (mut rule, mut out) = (rule.to_vec(), skeleton.to_vec());
        out.resize(725, 0);
        let mut a = args::CSNBKGN2 {
            clear_key_bit_length: bits,
            key_type_1: ty1.as_mut_ptr(),
            key_type_2: ty2.as_mut_ptr(),
            ..Default::default()
        };
        (a.rule_array_count, a.rule_array) = keywords(&mut rule);
        (
            a.generated_key_identifier_1_length,
            a.generated_key_identifier_1,
        ) = pair(&mut out);
        // SAFETY: the generated-key buffer is passed with its true length
        // (725, the largest variable-length token).
        let raw = unsafe { self.CSNBKGN2(&mut a) }?;
        Some((raw, written(out, a.generated_key_identifier_1_length)))
    }
}
