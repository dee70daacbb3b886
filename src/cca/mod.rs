//! CCA key tokens, the host library's verb ABI, and its dynamic loading.
//!
//! [`Csulcca`] is the safe face of `libcsulcca.so`: one method per verb, each
//! returning `Result<_, CcaError>` where the error names the verb and carries
//! CCA's return and reason codes. The conversion from the raw pair happens in
//! one place, `check`; callers never compare return codes themselves. The
//! library is opened with just the verbs a mode calls ([`keys_verbs`],
//! [`oldrsakeys_verbs`], [`v2objectsv3_verbs`], [`status_verbs`]), so a host library
//! that lacks a verb the mode never calls does not stop it.
//! Layouts of the tokens the verbs work on live in [`token`], keywords in
//! [`rules`], C signatures in [`abi`]; `ffi` is the only unsafe code.

pub mod abi;
mod ffi;
pub mod rules;
pub mod token;

use std::ffi::OsStr;
use std::fmt;

use rules::{Keyword, RuleArray};
pub use token::MkType;

/// From the table's `pkcscca` and `testkit` rows: the [`Verb`] enum.
macro_rules! verb_enum {
    (
        pkcscca { $( $(#[$doc:meta])* $v:ident $n:ident ( $($p:ident : $t:ident),* ); )* }
        testkit { $( $(#[$tdoc:meta])* $tv:ident $tn:ident ( $($tp:ident : $tt:ident),* ); )* }
        $($others:tt)*
    ) => {
        /// A verb pkcscca can call (the ones only tests call need the
        /// `testkit` feature): what [`Csulcca::open`] resolves and what a
        /// [`CcaError`] names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Verb {
            $( $(#[$doc])* $v, )*
            $( $(#[$tdoc])* #[cfg(feature = "testkit")] $tv, )*
        }

        impl Verb {
            /// Every verb of this build, in the table's order.
            #[cfg(feature = "testkit")]
            pub const ALL: &[Verb] = &[$(Verb::$v,)* $(Verb::$tv),*];

            /// The C symbol name.
            pub fn name(self) -> &'static str {
                match self {
                    $( Verb::$v => stringify!($n), )*
                    $( #[cfg(feature = "testkit")] Verb::$tv => stringify!($tn), )*
                }
            }
        }
    };
}

crate::cca_verb_table!(verb_enum);

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes as lower-case hex, as MKVPs are shown in messages, `--json` and the audit
/// record.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The verbs a mode calls: those it cannot work without, and those it uses when the
/// library has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeVerbs {
    /// A library lacking one of these is refused.
    pub required: Vec<Verb>,
    /// Used when present; the mode has another way without them.
    pub optional: Vec<Verb>,
}

impl ModeVerbs {
    /// Every verb, required first.
    #[cfg(feature = "testkit")]
    pub fn all(&self) -> Vec<Verb> {
        self.required
            .iter()
            .chain(&self.optional)
            .copied()
            .collect()
    }

    /// These verbs and `other`'s, each once; a verb one of them requires is required.
    pub fn union(mut self, other: &ModeVerbs) -> ModeVerbs {
        for &v in &other.required {
            if !self.required.contains(&v) {
                self.required.push(v);
            }
        }
        self.optional.retain(|v| !self.required.contains(v));
        for &v in &other.optional {
            if !self.required.contains(&v) && !self.optional.contains(&v) {
                self.optional.push(v);
            }
        }
        self
    }
}

/// The verbs `-m keys` calls for master keys of type `t`: the key token change
/// verbs of the key kinds `-k` selects (CSNBKTC for DES and AES DATA tokens,
/// CSNBKTC2 for AES CIPHER and HMAC tokens, CSNDKTC for PKA tokens), and CSUACFQ
/// for the registers when the library has it (without it, each key goes to the
/// card and the answer is compared, as upstream does). Upstream's `pkcscca.c:
/// main()` looks up CSNDKTC, CSNBKTC and CSNBKTC2 for every `-k`.
pub fn keys_verbs(t: MkType) -> ModeVerbs {
    let required = match t {
        MkType::Sym | MkType::Aes => vec![Verb::Csnbktc, Verb::Csnbktc2],
        MkType::Apka | MkType::Asym => vec![Verb::Csndktc],
    };
    ModeVerbs {
        required,
        optional: vec![Verb::Csuacfq],
    }
}

/// The verbs `-m oldrsakeys` calls: CSNDPKT and CSNDPKX, the two upstream looks
/// up for this mode (the mode reads no master-key register).
pub fn oldrsakeys_verbs() -> ModeVerbs {
    ModeVerbs {
        required: vec![Verb::Csndpkt, Verb::Csndpkx],
        optional: Vec::new(),
    }
}

/// The verbs our `-m status` calls: CSUACFQ alone (the master key registers, which
/// the mode cannot do without).
pub fn status_verbs() -> ModeVerbs {
    ModeVerbs {
        required: vec![Verb::Csuacfq],
        optional: Vec::new(),
    }
}

/// The verbs `-m v2objectsv3` calls: CSNBDEC alone, as upstream.
pub fn v2objectsv3_verbs() -> ModeVerbs {
    ModeVerbs {
        required: vec![Verb::Csnbdec],
        optional: Vec::new(),
    }
}

/// Return/reason of a successful call (return code 0; the reason may be a
/// warning such as "key used under the OLD master key").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Return code (always 0 here).
    pub rc: i64,
    /// Reason code.
    pub reason: i64,
}

/// A verb that returned a non-zero return code, or one that was not resolved
/// when the library was opened (see [`CcaError::is_not_resolved`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CcaError {
    /// The verb.
    pub verb: Verb,
    /// CCA return code ([`CcaError::NOT_RESOLVED`] for a verb not resolved).
    pub rc: i64,
    /// CCA reason code.
    pub reason: i64,
}

impl CcaError {
    /// The return code of a call to a verb that [`Csulcca::open`] was not asked
    /// to resolve. CCA's own return codes are 0, 4, 8, 12 and 16.
    pub const NOT_RESOLVED: i64 = -1;

    /// The error of a call to `verb` when it was not resolved.
    pub fn not_resolved(verb: Verb) -> CcaError {
        CcaError {
            verb,
            rc: CcaError::NOT_RESOLVED,
            reason: 0,
        }
    }

    /// True when the verb was not resolved, so nothing was called.
    pub fn is_not_resolved(&self) -> bool {
        self.rc == CcaError::NOT_RESOLVED
    }

    /// True for 8/48: the token's MKVP matches no usable master key.
    pub fn is_unknown_mk(&self) -> bool {
        (self.rc, self.reason) == (8, 48)
    }

    /// True for 12/764: the needed master key is not loaded.
    pub fn is_mk_not_loaded(&self) -> bool {
        (self.rc, self.reason) == (12, 764)
    }
}

impl fmt::Display for CcaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_not_resolved() {
            write!(f, "{} was not resolved from the CCA library", self.verb)
        } else {
            write!(
                f,
                "{} failed: return code {}, reason code {}",
                self.verb, self.rc, self.reason
            )
        }
    }
}

impl std::error::Error for CcaError {}

/// Why `libcsulcca.so` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `dlopen` failed.
    #[error("cannot load {name}: {detail}")]
    Open {
        /// Library name or path.
        name: String,
        /// The loader's message.
        detail: String,
    },
    /// A verb we need is not exported.
    #[error("{name} does not export {symbol}")]
    MissingSymbol {
        /// Library name or path.
        name: String,
        /// The missing verb.
        symbol: &'static str,
        /// The loader's message (`dlerror()`).
        detail: String,
    },
}

/// The single conversion point from a raw CCA status (`None`: the verb was not
/// resolved) to a `Result`. Mirrors the `if (return_code != CCA_SUCCESS)` checks
/// after every verb call in `usr/sbin/pkcscca/pkcscca.c`.
fn check(verb: Verb, raw: Option<ffi::Raw>) -> Result<Status, CcaError> {
    let raw = raw.ok_or(CcaError::not_resolved(verb))?;
    let (rc, reason): (i64, i64) = (raw.rc, raw.reason);
    if rc == 0 {
        Ok(Status { rc, reason })
    } else {
        Err(CcaError { verb, rc, reason })
    }
}

/// What a master-key register holds, as the card reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterState {
    /// Nothing loaded.
    Empty,
    /// NEW register only: some key parts loaded, not yet complete.
    Partial,
    /// A complete master key (NEW full, CURRENT or OLD valid).
    Loaded,
    /// The card answered something we do not know.
    Unknown,
}

impl RegisterState {
    /// The state of a CURRENT or OLD register from its status digit (`1` empty, `2`
    /// valid).
    fn current_or_old(digit: Option<u8>) -> RegisterState {
        match digit {
            Some(1) => RegisterState::Empty,
            Some(2) => RegisterState::Loaded,
            _ => RegisterState::Unknown,
        }
    }

    /// The state of a NEW register from its status digit (`1` empty, `2` partially
    /// loaded, `3` full).
    fn new_register(digit: Option<u8>) -> RegisterState {
        match digit {
            Some(1) => RegisterState::Empty,
            Some(2) => RegisterState::Partial,
            Some(3) => RegisterState::Loaded,
            _ => RegisterState::Unknown,
        }
    }
}

/// One master-key register as reported by the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register {
    /// What the register holds.
    pub state: RegisterState,
    /// The verification pattern, when the card reports one for this register
    /// and the register holds a complete key.
    pub mkvp: Option<Vec<u8>>,
}

impl Register {
    /// The verification pattern of a complete key in this register.
    pub fn loaded_mkvp(&self) -> Option<&[u8]> {
        match self.state {
            RegisterState::Loaded => self.mkvp.as_deref(),
            _ => None,
        }
    }
}

/// NEW, CURRENT and OLD registers of one master-key type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MkStatus {
    /// NEW master-key register.
    pub new: Register,
    /// CURRENT master-key register.
    pub current: Register,
    /// OLD master-key register.
    pub old: Register,
}

