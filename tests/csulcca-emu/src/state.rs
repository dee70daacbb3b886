//! Master-key registers of the emulated adapter and their persistence.
//!
//! Per master-key type (SYM 24 bytes, ASYM 24, AES 32, APKA 32) the card has
//! NEW (state 1 empty / 2 partial / 3 full), CURRENT and OLD (1 empty / 2
//! valid) registers, as IBM's CCA reference describes the master-key
//! registers of a coprocessor domain. They live in a small text file named by
//! `CSULCCA_EMU_STATE` (default [`DEFAULT_STATE_PATH`]) so that separate
//! processes (tests, openCryptoki, pkcscca, the admin tool) see one card.
//! A change takes an exclusive `flock` on a sibling `.lock` file, reads the
//! file, and writes the new registers to a temporary file that is renamed
//! over the old one, so a reader sees either the old file or the new one,
//! whole. Without a file, the registers come from `CSULCCA_EMU_SEED`
//! (default [`DEFAULT_SEED`]): every CURRENT valid, NEW and OLD empty.
//!
//! Reading is cached per process, so that the emulator does not dominate
//! what a benchmark measures: a verb call costs one `stat` of the state file,
//! and the file is read again (under a shared `flock`) only when its device,
//! inode, size, modification or change time differ from the copy in memory.
//! Every change made through [`Store::update`] renames a new file into place,
//! so it has a new inode and the next verb call in any process sees it; the
//! cache keeps the file it read open, so that its inode number cannot be
//! reused for a newer file meanwhile. (A change written in place, not by
//! rename, is seen once its size or timestamps differ.) The cache is shared
//! by all threads; verbs may be called from several threads at once.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codes::*;
use crate::keyword::{self, Keyword};
use crate::Fail;

/// The four master-key types of a CCA coprocessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MkType {
    /// SYM (DES) master key, 24 bytes: wraps DES tokens.
    Sym,
    /// ASYM (RSA) master key, 24 bytes: wraps the OPK of RSA-CRT sections.
    Asym,
    /// AES master key, 32 bytes: wraps AES DATA, AES CIPHER and HMAC tokens.
    Aes,
    /// APKA master key, 32 bytes: wraps the OPK of ECC, RSA-AESM, RSA-AESC
    /// and QSA sections.
    Apka,
}

impl MkType {
    /// The four types, in the order the registers are listed.
    pub const ALL: [MkType; 4] = [MkType::Sym, MkType::Asym, MkType::Aes, MkType::Apka];

    /// Register size in bytes.
    pub fn key_len(self) -> usize {
        match self {
            MkType::Sym | MkType::Asym => 24,
            MkType::Aes | MkType::Apka => 32,
        }
    }

    /// The type's name, upper case (`SYM`, `ASYM`, `AES`, `APKA`).
    pub fn name(self) -> &'static str {
        match self {
            MkType::Sym => "SYM",
            MkType::Asym => "ASYM",
            MkType::Aes => "AES",
            MkType::Apka => "APKA",
        }
    }

    /// The type named `s`, in any case.
    pub fn from_name(s: &str) -> Option<MkType> {
        MkType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// The register-class keyword of CSNBMKP.
    pub fn keyword(self) -> Keyword {
        match self {
            MkType::Sym => keyword::SYM_MK,
            MkType::Asym => keyword::ASYM_MK,
            MkType::Aes => keyword::AES_MK,
            MkType::Apka => keyword::APKA_MK,
        }
    }
}

impl std::fmt::Display for MkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// State file used when `CSULCCA_EMU_STATE` is not set.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/csulcca-emu/state";
/// Seed used when `CSULCCA_EMU_SEED` is not set.
pub const DEFAULT_SEED: &str = "csulcca-emu";
const MAGIC: &str = "csulcca-emu-state 1";
/// Mode of the state and lock files, set explicitly (not subject to the
/// umask): readable and writable by the owner and the group, so the
/// openCryptoki token group can use the card created by another user.
pub const STATE_MODE: u32 = 0o660;

