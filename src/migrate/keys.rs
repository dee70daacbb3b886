//! `-m keys`: re-encipher the secure keys of one master key type from the OLD to the
//! CURRENT master key.
//!
//! Mirrors `pkcscca.c: migrate_wrapped_keys()`, `find_wrapped_keys()`, `cca_migrate()`
//! and `key_migration_results()`, offline: objects come from the data store instead of
//! `C_FindObjects`, and changed objects are written back in one atomic batch at the end
//! instead of one `C_SetAttributeValue` per key. The lines printed are upstream's, in
//! upstream's order: per search, the `Found`/`Migratable key found` lines in find order
//! (private token objects, then public ones, each in `OBJ.IDX` order), then the keys
//! in reverse find order (upstream prepends to a list), with the object's file name as
//! the handle.
//!
//! Each token is classified by its MKVP before anything is sent to the card: under the
//! CURRENT master key it is left alone (upstream learns the same by calling the verb
//! and comparing); otherwise the Key Token Change verb runs with `RTCMK`, and its
//! output is accepted only if it is the same kind of internal token, of the same
//! length, now carrying the CURRENT MKVP. A key that fails keeps its original blob.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use crate::cca::rules::{self, Keyword, RuleArray};
use crate::cca::token::{self, MkType, TokenInfo};
use crate::cca::{hex, CcaError, Csulcca, MkStatus, ModeVerbs, RegisterState, Status, Verb};
use crate::cli::KeySelection;
use crate::exit::Exit;
use crate::messages::{KeyCounts, Output, RunCounts};
use crate::pkcs11::{AttrType, KeyType, ObjectClass};
use crate::store::{ObjectName, Staging, StoreError, StoredObject};

use super::pipeline::{Batch, Committed, Context, ModeStep, Setup};
use super::pool::{self, Gate};
use super::select::{self, Algorithm, Handling, KeyKind, RsaFormat};

/// `CKA_HIDDEN` (`CKA_VENDOR_DEFINED + 0x01000000` in openCryptoki): objects the
/// token never lets `C_FindObjects` see.
const CKA_HIDDEN: AttrType = AttrType(0x8100_0000);

/// What happened to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Re-enciphered under the CURRENT master key (written unless `--dry-run`).
    Migrated,
    /// Already under the CURRENT master key: left as it is.
    Current,
    /// Not a key this run handles (public token, other RSA format, no secure key).
    Skipped,
    /// Could not be re-enciphered: its original blob is kept.
    Failed,
}

impl KeyStatus {
    /// The word used in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            KeyStatus::Migrated => "migrated",
            KeyStatus::Current => "current",
            KeyStatus::Skipped => "skipped",
            KeyStatus::Failed => "failed",
        }
    }
}

/// The record of one examined key, for `--json` and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Object file name in `TOK_OBJ` (our stand-in for upstream's handle).
    pub object: String,
    /// `CKA_CLASS`.
    pub class: Option<ObjectClass>,
    /// `CKA_KEY_TYPE`.
    pub key_type: KeyType,
    /// `CKA_LABEL` bytes.
    pub label: Vec<u8>,
    /// Stored encrypted (a private token object).
    pub private: bool,
    /// What the secure key blob holds (`AES DATA`, `RSA-AESC`, two of them for XTS...).
    pub token: String,
    /// MKVP(s) before, in hex.
    pub mkvp_before: Option<String>,
    /// MKVP(s) after, in hex, when the key was migrated or is current.
    pub mkvp_after: Option<String>,
    /// Outcome.
    pub status: KeyStatus,
    /// Why, for skipped and failed keys.
    pub reason: Option<String>,
}

/// Totals of one run, in upstream's counting (current and skipped keys count as
/// migrated, as `cca_migrate()` counts them) and in ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Upstream's "Successfully migrated" counters.
    pub migrated: KeyCounts,
    /// Upstream's "Failed to migrate" counters.
    pub failed: KeyCounts,
    /// Every examined key.
    pub keys: Vec<KeyRecord>,
}

impl Tally {
    /// Number of keys with `status`.
    pub fn count(&self, status: KeyStatus) -> usize {
        self.keys.iter().filter(|k| k.status == status).count()
    }
}

/// The card and what it said about the master key registers of this run's type.
pub struct Card<'a> {
    /// The loaded library.
    pub lib: &'a Csulcca,
    /// The master key type this run re-enciphers to.
    pub mk_type: MkType,
    /// The registers, when the library could report them; `None` falls back to
    /// upstream's way (call the verb, compare input and output).
    pub status: Option<MkStatus>,
    /// Bounds the verbs in flight (`--threads`), when calls come from several threads.
    gate: Option<&'a Gate>,
}