/// The STATICSB block IDs of the verification patterns of one master key type, as
/// (OLD, CURRENT, NEW), and the value length. openCryptoki itself
/// (`usr/lib/cca_stdll/cca_specific.c`)
/// reads the CURRENT and NEW IDs of SYM (`X'0F07'`, `X'0F06'`), AES (`X'0F0B'`,
/// `X'0F0A'`) and APKA (`X'0F0E'`, `X'0F0D'`); the OLD IDs and all ASYM IDs are
/// UNCONFIRMED (they are what our software CCA answers). Blocks are looked up by ID,
/// not by offset, so a card that lays them out differently, or lacks one, yields no
/// MKVP for that register rather than a wrong one, and the migration then falls back
/// to calling the verb and comparing.
fn staticsb_ids(t: MkType) -> ([u16; 3], usize) {
    match t {
        MkType::Sym => ([0x0F08, 0x0F07, 0x0F06], 8),
        MkType::Asym => ([0x0F12, 0x0F11, 0x0F13], 16),
        MkType::Aes => ([0x0F0C, 0x0F0B, 0x0F0A], 8),
        MkType::Apka => ([0x0F0F, 0x0F0E, 0x0F0D], 8),
    }
}

/// The value of the STATICSB block with `id` (blocks are `len(2) id(2) value`, `len`
/// counting the 4 header bytes, big-endian), if present and at least `len` bytes.
fn staticsb_value(verb_data: &[u8], id: u16, len: usize) -> Option<&[u8]> {
    let mut pos = 0usize;
    loop {
        let hdr = verb_data.get(pos..pos.checked_add(4)?)?;
        let blen = usize::from(u16::from_be_bytes([*hdr.first()?, *hdr.get(1)?]));
        let bid = u16::from_be_bytes([*hdr.get(2)?, *hdr.get(3)?]);
        if blen < 4 {
            return None;
        }
        let end = pos.checked_add(blen)?;
        if bid == id {
            let value = verb_data.get(pos + 4..end)?;
            return value.get(..len);
        }
        pos = end;
    }
}

