//! `-m status` (ours): which master key register of the card each secure key is under.
//!
//! For every object holding a CCA secure key token (`CKA_IBM_OPAQUE` with an internal
//! token; an AES XTS key holds two), private and public, of the selected master key
//! types: the token's MKVP, compared with the NEW, CURRENT and OLD registers the card
//! reports through CSUACFQ. Then, per master key type, the registers and how many keys
//! are under each, and the totals. The exit status says what to do: 0 every key is
//! under CURRENT; 4 ([`Exit::MigrationNeeded`]) some key is under OLD (run `-m keys`)
//! or NEW (a master key change is not finished) and none is lost; 3
//! ([`Exit::KeysLost`]) some key matches no register, or an object could not be read.
//!
//! The mode reads only: it takes no token lock, removes no temporary file or shared
//! memory segment, and is the one mode allowed while pkcsslotd runs or an HSM master
//! key change is pending. An object openCryptoki rewrites in place while it is read
//! may be reported unreadable; run it again.
//!
//! It has its own small flow rather than a place in the one pipeline
//! (`pipeline.rs`), because every step of the pipeline after the login is about
//! writing (stale temporary files, backup, commit, shared memory), its login always
//! yields the store's master key, and its steps assume one; status writes nothing and
//! may run without PINs. Fitting it in would take a flag on each writing step and an
//! optional master key through every mode. What it shares with the writing modes is
//! shared as functions: the target, the PIN check, the object loading in find order,
//! the library loading.

use crate::cca::token;
use crate::cca::{Csulcca, MkStatus, MkType, RegisterState};
use crate::cli::KeySelection;
use crate::exit::Exit;
use crate::messages::{Output, StatusCounts, StatusKey, StatusRegister};
use crate::pin::Pins;
use crate::pkcs11::{AttrType, KeyType};
use crate::store::{StoredObject, TokenStore};

use super::keys::{searchable, token_name, token_ranges};
use crate::cca::hex;
use super::Target;

/// The register a token's MKVP matches, in order of concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reg {
    Current,
    New,
    Old,
    None,
}

impl Reg {
    fn name(self) -> &'static str {
        match self {
            Reg::Current => "CURRENT",
            Reg::New => "NEW",
            Reg::Old => "OLD",
            Reg::None => "none",
        }
    }

    fn json_name(self) -> &'static str {
        match self {
            Reg::Current => "current",
            Reg::New => "new",
            Reg::Old => "old",
            Reg::None => "none",
        }
    }
}

/// One reported key.
struct KeyLine {
    object: String,
    private: bool,
    class: Option<String>,
    key_type: String,
    label: Vec<u8>,
    mk_type: MkType,
    /// Kind of each token (`AesData`, ...).
    tokens: Vec<String>,
    /// MKVP of each token, in hex.
    mkvps: Vec<String>,
    /// The register each token matches.
    registers: Vec<Reg>,
}

impl KeyLine {
    /// The register that matters most: any token under none, else OLD, else NEW.
    fn register(&self) -> Reg {
        self.registers.iter().copied().max().unwrap_or(Reg::None)
    }
}

/// Which register of `status` holds the master key with verification pattern `mkvp`
/// (CURRENT first, then OLD, then NEW).
fn register_of(status: &MkStatus, mkvp: &[u8]) -> Reg {
    let matches = |r: &crate::cca::Register| {
        !mkvp.is_empty()
            && r.loaded_mkvp()
                .is_some_and(|v| v.get(..mkvp.len()) == Some(mkvp))
    };
    if matches(&status.current) {
        Reg::Current
    } else if matches(&status.old) {
        Reg::Old
    } else if matches(&status.new) {
        Reg::New
    } else {
        Reg::None
    }
}

fn state_name(s: RegisterState) -> &'static str {
    match s {
        RegisterState::Empty => "empty",
        RegisterState::Partial => "partial",
        RegisterState::Loaded => "loaded",
        RegisterState::Unknown => "unknown",
    }
}

