//! `-m oldrsakeys`: RSA keys in the old RSA-CRT token format become RSA-AESC, and RSA
//! public key objects that carry a whole private key token keep only its public part.
//!
//! Mirrors `pkcscca.c: migrate_old_rsa_keys()` and `cca_migrate_old_rsa()`, offline
//! like `-m keys` (see [`super`]): one search for `CKK_RSA` with upstream's lines, the
//! keys taken in reverse find order, each internal token with an RSA-CRT `X'08'`
//! section sent to the card (CSNDPKT `INTDWAKW` for private keys: RSA-CRT under the
//! ASYM master key becomes RSA-AESC `X'31'` under the APKA master key; CSNDPKX for
//! public key objects: the external public token `X'1E'`), and the changed objects
//! written in one atomic batch. What the card returns is accepted only if it is the
//! token kind asked for.

use crate::cca::rules::{self, RuleArray};
use crate::cca::token::{self, TokenKind};
use crate::cca::{CcaError, Csulcca, ModeVerbs};
use crate::exit::Exit;
use crate::messages::Output;
use crate::pkcs11::{AttrType, ObjectClass};
use crate::store::{StoreError, StoredObject};

use super::keys::{self, KeyStatus, Tally};
use super::pipeline::{self, Batch, Committed, Context, ModeStep, Setup};
use super::select;

/// Counts of one run, as upstream prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Keys converted (`Successfully migrated: N`).
    pub migrated: u32,
    /// Keys the card refused or answered with something unusable.
    pub failed: u32,
}

/// `-m oldrsakeys` in the [`pipeline`].
#[derive(Default)]
pub(super) struct OldRsaMode {
    unreadable: usize,
    tally: Tally,
    counts: Counts,
}

impl ModeStep for OldRsaMode {
    fn verbs(&self) -> ModeVerbs {
        crate::cca::oldrsakeys_verbs()
    }

    fn begin(&mut self, _cx: &Context<'_>, out: &mut Output<'_>) -> Result<(), Exit> {
        out.pkcs11_initialized();
        Ok(())
    }

    fn convert<'a>(
        &mut self,
        cx: &Context<'a>,
        out: &mut Output<'_>,
    ) -> Result<Batch<'a>, Exit> {
        let (mut objects, unreadable) = super::load_keys(cx.store, cx.mk, out)?;
        self.unreadable = unreadable;
        let (tally, counts, changed) = migrate(cx.lib, &mut objects, out);
        self.tally = tally;
        self.counts = counts;
        Ok(Batch::Objects(super::take_changed(objects, &changed)))
    }

    fn commit_failed(&self, e: StoreError, out: &mut Output<'_>) -> Exit {
        super::replace_failed(e, out)
    }

    fn report(&self, cx: &Context<'_>, done: &Committed, out: &mut Output<'_>) -> Exit {
        if cx.setup.json {
            out.json_document(&json_document(cx.setup, &self.tally, done, self.unreadable));
        } else {
            out.old_rsa_summary(self.counts.migrated, self.counts.failed);
            if cx.setup.dry_run {
                pipeline::dry_run_note(done.rewrite, out);
            }
        }
        if self.counts.failed > 0 || self.unreadable > 0 {
            Exit::KeysFailed
        } else {
            Exit::Success
        }
    }

    fn audit(&self, done: &Committed, record: &mut crate::audit::Record) {
        record.set_counts(&[
            ("converted", self.tally.count(KeyStatus::Migrated)),
            ("failed", self.tally.count(KeyStatus::Failed)),
            ("unreadable", self.unreadable),
            ("rewritten", done.written),
        ]);
    }
}