/// Output of CSUACFQ.
#[derive(Clone, Debug)]
pub struct Query {
    /// Rule-array elements written.
    pub rule_array: Vec<Keyword>,
    /// Verb data written.
    pub verb_data: Vec<u8>,
}

fn state_digit(k: Option<&Keyword>) -> Option<u8> {
    match k.map(|k| k.0[0]) {
        Some(d @ b'1'..=b'3') => Some(d - b'0'),
        _ => None,
    }
}

/// [`check`] for a call that also returns data.
fn check_with<T>(verb: Verb, call: Option<(ffi::Raw, T)>) -> Result<(Status, T), CcaError> {
    let (raw, value) = call.ok_or(CcaError::not_resolved(verb))?;
    Ok((check(verb, Some(raw))?, value))
}

/// The CCA host library, loaded with the verbs a mode calls resolved.
pub struct Csulcca {
    lib: ffi::Lib,
}

impl fmt::Debug for Csulcca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Csulcca")
    }
}

impl Csulcca {
    /// The library name upstream passes to `dlopen`.
    pub const LIBRARY: &'static str = "libcsulcca.so";

    /// Loads `libcsulcca.so` by bare name (so `LD_LIBRARY_PATH` and the
    /// loader cache apply), as `usr/sbin/pkcscca/pkcscca.c: main()` does, and
    /// resolves the verbs of a mode (e.g. [`keys_verbs`]); the first required one
    /// the library lacks is the error. A method whose verb was not resolved
    /// returns a [`CcaError`] for which [`CcaError::is_not_resolved`] holds.
    pub fn open(verbs: &ModeVerbs) -> Result<Csulcca, LoadError> {
        Csulcca::open_name(OsStr::new(Csulcca::LIBRARY), verbs)
    }