/// The verification pattern the emulator computes for a master key. AES and
/// APKA (CCA's SHA-256 method): first 8 bytes of SHA-256(`01` ‖ MK);
/// SYM (CCA's SHA-1 method): first 8 bytes of SHA-1(`01` ‖ MK) (the z/OS method for K1 = K3 is
/// not implemented); ASYM (*emulator choice*, not MDC-4): first 16 bytes of
/// SHA-256(`02` ‖ MK).
pub fn mkvp(t: MkType, key: &[u8]) -> Vec<u8> {
    match t {
        MkType::Sym => {
            let mut h = Sha1::new();
            h.update([1u8]);
            h.update(key);
            h.finalize().iter().take(8).copied().collect()
        }
        MkType::Asym => {
            let mut h = Sha256::new();
            h.update([2u8]);
            h.update(key);
            h.finalize().iter().take(16).copied().collect()
        }
        MkType::Aes | MkType::Apka => {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(key);
            h.finalize().iter().take(8).copied().collect()
        }
    }
}

/// One register: a state digit and (when not empty) the key value. The
/// default is an empty register (state 1).
#[derive(Clone)]
pub struct Register {
    /// State digit (1 empty; NEW 2 partial, 3 full; CURRENT/OLD 2 valid).
    pub state: u8,
    /// Key value; empty when the register is empty.
    pub value: Zeroizing<Vec<u8>>,
}

impl Default for Register {
    fn default() -> Register {
        Register::empty()
    }
}

impl Register {
    /// An empty register (state 1).
    pub fn empty() -> Register {
        Register {
            state: 1,
            value: Zeroizing::new(Vec::new()),
        }
    }

    /// True when CURRENT/OLD is valid (state 2) or NEW is full (state 3)
    /// — i.e. the register holds a usable key.
    pub fn valid(&self) -> bool {
        self.state >= 2 && !self.value.is_empty()
    }
}

/// NEW, CURRENT and OLD registers of one master-key type.
#[derive(Clone, Default)]
pub struct MkSet {
    /// NEW register.
    pub new: Register,
    /// CURRENT register.
    pub cur: Register,
    /// OLD register.
    pub old: Register,
}

impl MkSet {
    /// MKVP of CURRENT, if valid.
    pub fn cur_vp(&self, t: MkType) -> Option<Vec<u8>> {
        (self.cur.state == 2 && !self.cur.value.is_empty()).then(|| mkvp(t, &self.cur.value))
    }
    /// MKVP of OLD, if valid.
    pub fn old_vp(&self, t: MkType) -> Option<Vec<u8>> {
        (self.old.state == 2 && !self.old.value.is_empty()).then(|| mkvp(t, &self.old.value))
    }
    /// MKVP of NEW, if full.
    pub fn new_vp(&self, t: MkType) -> Option<Vec<u8>> {
        (self.new.state == 3 && !self.new.value.is_empty()).then(|| mkvp(t, &self.new.value))
    }
}

/// Every register of the emulated adapter.
#[derive(Clone, Default)]
pub struct State {
    sym: MkSet,
    asym: MkSet,
    aes: MkSet,
    apka: MkSet,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses hex text (no separators) into bytes.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// What CSNBMKP (or the admin tool) asks of the NEW register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MkAction {
    /// Empty NEW.
    Clear,
    /// Replace NEW with the part (state 2).
    First,
    /// XOR the part into NEW (state stays 2).
    Middle,
    /// XOR the part into NEW and mark it full (state 3).
    Last,
    /// Fill NEW with a random key (state 3).
    Random,
    /// OLD := CURRENT, CURRENT := NEW, NEW := empty.
    Set,
}

impl State {
    /// The deterministic initial state for `seed`: every CURRENT valid.
    pub fn from_seed(seed: &str) -> State {
        let mut s = State::default();
        for t in MkType::ALL {
            let mut h = Sha256::new();
            h.update(b"csulcca-emu initial master key\0");
            h.update(seed.as_bytes());
            h.update([0u8]);
            h.update(t.name().as_bytes());
            let d = h.finalize();
            let mut v = Zeroizing::new(d.to_vec());
            v.truncate(t.key_len());
            let set = s.set_mut(t);
            set.new = Register::empty();
            set.old = Register::empty();
            set.cur = Register { state: 2, value: v };
        }
        s
    }

    /// Registers of type `t`.
    pub fn set(&self, t: MkType) -> &MkSet {
        match t {
            MkType::Sym => &self.sym,
            MkType::Asym => &self.asym,
            MkType::Aes => &self.aes,
            MkType::Apka => &self.apka,
        }
    }

    /// Registers of type `t`, mutable.
    pub fn set_mut(&mut self, t: MkType) -> &mut MkSet {
        match t {
            MkType::Sym => &mut self.sym,
            MkType::Asym => &mut self.asym,
            MkType::Aes => &mut self.aes,
            MkType::Apka => &mut self.apka,
        }
    }