/// The internal key tokens of a `CKA_IBM_OPAQUE`: two halves for AES XTS, else one.
/// `None` when a token is not an internal key token (a public key token, or bytes
/// that are not a CCA token at all): such an object is not reported.
fn tokens_of(key_type: Option<KeyType>, blob: &[u8]) -> Option<Vec<(&[u8], token::TokenInfo)>> {
    token_ranges(key_type, blob)
        .into_iter()
        .map(|r| {
            let t = blob.get(r)?;
            token::classify(t).ok().map(|info| (t, info))
        })
        .collect()
}

/// The key line of `obj`, if it holds internal key tokens of one of `types`. Objects
/// `-m keys` never looks at (`CKA_HIDDEN`, session objects) are not reported either:
/// the verdict says what `-m keys` would do.
fn key_line(obj: &StoredObject, types: &[(MkType, MkStatus)]) -> Option<KeyLine> {
    if !searchable(obj) {
        return None;
    }
    let blob = obj.template.get(AttrType::IBM_OPAQUE)?;
    let key_type = obj.template.key_type();
    let tokens = tokens_of(key_type, blob)?;
    let mk_type = tokens.first()?.1.mk_type();
    let (_, status) = types.iter().find(|(t, _)| *t == mk_type)?;
    let mut line = KeyLine {
        object: obj.name.as_str().to_string(),
        private: obj.private,
        class: obj
            .template
            .class()
            .map(|c| c.name().map_or_else(|| c.to_string(), str::to_string)),
        key_type: key_type.map_or_else(
            || "-".to_string(),
            |k| k.name().map_or_else(|| k.to_string(), str::to_string),
        ),
        label: obj
            .template
            .get(AttrType::LABEL)
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        mk_type,
        tokens: Vec::new(),
        mkvps: Vec::new(),
        registers: Vec::new(),
    };
    for (t, info) in tokens {
        let mkvp = info.mkvp(t);
        line.tokens.push(token_name(t));
        line.mkvps.push(hex(mkvp));
        // A second token under another master key type matches none of its registers.
        line.registers.push(if info.mk_type() == mk_type {
            register_of(status, mkvp)
        } else {
            Reg::None
        });
    }
    Some(line)
}

/// Reads the objects without a PIN: public ones only (private ones are counted).
fn load_public(
    store: &TokenStore,
    out: &mut Output<'_>,
) -> Result<(Vec<StoredObject>, usize), Exit> {
    let names = super::index_names(store, out)?;
    let mut objects = Vec::new();
    let mut unreadable = 0usize;
    for name in names {
        let decoded = store.read_object_bytes(name).and_then(|bytes| {
            match TokenStore::object_is_private(&bytes) {
                Some(true) => Ok(None),
                _ => store.decode_object_bytes(name, bytes, None).map(Some),
            }
        });
        match decoded {
            Ok(Some(o)) => objects.push(o),
            Ok(None) => {}
            Err(e) if e.is_wrong_file_type() => {
                out.error(e);
                return Err(Exit::StoreUnreadable);
            }
            Err(e) => {
                out.error(e);
                unreadable += 1;
            }
        }
    }
    Ok((objects, unreadable))
}

/// Runs `-m status` on the store of `target`; without `pins`, public objects only.
pub(super) fn run(
    target: &Target,
    selection: KeySelection,
    json: bool,
    lib: &Csulcca,
    pins: Option<Pins>,
    out: &mut Output<'_>,
) -> Exit {
    run_inner(target, selection, json, lib, pins, out).unwrap_or_else(|e| e)
}

