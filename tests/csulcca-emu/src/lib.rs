//! `libcsulcca.so` in software: an emulated IBM CCA coprocessor for tests.
//!
//! There is no CCA card on our machines, so this library stands in for the
//! CCA host library that openCryptoki's CCA token (3.8.1 and current) and
//! `pkcscca` load with `dlopen("libcsulcca.so")`. It keeps real master-key
//! registers ([`state`]), reads key tokens with its own parser ([`layout`],
//! independent of pkcscca's classifier so that it can serve as an oracle for
//! it), builds them with real cryptography ([`crypto`], [`tokens`]) and
//! implements the verbs those callers need ([`verbs`]; rule arrays in
//! [`keyword`], multi-part hashing in [`hash`]); every other verb of the 102
//! exported names answers 16/336 ("component error"). The C entry points
//! live in [`exports`], the only unsafe code, where each body runs under
//! `catch_unwind`. Test knobs for latency, fault injection and call
//! statistics are in [`knobs`]. See the crate README for what is faithful
//! to a card and what is an emulator choice.
//!
//! From pkcscca the emulator takes only the verb table (`cca_verb_table!`,
//! `cca::abi`, `cca::Verb`), the C signatures it must export; its sample
//! tool also uses pkcscca's test-kit store creation.

pub mod crypto;
pub mod exports;
pub mod hash;
pub mod keyword;
pub mod knobs;
pub mod layout;
pub mod state;
pub mod tokens;
pub mod verbs;

pub use state::MkType;

/// A CCA failure: return code and reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fail {
    /// Return code (4, 8, 12 or 16).
    pub rc: i64,
    /// Reason code.
    pub reason: i64,
}

impl Fail {
    /// A failure with `rc`/`reason`.
    pub const fn new(rc: i64, reason: i64) -> Fail {
        Fail { rc, reason }
    }
}

/// Return/reason codes the emulator answers. Where IBM's CCA reference
/// documents a code for the situation it is used; the codes marked
/// *emulator choice* stand where the real code is not known.
pub mod codes {
    use super::Fail;
    /// 0/0: success.
    pub const OK: Fail = Fail::new(0, 0);
    /// 4/429: a digital signature or MAC did not verify.
    pub const BAD_SIGNATURE: Fail = Fail::new(4, 429);
    /// 8/1: the padding of deciphered text is not valid (*emulator choice*).
    pub const BAD_PADDING: Fail = Fail::new(8, 1);
    /// 8/2: the role named is not known to the adapter.
    pub const UNKNOWN_ROLE: Fail = Fail::new(8, 2);
    /// 8/29: internal token's TVV invalid.
    pub const BAD_TVV: Fail = Fail::new(8, 29);
    /// 8/33: rule-array keyword not valid.
    pub const BAD_KEYWORD: Fail = Fail::new(8, 33);
    /// 8/34: keyword combination not valid.
    pub const BAD_COMBINATION: Fail = Fail::new(8, 34);
    /// 8/35: rule-array count not valid.
    pub const BAD_COUNT: Fail = Fail::new(8, 35);
    /// 8/43: key length keyword / value not valid.
    pub const BAD_KEY_LENGTH: Fail = Fail::new(8, 43);
    /// 8/47: source token unusable (*emulator choice* for a token whose kind
    /// does not match the verb or whose payload does not unwrap).
    pub const UNUSABLE: Fail = Fail::new(8, 47);
    /// 8/48: MKVP matches no usable master key.
    pub const UNKNOWN_MK: Fail = Fail::new(8, 48);
    /// 8/66: PKCS #1 block of deciphered data not valid (*emulator choice*).
    pub const BAD_PKCS1_BLOCK: Fail = Fail::new(8, 66);
    /// 8/72: a buffer or length too small (*emulator choice*).
    pub const SHORT_BUFFER: Fail = Fail::new(8, 72);
    /// 8/121: RSA key size refused by the generator (*emulator choice*: the
    /// code openCryptoki maps to `CKR_KEY_SIZE_RANGE`).
    pub const KEY_SIZE: Fail = Fail::new(8, 121);
    /// 8/704: SET would make CURRENT a NEW key whose MKVP equals CURRENT's or
    /// OLD's (*emulator choice*).
    pub const DUPLICATE_MK: Fail = Fail::new(8, 704);
    /// 8/760: CSNDPKB key size not supported.
    pub const PKB_KEY_SIZE: Fail = Fail::new(8, 760);
    /// 8/2034: MIDDLE or LAST without FIRST, or SET without a full NEW
    /// register (*emulator choice*).
    pub const NMK_STATE: Fail = Fail::new(8, 2034);
    /// 12/338: the coprocessor is not available: an unknown device was
    /// named, or (*emulator choice*) the state file cannot be read or
    /// written.
    pub const NOT_AVAILABLE: Fail = Fail::new(12, 338);
    /// 12/764: the needed master key is not loaded.
    pub const MK_NOT_LOADED: Fail = Fail::new(12, 764);
    /// 16/336: component error (also: verb not emulated, panic caught).
    pub const COMPONENT: Fail = Fail::new(16, 336);
}