    /// Applies a Master Key Process (CSNBMKP) action.
    pub fn mkp(&mut self, t: MkType, action: MkAction, part: &[u8]) -> Result<(), Fail> {
        let len = t.key_len();
        let set = self.set_mut(t);
        match action {
            MkAction::Clear => set.new = Register::empty(),
            MkAction::First => {
                let p = part.get(..len).ok_or(SHORT_BUFFER)?;
                set.new = Register {
                    state: 2,
                    value: Zeroizing::new(p.to_vec()),
                };
            }
            MkAction::Middle | MkAction::Last => {
                let p = part.get(..len).ok_or(SHORT_BUFFER)?;
                if set.new.state != 2 || set.new.value.len() != len {
                    return Err(NMK_STATE);
                }
                for (v, x) in set.new.value.iter_mut().zip(p) {
                    *v ^= x;
                }
                if action == MkAction::Last {
                    set.new.state = 3;
                }
            }
            MkAction::Random => {
                let mut v = Zeroizing::new(vec![0u8; len]);
                getrandom::getrandom(&mut v).map_err(|_| COMPONENT)?;
                set.new = Register { state: 3, value: v };
            }
            MkAction::Set => {
                let nvp = set.new_vp(t).ok_or(NMK_STATE)?;
                if set.cur_vp(t).as_ref() == Some(&nvp) || set.old_vp(t).as_ref() == Some(&nvp) {
                    return Err(DUPLICATE_MK);
                }
                let new = std::mem::take(&mut set.new);
                let cur = std::mem::replace(
                    &mut set.cur,
                    Register {
                        state: 2,
                        value: new.value,
                    },
                );
                set.old = if cur.valid() { cur } else { Register::empty() };
            }
        }
        Ok(())
    }

    fn to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(format!("{MAGIC}\n"));
        for t in MkType::ALL {
            let s = self.set(t);
            for (name, r) in [("NEW", &s.new), ("CUR", &s.cur), ("OLD", &s.old)] {
                out.push_str(&format!(
                    "{} {} {} {}\n",
                    t.name(),
                    name,
                    r.state,
                    hex(&r.value)
                ));
            }
        }
        out
    }

    fn from_text(text: &str) -> Option<State> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut s = State::default();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let mut f = line.split_whitespace();
            let t = MkType::from_name(f.next()?)?;
            let which = f.next()?;
            let state: u8 = f.next()?.parse().ok()?;
            let value = Zeroizing::new(unhex(f.next().unwrap_or(""))?);
            if !(1..=3).contains(&state) || !(value.is_empty() || value.len() == t.key_len()) {
                return None;
            }
            let r = Register { state, value };
            let set = s.set_mut(t);
            match which {
                "NEW" => set.new = r,
                "CUR" => set.cur = r,
                "OLD" => set.old = r,
                _ => return None,
            }
        }
        for t in MkType::ALL {
            let set = s.set_mut(t);
            for r in [&mut set.new, &mut set.cur, &mut set.old] {
                if r.state == 0 {
                    *r = Register::empty();
                }
            }
        }
        Some(s)
    }
}