impl Card<'_> {
    fn current_mkvp(&self) -> Option<&[u8]> {
        self.status.as_ref()?.current.loaded_mkvp()
    }

    fn old_mkvp(&self) -> Option<&[u8]> {
        self.status.as_ref()?.old.loaded_mkvp()
    }
}

/// How the verb call for one token ended.
enum TokenOutcome {
    /// Already under CURRENT (by MKVP, or the card returned it unchanged).
    Current,
    /// Re-enciphered: the new token.
    Migrated(Vec<u8>),
    /// Failed.
    Failed(Failure),
}

/// Why one token could not be re-enciphered.
struct Failure {
    /// The verb and its codes, when the card said no.
    cca: Option<CcaError>,
    /// The verb whose output we rejected, when it said yes.
    verb: Option<Verb>,
    /// In words.
    reason: String,
}

/// The description upstream's `cca_error()` calls give each verb.
fn verb_description(verb: Verb) -> &'static str {
    match verb {
        Verb::Csnbktc => "CSNBKTC (Key Token Change)",
        Verb::Csnbktc2 => "CSNBKTC2 (Key Token Change)",
        Verb::Csndktc => "CSNDKTC (Key Token Change)",
        other => other.name(),
    }
}

/// The kind of token in words, for `--json`.
pub(super) fn token_name(blob: &[u8]) -> String {
    match token::classify(blob) {
        Ok(info) => format!("{:?}", info.kind),
        Err(_) => match blob.first() {
            Some(0x1E) => "external PKA".to_string(),
            Some(0x02) => "external".to_string(),
            Some(0x00) => "null".to_string(),
            _ => "unrecognized".to_string(),
        },
    }
}

pub(super) fn mkvp_of(blob: &[u8]) -> Option<Vec<u8>> {
    let info = token::classify(blob).ok()?;
    Some(info.mkvp(blob).to_vec())
}

/// The rule array of the RTCMK call for a token (`cca_migrate_*()`): DES tokens and
/// RSA get `RTCMK` alone, as upstream passes them.
fn rule_for(verb: Verb, kind: &KeyKind) -> RuleArray {
    let alg: Option<Keyword> = match (verb, kind.handling) {
        (Verb::Csnbktc2, Handling::Hmac) => Some(rules::HMAC),
        (Verb::Csnbktc2, _) => Some(rules::AES),
        (Verb::Csnbktc, _) => (kind.algorithm == Algorithm::Aes).then_some(rules::AES),
        _ => match kind.algorithm {
            Algorithm::Rsa => None,
            Algorithm::Ecc => Some(rules::ECC),
            _ => Some(rules::QSA),
        },
    };
    match alg {
        Some(a) => RuleArray::new(&[rules::RTCMK, a]),
        None => RuleArray::new(&[rules::RTCMK]),
    }
}

/// The verb upstream picks for a token of this key kind.
fn verb_for(kind: &KeyKind, blob: &[u8]) -> Verb {
    match kind.handling {
        Handling::Hmac => Verb::Csnbktc2,
        Handling::Asymmetric => Verb::Csndktc,
        Handling::Symmetric => {
            let var = blob.first() == Some(&0x01)
                && blob.get(4) == Some(&0x05)
                && blob.get(41) == Some(&0x02);
            if var {
                Verb::Csnbktc2
            } else {
                Verb::Csnbktc
            }
        }
    }
}

/// Re-enciphers one token (a whole `CKA_IBM_OPAQUE`, or one half of an XTS pair).
fn reencipher(card: &Card<'_>, kind: &KeyKind, blob: &[u8]) -> TokenOutcome {
    let before: Option<TokenInfo> = token::classify(blob).ok();
    if let Some(info) = before {
        // A damaged token is reported, never sent to the card.
        if let Err(e) = token::check_structure(blob) {
            return TokenOutcome::Failed(Failure {
                cca: None,
                verb: None,
                reason: format!("the key token is damaged: {e}"),
            });
        }
        if info.mk_type() != card.mk_type {
            return TokenOutcome::Failed(Failure {
                cca: None,
                verb: None,
                reason: format!(
                    "the token is wrapped by the {} master key, not by the {} master key",
                    info.mk_type(),
                    card.mk_type
                ),
            });
        }
        if let Some(cur) = card.current_mkvp() {
            if cur.get(..info.mkvp_len) == Some(info.mkvp(blob)) {
                return TokenOutcome::Current;
            }
        }
    }
    let verb = verb_for(kind, blob);
    let rule = rule_for(verb, kind);
    let mut out = blob.to_vec();
    let called = {
        let _place = card.gate.map(Gate::enter);
        call_verb(card, verb, &rule, &mut out)
    };
    let called = match called {
        Some(r) => r,
        None => {
            return TokenOutcome::Failed(Failure {
                cca: None,
                verb: None,
                reason: format!("a {}-byte blob is not a 64-byte CCA key token", blob.len()),
            })
        }
    };
    if let Err(e) = called {
        let reason = if e.is_unknown_mk() {
            match mkvp_of(blob) {
                Some(vp) => format!(
                    "the token's MKVP {} matches neither the CURRENT nor the OLD {} master key",
                    hex(&vp),
                    card.mk_type
                ),
                None => "the token matches neither the CURRENT nor the OLD master key".into(),
            }
        } else if e.is_mk_not_loaded() {
            format!(
                "the {} master key is not loaded on the adapter",
                card.mk_type
            )
        } else {
            format!("return code {}, reason code {}", e.rc, e.reason)
        };
        return TokenOutcome::Failed(Failure {
            cca: Some(e),
            verb: Some(verb),
            reason,
        });
    }
    if out == blob {
        return TokenOutcome::Current;
    }
    match validate(card, before, blob, &out) {
        Ok(()) => TokenOutcome::Migrated(out),
        Err(reason) => TokenOutcome::Failed(Failure {
            cca: None,
            verb: Some(verb),
            reason,
        }),
    }
}