    /// Loads the library at `path` and resolves `verbs`, all required.
    #[cfg(feature = "testkit")]
    pub fn open_path(path: &std::path::Path, verbs: &[Verb]) -> Result<Csulcca, LoadError> {
        let verbs = ModeVerbs {
            required: verbs.to_vec(),
            optional: Vec::new(),
        };
        Csulcca::open_name(path.as_os_str(), &verbs)
    }

    fn open_name(name: &OsStr, verbs: &ModeVerbs) -> Result<Csulcca, LoadError> {
        let shown = name.to_string_lossy().into_owned();
        match ffi::Lib::open(name, &verbs.required, &verbs.optional) {
            Ok(lib) => Ok(Csulcca { lib }),
            Err(ffi::OpenError::Open(detail)) => Err(LoadError::Open {
                name: shown,
                detail,
            }),
            Err(ffi::OpenError::Missing { verb, detail }) => Err(LoadError::MissingSymbol {
                name: shown,
                symbol: verb,
                detail,
            }),
        }
    }

    /// CSNBKTC: re-encipher a 64-byte DES or AES DATA token in place.
    pub fn csnbktc(&self, rule: &RuleArray, token: &mut [u8; 64]) -> Result<Status, CcaError> {
        check(Verb::Csnbktc, self.lib.csnbktc(rule.as_bytes(), token))
    }

    /// CSNBKTC2: re-encipher a variable-length AES CIPHER / HMAC token in
    /// place; the vector is truncated to the returned length.
    pub fn csnbktc2(&self, rule: &RuleArray, token: &mut Vec<u8>) -> Result<Status, CcaError> {
        let call = self.lib.ktc_var(false, rule.as_bytes(), token);
        let (st, len) = check_with(Verb::Csnbktc2, call)?;
        token.truncate(len);
        Ok(st)
    }

    /// CSNDKTC: re-encipher a PKA private token in place.
    pub fn csndktc(&self, rule: &RuleArray, token: &mut Vec<u8>) -> Result<Status, CcaError> {
        let call = self.lib.ktc_var(true, rule.as_bytes(), token);
        let (st, len) = check_with(Verb::Csndktc, call)?;
        token.truncate(len);
        Ok(st)
    }

    /// CSUACFQ with `rule`, offering `verb_data_len` bytes of verb data.
    pub fn csuacfq(&self, rule: &RuleArray, verb_data_len: usize) -> Result<Query, CcaError> {
        let call = self
            .lib
            .csuacfq(rule.as_bytes(), verb_data_len)
            .map(|(raw, ra, vd)| (raw, (ra, vd)));
        let (_, (ra, vd)) = check_with(Verb::Csuacfq, call)?;
        let rule_array = rules::parse(&ra, ra.len() / 8).unwrap_or_default();
        Ok(Query {
            rule_array,
            verb_data: vd,
        })
    }

    /// NEW/CURRENT/OLD states and MKVPs of one master-key type: states from
    /// STATCCAE (SYM, ASYM), STATAES or STATAPKA; MKVPs from the STATICSB blocks
    /// with the IDs of `staticsb_ids` (none where the card has no such block).
    pub fn mk_status(&self, t: MkType) -> Result<MkStatus, CcaError> {
        let (kw, first) = match t {
            MkType::Sym => (rules::STATCCAE, 0),
            MkType::Asym => (rules::STATCCAE, 6),
            MkType::Aes => (rules::STATAES, 0),
            MkType::Apka => (rules::STATAPKA, 0),
        };
        let q = self.csuacfq(&RuleArray::new(&[kw]), 0)?;
        let st = |i: usize| state_digit(q.rule_array.get(first + i));
        let (ns, cs, os) = (
            RegisterState::new_register(st(0)),
            RegisterState::current_or_old(st(1)),
            RegisterState::current_or_old(st(2)),
        );
        let icsb = self.csuacfq(&RuleArray::new(&[rules::STATICSB]), 256)?;
        let (ids, len) = staticsb_ids(t);
        let register = |i: usize, state: RegisterState| Register {
            state,
            mkvp: ids
                .get(i)
                .and_then(|&id| staticsb_value(&icsb.verb_data, id, len))
                .filter(|_| matches!(state, RegisterState::Loaded))
                .map(<[u8]>::to_vec),
        };
        Ok(MkStatus {
            old: register(0, os),
            current: register(1, cs),
            new: register(2, ns),
        })
    }