/// What identifies the contents of a state file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ident {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Ident {
    fn of(m: &fs::Metadata) -> Ident {
        Ident {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The registers as read from one state file.
struct Loaded {
    /// The seed they came from when there was no file.
    seed: String,
    /// The file read; `None` when there was none (the seed state).
    ident: Option<Ident>,
    state: Arc<State>,
    /// The file read, kept open so that its inode is not reused while cached.
    _file: Option<File>,
}

/// State files a process keeps in memory (tests use several at once).
const CACHE_ENTRIES: usize = 8;

/// The registers last read from each state file, most recently read first.
static CACHE: Mutex<Vec<(PathBuf, Loaded)>> = Mutex::new(Vec::new());

/// The state file and its lock.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
    seed: String,
}

/// Error when the state file cannot be read or written: the "coprocessor"
/// is not available.
const STATE_IO: Fail = NOT_AVAILABLE;

impl Store {
    /// The store named by `CSULCCA_EMU_STATE` / `CSULCCA_EMU_SEED`.
    pub fn from_env() -> Store {
        let path = std::env::var_os("CSULCCA_EMU_STATE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH));
        let seed = std::env::var("CSULCCA_EMU_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
        Store { path, seed }
    }

    /// A store at `path` with `seed` for its initial state.
    pub fn new(path: &Path, seed: &str) -> Store {
        Store {
            path: path.to_path_buf(),
            seed: seed.to_string(),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    fn open_lock(&self, create_dir: bool) -> Option<File> {
        if create_dir {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = fs::create_dir_all(dir);
            }
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(STATE_MODE)
            .open(self.lock_path())
            .inspect(|f| {
                let _ = f.set_permissions(fs::Permissions::from_mode(STATE_MODE));
            })
            .ok()
    }

    /// Reads the state file (or the seed state when there is none) under a
    /// shared lock, with what identifies the file read.
    fn load_shared(&self) -> Result<Loaded, Fail> {
        let lock = self.open_lock(false);
        if let Some(l) = &lock {
            l.lock_shared().map_err(|_| STATE_IO)?;
        }
        let loaded = match File::open(&self.path) {
            Ok(mut f) => {
                let ident = f.metadata().map(|m| Ident::of(&m)).map_err(|_| STATE_IO);
                let mut text = Zeroizing::new(String::new());
                let read = f.read_to_string(&mut text).map_err(|_| STATE_IO);
                match (ident, read) {
                    (Ok(ident), Ok(_)) => State::from_text(&text)
                        .map(|state| Loaded {
                            seed: self.seed.clone(),
                            ident: Some(ident),
                            state: Arc::new(state),
                            _file: Some(f),
                        })
                        .ok_or(STATE_IO),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded {
                seed: self.seed.clone(),
                ident: None,
                state: Arc::new(State::from_seed(&self.seed)),
                _file: None,
            }),
            Err(_) => Err(STATE_IO),
        };
        if let Some(l) = &lock {
            let _ = l.unlock();
        }
        loaded
    }

    fn load(&self) -> Result<State, Fail> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                State::from_text(&text).ok_or(STATE_IO)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::from_seed(&self.seed)),
            Err(_) => Err(STATE_IO),
        }
    }

    fn save(&self, s: &State) -> Result<(), Fail> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(STATE_MODE)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(STATE_MODE))?;
            f.write_all(s.to_text().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|_| {
            let _ = fs::remove_file(&tmp);
            STATE_IO
        })
    }

    /// The registers: the cached copy when the state file is the one it was
    /// read from (one `stat`), else read afresh under a shared lock.
    pub fn read(&self) -> Result<Arc<State>, Fail> {
        let now = match fs::metadata(&self.path) {
            Ok(m) => Some(Ident::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return Err(STATE_IO),
        };
        {
            let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
            let hit = cache
                .iter()
                .find(|(p, l)| *p == self.path && l.ident == now && l.seed == self.seed);
            if let Some((_, l)) = hit {
                return Ok(Arc::clone(&l.state));
            }
        }
        let loaded = self.load_shared()?;
        let state = Arc::clone(&loaded.state);
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(p, _)| *p != self.path);
        cache.truncate(CACHE_ENTRIES - 1);
        cache.insert(0, (self.path.clone(), loaded));
        Ok(state)
    }

    /// Drops the cached copy of this store's registers.
    fn forget(&self) {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(p, _)| *p != self.path);
    }

    /// Read-modify-write under an exclusive lock; writes only when `f`
    /// succeeds.
    pub fn update<R>(&self, f: impl FnOnce(&mut State) -> Result<R, Fail>) -> Result<R, Fail> {
        let lock = self.open_lock(true).ok_or(STATE_IO)?;
        lock.lock().map_err(|_| STATE_IO)?;
        let res = (|| {
            let mut s = self.load()?;
            let r = f(&mut s)?;
            self.save(&s)?;
            Ok(r)
        })();
        self.forget();
        let _ = lock.unlock();
        res
    }

    /// Replaces the state with the seed state for `seed`.
    pub fn init(&self, seed: &str) -> Result<(), Fail> {
        let fresh = State::from_seed(seed);
        self.update(|s| {
            *s = fresh;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_state_is_deterministic_and_roundtrips() {
        let a = State::from_seed("x");
        let b = State::from_seed("x");
        let c = State::from_seed("y");
        for t in MkType::ALL {
            assert_eq!(a.set(t).cur_vp(t), b.set(t).cur_vp(t));
            assert_ne!(a.set(t).cur_vp(t), c.set(t).cur_vp(t));
            assert_eq!(a.set(t).cur.value.len(), t.key_len());
        }
        let text = a.to_text();
        let back = State::from_text(&text).unwrap();
        assert_eq!(back.to_text().as_str(), text.as_str());
    }

    #[test]
    fn mkp_load_and_set() {
        let mut s = State::from_seed("x");
        let t = MkType::Aes;
        let cur = s.set(t).cur_vp(t);
        assert_eq!(s.mkp(t, MkAction::Set, &[]), Err(NMK_STATE));
        assert_eq!(s.mkp(t, MkAction::Middle, &[1; 32]), Err(NMK_STATE));
        s.mkp(t, MkAction::First, &[1; 32]).unwrap();
        assert_eq!(s.set(t).new.state, 2);
        s.mkp(t, MkAction::Last, &[3; 32]).unwrap();
        assert_eq!(s.set(t).new.state, 3);
        assert_eq!(&s.set(t).new.value[..], &[2u8; 32]);
        s.mkp(t, MkAction::Set, &[]).unwrap();
        assert_eq!(s.set(t).old_vp(t), cur);
        assert_eq!(s.set(t).cur_vp(t), Some(mkvp(t, &[2u8; 32])));
        assert_eq!(s.set(t).new.state, 1);
        // Re-loading the CURRENT or OLD key is refused at SET.
        for k in [[2u8; 32], cur_key(&State::from_seed("x"), t)] {
            s.mkp(t, MkAction::First, &k).unwrap();
            s.mkp(t, MkAction::Last, &[0; 32]).unwrap();
            assert_eq!(s.mkp(t, MkAction::Set, &[]), Err(DUPLICATE_MK));
        }
    }

    fn cur_key(s: &State, t: MkType) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&s.set(t).cur.value);
        k
    }

    #[test]
    fn cached_registers_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        let st = Store::new(&p, "a");
        let t = MkType::Aes;
        let seed_vp = st.read().unwrap().set(t).cur_vp(t);
        // No file: the seed state, cached by seed.
        assert!(Arc::ptr_eq(&st.read().unwrap(), &st.read().unwrap()));
        let other_seed = Store::new(&p, "b");
        assert_ne!(other_seed.read().unwrap().set(t).cur_vp(t), seed_vp);
        // A change through another handle (as the admin tool makes it).
        Store::new(&p, "a")
            .update(|s| s.mkp(t, MkAction::Random, &[]))
            .unwrap();
        let first = st.read().unwrap();
        assert_eq!(first.set(t).new.state, 3);
        assert!(
            Arc::ptr_eq(&first, &st.read().unwrap()),
            "unchanged file: cached"
        );
        // A file of the same size renamed into place by another writer.
        let mut next = State::clone(&first);
        next.set_mut(t).new = Register {
            state: 3,
            value: Zeroizing::new(vec![7; 32]),
        };
        let text = next.to_text();
        assert_eq!(text.len(), first.to_text().len());
        let tmp = dir.path().join("replacement");
        fs::write(&tmp, text.as_bytes()).unwrap();
        fs::rename(&tmp, &p).unwrap();
        assert_eq!(
            st.read().unwrap().set(t).new_vp(t),
            Some(mkvp(t, &[7; 32])),
            "replacement seen"
        );
        // The file removed: back to the seed state.
        fs::remove_file(&p).unwrap();
        assert_eq!(st.read().unwrap().set(t).cur_vp(t), seed_vp);
        // Unreadable content is an error, not a stale copy.
        fs::write(&p, b"garbage").unwrap();
        assert_eq!(st.read().map(|_| ()), Err(STATE_IO));
    }

    #[test]
    fn threads_read_while_the_registers_change() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::new(&dir.path().join("state"), "threads");
        let t = MkType::Apka;
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..200 {
                        let s = st.read().unwrap();
                        assert!(s.set(t).cur_vp(t).is_some());
                    }
                });
            }
            sc.spawn(|| {
                for _ in 0..10 {
                    st.update(|s| s.mkp(t, MkAction::Random, &[])).unwrap();
                    st.update(|s| s.mkp(t, MkAction::Set, &[])).unwrap();
                }
            });
        });
        let s = st.read().unwrap();
        assert_eq!((s.set(t).cur.state, s.set(t).old.state), (2, 2));
    }

    #[test]
    fn store_persists_and_ignores_seed_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state");
        let st = Store::new(&p, "a");
        let t = MkType::Sym;
        let before = st.read().unwrap().set(t).cur_vp(t);
        st.update(|s| s.mkp(t, MkAction::Random, &[])).unwrap();
        st.update(|s| s.mkp(t, MkAction::Set, &[])).unwrap();
        let other = Store::new(&p, "b");
        let s = other.read().unwrap();
        assert_eq!(s.set(t).old_vp(t), before);
        assert_ne!(s.set(t).cur_vp(t), before);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, STATE_MODE);
    }
}
