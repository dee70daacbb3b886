#!/usr/bin/env bash
# Rehearsal of a CCA master key change, on a machine without a CCA card.
#
# Builds pkcscca and the software CCA library (tests/csulcca-emu), makes a
# sample openCryptoki CCA token (every key kind, new data store format) under
# the emulated card's current master keys, changes the SYM, AES, APKA and ASYM
# master keys on the card, runs `pkcscca -m keys` for each type exactly as an
# admin's maintenance script would (PINs piped), and shows that every key still
# decrypts, MACs or signs what it did before the change.
#
# Exits non-zero on any failure; leaves nothing behind.
#
# Environment: CARGO (default cargo), CARGO_TARGET_DIR (default ./target),
# REHEARSAL_PBKDF2_ITERATIONS (PBKDF2 rounds of the sample store; default
# openCryptoki's 100000).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cargo=${CARGO:-cargo}
target=${CARGO_TARGET_DIR:-$root/target}/debug

work=$(mktemp -d "${TMPDIR:-/tmp}/pkcscca-rehearsal.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

step() { printf '\n=== %s\n' "$*"; }

step "Build pkcscca and the software CCA library"
(cd "$root" && "$cargo" build -p pkcscca -p csulcca-emu)  # progress on stderr

# The emulated card: its registers live in this file. pkcscca loads
# libcsulcca.so by its bare name, exactly as upstream does, so LD_LIBRARY_PATH
# decides which library it gets.
export CSULCCA_EMU_STATE=$work/card.state
export LD_LIBRARY_PATH=$target${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# openCryptoki's lock directory, kept inside the rehearsal.
export PKCSCCA_LOCK_DIR=$work/lock
unset CSULCCA_EMU_FAIL CSULCCA_EMU_LATENCY_US CSULCCA_SAMPLE_SO_PIN CSULCCA_SAMPLE_USER_PIN

pkcscca=$target/pkcscca
admin=$target/csulcca-emu-admin
sample=$target/csulcca-emu-sample
store=$work/ccatok
checks=$work/checks.txt
SO_PIN=76543210
USER_PIN=11223344

step "The card's master key registers"
"$admin" status

step "A sample CCA token: every key kind, under the CURRENT master keys"
printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" |
    "$sample" create --dir "$store" --format new --checks "$checks" \
        --pbkdf2-iterations "${REHEARSAL_PBKDF2_ITERATIONS:-100000}"

step "Every key works before the change"
printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" | "$sample" check --dir "$store" --checks "$checks"

step "Master key change on the card: load NEW, SET (CURRENT becomes OLD)"
for type in sym aes apka asym; do
    "$admin" load-new "$type" --random
    "$admin" set "$type"
done
"$admin" status

step "Keys still under the OLD master keys (this check is expected to fail)"
if printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" | "$sample" check --dir "$store" --checks "$checks"; then
    echo "rehearsal: keys should be under the OLD master keys now" >&2
    exit 1
fi

for type in sym aes apka asym; do
    step "pkcscca -m keys -k $type -s 2 -d $store"
    printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" | "$pkcscca" -m keys -k "$type" -s 2 -d "$store"
done

step "Every key is under the CURRENT master key and works as before"
printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" | "$sample" check --dir "$store" --checks "$checks"

step "Rehearsal passed"
