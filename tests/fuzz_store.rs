//! A mutation fuzzer over the store parsers and the CCA token checks, seeded with
//! the real files of `tests/data` (stores written by openCryptoki 3.8.1 and 3.27).
//!
//! Each input is a real file (NVTOK.DAT, MK_SO/MK_USER, OBJ.IDX, an object file, a
//! decrypted flattened object, a `CKA_IBM_OPAQUE` key token) with 1 to 4 mutations:
//! bit flips, interesting bytes and 32-bit words (0, 1, the length, 2^31, 2^32-1,
//! both byte orders) at random offsets, insertions, deletions, truncation, growth,
//! and splices from other files. It goes to the parser of its kind: object files to
//! `TokenStore::decode_object_bytes` with the store's master key (so private objects
//! reach the decryption and the checks after it), the rest through
//! `pkcscca::store::fuzz_parse` and `cca::token::check_structure`. A panic is a
//! failure: the input is written to `target/tmp/fuzz-store-crashes/` and named in
//! the message.
//!
//! `cargo test --test fuzz_store` runs 10^4 inputs (a few seconds). The long run:
//! `PKCSCCA_FUZZ_INPUTS=1000000 cargo test --release --test fuzz_store -- --ignored --nocapture`
//! (default 10^6 inputs; `PKCSCCA_FUZZ_SEED` replays a seed). Both print the seed
//! and the inputs per second.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test: a panic is a failure"
)]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use pkcscca::cca::token;
use pkcscca::pkcs11::AttrType;
use pkcscca::store::{fuzz_parse, ByteOrder, FuzzKind, MasterKey, ObjectName, TokenStore};

/// What an input is parsed as.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// An object file of `stores[i]`, decoded with its master key.
    Object(usize),
    /// A flattened object body in this byte order.
    Flat(ByteOrder),
    /// Anything [`fuzz_parse`] takes.
    Parse(FuzzKind),
    /// A CCA key token.
    Token,
}

struct Seed {
    kind: Kind,
    bytes: Vec<u8>,
}

struct Corpus {
    stores: Vec<(TokenStore, MasterKey, ObjectName)>,
    seeds: Vec<Seed>,
}

fn corpus() -> Corpus {
    let mut stores = Vec::new();
    let mut seeds = Vec::new();
    for v in common::VECTORS {
        let dir = v.dir();
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let nvtok = read("NVTOK.DAT");
        let nv_kind = if v.new_format {
            FuzzKind::TokenDataNew
        } else {
            FuzzKind::TokenDataOld
        };
        seeds.push(Seed {
            kind: Kind::Parse(nv_kind),
            bytes: nvtok.clone(),
        });
        seeds.push(Seed {
            kind: Kind::Parse(FuzzKind::NvtokProbe),
            bytes: nvtok,
        });
        if !v.new_format {
            seeds.push(Seed {
                kind: Kind::Parse(FuzzKind::MasterKeyOld),
                bytes: read("MK_SO"),
            });
        }
        let Some(user_pin) = v.user_pin else { continue };
        if v.objects == 0 {
            continue;
        }
        let store = TokenStore::open(&dir).unwrap();
        let mk = store.login_user(user_pin).unwrap();
        seeds.push(Seed {
            kind: Kind::Parse(FuzzKind::Index),
            bytes: read("TOK_OBJ/OBJ.IDX"),
        });
        let order = store.byte_order();
        let objects = store.load_objects(&mk).unwrap();
        let index = stores.len();
        for o in &objects {
            seeds.push(Seed {
                kind: Kind::Object(index),
                bytes: store.read_object_bytes(o.name).unwrap(),
            });
            seeds.push(Seed {
                kind: Kind::Flat(order),
                bytes: o.flattened().to_vec(),
            });
            if let Some(t) = o.template.get(AttrType::IBM_OPAQUE) {
                seeds.push(Seed {
                    kind: Kind::Token,
                    bytes: t.to_vec(),
                });
            }
        }
        let first = objects[0].name;
        stores.push((store, mk, first));
    }
    Corpus { stores, seeds }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Seed]) {
    const BYTES: [u8; 6] = [0, 1, 0x7F, 0x80, 0xFE, 0xFF];
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = BYTES[rng.below(BYTES.len())];
            }
            2 if len >= 4 => {
                let words = [
                    0,
                    1,
                    len as u32,
                    (len as u32).wrapping_sub(rng.below(16) as u32),
                    0x7FFF_FFFF,
                    0x8000_0000,
                    0xFFFF_FFFF,
                    rng.next() as u32,
                ];
                let w = words[rng.below(words.len())];
                let b = if rng.below(2) == 0 {
                    w.to_le_bytes()
                } else {
                    w.to_be_bytes()
                };
                let i = rng.below(len - 3);
                input[i..i + 4].copy_from_slice(&b);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, fill);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                input.drain(i..i + n);
            }
            5 => input.truncate(rng.below(len + 1)),
            6 => {
                let n = 1 + rng.below(64);
                input.extend((0..n).map(|_| rng.next() as u8));
            }
            7 if len > 0 => {
                // Splice a piece of another real file over this one.
                let other = &seeds[rng.below(seeds.len())].bytes;
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(64));
                    let at = rng.below(len);
                    let end = (at + n).min(len);
                    input[at..end].copy_from_slice(&other[from..from + (end - at)]);
                }
            }
            _ => {
                // Swap two bytes (or nothing on an empty input).
                if len > 1 {
                    let (a, b) = (rng.below(len), rng.below(len));
                    input.swap(a, b);
                }
            }
        }
    }
}