/// Calls `verb` of the card on the token `out`, in place; `None` when a CSNBKTC token
/// is not 64 bytes long.
fn call_verb(
    card: &Card<'_>,
    verb: Verb,
    rule: &RuleArray,
    out: &mut Vec<u8>,
) -> Option<Result<Status, CcaError>> {
    Some(match verb {
        Verb::Csnbktc => match <&mut [u8; 64]>::try_from(out.as_mut_slice()) {
            Ok(fixed) => card.lib.csnbktc(rule, fixed),
            Err(_) => return None,
        },
        Verb::Csnbktc2 => card.lib.csnbktc2(rule, out),
        _ => card.lib.csndktc(rule, out),
    })
}

/// Checks what the library returned before it may replace a key: the same kind of
/// internal token, the same length, now under the CURRENT master key.
fn validate(
    card: &Card<'_>,
    before: Option<TokenInfo>,
    input: &[u8],
    output: &[u8],
) -> Result<(), String> {
    if output.len() != input.len() {
        return Err(format!(
            "it returned a token of {} bytes for one of {}",
            output.len(),
            input.len()
        ));
    }
    let after = token::classify(output)
        .map_err(|e| format!("it returned something that is not an internal key token ({e})"))?;
    if let Some(b) = before {
        if b.kind != after.kind {
            return Err(format!(
                "it returned a {:?} token for a {:?} token",
                after.kind, b.kind
            ));
        }
    }
    if after.kind.has_tvv() && !token::tvv_valid(output) {
        return Err("it returned a token with an invalid token validation value".into());
    }
    if let Some(cur) = card.current_mkvp() {
        if cur.get(..after.mkvp_len) != Some(after.mkvp(output)) {
            return Err(format!(
                "it returned a token under MKVP {}, not under the CURRENT master key {}",
                hex(after.mkvp(output)),
                hex(cur)
            ));
        }
    } else if let Some(old) = card.old_mkvp() {
        if old.get(..after.mkvp_len) == Some(after.mkvp(output)) {
            return Err("it returned the token still under the OLD master key".into());
        }
    }
    Ok(())
}

/// The run's choice for a key before any verb: skip it (with upstream's line), or go.
enum Precheck {
    Public,
    NotOldRsa,
    NotNewRsa,
    Go,
}

/// `cca_migrate_asymmetric()`'s checks, in its order.
fn precheck(kind: &KeyKind, blob: &[u8]) -> Precheck {
    if kind.handling != Handling::Asymmetric {
        return Precheck::Go;
    }
    if blob.len() < 16 || blob.first() == Some(&0x1E) {
        return Precheck::Public;
    }
    let internal = blob.first() == Some(&0x1F);
    let section = blob.get(8).copied();
    match kind.rsa {
        Some(RsaFormat::Old) if !(internal && section == Some(0x08)) => Precheck::NotOldRsa,
        Some(RsaFormat::New) if !(internal && matches!(section, Some(0x30 | 0x31))) => {
            Precheck::NotNewRsa
        }
        _ => Precheck::Go,
    }
}

/// One key found by a search.
pub(super) struct Found {
    /// Index of the object in the run's object list.
    pub(super) index: usize,
    /// Its `CKA_LABEL`.
    pub(super) label: Vec<u8>,
}