/// Converts every old RSA key among `objects` (already in find order), updating their
/// `CKA_IBM_OPAQUE` in place. Returns the records, upstream's counts and the indices
/// of the objects that changed.
pub fn migrate(
    lib: &Csulcca,
    objects: &mut [StoredObject],
    out: &mut Output<'_>,
) -> (Tally, Counts, Vec<usize>) {
    let kind = select::old_rsa_search();
    let mut tally = Tally::default();
    let mut counts = Counts::default();
    let mut changed = Vec::new();
    let found = keys::find(&kind, objects, &mut tally, out);
    for f in found.iter().rev() {
        let Some(obj) = objects.get_mut(f.index) else {
            continue;
        };
        let handle = obj.name.as_str().to_string();
        let blob = keys::opaque_of(obj);
        let mkvp = |b: &[u8]| keys::mkvp_of(b).map(|v| crate::cca::hex(&v));
        let mut rec = keys::record(
            obj,
            &kind,
            KeyStatus::Skipped,
            Some(keys::token_name(&blob)),
            mkvp(&blob),
            None,
        );
        if !is_old_rsa(&blob) {
            out.old_rsa_skipping(&f.label, &handle);
            rec.reason = Some("not an internal RSA-CRT (X'08') key token".into());
            tally.keys.push(rec);
            continue;
        }
        let public = obj.template.class() == Some(ObjectClass::PUBLIC_KEY);
        match convert(lib, public, &blob) {
            Ok(new) => {
                out.old_rsa_migrated(&f.label, &handle);
                counts.migrated = counts.migrated.saturating_add(1);
                rec.status = KeyStatus::Migrated;
                rec.mkvp_after = mkvp(&new);
                obj.template.set(AttrType::IBM_OPAQUE, new);
                changed.push(f.index);
            }
            Err(failure) => {
                match &failure {
                    Failure::Damaged(why) => out.error(format_args!(
                        "object {handle}: the key token is damaged: {why}"
                    )),
                    Failure::Card(e) => out.cca_failed(verb_description(public), e.rc, e.reason),
                    Failure::Unusable(why) => out.error(format_args!(
                        "{} returned an unusable token for object {handle}: {why}",
                        verb_description(public)
                    )),
                }
                out.old_rsa_failed(&f.label, &handle);
                counts.failed = counts.failed.saturating_add(1);
                rec.status = KeyStatus::Failed;
                rec.reason = Some(match failure {
                    Failure::Damaged(why) => format!("the key token is damaged: {why}"),
                    Failure::Card(e) => format!("return code {}, reason code {}", e.rc, e.reason),
                    Failure::Unusable(why) => why,
                });
            }
        }
        tally.keys.push(rec);
    }
    (tally, counts, changed)
}

/// `cca_migrate_old_rsa()`'s test: an internal PKA token whose first section is
/// RSA-CRT `X'08'`.
fn is_old_rsa(blob: &[u8]) -> bool {
    blob.len() >= 16 && blob.first() == Some(&0x1F) && blob.get(8) == Some(&0x08)
}

/// The verb and description upstream's `cca_error()` names.
fn verb_description(public: bool) -> &'static str {
    if public {
        "CSNDPKX (Public Key Token Extract)"
    } else {
        "CSNDPKT (PKA Key Translate)"
    }
}

/// Why one key was not converted.
enum Failure {
    /// The token is not what the CCA format defines: not sent to the card.
    Damaged(String),
    /// The card said no.
    Card(CcaError),
    /// The card said yes but returned something else than asked for.
    Unusable(String),
}

/// The converted token: the external public token of a public key object, the
/// RSA-AESC token of a private key.
fn convert(lib: &Csulcca, public: bool, blob: &[u8]) -> Result<Vec<u8>, Failure> {
    // A damaged token is reported, never sent to the card.
    token::check_structure(blob).map_err(|e| Failure::Damaged(e.to_string()))?;
    if public {
        let t = lib.csndpkx(blob).map_err(Failure::Card)?;
        // An external token (`X'1E'`) whose first section is the RSA public key (`X'04'`).
        if t.first() == Some(&0x1E) && t.get(8) == Some(&0x04) {
            Ok(t)
        } else {
            Err(Failure::Unusable(
                "it is not an external RSA public key token".into(),
            ))
        }
    } else {
        let t = lib
            .csndpkt(&RuleArray::new(&[rules::INTDWAKW]), blob)
            .map_err(Failure::Card)?;
        match token::classify(&t) {
            Ok(info) if info.kind == TokenKind::RsaAesc => Ok(t),
            Ok(info) => Err(Failure::Unusable(format!(
                "it is a {:?} token, not RSA-AESC",
                info.kind
            ))),
            Err(e) => Err(Failure::Unusable(format!(
                "it is not an internal key token ({e})"
            ))),
        }
    }
}

fn json_document(setup: &Setup<'_>, tally: &Tally, done: &Committed, unreadable: usize) -> String {
    let keys: Vec<serde_json::Value> = tally.keys.iter().map(super::key_json).collect();
    serde_json::json!({
        "mode": "oldrsakeys",
        "datastore": super::display_path(&setup.target.dir),
        "dry_run": setup.dry_run,
        "backup": done.backup.as_deref().map(super::display_path),
        "keys": keys,
        "summary": {
            "migrated": tally.count(KeyStatus::Migrated),
            "skipped": tally.count(KeyStatus::Skipped),
            "failed": tally.count(KeyStatus::Failed),
            "unreadable_objects": unreadable,
            "objects_to_write": done.rewrite,
            "objects_written": done.written,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_internal_rsa_crt_tokens_are_old() {
        let mut t = vec![0u8; 16];
        t[0] = 0x1F;
        t[8] = 0x08;
        assert!(is_old_rsa(&t));
        assert!(!is_old_rsa(&t[..15]));
        let mut aesc = t.clone();
        aesc[8] = 0x31;
        assert!(!is_old_rsa(&aesc));
        let mut external = t.clone();
        external[0] = 0x1E;
        assert!(!is_old_rsa(&external));
    }
}
