//! Test knobs, off by default, read from the environment on every call.
//!
//! * `CSULCCA_EMU_LATENCY_US`: per-verb latency in microseconds, either one
//!   number for every verb (`50`) or a list `VERB=US,...` where `*` matches
//!   any verb not listed (`CSNBKTC=200,*=50`).
//! * `CSULCCA_EMU_FAIL`: fault injection, entries separated by `,` or `;`:
//!   - `VERB:N:RC:REASON`: the N-th call (1-based, counted per process) of
//!     VERB returns RC/REASON;
//!   - `VERB:*:RC:REASON`: every call of VERB fails;
//!   - `VERB:token=HEX:RC:REASON`: every call of VERB whose key token
//!     contains the bytes HEX (an MKVP, or a token prefix) fails.
//!
//!   `VERB` may be `*` for any verb. A failing call leaves its buffers
//!   untouched, like a real failure.
//! * `CSULCCA_EMU_STOP`: a verb name, or `*` for any: on entry to every call of
//!   that verb the calling process stops itself (`SIGSTOP`), so a test can look
//!   at it at a known point (`tests/secret_residue.rs` scans its memory) and
//!   continue (`SIGCONT`) or kill it.
//!
//! * `CSULCCA_EMU_STATS=PATH`: call statistics for benchmarks. The library
//!   counts, per process, the verb calls and the wall time spent inside them
//!   (from entry to return of the exported function, latency sleep
//!   included). When a verb call first sees the variable set, the library
//!   remembers PATH and registers a handler with the C library's `atexit`;
//!   when the process exits normally (`exit()` or a return from `main`), or
//!   unloads the library with `dlclose`, the handler appends one line
//!   `calls=<n> nanos=<n>` to PATH (created if missing; several processes
//!   may share it: each appends its own line with one `write`). A process
//!   that calls no verb, or ends by a signal or `_exit`, writes nothing.
//!
//! Call counters are per process and count every call of an exported verb,
//! whether it fails or not. They restart from zero whenever the value of
//! `CSULCCA_EMU_FAIL` changes, so "the N-th call" means the N-th call since
//! the current fault plan was set (tests set it, then count).
//!
//! The latency sleep happens before the verb reads any state, with no lock
//! held, so calls from several threads sleep at the same time, as calls to a
//! real card with several request queues overlap.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::state::unhex;
use crate::Fail;

/// Per-verb call counts, and the `CSULCCA_EMU_FAIL` value they were counted
/// under.
type Counters = (Option<String>, HashMap<String, u64>);
static COUNTERS: Mutex<Option<Counters>> = Mutex::new(None);

/// One fault-injection rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Verb name or `*`.
    pub verb: String,
    /// When it fires.
    pub when: Trigger,
    /// What the call returns.
    pub fail: Fail,
}

/// When a [`Fault`] fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// On the N-th call.
    Nth(u64),
    /// On every call.
    Always,
    /// On calls whose token contains these bytes.
    Token(Vec<u8>),
}

/// Parses a `CSULCCA_EMU_FAIL` value; malformed entries are ignored.
pub fn parse_faults(s: &str) -> Vec<Fault> {
    s.split([',', ';'])
        .filter_map(|e| {
            let f: Vec<&str> = e.trim().split(':').collect();
            let [verb, when, rc, reason] = f.as_slice() else {
                return None;
            };
            let when = if *when == "*" {
                Trigger::Always
            } else if let Some(h) = when.strip_prefix("token=") {
                Trigger::Token(unhex(h).filter(|v| !v.is_empty())?)
            } else {
                Trigger::Nth(when.parse().ok()?)
            };
            Some(Fault {
                verb: verb.trim().to_ascii_uppercase(),
                when,
                fail: Fail::new(rc.parse().ok()?, reason.parse().ok()?),
            })
        })
        .collect()
}

/// Latency in microseconds for `verb` from a `CSULCCA_EMU_LATENCY_US` value.
pub fn parse_latency(s: &str, verb: &str) -> u64 {
    let s = s.trim();
    if let Ok(n) = s.parse() {
        return n;
    }
    let mut any = 0;
    for e in s.split(',') {
        if let Some((v, us)) = e.split_once('=') {
            let us = us.trim().parse().unwrap_or(0);
            match v.trim() {
                "*" => any = us,
                v if v.eq_ignore_ascii_case(verb) => return us,
                _ => {}
            }
        }
    }
    any
}

fn faults() -> Vec<Fault> {
    std::env::var("CSULCCA_EMU_FAIL")
        .map(|s| parse_faults(&s))
        .unwrap_or_default()
}

fn faults_from(plan: Option<&str>) -> Vec<Fault> {
    plan.map(parse_faults).unwrap_or_default()
}

