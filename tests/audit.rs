//! The audit record end to end: the built binary logs one line per writing run to the
//! syslog socket named by `PKCSCCA_SYSLOG_SOCKET`, here a datagram socket the test
//! listens on.
//!
//! What matters: the line arrives with facility `authpriv` and tag `pkcscca`, parses
//! as `key=value` pairs, says who did what to which store under which registers, with
//! which counts, backup and exit status; it never holds a PIN or a byte of the master
//! key parts the test loaded; runs that write nothing (`-m status`, `--dry-run`) are
//! not logged; a socket that cannot take the line is a warning, not a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use common::lab::{Lab, Run, PINS};

const OLD_381: &[&str] = &["--format", "old", "--openCryptoki-3.8.1-style"];

/// `authpriv` (10) << 3.
const AUTHPRIV: u32 = 10 << 3;
const NOTICE: u32 = 5;
const WARNING: u32 = 4;

/// A lab whose runs log to a socket the test reads.
struct Listening {
    lab: Lab,
    socket: UnixDatagram,
}

impl Listening {
    fn new(layout: &[&str]) -> Listening {
        let mut lab = Lab::new(layout);
        let path = lab.root().join("syslog.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        lab.extra_env = vec![("PKCSCCA_SYSLOG_SOCKET".into(), path.display().to_string())];
        Listening { lab, socket }
    }

    /// The next datagram, raw.
    fn receive(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let n = self.socket.recv(&mut buf).expect("an audit record");
        buf.truncate(n);
        buf
    }

    /// Whether a datagram is waiting (after the run that would have sent it ended).
    fn nothing_sent(&self) -> bool {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let none = self.socket.recv(&mut buf).is_err();
        self.socket.set_nonblocking(false).unwrap();
        none
    }
}

/// One received record: priority, tag, pid, and the fields in order.
#[derive(Debug)]
struct Record {
    priority: u32,
    tag: String,
    fields: Vec<(String, String)>,
}

impl Record {
    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }
}

/// Parses `<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE` (RFC 3164 as syslog(3) sends it)
/// and the message's `key=value` pairs (values bare, or quoted with `\"`, `\\` and
/// `\xHH` escapes).
fn parse(datagram: &[u8]) -> Record {
    let text = std::str::from_utf8(datagram).expect("ASCII");
    let rest = text.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').unwrap();
    let priority: u32 = pri.parse().unwrap();
    // Timestamp: three blank-separated words.
    let mut parts = rest.splitn(4, ' ');
    let (_mon, _day, _time) = (parts.next(), parts.next(), parts.next());
    let rest = parts.next().expect("tag");
    let rest = rest.trim_start();
    let (tag_pid, message) = rest.split_once(": ").expect("TAG[PID]: ");
    let (tag, pid) = tag_pid.split_once('[').expect("[PID]");
    assert!(pid.trim_end_matches(']').parse::<u32>().is_ok(), "{pid}");
    let mut fields = Vec::new();
    let mut chars = message.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "key {key:?} in {message}"
        );
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next().expect("closing quote") {
                    '"' => break,
                    '\\' => match chars.next().unwrap() {
                        'x' => {
                            let h: String = chars.by_ref().take(2).collect();
                            value.push(char::from(u8::from_str_radix(&h, 16).unwrap()));
                        }
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            assert!(matches!(chars.next(), None | Some(' ')), "{message}");
        } else {
            value = chars.by_ref().take_while(|c| *c != ' ').collect();
            assert!(!value.is_empty(), "empty bare value of {key} in {message}");
        }
        fields.push((key, value));
    }
    Record {
        priority,
        tag: tag.to_string(),
        fields,
    }
}

