//! `libcsulcca.so` in software: an emulated IBM CCA coprocessor for tests.
//!
//! There is no CCA card on our machines, so this library stands in for the
//! CCA host library that openCryptoki's CCA token (3.8.1 and current) and
//! `pkcscca` load with `dlopen("libcsulcca.so")`. It keeps real master-key
//! registers ([`state`]), emits the token layouts of `cca.md` §1–2 with real
//! cryptography ([`crypto`], [`tokens`]) and implements the verbs those
//! callers need ([`verbs`]; multi-part hashing in [`hash`]); every other verb of the 102 exported names
//! answers 16/336 ("component error"). The C entry points live in
//! [`exports`], the only unsafe code, where each body runs under
//! `catch_unwind`. Test knobs for latency and fault injection are in
//! [`knobs`]. See the crate README for what is faithful to a card and what
//! is an emulator choice.

pub mod crypto;
pub mod exports;
pub mod hash;
pub mod knobs;
pub mod state;
pub mod tokens;
pub mod verbs;

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

/// Return/reason codes the emulator uses (cca.md §5).
pub mod codes {
    use super::Fail;
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
    /// 8/47: source token unusable.
    pub const UNUSABLE: Fail = Fail::new(8, 47);
    /// 8/48: MKVP matches no usable master key.
    pub const UNKNOWN_MK: Fail = Fail::new(8, 48);
    /// 8/72: a buffer or length too small (*emulator choice*).
    pub const SHORT_BUFFER: Fail = Fail::new(8, 72);
    /// 8/760: CSNDPKB key size not supported.
    pub const PKB_KEY_SIZE: Fail = Fail::new(8, 760);
    /// 12/764: the needed master key is not loaded.
    pub const MK_NOT_LOADED: Fail = Fail::new(12, 764);
    /// 16/336: component error (also: verb not emulated, panic caught).
    pub const COMPONENT: Fail = Fail::new(16, 336);
}