fn run_inner(
    target: &Target,
    selection: KeySelection,
    json: bool,
    lib: &Csulcca,
    pins: Option<Pins>,
    out: &mut Output<'_>,
) -> Result<Exit, Exit> {
    let store = TokenStore::open(&target.dir).map_err(|e| {
        out.error(e);
        Exit::NoToken
    })?;
    let private_read = pins.is_some();
    let mk = match &pins {
        Some(p) => Some(super::login(&store, p, out)?),
        None => None,
    };
    drop(pins);
    let mut types = Vec::new();
    for t in selection.types() {
        match lib.mk_status(t) {
            Ok(s) => types.push((t, s)),
            Err(e) => {
                out.error(format_args!(
                    "cannot read the {t} master key registers of the CCA adapter: {e}"
                ));
                return Err(Exit::NotReady);
            }
        }
    }
    for (t, s) in &types {
        for (name, r) in [("CURRENT", &s.current), ("OLD", &s.old), ("NEW", &s.new)] {
            if r.state == RegisterState::Loaded && r.mkvp.is_none() {
                out.error(format_args!(
                    "warning: the CCA adapter did not report the MKVP of its {name} {t} \
                     master key: no key can be matched to that register"
                ));
            }
        }
    }
    let (objects, unreadable) = match &mk {
        Some(mk) => super::load_in_find_order(&store, mk, out)?,
        None => load_public(&store, out)?,
    };
    drop(mk);
    let pending = objects
        .iter()
        .filter(|o| o.template.get(AttrType::IBM_OPAQUE_REENC).is_some())
        .count();
    if pending > 0 {
        out.error(format_args!(
            "warning: {pending} object(s) hold CKA_IBM_OPAQUE_REENC: an HSM master key \
             change (pkcshsm_mk_change) is in progress; the tokens reported are those of \
             CKA_IBM_OPAQUE"
        ));
    }
    // In -k order (sym, aes, apka, asym for all), each type's keys in find order.
    let mut keys: Vec<KeyLine> = Vec::new();
    for (t, _) in &types {
        keys.extend(
            objects
                .iter()
                .filter_map(|o| key_line(o, &types))
                .filter(|k| k.mk_type == *t),
        );
    }
    let count = |t: Option<MkType>, r: Reg| {
        keys.iter()
            .filter(|k| t.is_none_or(|t| k.mk_type == t) && k.register() == r)
            .count()
    };
    let counts = StatusCounts {
        keys: keys.len(),
        current: count(None, Reg::Current),
        old: count(None, Reg::Old),
        new: count(None, Reg::New),
        none: count(None, Reg::None),
        unreadable,
    };
    let exit = if counts.none > 0 || counts.unreadable > 0 {
        Exit::KeysLost
    } else if counts.old > 0 || counts.new > 0 {
        Exit::MigrationNeeded
    } else {
        Exit::Success
    };
    if !private_read {
        out.status_public_only();
    }
    if json {
        let doc = json_document(target, selection, private_read, &keys, &types, &counts, exit);
        out.json_document(&doc);
        return Ok(exit);
    }
    let joined_regs: Vec<String> = keys
        .iter()
        .map(|k| {
            k.registers
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    let joined_mkvps: Vec<String> = keys.iter().map(|k| k.mkvps.join("+")).collect();
    let lines: Vec<StatusKey<'_>> = keys
        .iter()
        .zip(joined_regs.iter().zip(&joined_mkvps))
        .map(|(k, (reg, mkvp))| StatusKey {
            object: &k.object,
            private: k.private,
            key_type: &k.key_type,
            mk_type: k.mk_type.name(),
            mkvp,
            register: reg,
            label: &k.label,
        })
        .collect();
    out.status_keys(&lines);
    let hexes: Vec<[String; 3]> = types
        .iter()
        .map(|(_, s)| {
            [&s.new, &s.current, &s.old].map(|r| r.loaded_mkvp().map_or("-".into(), hex))
        })
        .collect();
    let counted: Vec<[usize; 4]> = types
        .iter()
        .map(|(t, _)| {
            [Reg::New, Reg::Current, Reg::Old, Reg::None].map(|r| count(Some(*t), r))
        })
        .collect();
    let mut registers = Vec::new();
    for (((t, s), hex), n) in types.iter().zip(&hexes).zip(&counted) {
        let [hex_new, hex_cur, hex_old] = hex;
        let [n_new, n_cur, n_old, n_none] = *n;
        for (reg, state, mkvp, keys) in [
            ("NEW", state_name(s.new.state), hex_new.as_str(), n_new),
            ("CURRENT", state_name(s.current.state), hex_cur.as_str(), n_cur),
            ("OLD", state_name(s.old.state), hex_old.as_str(), n_old),
            ("none", "-", "-", n_none),
        ] {
            registers.push(StatusRegister {
                mk_type: t.name(),
                register: reg,
                state,
                mkvp,
                keys,
            });
        }
    }
    out.status_registers(&registers);
    let old_types: Vec<&str> = types
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| count(Some(*t), Reg::Old) > 0)
        .map(MkType::arg_name)
        .collect();
    out.status_summary(&counts, &old_types);
    Ok(exit)
}

fn json_document(
    target: &Target,
    selection: KeySelection,
    private_read: bool,
    keys: &[KeyLine],
    types: &[(MkType, MkStatus)],
    counts: &StatusCounts,
    exit: Exit,
) -> String {
    use serde_json::{json, Map, Value};
    let register = |r: &crate::cca::Register| {
        json!({"state": state_name(r.state), "mkvp": r.loaded_mkvp().map(hex)})
    };
    let mut registers = Map::new();
    for (t, s) in types {
        let n = |r: Reg| {
            keys.iter()
                .filter(|k| k.mk_type == *t && k.register() == r)
                .count()
        };
        registers.insert(
            t.arg_name().into(),
            json!({
                "new": register(&s.new),
                "current": register(&s.current),
                "old": register(&s.old),
                "keys": {
                    "new": n(Reg::New),
                    "current": n(Reg::Current),
                    "old": n(Reg::Old),
                    "none": n(Reg::None),
                },
            }),
        );
    }
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "object": k.object,
                "private": k.private,
                "class": k.class,
                "key_type": k.key_type,
                "label": String::from_utf8_lossy(&k.label),
                "mk_type": k.mk_type.arg_name(),
                "register": k.register().json_name(),
                "tokens": k.tokens.iter().zip(&k.mkvps).zip(&k.registers).map(
                    |((token, mkvp), reg)| json!({
                        "token": token, "mkvp": mkvp, "register": reg.json_name()
                    })
                ).collect::<Vec<_>>(),
            })
        })
        .collect();
    let verdict = match exit {
        Exit::Success => "current",
        Exit::MigrationNeeded => "migration-needed",
        _ => "keys-lost",
    };
    json!({
        "mode": "status",
        "mk_type": selection.name(),
        "datastore": super::display_path(&target.dir),
        "private_objects_read": private_read,
        "keys": keys,
        "registers": registers,
        "summary": {
            "keys": counts.keys,
            "current": counts.current,
            "old": counts.old,
            "new": counts.new,
            "none": counts.none,
            "unreadable_objects": counts.unreadable,
            "verdict": verdict,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cca::Register;

    fn reg(mkvp: Option<&[u8]>) -> Register {
        Register {
            state: if mkvp.is_some() {
                RegisterState::Loaded
            } else {
                RegisterState::Empty
            },
            mkvp: mkvp.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn registers_are_matched_current_first_and_an_empty_mkvp_matches_none() {
        let s = MkStatus {
            new: reg(Some(&[3; 8])),
            current: reg(Some(&[1; 8])),
            old: reg(Some(&[1; 8])),
        };
        assert_eq!(register_of(&s, &[1; 8]), Reg::Current);
        assert_eq!(register_of(&s, &[3; 8]), Reg::New);
        assert_eq!(register_of(&s, &[9; 8]), Reg::None);
        assert_eq!(register_of(&s, &[]), Reg::None);
        let s = MkStatus {
            new: reg(None),
            current: reg(Some(&[1; 16])),
            old: reg(Some(&[2; 16])),
        };
        assert_eq!(register_of(&s, &[2; 16]), Reg::Old);
        // The worst token decides the key's register.
        assert!(Reg::None > Reg::Old && Reg::Old > Reg::New && Reg::New > Reg::Current);
    }
}
