//! The audit record: one line to syslog for every run that could write to a data store.
//!
//! Upstream pkcscca logs nothing. A master key migration is key management, so each run
//! of `-m keys`, `-m oldrsakeys`, `-m v2objectsv3` and `-m restore` that got past its
//! arguments (also one refused or failed later, also a wrong PIN) leaves one line in the
//! system log: who ran it, on which token, what the card's master key registers held,
//! what was changed, where the backup is, and the exit status. `-m status` and
//! `--dry-run` write nothing and are not logged.
//!
//! The line goes to the local syslog socket (`/dev/log`; `PKCSCCA_SYSLOG_SOCKET` names
//! another one, for tests) as RFC 3164, the format glibc's `syslog(3)` sends, with
//! facility `authpriv` (security and authorization messages, kept from ordinary users;
//! Debian's rsyslog writes them to `/var/log/auth.log`), tag `pkcscca`, severity
//! `notice` for a run that exited 0 and `warning` otherwise. Where no socket exists (a
//! container without a syslog daemon) nothing is logged and nothing is said: the
//! migration must not depend on it. A socket that exists but cannot take the line is
//! one warning on stderr; the exit status stays the run's.
//!
//! The message is `key=value` pairs separated by blanks (see [`Record::line`]); a value
//! with a blank, `"`, `\`, `=` or a byte outside printable ASCII is quoted, with `\"`,
//! `\\` and `\xHH` escapes. It never holds a PIN or key material: only names, numbers,
//! paths and master key verification patterns.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cca::{hex, MkStatus, MkType};
use crate::cli::{Args, Mode, ModeName};
use crate::exit::Exit;

/// The syslog tag of the audit record.
pub const TAG: &str = "pkcscca";

/// The socket the record goes to unless `PKCSCCA_SYSLOG_SOCKET` names another.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Where the audit record goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    /// Nowhere (in-process tests).
    #[default]
    Off,
    /// The system's syslog socket, `DEFAULT_SOCKET`.
    System,
    /// The syslog socket at this path (`PKCSCCA_SYSLOG_SOCKET`).
    Socket(PathBuf),
}

impl Target {
    /// `PKCSCCA_SYSLOG_SOCKET` when set, else the system's socket.
    pub fn from_env() -> Target {
        match std::env::var_os("PKCSCCA_SYSLOG_SOCKET") {
            Some(p) if !p.is_empty() => Target::Socket(PathBuf::from(p)),
            _ => Target::System,
        }
    }
}

/// The master key registers of one type, as the run read them, and the token MKVPs
/// its keys were moved from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TypeRecord {
    mk_type: MkType,
    current: Option<String>,
    old: Option<String>,
    from: BTreeSet<String>,
    to: BTreeSet<String>,
}

/// What one run did, filled in as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    wanted: bool,
    mode: ModeName,
    slot: Option<u64>,
    store: Option<PathBuf>,
    types: Vec<TypeRecord>,
    counts: Vec<(&'static str, usize)>,
    backup: Option<PathBuf>,
}

/// The user running `pkcscca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The real user id.
    pub uid: u32,
    /// Its name, when the user database knows it.
    pub name: Option<String>,
    /// `SUDO_USER`, when `sudo` started the run (as sudo sets it; not proof).
    pub sudo_user: Option<String>,
}

impl Caller {
    /// The user of this process.
    pub fn current() -> Caller {
        let uid = nix::unistd::getuid();
        Caller {
            uid: uid.as_raw(),
            name: nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name),
            sudo_user: std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
        }
    }
}

impl Record {
    /// The record of a run asked for with `args`; only runs that may write are logged
    /// (not `-m status`, not `--dry-run`).
    pub fn new(args: &Args) -> Record {
        let mode = args.mode.name();
        let mut record = Record {
            wanted: mode.writes() && !args.dry_run,
            mode,
            slot: args.slot(),
            store: args.datastore.clone(),
            types: Vec::new(),
            counts: Vec::new(),
            backup: None,
        };
        // `-m keys`: the types asked for, also when the run ends before the card is
        // asked about them.
        if let Mode::Keys { key_type, .. } = args.mode {
            for t in key_type.types() {
                record.with_type(t, |_| {});
            }
        }
        record
    }