/// No PIN and no master key part the test used (hex or raw) is in `bytes`.
fn assert_no_secret(bytes: &[u8]) {
    let mut secrets: Vec<Vec<u8>> = vec![b"76543210".to_vec(), b"11223344".to_vec()];
    for len in [24usize, 32] {
        for b in [1u8, 2, 0x5A, 1 ^ 0x5A, 2 ^ 0x5A] {
            let part = vec![b; len];
            secrets.push(common::hex(&part).into_bytes());
            secrets.push(common::hex(&part).to_uppercase().into_bytes());
            secrets.push(part);
        }
    }
    for s in secrets {
        // Eight bytes of a part are enough to call it a leak.
        let probe = &s[..s.len().min(16)];
        assert!(
            !bytes.windows(probe.len()).any(|w| w == probe),
            "secret {:?} in {:?}",
            String::from_utf8_lossy(probe),
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The card's register MKVPs of `mk` as `-m status --json` reports them.
fn registers(lab: &Lab, mk: &str) -> (String, String) {
    let store = lab.store.display().to_string();
    let r = lab.pkcscca(&["-m", "status", "-d", &store, "-k", mk, "--json"], PINS);
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let get = |reg: &str| {
        doc["registers"][mk][reg]["mkvp"]
            .as_str()
            .unwrap_or("-")
            .to_string()
    };
    (get("current"), get("old"))
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn a_migration_is_logged_with_everything_but_secrets() {
    let l = Listening::new(OLD_381);
    l.lab.change_mk("aes", 1);
    let (current, old) = registers(&l.lab, "aes");
    assert!(l.nothing_sent(), "-m status is not logged");
    assert_ne!(current, old);

    let r = l.lab.migrate("aes", &["--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(l.nothing_sent(), "--dry-run is not logged");

    let r: Run = l.lab.migrate("aes", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("audit"), "{r:?}");
    let raw = l.receive();
    assert_no_secret(&raw);
    let rec = parse(&raw);
    assert_eq!(rec.priority, AUTHPRIV | NOTICE, "{rec:?}");
    assert_eq!(rec.tag, "pkcscca");
    let backup = common::backup_named_in(&r.stderr, &l.lab.store);
    let keys: Vec<&str> = rec.fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "user",
            "uid",
            "mode",
            "slot",
            "store",
            "mk_types",
            "aes_current",
            "aes_old",
            "aes_from",
            "aes_to",
            "reenciphered",
            "current",
            "failed",
            "unreadable",
            "rewritten",
            "backup",
            "exit"
        ],
        "{rec:?}"
    );
    let want: BTreeMap<&str, String> = [
        ("uid", uid().to_string()),
        ("mode", "keys".into()),
        ("slot", "2".into()),
        ("store", l.lab.store.display().to_string()),
        ("mk_types", "aes".into()),
        ("aes_current", current.clone()),
        ("aes_old", old.clone()),
        ("aes_from", old.clone()),
        ("aes_to", current.clone()),
        ("reenciphered", "9".into()),
        ("current", "0".into()),
        ("failed", "0".into()),
        ("unreadable", "0".into()),
        ("rewritten", "9".into()),
        ("backup", backup.display().to_string()),
        ("exit", "0".into()),
    ]
    .into_iter()
    .collect();
    for (k, v) in &want {
        assert_eq!(rec.get(k), v, "{k}: {rec:?}");
    }
    if uid() == 0 {
        assert_eq!(rec.get("user"), "root");
    }
    assert!(l.nothing_sent(), "one record per run");

    // The way back is logged too.
    let store = l.lab.store.display().to_string();
    let from = backup.display().to_string();
    let r = l.lab.pkcscca(
        &[
            "-m",
            "restore",
            "-d",
            &store,
            "--from",
            &from,
            "--no-backup",
        ],
        PINS,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let raw = l.receive();
    assert_no_secret(&raw);
    let rec = parse(&raw);
    assert_eq!(rec.get("mode"), "restore");
    assert_eq!(rec.get("restored"), "9");
    assert_eq!(rec.get("backup"), "none");
    assert_eq!(rec.get("exit"), "0");
}

#[test]
fn a_refused_run_is_logged_as_a_warning() {
    let l = Listening::new(OLD_381);
    l.lab.change_mk("sym", 1);
    let r = l.lab.migrate("all", &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rec = parse(&l.receive());
    assert_eq!(rec.get("mk_types"), "sym,aes,apka,asym");
    assert_eq!(rec.get("reenciphered"), "3");
    assert_eq!(rec.get("aes_from"), "-");
    // A wrong SO PIN: logged, with the exit status, as a warning.
    let store = l.lab.store.display().to_string();
    let r = l.lab.pkcscca(
        &["-m", "oldrsakeys", "-s", "2", "-d", &store],
        b"00000000\n11223344\n",
    );
    assert_eq!(r.code, 255, "{r:?}");
    let raw = l.receive();
    assert_no_secret(&raw);
    let rec = parse(&raw);
    assert_eq!(rec.priority, AUTHPRIV | WARNING, "{rec:?}");
    assert_eq!(rec.get("mode"), "oldrsakeys");
    assert_eq!(rec.get("exit"), "255");
    assert_eq!(rec.get("backup"), "none");
    // An argument error never reaches a mode: not logged.
    let r = l.lab.pkcscca(&["-m", "keys", "-s", "2"], PINS);
    assert_eq!(r.code, 255);
    assert!(l.nothing_sent());
}

#[test]
fn a_socket_that_cannot_take_the_line_is_a_warning_only() {
    let mut lab = Lab::new(OLD_381);
    lab.change_mk("sym", 1);
    // A regular file where the socket should be.
    let not_a_socket: PathBuf = lab.root().join("syslog-file");
    std::fs::write(&not_a_socket, b"").unwrap();
    lab.extra_env = vec![(
        "PKCSCCA_SYSLOG_SOCKET".into(),
        not_a_socket.display().to_string(),
    )];
    let r = lab.migrate("sym", &["--no-backup"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr
            .starts_with("pkcscca: warning: the audit record was not logged: "),
        "{r:?}"
    );
    assert_eq!(lab.check(Some("sym")).code, 0);
    // No socket at all: nothing said, as in a container without syslog.
    lab.extra_env.clear();
    lab.change_mk("sym", 2);
    let r = lab.migrate("sym", &["--no-backup"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
}
