#!/usr/bin/env bash
# Drive Debian's real openCryptoki 3.8.1 over our software CCA library
# (libcsulcca.so from tests/csulcca-emu), end to end:
#
#   pkcsslotd + CCA STDLL -> init token, PINs, generate keys, encrypt
#   emulated master key change (csulcca-emu-admin: load NEW SYM/ASYM/AES/APKA, SET)
#   real /usr/sbin/pkcscca -m keys (sym, aes, apka, asym) driven through a pty
#   restart -> the migrated keys decrypt the data encrypted before the change
#
# Needs root on Debian bookworm x86_64; installs opencryptoki and python3 when
# missing. Everything it touches on the system (/etc/opencryptoki,
# /var/lib/opencryptoki, the lock and log directories, /dev/shm segments,
# pkcsslotd's SysV segment, pid and socket files, /dev/log) is backed up first
# and restored on exit, pass or fail, and the restore is checked against a
# manifest. Exit status 0 only if every step passed.
#
# Environment:
#   CARGO            cargo to build the emulator and the drill (default: cargo)
#   OCK381_KEEP=1    keep the work directory (logs, traces, state) afterwards
#   OCK381_TRACE=N   OPENCRYPTOKI_TRACE_LEVEL for the PKCS#11 clients (default 4)
#
# The shared steps (install, backup/restore, configuration, pkcsslotd, the
# drill and the pty driver for pkcscca) live in lib.sh, also used by
# tests/interop/run.sh. Findings are written up in the team notes
# (ock381-findings.md); the facts the steps rely on are cited inline.
set -euo pipefail
exec 2>&1   # one interleaved log for the test wrapper

H_NAME=ock381
H_PASS="real openCryptoki 3.8.1 over libcsulcca.so"
H_KEEP=${OCK381_KEEP:-0}
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

harness_preconditions
harness_install
harness_lock
harness_build
harness_backup
harness_configure

# ----------------------------------------------------------------- drill ---

step "start pkcsslotd"
start_slotd

step "token init, PINs, key generation, encryption (slot $CCA_SLOT)"
drill info || fail "cannot list slots"
drill setup --slot "$CCA_SLOT" --label "ock381 cca" --state "$WORK/drill.state" \
    || fail "token setup through PKCS#11 failed (see the ock-drill line above)"

step "master key change (emulated: load NEW SYM, ASYM, AES and APKA, SET)"
OLD_SYM=$(current_mkvp SYM)
OLD_AES=$(current_mkvp AES)
mk_change
admin status || fail "status after SET"

step "pkcscca without pkcsslotd"
stop_slotd
# 3.8.1's "-m keys" is an online tool: it migrates through libopencryptoki
# (C_Initialize, C_Login, C_FindObjects, C_SetAttributeValue), so it cannot
# work while pkcsslotd is down. Pin that, so a change in behaviour is noticed.
if pkcscca_keys sym; then
    fail "pkcscca -m keys succeeded with pkcsslotd stopped; 3.8.1 was expected to need the daemon"
fi
grep -q 'C_Initialize' "$WORK/pkcscca-sym.out.txt" \
    || fail "pkcscca without pkcsslotd failed, but not in C_Initialize as expected"
log "as expected, pkcscca 3.8.1 cannot migrate with pkcsslotd stopped"

start_slotd
# DES and DES3 (3.8.1 counts both as DES).
pkcscca_381_migrate sym "DES: 2."
# Two extractable AES keys and one generic secret (HMAC, via CSNBKTC2). The
# non-extractable AES key is not found: 3.8.1 searches with CKA_EXTRACTABLE=TRUE.
pkcscca_381_migrate aes "AES: 2. HMAC: 1."
# Only the private half of the EC pair: the public object (which in 3.8.1
# holds the same full secure token) has no CKA_EXTRACTABLE and is not found.
pkcscca_381_migrate apka "ECC: 1."
# The RSA pair (3.8.1's RSA-CRT token, wrapped under the ASYM master key):
# again only the private object.
pkcscca_381_migrate asym "RSA: 1."
stop_slotd

step "restart and decrypt with the migrated keys"
start_slotd
drill verify --slot "$CCA_SLOT" --state "$WORK/drill.state" \
    --migrated des-gen,des3-gen,aes128-gen,aes256-gen,hmac-gen,ec-p256,rsa2048 \
    --untouched aes128-noextract,ec-p256-pub,rsa2048-pub \
    || fail "verification after migration failed (see the ock-drill lines above)"
# The re-enciphered fixed-length tokens carry the new CURRENT MKVP (bytes
# 8..16, as cca_specific.c reads it); the key pkcscca never saw keeps the old one.
NEW_SYM=$(current_mkvp SYM)
NEW_AES=$(current_mkvp AES)
for pair in des-gen:$NEW_SYM des3-gen:$NEW_SYM aes128-gen:$NEW_AES aes256-gen:$NEW_AES \
    aes128-noextract:$OLD_AES; do
    grep -q "^${pair%%:*} .* MKVP ${pair#*:}\$" "$WORK/drill.out" \
        || fail "${pair%%:*}: token does not carry MKVP ${pair#*:}"
done
log "token MKVPs: DES/DES3 $NEW_SYM, AES $NEW_AES (new CURRENT); aes128-noextract $OLD_AES (old)"
stop_slotd

step "second master key change: what pkcscca skipped is lost"
# After another SET the master key the unmigrated non-extractable key was
# wrapped under is gone (OLD now holds the one pkcscca migrated to), so that
# key no longer decrypts, while every migrated key still does.
mk_change
start_slotd
drill verify --slot "$CCA_SLOT" --state "$WORK/drill.state" \
    --migrated des-gen,des3-gen,aes128-gen,aes256-gen,hmac-gen,ec-p256,rsa2048 \
    --untouched aes128-noextract,ec-p256-pub,rsa2048-pub --lost aes128-noextract \
    || fail "after a second master key change (see the ock-drill lines above)"
stop_slotd

harness_collect

STEP="done"
exit 0