    /// CSNBDEC (rule `CBC`): decipher `ciphertext` with a DES token.
    pub fn csnbdec(&self, key: &[u8; 64], iv: &[u8; 8], data: &[u8]) -> Result<Vec<u8>, CcaError> {
        let call = self
            .lib
            .des_cipher(ffi::DesDirection::Decipher, key, iv, &rules::CBC.0, data);
        Ok(check_with(Verb::Csnbdec, call)?.1)
    }

    /// CSNDPKT: translate a PKA token (e.g. `INTDWAKW`: RSA-CRT → RSA-AESC).
    pub fn csndpkt(&self, rule: &RuleArray, source: &[u8]) -> Result<Vec<u8>, CcaError> {
        let call = self.lib.csndpkt(rule.as_bytes(), source);
        Ok(check_with(Verb::Csndpkt, call)?.1)
    }

    /// CSNDPKX: the external public token of an internal private token.
    pub fn csndpkx(&self, source: &[u8]) -> Result<Vec<u8>, CcaError> {
        Ok(check_with(Verb::Csndpkx, self.lib.csndpkx(source))?.1)
    }
}

/// The verbs only tests, benches and the emulator's tools call (feature
/// `testkit`): master-key loading, key generation, and the usage verbs that
/// prove a re-enciphered key still works.
#[cfg(feature = "testkit")]
impl Csulcca {
    /// CSUACFV: the CCA version string.
    pub fn csuacfv(&self) -> Result<String, CcaError> {
        let (_, buf) = check_with(Verb::Csuacfv, self.lib.csuacfv())?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned())
    }

    /// CSNBMKP: `action` (CLEAR, FIRST, MIDDLE, LAST, SET, RANDOM) on the NEW
    /// register of `t`; `part` is the key part for FIRST/MIDDLE/LAST (at most
    /// 32 bytes, the register size is taken from `t`).
    pub fn csnbmkp(&self, t: MkType, action: Keyword, part: &[u8]) -> Result<Status, CcaError> {
        let mut buf = zeroize::Zeroizing::new([0u8; 32]);
        let n = part.len().min(32);
        if let (Some(d), Some(s)) = (buf.get_mut(..n), part.get(..n)) {
            d.copy_from_slice(s);
        }
        let rule = RuleArray::new(&[t.mkp_keyword(), action]);
        check(Verb::Csnbmkp, self.lib.csnbmkp(rule.as_bytes(), &mut buf))
    }

    /// CSNBENC (rule `CBC`): encipher `data` (a multiple of 8 bytes).
    pub fn csnbenc(&self, key: &[u8; 64], iv: &[u8; 8], data: &[u8]) -> Result<Vec<u8>, CcaError> {
        let call = self
            .lib
            .des_cipher(ffi::DesDirection::Encipher, key, iv, &rules::CBC.0, data);
        Ok(check_with(Verb::Csnbenc, call)?.1)
    }

    /// CSNBSAE (`AES KEYIDENT INITIAL`, CBC without padding).
    pub fn csnbsae(&self, key: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CcaError> {
        let rule = RuleArray::new(&[rules::AES, rules::KEYIDENT, rules::INITIAL]);
        let call = self.lib.aes_cipher(true, key, iv, rule.as_bytes(), data);
        Ok(check_with(Verb::Csnbsae, call)?.1)
    }

    /// CSNBSAD (`AES KEYIDENT INITIAL`).
    pub fn csnbsad(&self, key: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, CcaError> {
        let rule = RuleArray::new(&[rules::AES, rules::KEYIDENT, rules::INITIAL]);
        let call = self.lib.aes_cipher(false, key, iv, rule.as_bytes(), data);
        Ok(check_with(Verb::Csnbsad, call)?.1)
    }

    /// CSNDDSG: the signature of `hash` with a private key token (`rule` e.g.
    /// `PKCS-1.1` for RSA, where `hash` is the DigestInfo to pad).
    pub fn csnddsg(&self, rule: &RuleArray, key: &[u8], hash: &[u8]) -> Result<Vec<u8>, CcaError> {
        let call = self.lib.csnddsg(rule.as_bytes(), key, hash);
        Ok(check_with(Verb::Csnddsg, call)?.1)
    }

    /// CSNDDSV: verifies `signature` over `hash` with a PKA token's public key.
    pub fn csnddsv(
        &self,
        rule: &RuleArray,
        key: &[u8],
        hash: &[u8],
        signature: &[u8],
    ) -> Result<Status, CcaError> {
        let call = self.lib.csnddsv(rule.as_bytes(), key, hash, signature);
        check(Verb::Csnddsv, call)
    }

    /// CSNBKGN with form `OP`: generates an operational key into `token`
    /// (which may hold a skeleton from [`Csulcca::csnbktb`]).
    pub fn csnbkgn(
        &self,
        length: Keyword,
        key_type: Keyword,
        token: &mut [u8; 64],
    ) -> Result<Status, CcaError> {
        let raw = self
            .lib
            .csnbkgn(&Keyword::new("OP").0, &length.0, &key_type.0, token);
        check(Verb::Csnbkgn, raw)
    }

    /// CSNBKTB: builds a 64-byte skeleton token.
    pub fn csnbktb(&self, key_type: Keyword, rule: &RuleArray) -> Result<[u8; 64], CcaError> {
        let mut t = [0u8; 64];
        let raw = self.lib.csnbktb(&key_type.0, rule.as_bytes(), &mut t);
        check(Verb::Csnbktb, raw)?;
        Ok(t)
    }

    /// CSNDPKB: builds a PKA skeleton from a key-value structure.
    pub fn csndpkb(&self, rule: &RuleArray, kvs: &[u8]) -> Result<Vec<u8>, CcaError> {
        let call = self.lib.csndpkb(rule.as_bytes(), kvs);
        Ok(check_with(Verb::Csndpkb, call)?.1)
    }

    /// CSNDPKG (rule `MASTER`): generates a key pair from a skeleton.
    pub fn csndpkg(&self, skeleton: &[u8]) -> Result<Vec<u8>, CcaError> {
        let call = self.lib.csndpkg(&rules::MASTER.0, skeleton);
        Ok(check_with(Verb::Csndpkg, call)?.1)
    }

    /// CSNBKTB2: a keyless AES CIPHER / HMAC skeleton
    /// (e.g. `INTERNAL AES CIPHER NO-KEY ANY-MODE`).
    pub fn csnbktb2(&self, rule: &RuleArray) -> Result<Vec<u8>, CcaError> {
        Ok(check_with(Verb::Csnbktb2, self.lib.csnbktb2(rule.as_bytes()))?.1)
    }

    /// CSNBKGN2 (`AES OP` / `HMAC OP`): a `bits`-bit key into `skeleton`.
    pub fn csnbkgn2(
        &self,
        rule: &RuleArray,
        bits: u32,
        skeleton: &[u8],
    ) -> Result<Vec<u8>, CcaError> {
        let bits = std::os::raw::c_long::from(bits);
        let call = self.lib.csnbkgn2(rule.as_bytes(), bits, skeleton);
        Ok(check_with(Verb::Csnbkgn2, call)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(out: &mut Vec<u8>, id: u16, value: &[u8]) {
        out.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(value);
    }

    #[test]
    fn staticsb_blocks_are_found_by_id_not_offset() {
        let mut vd = Vec::new();
        block(&mut vd, 0x0F01, &[1; 16]);
        block(&mut vd, 0x0F0B, &[0xAB; 8]);
        block(&mut vd, 0x0F0E, &[0xCD; 12]);
        assert_eq!(staticsb_value(&vd, 0x0F0B, 8), Some(&[0xAB; 8][..]));
        assert_eq!(staticsb_value(&vd, 0x0F0E, 8), Some(&[0xCD; 8][..]));
        assert_eq!(staticsb_value(&vd, 0x0F01, 16), Some(&[1; 16][..]));
        // Absent, too short for the pattern, or cut off: no MKVP rather than a wrong one.
        assert_eq!(staticsb_value(&vd, 0x0F0A, 8), None);
        assert_eq!(staticsb_value(&vd, 0x0F0B, 16), None);
        assert_eq!(staticsb_value(&vd[..vd.len() - 1], 0x0F0E, 8), None);
        // A zero block length ends the walk instead of looping.
        let mut bad = vec![0, 0, 0x0F, 0x0B];
        bad.extend_from_slice(&[0xAB; 8]);
        assert_eq!(staticsb_value(&bad, 0x0F0B, 8), None);
    }
}