fn parse(c: &Corpus, kind: Kind, data: &[u8]) {
    match kind {
        Kind::Object(i) => {
            let (store, mk, name) = &c.stores[i];
            let _ = store.decode_object_bytes(*name, data.to_vec(), Some(mk));
        }
        Kind::Flat(order) => {
            fuzz_parse(FuzzKind::Flat, data, order);
        }
        Kind::Parse(k) => {
            fuzz_parse(k, data, ByteOrder::Little);
            fuzz_parse(k, data, ByteOrder::Big);
        }
        Kind::Token => {
            if let Ok(info) = token::check_structure(data) {
                assert_eq!(Ok(info), token::classify(data));
                assert_eq!(info.mkvp(data).len(), info.mkvp_len);
            }
            let _ = token::section_len(data, 8);
            let _ = token::tvv_valid(data);
        }
    }
}

fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-store-crashes")
}

/// Runs `inputs` mutated inputs; panics naming the saved input on the first crash.
fn fuzz(inputs: u64) {
    let seed = std::env::var("PKCSCCA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("PKCSCCA_FUZZ_SEED={seed} PKCSCCA_FUZZ_INPUTS={inputs}");
    let c = corpus();
    assert!(c.seeds.len() > 300, "corpus of {} files", c.seeds.len());
    let mut rng = Rng(seed | 1);
    // A panic is reported once, with its input; not by the default hook too.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut crash = None;
    for n in 0..inputs {
        let s = &c.seeds[rng.below(c.seeds.len())];
        let mut input = s.bytes.clone();
        mutate(&mut rng, &mut input, &c.seeds);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| parse(&c, s.kind, &input))) {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            crash = Some((n, s.kind, input, what));
            break;
        }
    }
    std::panic::set_hook(hook);
    let secs = started.elapsed().as_secs_f64();
    if let Some((n, kind, input, what)) = crash {
        std::fs::create_dir_all(crash_dir()).unwrap();
        let file = crash_dir().join(format!("seed-{seed}-input-{n}-{kind:?}.bin"));
        std::fs::write(&file, &input).unwrap();
        panic!(
            "input {n} ({kind:?}, {} bytes) panicked: {what}; saved in {}",
            input.len(),
            file.display()
        );
    }
    eprintln!(
        "{inputs} inputs in {secs:.1} s: {:.0} inputs/s, {} seed files, no panic",
        inputs as f64 / secs,
        c.seeds.len()
    );
}

/// The short run every `cargo test` does.
#[test]
fn store_parsers_survive_mutated_real_files() {
    fuzz(10_000);
}

/// The long run: `PKCSCCA_FUZZ_INPUTS` inputs (default 10^6).
#[test]
#[ignore = "long: cargo test --release --test fuzz_store -- --ignored --nocapture"]
fn store_parsers_survive_mutated_real_files_long() {
    let n = std::env::var("PKCSCCA_FUZZ_INPUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    fuzz(n);
}