    /// Whether this run is logged.
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// The data store the run works on, once resolved.
    pub fn set_store(&mut self, dir: &Path) {
        self.store = Some(dir.to_path_buf());
    }

    /// The card's registers of `mk_type` (`None`: they could not be read).
    pub fn set_registers(&mut self, mk_type: MkType, status: Option<&MkStatus>) {
        let hex_of = |r: Option<&[u8]>| r.map(hex);
        let current = status.and_then(|s| hex_of(s.current.loaded_mkvp()));
        let old = status.and_then(|s| hex_of(s.old.loaded_mkvp()));
        self.with_type(mk_type, |t| {
            t.current = current;
            t.old = old;
        });
    }

    /// A key of `mk_type` moved from the token MKVP(s) `from` to `to` (hex; two joined
    /// by `+` for an AES XTS key).
    pub fn add_moved(&mut self, mk_type: MkType, from: &str, to: &str) {
        let parts = |s: &str| -> Vec<String> {
            s.split('+')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (from, to) = (parts(from), parts(to));
        self.with_type(mk_type, |t| {
            t.from.extend(from);
            t.to.extend(to);
        });
    }

    /// The run's counts, by name, in the order they are logged.
    pub fn set_counts(&mut self, counts: &[(&'static str, usize)]) {
        self.counts = counts.to_vec();
    }

    /// The backup the run made.
    pub fn set_backup(&mut self, dir: &Path) {
        self.backup = Some(dir.to_path_buf());
    }

    /// Applies `f` to the record of `mk_type`, made when it is the first use.
    fn with_type(&mut self, mk_type: MkType, f: impl FnOnce(&mut TypeRecord)) {
        if let Some(t) = self.types.iter_mut().find(|t| t.mk_type == mk_type) {
            f(t);
            return;
        }
        let mut t = TypeRecord {
            mk_type,
            current: None,
            old: None,
            from: BTreeSet::new(),
            to: BTreeSet::new(),
        };
        f(&mut t);
        self.types.push(t);
    }

    /// The message: `user=NAME uid=N [sudo_user=NAME] mode=MODE [slot=N] store=DIR
    /// [mk_types=T,...] [T_current=MKVP T_old=MKVP T_from=MKVP,... T_to=MKVP,...]...
    /// [COUNT=N]... backup=DIR|none exit=N`. `-` stands for an unknown MKVP or none.
    pub fn line(&self, caller: &Caller, exit: Exit) -> String {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| fields.push((k.to_string(), v));
        put("user", caller.name.as_deref().map_or("-".into(), quote_str));
        put("uid", caller.uid.to_string());
        if let Some(s) = &caller.sudo_user {
            put("sudo_user", quote_str(s));
        }
        put("mode", self.mode.name().to_string());
        if let Some(slot) = self.slot {
            put("slot", slot.to_string());
        }
        put(
            "store",
            self.store
                .as_deref()
                .map_or("-".into(), |p| quote(p.as_os_str().as_bytes())),
        );
        if !self.types.is_empty() {
            let names: Vec<&str> = self.types.iter().map(|t| t.mk_type.arg_name()).collect();
            put("mk_types", names.join(","));
        }
        let set = |s: &BTreeSet<String>| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.iter().cloned().collect::<Vec<_>>().join(",")
            }
        };
        for t in &self.types {
            let n = t.mk_type.arg_name();
            put(&format!("{n}_current"), t.current.clone().unwrap_or("-".into()));
            put(&format!("{n}_old"), t.old.clone().unwrap_or("-".into()));
            put(&format!("{n}_from"), set(&t.from));
            put(&format!("{n}_to"), set(&t.to));
        }
        for (name, n) in &self.counts {
            put(name, n.to_string());
        }
        put(
            "backup",
            self.backup
                .as_deref()
                .map_or("none".into(), |p| quote(p.as_os_str().as_bytes())),
        );
        put("exit", exit.code().to_string());
        fields
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn quote_str(s: &str) -> String {
    quote(s.as_bytes())
}

/// `value` as is when it is non-empty printable ASCII without blank, `"`, `\` or `=`;
/// otherwise in double quotes with `\"`, `\\` and `\xHH` escapes.
fn quote(value: &[u8]) -> String {
    let plain = |b: u8| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'=');
    if !value.is_empty() && value.iter().all(|&b| plain(b)) {
        return value.iter().map(|&b| char::from(b)).collect();
    }
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for &b in value {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b' ' | b'=' => s.push(char::from(b)),
            _ if b.is_ascii_graphic() => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

/// Sends `line` to `target` with facility `authpriv` and tag [`TAG`], severity
/// `notice` when `success`, else `warning`. A socket that does not exist is no error
/// (nothing is logged); any other failure is returned, in words.
pub fn send(line: &str, success: bool, target: &Target) -> Result<(), String> {
    let path: &Path = match target {
        Target::Off => return Ok(()),
        Target::System => Path::new(DEFAULT_SOCKET),
        Target::Socket(p) => p,
    };
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_AUTHPRIV,
        // The local socket takes no host name, as syslog(3) sends none.
        hostname: None,
        process: TAG.to_string(),
        pid: std::process::id(),
    };
    let shown = path.display();
    let mut logger =
        syslog::unix_custom(formatter, path).map_err(|e| format!("{shown}: {e}"))?;
    let sent = if success {
        logger.notice(line)
    } else {
        logger.warning(line)
    };
    sent.map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cca::{Register, RegisterState};
    use crate::cli::{KeySelection, Verbosity};

    fn args(mode: Mode, dry_run: bool) -> Args {
        Args {
            mode,
            datastore: Some("/var/lib/opencryptoki/cca tok".into()),
            verbose: Verbosity::None,
            dry_run,
            json: false,
            no_backup: false,
            threads: None,
        }
    }

    #[test]
    fn only_runs_that_may_write_are_logged() {
        let keys = Mode::Keys {
            slot: 2,
            key_type: KeySelection::All,
        };
        assert!(Record::new(&args(keys.clone(), false)).wanted());
        assert!(!Record::new(&args(keys, true)).wanted());
        let status = Mode::Status {
            slot: None,
            key_type: KeySelection::All,
        };
        assert!(!Record::new(&args(status, false)).wanted());
        let restore = Mode::Restore {
            slot: None,
            from: "/b".into(),
        };
        assert!(Record::new(&args(restore, false)).wanted());
    }

    #[test]
    fn the_line_names_everything_and_quotes_what_needs_it() {
        let mut r = Record::new(&args(
            Mode::Keys {
                slot: 2,
                key_type: KeySelection::One(MkType::Aes),
            },
            false,
        ));
        let reg = |state, mkvp: Option<Vec<u8>>| Register { state, mkvp };
        let st = MkStatus {
            new: reg(RegisterState::Empty, None),
            current: reg(RegisterState::Loaded, Some(vec![0xab; 8])),
            old: reg(RegisterState::Loaded, Some(vec![0x01; 8])),
        };
        r.set_registers(MkType::Aes, Some(&st));
        r.add_moved(MkType::Aes, "0101010101010101+0101010101010101", "abababababababab");
        r.set_counts(&[("reenciphered", 1), ("rewritten", 1)]);
        r.set_backup(Path::new("/b/x\"y"));
        let caller = Caller {
            uid: 0,
            name: Some("root".into()),
            sudo_user: Some("ad min".into()),
        };
        assert_eq!(
            r.line(&caller, Exit::Success),
            "user=root uid=0 sudo_user=\"ad min\" mode=keys slot=2 \
             store=\"/var/lib/opencryptoki/cca tok\" mk_types=aes \
             aes_current=abababababababab aes_old=0101010101010101 \
             aes_from=0101010101010101 aes_to=abababababababab reenciphered=1 \
             rewritten=1 backup=\"/b/x\\\"y\" exit=0"
        );
        assert_eq!(quote(b"a\x01\xff"), "\"a\\x01\\xff\"");
        assert_eq!(quote(b""), "\"\"");
    }

    #[test]
    fn a_missing_socket_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Socket(dir.path().join("no-such-socket"));
        assert_eq!(send("x=1", true, &target), Ok(()));
        // Something that is not a socket is reported.
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(send("x=1", true, &Target::Socket(file)).is_err());
    }
}