/// Called on entry to every exported verb: counts the call, sleeps the
/// configured latency, and returns an injected N-th-call / every-call fault.
pub fn on_call(verb: &str) -> Option<Fail> {
    if let Ok(stop) = std::env::var("CSULCCA_EMU_STOP") {
        let stop = stop.trim();
        if stop == "*" || stop.eq_ignore_ascii_case(verb) {
            // Nothing sensible to do if it fails: the caller then just runs on.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::STOP,
            );
        }
    }
    let plan = std::env::var("CSULCCA_EMU_FAIL").ok();
    let n = {
        let mut g = COUNTERS.lock().unwrap_or_else(PoisonError::into_inner);
        let (seen, map) = g.get_or_insert_with(|| (plan.clone(), HashMap::new()));
        if *seen != plan {
            *seen = plan.clone();
            map.clear();
        }
        let c = map.entry(verb.to_string()).or_insert(0);
        *c += 1;
        *c
    };
    if let Ok(l) = std::env::var("CSULCCA_EMU_LATENCY_US") {
        let us = parse_latency(&l, verb);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
    }
    faults_from(plan.as_deref()).into_iter().find_map(|f| {
        let hit = (f.verb == "*" || f.verb == verb)
            && match f.when {
                Trigger::Nth(k) => k == n,
                Trigger::Always => true,
                Trigger::Token(_) => false,
            };
        hit.then_some(f.fail)
    })
}

/// A token-triggered fault for `verb` on `token`, if configured.
pub fn on_token(verb: &str, token: &[u8]) -> Result<(), Fail> {
    for f in faults() {
        if let Trigger::Token(pat) = &f.when {
            if (f.verb == "*" || f.verb == verb) && token.windows(pat.len()).any(|w| w == &pat[..])
            {
                return Err(f.fail);
            }
        }
    }
    Ok(())
}

/// Verb calls in this process, for `CSULCCA_EMU_STATS`.
static STAT_CALLS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds spent inside verbs in this process.
static STAT_NANOS: AtomicU64 = AtomicU64::new(0);
/// The `CSULCCA_EMU_STATS` path, as first seen by a verb call.
static STATS_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Counts one verb call that took `elapsed`.
pub fn record_call(elapsed: Duration) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    STAT_CALLS.fetch_add(1, Ordering::Relaxed);
    STAT_NANOS.fetch_add(nanos, Ordering::Relaxed);
}

/// Remembers the `CSULCCA_EMU_STATS` path when it is set and none was
/// remembered yet; true only for the one call that remembered it, which is
/// the call that must register [`write_stats`] to run at exit.
pub fn stats_first_seen() -> bool {
    if STATS_PATH.get().is_some() {
        return false;
    }
    match std::env::var_os("CSULCCA_EMU_STATS").filter(|p| !p.is_empty()) {
        Some(p) => STATS_PATH.set(PathBuf::from(p)).is_ok(),
        None => false,
    }
}

/// The statistics line: `calls=<n> nanos=<n>` and a newline.
pub fn stats_line() -> String {
    format!(
        "calls={} nanos={}\n",
        STAT_CALLS.load(Ordering::Relaxed),
        STAT_NANOS.load(Ordering::Relaxed)
    )
}

/// Appends [`stats_line`] to the remembered `CSULCCA_EMU_STATS` file, if any,
/// with one `write` on a file opened for appending. Errors are ignored: this
/// runs at exit, with no one to report to.
pub fn write_stats() {
    if let Some(path) = STATS_PATH.get() {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = f.write_all(stats_line().as_bytes());
        }
    }
}

/// Number of calls of `verb` so far in this process.
pub fn calls(verb: &str) -> u64 {
    let g = COUNTERS.lock().unwrap_or_else(PoisonError::into_inner);
    g.as_ref()
        .and_then(|(_, m)| m.get(verb).copied())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_syntax() {
        let f = parse_faults("CSNBKTC:3:8:48, CSNDKTC:token=0a0B:8:48;*:*:16:336;junk");
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[0],
            Fault {
                verb: "CSNBKTC".into(),
                when: Trigger::Nth(3),
                fail: Fail::new(8, 48)
            }
        );
        assert_eq!(f[1].when, Trigger::Token(vec![0x0a, 0x0b]));
        assert_eq!(f[2].when, Trigger::Always);
    }

    #[test]
    fn stats_line_counts_calls_and_nanoseconds() {
        let before = STAT_CALLS.load(Ordering::Relaxed);
        record_call(Duration::from_nanos(1500));
        let line = stats_line();
        let (calls, nanos) = line
            .strip_prefix("calls=")
            .and_then(|l| l.strip_suffix('\n'))
            .and_then(|l| l.split_once(" nanos="))
            .unwrap();
        assert!(calls.parse::<u64>().unwrap() > before);
        assert!(nanos.parse::<u64>().unwrap() >= 1500);
    }

    #[test]
    fn latency_syntax() {
        assert_eq!(parse_latency("75", "CSNBKTC"), 75);
        assert_eq!(parse_latency("CSNBKTC=200,*=50", "CSNBKTC"), 200);
        assert_eq!(parse_latency("CSNBKTC=200,*=50", "CSNDKTC"), 50);
        assert_eq!(parse_latency("CSNBKTC=200", "CSNDKTC"), 0);
    }
}
