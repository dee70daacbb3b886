//! `csulcca-emu-admin`: the emulated card's panel.
//!
//! Works on the same state file as the library (`CSULCCA_EMU_STATE`, see
//! `csulcca::state`). Subcommands:
//!
//! * `status` — NEW/CURRENT/OLD state and MKVP of every master-key type;
//! * `load-new TYPE --first|--middle|--last` (the key part is read as one line of hex
//!   from standard input: secrets never go on the command line) or
//!   `load-new TYPE --random`;
//! * `set TYPE` — NEW → CURRENT → OLD;
//! * `clear-new TYPE`, `clear-old TYPE`, `clear-current TYPE`;
//! * `init [--seed S]` — reset to the deterministic seed state.
//!
//! TYPE is `sym`, `asym`, `aes` or `apka`. Master-key values are never
//! printed; key parts are zeroized after use.

use std::process::ExitCode;

use csulcca::state::{self, MkAction, Store};
use csulcca::Fail;
use csulcca::MkType;
use zeroize::Zeroizing;

const USAGE: &str = "usage: csulcca-emu-admin status
       csulcca-emu-admin load-new TYPE (--first | --middle | --last | --random)
         (a key part is one line of hex on standard input)
       csulcca-emu-admin set TYPE
       csulcca-emu-admin clear-new TYPE | clear-old TYPE | clear-current TYPE
       csulcca-emu-admin init [--seed SEED]
TYPE: sym | asym | aes | apka; state file from CSULCCA_EMU_STATE";

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02X}")).collect()
}

fn ty(s: Option<&String>) -> Result<MkType, String> {
    s.and_then(|s| MkType::from_name(s))
        .ok_or_else(|| "missing or unknown master-key TYPE".to_string())
}

fn fail(f: Fail) -> String {
    format!("card returned {}/{}", f.rc, f.reason)
}

fn run(args: &[String]) -> Result<String, String> {
    let store = Store::from_env();
    let cmd = args.first().map(String::as_str).unwrap_or("");
    match cmd {
        "status" => {
            let s = store.read().map_err(fail)?;
            let mut out = format!("state file: {}\n", store.path().display());
            for t in MkType::ALL {
                let set = s.set(t);
                let vp = |v: Option<Vec<u8>>| v.map(|v| hex(&v)).unwrap_or_else(|| "-".into());
                out.push_str(&format!(
                    "{:<4} NEW {} {}  CURRENT {} {}  OLD {} {}\n",
                    t.name(),
                    set.new.state,
                    vp(set.new_vp(t)),
                    set.cur.state,
                    vp(set.cur_vp(t)),
                    set.old.state,
                    vp(set.old_vp(t)),
                ));
            }
            Ok(out)
        }
        "load-new" => {
            let t = ty(args.get(1))?;
            let (action, part) = match args.get(2).map(String::as_str) {
                Some("--random") => (MkAction::Random, Zeroizing::new(Vec::new())),
                Some(flag @ ("--first" | "--middle" | "--last")) => {
                    if args.get(3).is_some() {
                        return Err(
                            "key parts are read from standard input, never from the command line"
                                .into(),
                        );
                    }
                    let mut line = Zeroizing::new(String::new());
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| format!("cannot read the key part: {e}"))?;
                    let p = state::unhex(line.trim()).map(Zeroizing::new);
                    let p = p
                        .filter(|p| p.len() == t.key_len())
                        .ok_or_else(|| format!("key part must be {} bytes of hex", t.key_len()))?;
                    let a = match flag {
                        "--first" => MkAction::First,
                        "--middle" => MkAction::Middle,
                        _ => MkAction::Last,
                    };
                    (a, p)
                }
                _ => return Err(USAGE.into()),
            };
            store.update(|s| s.mkp(t, action, &part)).map_err(fail)?;
            Ok(String::new())
        }
        "set" => {
            let t = ty(args.get(1))?;
            store
                .update(|s| s.mkp(t, MkAction::Set, &[]))
                .map_err(fail)?;
            Ok(String::new())
        }
        "clear-new" | "clear-old" | "clear-current" => {
            let t = ty(args.get(1))?;
            store
                .update(|s| {
                    let set = s.set_mut(t);
                    let r = match cmd {
                        "clear-new" => &mut set.new,
                        "clear-old" => &mut set.old,
                        _ => &mut set.cur,
                    };
                    *r = state::Register {
                        state: 1,
                        value: Zeroizing::new(Vec::new()),
                    };
                    Ok(())
                })
                .map_err(fail)?;
            Ok(String::new())
        }
        "init" => {
            let seed = match (args.get(1).map(String::as_str), args.get(2)) {
                (Some("--seed"), Some(s)) => s.clone(),
                (None, _) => {
                    std::env::var("CSULCCA_EMU_SEED").unwrap_or_else(|_| state::DEFAULT_SEED.into())
                }
                _ => return Err(USAGE.into()),
            };
            store.init(&seed).map_err(fail)?;
            Ok(String::new())
        }
        _ => Err(USAGE.into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("csulcca-emu-admin: {e}");
            ExitCode::from(2)
        }
    }
}