/// The object's `CKA_LABEL` (empty when absent).
fn label_of(obj: &StoredObject) -> Vec<u8> {
    obj.template
        .get(AttrType::LABEL)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// A copy of the object's secure key blob, `CKA_IBM_OPAQUE` (empty when absent).
pub(super) fn opaque_of(obj: &StoredObject) -> Vec<u8> {
    obj.template
        .get(AttrType::IBM_OPAQUE)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// How the card work for one key ended.
enum KeyWork {
    /// Every token of the blob is under the CURRENT master key already.
    Unchanged,
    /// The blob with its tokens re-enciphered.
    Changed(Vec<u8>),
    /// The first token that could not be re-enciphered.
    Failed(Failure),
}

/// The card work of one key: each token of the blob (two for AES XTS) goes through
/// [`reencipher`], stopping at the first failure. Runs on the pool's threads: it
/// calls verbs and prints nothing.
fn card_work(card: &Card<'_>, kind: &KeyKind, blob: &[u8]) -> KeyWork {
    let mut new_blob = blob.to_vec();
    let mut any_changed = false;
    for r in halves(kind, blob) {
        let part = blob.get(r.clone()).unwrap_or(&[]);
        match reencipher(card, kind, part) {
            TokenOutcome::Current => {}
            TokenOutcome::Migrated(t) => {
                // `validate` accepted only a token of the same length.
                if let Some(dst) = new_blob.get_mut(r).filter(|d| d.len() == t.len()) {
                    dst.copy_from_slice(&t);
                    any_changed = true;
                }
            }
            TokenOutcome::Failed(f) => return KeyWork::Failed(f),
        }
    }
    if any_changed {
        KeyWork::Changed(new_blob)
    } else {
        KeyWork::Unchanged
    }
}

/// Whether a search of `kind` finds `obj` (`find_wrapped_keys()`'s template: the key
/// type, a token object, not hidden).
fn found_by(kind: &KeyKind, obj: &StoredObject) -> bool {
    obj.template.key_type() == Some(kind.key_type) && searchable(obj)
}

/// Whether any search can find `obj`: a token object the token does not hide.
pub(super) fn searchable(obj: &StoredObject) -> bool {
    obj.template.get_bool(AttrType::TOKEN) != Some(false)
        && obj.template.get_bool(CKA_HIDDEN) != Some(true)
}

/// The objects a search of `kind` finds, in find order.
fn matches(kind: &KeyKind, objects: &[StoredObject]) -> Vec<usize> {
    objects
        .iter()
        .enumerate()
        .filter(|(_, o)| found_by(kind, o))
        .map(|(i, _)| i)
        .collect()
}

/// One master key type of a run.
struct TypeRun<'a> {
    /// The card, and its registers of this type.
    card: Card<'a>,
    /// The searches of this type, in upstream's order.
    kinds: Vec<KeyKind>,
    /// Its keys may go to the card: the CURRENT master key is loaded (or the card
    /// cannot tell).
    usable: bool,
}

/// What the card did for one object: per type of the run (by index) whose search finds
/// it and whose checks let it go to the card, the result; and, when its new file could
/// not be written, why.
#[derive(Default)]
struct ObjectWork {
    work: Vec<(usize, KeyWork)>,
    stage_error: Option<StoreError>,
}

/// The card work on one object, as soon as it is loaded (on the pool's threads: it
/// calls verbs, prints nothing): its key goes to the card, and a key the card
/// re-enciphered has its new object file written next to the old one (`staging`;
/// none with `--dry-run`). Upstream's lines are printed, and the results applied to
/// the object, afterwards in upstream's order ([`report_type`]).
fn object_work(
    obj: &StoredObject,
    types: &[TypeRun<'_>],
    staging: Option<&Staging<'_>>,
) -> ObjectWork {
    let mut done = ObjectWork::default();
    let Some(blob) = obj.template.get(AttrType::IBM_OPAQUE) else {
        return done;
    };
    for (ti, t) in types.iter().enumerate() {
        let Some(kind) = t.kinds.iter().find(|k| found_by(k, obj)) else {
            continue;
        };
        if !t.usable || !matches!(precheck(kind, blob), Precheck::Go) {
            continue;
        }
        let work = card_work(&t.card, kind, blob);
        if let (KeyWork::Changed(new_blob), Some(staging)) = (&work, staging) {
            let mut new = obj.clone();
            new.template.set(AttrType::IBM_OPAQUE, new_blob.clone());
            if let Err(e) = staging.stage(&new) {
                done.stage_error.get_or_insert(e);
            }
        }
        done.work.push((ti, work));
    }
    done
}

/// The searches of one type over `objects` (in find order) with upstream's lines, the
/// card's results (`works`, by type index `ti` and object) applied in upstream's order:
/// per search, the found lines in find order, then the keys in reverse find order.
/// Returns the tally and the indices of the objects that changed.
fn report_type(
    ti: usize,
    kinds: &[KeyKind],
    objects: &mut [StoredObject],
    works: &mut HashMap<(usize, ObjectName), KeyWork>,
    out: &mut Output<'_>,
) -> (Tally, Vec<usize>) {
    let mut tally = Tally::default();
    let mut changed = Vec::new();
    for kind in kinds {
        let found = find(kind, objects, &mut tally, out);
        for f in found.iter().rev() {
            let Some(obj) = objects.get_mut(f.index) else {
                continue;
            };
            let result = works.remove(&(ti, obj.name));
            if migrate_one(kind, obj, &f.label, result, &mut tally, out) {
                changed.push(f.index);
            }
        }
    }
    (tally, changed)
}

/// One search (`find_wrapped_keys()` and `add_key()`): the token objects of
/// `kind.key_type` in find order, with upstream's verbose lines. A key without
/// `CKA_IBM_OPAQUE` is reported and recorded as skipped in `tally`.
pub(super) fn find(
    kind: &KeyKind,
    objects: &[StoredObject],
    tally: &mut Tally,
    out: &mut Output<'_>,
) -> Vec<Found> {
    if let Some(what) = kind.announce {
        out.search_for(what);
    }
    let matches = matches(kind, objects);
    if kind.upstream || !matches.is_empty() {
        out.found_keys(matches.len() as u64);
    }
    let mut found = Vec::new();
    for &i in &matches {
        let Some(obj) = objects.get(i) else { continue };
        let label = label_of(obj);
        if obj.template.get(AttrType::IBM_OPAQUE).is_none() {
            out.error(format_args!(
                "object {}: {} key without CKA_IBM_OPAQUE is not a CCA secure key; skipped",
                obj.name, kind.type_name
            ));
            tally
                .keys
                .push(record(obj, kind, KeyStatus::Skipped, None, None, None));
            if let Some(r) = tally.keys.last_mut() {
                r.reason = Some("no CKA_IBM_OPAQUE attribute".into());
            }
            continue;
        }
        out.migratable_key_found(kind.type_name, &label, obj.name.as_str());
        found.push(Found { index: i, label });
    }
    found
}

/// A record of `obj`, examined by a search of `kind`.
pub(super) fn record(
    obj: &StoredObject,
    kind: &KeyKind,
    status: KeyStatus,
    token: Option<String>,
    mkvp_before: Option<String>,
    mkvp_after: Option<String>,
) -> KeyRecord {
    KeyRecord {
        object: obj.name.as_str().to_string(),
        class: obj.template.class(),
        key_type: kind.key_type,
        label: label_of(obj),
        private: obj.private,
        token: token.unwrap_or_default(),
        mkvp_before,
        mkvp_after,
        status,
        reason: None,
    }
}

/// The token halves of a blob: two for AES XTS, one otherwise.
fn halves(kind: &KeyKind, blob: &[u8]) -> Vec<std::ops::Range<usize>> {
    token_ranges(Some(kind.key_type), blob)
}

/// Where the key tokens of a `CKA_IBM_OPAQUE` of `key_type` are: two halves for AES XTS
/// (`cca_migrate_symmetric()`), the whole blob otherwise.
pub(super) fn token_ranges(key_type: Option<KeyType>, blob: &[u8]) -> Vec<std::ops::Range<usize>> {
    if key_type == Some(KeyType::AES_XTS) && blob.len() >= 2 && blob.len().is_multiple_of(2) {
        let h = blob.len() / 2;
        vec![0..h, h..blob.len()]
    } else {
        std::iter::once(0..blob.len()).collect()
    }
}

fn joined(blob: &[u8], parts: &[std::ops::Range<usize>], f: impl Fn(&[u8]) -> String) -> String {
    parts
        .iter()
        .map(|r| f(blob.get(r.clone()).unwrap_or(&[])))
        .collect::<Vec<_>>()
        .join("+")
}

/// Prints one key's lines and applies the card's `result` to its object; returns
/// whether its `CKA_IBM_OPAQUE` changed.
fn migrate_one(
    kind: &KeyKind,
    obj: &mut StoredObject,
    label: &[u8],
    result: Option<KeyWork>,
    tally: &mut Tally,
    out: &mut Output<'_>,
) -> bool {
    let handle = obj.name.as_str().to_string();
    let blob = opaque_of(obj);
    let parts = halves(kind, &blob);
    let token = joined(&blob, &parts, token_name);
    let mkvp_hex = |b: &[u8]| mkvp_of(b).map(|v| hex(&v)).unwrap_or_default();
    // External (public) tokens have no MKVP: `null` in --json, not "".
    let before = Some(joined(&blob, &parts, mkvp_hex)).filter(|s| s.chars().any(|c| c != '+'));
    let mut rec = record(obj, kind, KeyStatus::Skipped, Some(token), before, None);

    let skip_line = match precheck(kind, &blob) {
        Precheck::Go => None,
        p => Some(p),
    };
    if let Some(p) = skip_line {
        match p {
            Precheck::Public => {
                out.skipping_public_key(label, &handle);
                rec.reason = Some("public key token: nothing to re-encipher".into());
            }
            Precheck::NotOldRsa => {
                out.skipping_not_old_rsa(label, &handle);
                rec.reason = Some("not an RSA-CRT (X'08') key: use -k apka".into());
            }
            Precheck::NotNewRsa => {
                out.skipping_not_new_rsa(label, &handle);
                rec.reason = Some("not an RSA-AESM/AESC key: use -k asym".into());
            }
            Precheck::Go => {}
        }
        kind.algorithm.bump(&mut tally.migrated);
        tally.keys.push(rec);
        return false;
    }

    let result = result.unwrap_or_else(|| {
        KeyWork::Failed(Failure {
            cca: None,
            verb: None,
            reason: "the key was not sent to the card".into(),
        })
    });
    let new_blob = match result {
        KeyWork::Failed(f) => {
            match (&f.cca, f.verb) {
                (Some(e), _) => out.cca_failed(verb_description(e.verb), e.rc, e.reason),
                (None, Some(v)) => out.error(format_args!(
                    "{} returned an unusable token for object {handle}: {}",
                    verb_description(v),
                    f.reason
                )),
                (None, None) => out.error(format_args!("object {handle}: {}", f.reason)),
            }
            out.key_migration_failed(kind.algorithm.line_name(), label, &handle);
            if f.cca.as_ref().is_some_and(CcaError::is_unknown_mk) {
                out.error(format_args!("object {handle}: {}", f.reason));
            }
            kind.algorithm.bump(&mut tally.failed);
            rec.status = KeyStatus::Failed;
            rec.reason = Some(f.reason);
            tally.keys.push(rec);
            return false;
        }
        KeyWork::Unchanged => None,
        KeyWork::Changed(b) => Some(b),
    };

    out.key_migrated(kind.algorithm.line_name(), label, &handle);
    kind.algorithm.bump(&mut tally.migrated);
    let after = new_blob.as_deref().unwrap_or(&blob);
    rec.mkvp_after = Some(joined(after, &parts, mkvp_hex));
    let changed = match new_blob {
        Some(b) => {
            obj.template.set(AttrType::IBM_OPAQUE, b);
            rec.status = KeyStatus::Migrated;
            true
        }
        None => {
            out.skipping_current_master_key(kind.algorithm.line_name(), label, &handle);
            rec.status = KeyStatus::Current;
            false
        }
    };
    tally.keys.push(rec);
    changed
}

/// `-m keys` in the pipeline (`pipeline.rs`): one master key type, or (`-k all`) each in turn.
pub(super) struct KeysMode {
    selection: KeySelection,
    /// Up to this many verbs in flight at once.
    threads: NonZeroUsize,
    /// The card's registers of each type (in `selection`'s order), when it could
    /// report them.
    status: Vec<(MkType, Option<MkStatus>)>,
    unreadable: usize,
    /// What each type's searches did, in order.
    tallies: Vec<(MkType, Tally)>,
}


impl KeysMode {
    /// The mode for `-k selection`, issuing up to `threads` verbs at once.
    pub(super) fn new(selection: KeySelection, threads: NonZeroUsize) -> Self {
        KeysMode {
            selection,
            threads,
            status: Vec::new(),
            unreadable: 0,
            tallies: Vec::new(),
        }
    }

    /// Every key record of the run, in order.
    fn records(&self) -> impl Iterator<Item = (MkType, &KeyRecord)> {
        self.tallies
            .iter()
            .flat_map(|(t, tally)| tally.keys.iter().map(move |k| (*t, k)))
    }

    fn count(&self, status: KeyStatus) -> usize {
        self.records().filter(|(_, k)| k.status == status).count()
    }
}

impl ModeStep for KeysMode {
    fn verbs(&self) -> ModeVerbs {
        self.selection
            .types()
            .into_iter()
            .map(crate::cca::keys_verbs)
            .fold(ModeVerbs::default(), |all, v| all.union(&v))
    }

    fn begin(&mut self, cx: &Context<'_>, out: &mut Output<'_>) -> Result<(), Exit> {
        out.pkcs11_initialized();
        for mk_type in self.selection.types() {
            let status = match cx.lib.mk_status(mk_type) {
                // One type asked for: a card without its CURRENT master key is
                // refused at once. With `-k all` that is only refused for a type
                // the store holds keys of (see `convert`).
                Ok(s)
                    if s.current.state != RegisterState::Loaded
                        && self.selection != KeySelection::All =>
                {
                    out.no_current_master_key(mk_type);
                    return Err(Exit::NotReady);
                }
                Ok(s) => Some(s),
                Err(e) => {
                    out.verbose_notice(format_args!(
                        "Cannot read the master key registers ({e}); each key goes to the card"
                    ));
                    None
                }
            };
            self.status.push((mk_type, status));
        }
        Ok(())
    }

    fn convert<'a>(
        &mut self,
        cx: &Context<'a>,
        out: &mut Output<'_>,
    ) -> Result<Batch<'a>, Exit> {
        let staging = match cx.setup.dry_run {
            true => None,
            false => Some(
                cx.store
                    .staging(cx.mk)
                    .map_err(|e| super::replace_failed(e, out))?,
            ),
        };
        // Up to --threads verbs in flight; the pool has more threads, so the store is
        // read and written while they wait for the card.
        let gate = Gate::new(self.threads);
        let types: Vec<TypeRun<'_>> = self
            .status
            .iter()
            .map(|(mk_type, status)| TypeRun {
                card: Card {
                    lib: cx.lib,
                    mk_type: *mk_type,
                    status: status.clone(),
                    gate: Some(&gate),
                },
                kinds: select::searches(*mk_type),
                usable: status
                    .as_ref()
                    .is_none_or(|s| s.current.state == RegisterState::Loaded),
            })
            .collect();
        let (loaded, unreadable) = super::load_keys_with(
            cx.store,
            cx.mk,
            pool::threads_around(self.threads),
            |obj| object_work(obj, &types, staging.as_ref()),
            Some("Re-enciphering keys"),
            out,
        )?;
        self.unreadable = unreadable;
        let mut objects = Vec::with_capacity(loaded.len());
        let mut works = HashMap::new();
        let mut stage_error = None;
        for (obj, done) in loaded {
            for (ti, work) in done.work {
                works.insert((ti, obj.name), work);
            }
            if stage_error.is_none() {
                stage_error = done.stage_error;
            }
            objects.push(obj);
        }
        // `-k all`: a type whose CURRENT master key is not loaded cannot take the keys
        // the store holds under it (none went to the card); nothing is written.
        for t in types.iter().filter(|t| !t.usable) {
            if t.kinds.iter().any(|kind| !matches(kind, &objects).is_empty()) {
                out.no_current_master_key(t.card.mk_type);
                return Err(Exit::NotReady);
            }
        }
        let mut changed = Vec::new();
        for (ti, t) in types.iter().enumerate() {
            let (tally, c) = report_type(ti, &t.kinds, &mut objects, &mut works, out);
            if !cx.setup.json {
                out.keys_summary(&tally.migrated, &tally.failed);
            }
            changed.extend(c);
            self.tallies.push((t.card.mk_type, tally));
        }
        if let Some(e) = stage_error {
            return Err(super::replace_failed(e, out));
        }
        Ok(match staging {
            Some(staging) => Batch::Staged(staging),
            None => Batch::Objects(super::take_changed(objects, &changed)),
        })
    }

    fn commit_failed(&self, e: StoreError, out: &mut Output<'_>) -> Exit {
        super::replace_failed(e, out)
    }

    fn report(&self, cx: &Context<'_>, done: &Committed, out: &mut Output<'_>) -> Exit {
        let counts = RunCounts {
            reenciphered: self.count(KeyStatus::Migrated),
            current: self.count(KeyStatus::Current),
            failed: self.count(KeyStatus::Failed),
            unreadable: self.unreadable,
            rewrite: done.rewrite,
            written: done.written,
        };
        if cx.setup.json {
            out.json_document(&json_document(cx.setup, self, &counts, done));
        } else {
            out.run_counts(&counts, cx.setup.dry_run);
        }
        if counts.failed > 0 || self.unreadable > 0 {
            Exit::KeysFailed
        } else {
            Exit::Success
        }
    }

    fn audit(&self, done: &Committed, record: &mut crate::audit::Record) {
        for (t, status) in &self.status {
            record.set_registers(*t, status.as_ref());
        }
        for (t, k) in self.records() {
            if let (KeyStatus::Migrated, Some(from), Some(to)) =
                (k.status, &k.mkvp_before, &k.mkvp_after)
            {
                record.add_moved(t, from, to);
            }
        }
        record.set_counts(&[
            ("reenciphered", self.count(KeyStatus::Migrated)),
            ("current", self.count(KeyStatus::Current)),
            ("failed", self.count(KeyStatus::Failed)),
            ("unreadable", self.unreadable),
            ("rewritten", done.written),
        ]);
    }
}

fn json_document(
    setup: &Setup<'_>,
    mode: &KeysMode,
    counts: &RunCounts,
    done: &Committed,
) -> String {
    use serde_json::{json, Map, Value};
    let upstream = |c: &KeyCounts| -> Value {
        let mut m = Map::new();
        for (name, n) in c.entries() {
            if n > 0 {
                m.insert(name.to_string(), json!(n));
            }
        }
        Value::Object(m)
    };
    let keys: Vec<Value> = mode
        .records()
        .map(|(t, r)| {
            let mut v = super::key_json(r);
            if let Value::Object(m) = &mut v {
                m.insert("mk_type".into(), json!(t.arg_name()));
            }
            v
        })
        .collect();
    let mut migrated = KeyCounts::default();
    let mut failed = KeyCounts::default();
    let mut types = Map::new();
    for (t, tally) in &mode.tallies {
        migrated.add(&tally.migrated);
        failed.add(&tally.failed);
        types.insert(
            t.arg_name().into(),
            json!({
                "migrated": tally.count(KeyStatus::Migrated),
                "current": tally.count(KeyStatus::Current),
                "skipped": tally.count(KeyStatus::Skipped),
                "failed": tally.count(KeyStatus::Failed),
                "upstream_migrated": upstream(&tally.migrated),
                "upstream_failed": upstream(&tally.failed),
            }),
        );
    }
    let doc = json!({
        "mode": "keys",
        "mk_type": mode.selection.name(),
        "datastore": super::display_path(&setup.target.dir),
        "dry_run": setup.dry_run,
        "backup": done.backup.as_deref().map(super::display_path),
        "keys": keys,
        "types": types,
        "summary": {
            "migrated": counts.reenciphered,
            "current": counts.current,
            "skipped": mode.count(KeyStatus::Skipped),
            "failed": counts.failed,
            "unreadable_objects": counts.unreadable,
            "objects_to_write": counts.rewrite,
            "objects_written": counts.written,
            "upstream_migrated": upstream(&migrated),
            "upstream_failed": upstream(&failed),
        },
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::select::searches;

    fn kind_of(mk: MkType, kt: KeyType) -> KeyKind {
        searches(mk)
            .into_iter()
            .find(|k| k.key_type == kt)
            .expect("searched")
    }

    #[test]
    fn public_and_wrong_rsa_tokens_are_prechecked_out() {
        let apka_rsa = kind_of(MkType::Apka, KeyType::RSA);
        let asym_rsa = kind_of(MkType::Asym, KeyType::RSA);
        let mut crt = vec![0u8; 64];
        crt[0] = 0x1F;
        crt[8] = 0x08;
        let mut aesc = crt.clone();
        aesc[8] = 0x31;
        let mut public = crt.clone();
        public[0] = 0x1E;
        assert!(matches!(precheck(&apka_rsa, &crt), Precheck::NotNewRsa));
        assert!(matches!(precheck(&apka_rsa, &aesc), Precheck::Go));
        assert!(matches!(precheck(&asym_rsa, &aesc), Precheck::NotOldRsa));
        assert!(matches!(precheck(&asym_rsa, &crt), Precheck::Go));
        assert!(matches!(precheck(&asym_rsa, &public), Precheck::Public));
        assert!(matches!(precheck(&asym_rsa, &crt[..15]), Precheck::Public));
        let des = kind_of(MkType::Sym, KeyType::DES);
        assert!(matches!(precheck(&des, &public), Precheck::Go));
    }

    #[test]
    fn verb_choice_follows_upstream_byte_test() {
        let aes = kind_of(MkType::Aes, KeyType::AES);
        let mut cipher = vec![0u8; 136];
        cipher[0] = 0x01;
        cipher[4] = 0x05;
        cipher[41] = 0x02;
        assert_eq!(verb_for(&aes, &cipher), Verb::Csnbktc2);
        assert_eq!(verb_for(&aes, &[0x01, 0, 0, 0, 0x04]), Verb::Csnbktc);
        assert_eq!(verb_for(&aes, &[]), Verb::Csnbktc);
        let rule = rule_for(Verb::Csnbktc, &aes);
        assert_eq!(rule.as_bytes(), b"RTCMK   AES     ");
        let des = kind_of(MkType::Sym, KeyType::DES3);
        assert_eq!(rule_for(Verb::Csnbktc, &des).as_bytes(), b"RTCMK   ");
        let rsa = kind_of(MkType::Asym, KeyType::RSA);
        assert_eq!(rule_for(Verb::Csndktc, &rsa).as_bytes(), b"RTCMK   ");
        let ecc = kind_of(MkType::Apka, KeyType::EC);
        assert_eq!(
            rule_for(Verb::Csndktc, &ecc).as_bytes(),
            b"RTCMK   ECC     "
        );
        let hmac = kind_of(MkType::Aes, KeyType::GENERIC_SECRET);
        assert_eq!(
            rule_for(verb_for(&hmac, &[]), &hmac).as_bytes(),
            b"RTCMK   HMAC    "
        );
        let dil = kind_of(MkType::Apka, KeyType::IBM_PQC_DILITHIUM);
        assert_eq!(
            rule_for(Verb::Csndktc, &dil).as_bytes(),
            b"RTCMK   QSA     "
        );
    }

    #[test]
    fn xts_blobs_split_in_two_halves() {
        let xts = kind_of(MkType::Aes, KeyType::AES_XTS);
        assert_eq!(halves(&xts, &[0u8; 128]), vec![0..64, 64..128]);
        let aes = kind_of(MkType::Aes, KeyType::AES);
        assert_eq!(halves(&aes, &[0u8; 64]), vec![0..64]);
    }
}
