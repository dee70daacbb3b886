#!/usr/bin/env bash
# Interop suite: real openCryptoki 3.8.1 (Debian bookworm) writes, reads and
# uses the stores our pkcscca and store layer read and rewrite (issue 5).
#
# One run, one backup/restore of the system (tests/ock381/lib.sh), then four
# named checks, each in a subshell so one failing does not hide the others:
#
#   reader_matches_pkcs11       soft-token and CCA stores made by openCryptoki:
#                               our store layer sees exactly the objects and
#                               attributes PKCS#11 reports
#   mk_change_drill             MK change; OUR pkcscca -m keys per type (pkcsslotd
#                               stopped); openCryptoki decrypts, verifies MACs
#                               and signs with the migrated keys, also after a
#                               second change
#   differential_vs_pkcscca_381 the same store migrated by Debian's pkcscca
#                               (online, pty) and by ours (offline): identical
#                               key tokens except the documented set
#   writer_roundtrip_accepted   after our migration and a no-op rewrite of every
#                               object (TokenStore::commit), openCryptoki finds
#                               every object and attribute unchanged except
#                               CKA_IBM_OPAQUE of migrated keys
#
# Each check appends "RESULT <name> PASS|FAIL <why>" to $INTEROP_RESULTS
# (tests/interop.rs reads it); the log ends with the suite's timing line.
# Needs root on Debian bookworm x86_64; fails, never skips, when openCryptoki
# cannot be installed or started.
#
# Environment:
#   INTEROP_RESULTS  file for the RESULT lines (default: $WORK/results, printed)
#   INTEROP_KEEP=1   keep the work directory (logs, snapshots, stores)
#   CARGO            cargo to build the tools (default: cargo)
set -euo pipefail
exec 2>&1

H_NAME=interop
H_PASS="interop suite (real openCryptoki 3.8.1)"
H_KEEP=${INTEROP_KEEP:-0}
EXTRA_PACKAGES=pkcscca
# shellcheck source=../ock381/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../ock381/lib.sh"

RESULTS=${INTEROP_RESULTS:-}
CHECKS=(reader_matches_pkcs11 mk_change_drill differential_vs_pkcscca_381 writer_roundtrip_accepted)

result() {
    log "RESULT $*"
    [[ -n $RESULTS ]] && printf 'RESULT %s\n' "$*" >>"$RESULTS"
    return 0
}

# If the run ends before a check reported (install, setup, restore failed),
# that check fails with the reason; then the timing line.
harness_on_exit() {
    local rc=$1 c
    for c in "${CHECKS[@]}"; do
        [[ -n $RESULTS ]] && grep -q "^RESULT $c " "$RESULTS" 2>/dev/null && continue
        result "$c FAIL the suite stopped before this check (exit $rc, step \"$STEP\"); see the log"
    done
    log "TIMING interop suite: $(($(date +%s) - START_TS))s from the start through every check (install, build, setup, checks; the restore follows)"
}

# run_check NAME: runs check_NAME in a subshell with its own pkcsslotd
# bookkeeping; records PASS or FAIL with the reason fail() gave.
run_check() {
    local name=$1 t0 note
    t0=$(date +%s)
    note="$WORK/$name.why"
    : >"$note"
    step "check $name"
    # Not in an `if`: errexit must stay on inside the subshell.
    set +e
    (set -e; FAIL_NOTE="$note"; trap stop_slotd EXIT; "check_$name")
    local rc=$?
    set -e
    if ((rc == 0)); then
        result "$name PASS $(($(date +%s) - t0))s"
    else
        result "$name FAIL $(tr '\n' ' ' <"$note" | cut -c1-2000)"
    fi
    # A failed check may leave the daemon of its subshell behind.
    if pid=$(slotd_running_pid); then kill "$pid"; sleep 0.5; fi
}

harness_preconditions
harness_install
harness_lock
harness_build
harness_backup
[[ -n $RESULTS ]] || RESULTS="$WORK/results"
harness_configure
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OURS="$BIN/pkcscca"
[[ -x $OURS ]] || fail "missing $OURS after build"

# Our pkcscca, offline: PINs piped, the real emulator, openCryptoki's own lock
# directory (so it serialises with openCryptoki).
our_pkcscca() {
    log "our pkcscca $*"
    printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" \
        | env LD_LIBRARY_PATH="$BIN" PKCSCCA_LOCK_DIR="$LOCK_DIR" "$OURS" "$@" 2>&1 \
        | tee "$WORK/ours.out" | sed 's/^/    /'
    return "${PIPESTATUS[1]}"
}

store_snapshot() { drill store-snapshot --store "$1" --out "$2"; }

# ------------------------------------------------------------------ setup ---
# Not a check: if openCryptoki cannot be started or fill its tokens, every
# check fails (harness_on_exit) with this step named.

step "start pkcsslotd"
start_slotd
drill info || fail "cannot list slots"

step "fill the CCA token (slot $CCA_SLOT) through PKCS#11"
drill setup --extras --slot "$CCA_SLOT" --label "interop cca" --state "$WORK/cca.state" \
    || fail "CCA token setup through PKCS#11 failed"
step "fill the soft token (slot $SW_SLOT) through PKCS#11"
drill setup --extras --profile sw --slot "$SW_SLOT" --label "interop sw" --state "$WORK/sw.state" \
    || fail "soft token setup through PKCS#11 failed"

step "PKCS#11 snapshots"
drill snapshot --slot "$CCA_SLOT" --out "$WORK/cca.p11.pre" || fail "PKCS#11 snapshot of the CCA token"
drill snapshot --slot "$SW_SLOT" --out "$WORK/sw.p11.pre" || fail "PKCS#11 snapshot of the soft token"
stop_slotd
# File names, modes and owners as openCryptoki made them (the writer check
# holds our rewrite to them: group pkcs11 members must keep access).
perms() { (cd "$1" && find . -type f -printf '%P %m %u %g\n' | LC_ALL=C sort); }
perms "$SW_DIR" >"$WORK/sw.perms.pre"
perms "$CCA_DIR" >"$WORK/cca.perms.pre"

# ----------------------------------------------------------------- checks ---

check_reader_matches_pkcs11() {
    store_snapshot "$SW_DIR" "$WORK/sw.store" || fail "our store layer cannot read $SW_DIR"
    store_snapshot "$CCA_DIR" "$WORK/cca.store" || fail "our store layer cannot read $CCA_DIR"
    drill compare --a "$WORK/sw.p11.pre" --b "$WORK/sw.store" \
        || fail "soft token: $(grep -m3 '^DIFF' "$WORK/drill.out" | tr '\n' ' ')"
    drill compare --a "$WORK/cca.p11.pre" --b "$WORK/cca.store" \
        || fail "CCA token: $(grep -m3 '^DIFF' "$WORK/drill.out" | tr '\n' ' ')"
    # Our pkcscca --dry-run --json lists, per -k, exactly the CCA keys of the
    # CKK_ types that -k searches, as PKCS#11 reports them, and writes nothing.
    local k types before
    before=$(find "$CCA_DIR" -type f -exec sha256sum {} + | sort)
    for k in sym:13,14,15 aes:1f,10,2b,2c,2d,2e apka:3,0,40,41,4a,4b,49,4c asym:0; do
        types=${k#*:}; k=${k%%:*}
        step "our pkcscca -m keys -k $k --dry-run --json lists what PKCS#11 reports"
        printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" \
            | env LD_LIBRARY_PATH="$BIN" PKCSCCA_LOCK_DIR="$LOCK_DIR" \
                "$OURS" -m keys -s "$CCA_SLOT" -k "$k" --dry-run --json >"$WORK/dry-$k.json" 2>"$WORK/dry-$k.err" \
            || fail "our pkcscca -k $k --dry-run --json exited $?: $(tr '\n' ' ' <"$WORK/dry-$k.err")"
        "$PY" "$HERE/json_keys.py" "$WORK/cca.p11.pre" "$WORK/dry-$k.json" "$types" \
            || fail "-k $k --dry-run --json: $(tail -n1 "$WORK/dry-$k.json.diff" 2>/dev/null)"
    done
    [[ $before == "$(find "$CCA_DIR" -type f -exec sha256sum {} + | sort)" ]] \
        || fail "--dry-run changed files in $CCA_DIR"
}
run_check reader_matches_pkcs11

step "master key change (emulated: load NEW SYM, ASYM, AES and APKA, SET)"
mk_change

# The differential's first half: Debian's pkcscca 3.8.1 migrates the live
# store online (it needs pkcsslotd), then the live store goes back to its
# pre-migration copy for our tool. Labels of the CCA token's keys, by how
# 3.8.1 treats them (it finds only CKA_EXTRACTABLE = TRUE objects).
CCA_EXTRACTABLE="des-gen,des3-gen,aes128-gen,aes256-gen,hmac-gen,ec-p256,rsa2048"
LONG_LABEL=$(sed -n 's/^key \(imported-aes-with-a-long-label[^ ]*\) .*/\1/p' "$WORK/cca.state")
[[ -n $LONG_LABEL ]] || fail "no imported key in $WORK/cca.state"
CCA_EXTRACTABLE+=",$LONG_LABEL,des3-imported,generic-imported"
CCA_NOT_FOUND_BY_381="aes128-noextract,ec-p256-pub,rsa2048-pub"

step "copy the CCA store before any migration"
cp -a "$CCA_DIR" "$WORK/cca-orig"
store_snapshot "$WORK/cca-orig" "$WORK/orig.store" || fail "our store layer cannot read the copy"

differential_phase1() {
    start_slotd
    pkcscca_381_migrate sym "DES: 3."
    pkcscca_381_migrate aes "AES: 3. HMAC: 2."
    pkcscca_381_migrate apka "ECC: 1."
    pkcscca_381_migrate asym "RSA: 1."
    stop_slotd
    store_snapshot "$CCA_DIR" "$WORK/theirs.store" || fail "our store layer cannot read 3.8.1's result"
}
step "differential, first half: Debian's pkcscca 3.8.1 migrates the store"
: >"$WORK/phase1.why"
set +e
(set -e; FAIL_NOTE="$WORK/phase1.why"; trap stop_slotd EXIT; differential_phase1)
phase1_rc=$?
set -e
if ((phase1_rc == 0)); then PHASE1=ok; else PHASE1=failed; fi
step "put back the unmigrated store for our pkcscca"
rm -rf "$CCA_DIR"
cp -a "$WORK/cca-orig" "$CCA_DIR"
# The token's shared memory describes the objects 3.8.1 wrote; drop it.
rm -f "/dev/shm/var.lib.opencryptoki.$CCA_TOK"

check_mk_change_drill() {
    step "our pkcscca refuses while pkcsslotd runs"
    start_slotd
    if our_pkcscca -m keys -s "$CCA_SLOT" -k sym; then
        fail "our pkcscca migrated with pkcsslotd running"
    fi
    grep -q 'pkcsslotd is running' "$WORK/ours.out" || fail "our pkcscca failed with pkcsslotd running, but not saying so"
    stop_slotd
    step "our pkcscca refuses while a process holds openCryptoki's token lock"
    # 3.8.1 serialises token access with flock() on this file (created by the
    # STDLL); our pkcscca must take the same lock, in the same directory.
    local lockf="$LOCK_DIR/$CCA_TOK/LCK..$CCA_TOK"
    [[ -f $lockf ]] || fail "openCryptoki left no token lock file $lockf"
    exec 8<"$lockf"
    flock -n 8 || fail "cannot take $lockf for the test"
    if our_pkcscca -m keys -s "$CCA_SLOT" -k sym; then
        fail "our pkcscca migrated while $lockf was held"
    fi
    flock -u 8
    exec 8<&-
    grep -q 'locked' "$WORK/ours.out" || fail "our pkcscca failed while the token lock was held, but not saying so"
    local k
    for k in sym aes apka asym; do
        step "our pkcscca -m keys -s $CCA_SLOT -k $k (offline)"
        our_pkcscca -m keys -s "$CCA_SLOT" -k "$k" -v || fail "our pkcscca -k $k exited $?"
        ! grep -q 'Failed to migrate' "$WORK/ours.out" || fail "our pkcscca -k $k reported failures"
    done
    # Snapshot for the differential before anything else touches the store.
    store_snapshot "$CCA_DIR" "$WORK/ours.store" || fail "our store layer cannot read its own result"
    step "openCryptoki uses the keys our pkcscca migrated"
    start_slotd
    drill snapshot --slot "$CCA_SLOT" --out "$WORK/cca.p11.migrated" || fail "PKCS#11 snapshot after our migration"
    drill verify --slot "$CCA_SLOT" --state "$WORK/cca.state" --extras \
        --migrated "$CCA_EXTRACTABLE,$CCA_NOT_FOUND_BY_381" \
        || fail "after our migration: $(grep -m1 'FAILED' "$WORK/drill.out")"
    stop_slotd
    step "second master key change: nothing our pkcscca migrated is lost"
    mk_change
    start_slotd
    drill verify --slot "$CCA_SLOT" --state "$WORK/cca.state" --extras \
        --migrated "$CCA_EXTRACTABLE,$CCA_NOT_FOUND_BY_381" \
        || fail "after a second master key change: $(grep -m1 'FAILED' "$WORK/drill.out")"
    stop_slotd
}
run_check mk_change_drill

check_differential_vs_pkcscca_381() {
    [[ $PHASE1 == ok ]] || fail "Debian's pkcscca 3.8.1 run failed: $(cat "$WORK/phase1.why")"
    [[ -s $WORK/ours.store ]] || fail "no store snapshot after our migration (see mk_change_drill)"
    drill differential --a "$WORK/orig.store" --b "$WORK/theirs.store" --c "$WORK/ours.store" \
        || fail "$(grep -m3 '^DIFF' "$WORK/drill.out" | tr '\n' ' ')"
    # Exactly the documented set: non-extractable keys and public-key objects.
    local want got
    want=$(tr ',' '\n' <<<"$CCA_NOT_FOUND_BY_381" | sort)
    got=$(sed -n 's/^deliberate: object "\([^"]*\)".*/\1/p' "$WORK/drill.out" | sort)
    [[ $want == "$got" ]] || fail "deliberate differences are {$(echo $got)}, expected {$(echo $want)}"
}
run_check differential_vs_pkcscca_381

check_writer_roundtrip_accepted() {
    [[ -s $WORK/cca.p11.migrated ]] || fail "no PKCS#11 snapshot after our migration (see mk_change_drill)"
    step "after our migration: every attribute as before except CKA_IBM_OPAQUE of the migrated keys"
    drill compare --a "$WORK/cca.p11.pre" --b "$WORK/cca.p11.migrated" --changed-opaque all \
        || fail "CCA token after our migration: $(grep -m3 '^DIFF' "$WORK/drill.out" | tr '\n' ' ')"
    step "no-op rewrite of every object by our store layer"
    drill store-rewrite --slot "$SW_SLOT" || fail "store-rewrite of the soft token"
    drill store-rewrite --slot "$CCA_SLOT" || fail "store-rewrite of the CCA token"
    local t
    for t in sw cca; do
        local dir=$SW_DIR
        [[ $t == cca ]] && dir=$CCA_DIR
        perms "$dir" >"$WORK/$t.perms.post"
        diff "$WORK/$t.perms.pre" "$WORK/$t.perms.post" >"$WORK/$t.perms.diff" \
            || fail "$t store files after our rewrite differ in name, mode or owner: $(grep '^[<>]' "$WORK/$t.perms.diff" | head -4 | tr '\n' ' ')"
    done
    step "openCryptoki reads the rewritten stores"
    start_slotd
    drill snapshot --slot "$SW_SLOT" --out "$WORK/sw.p11.rewritten" || fail "PKCS#11 snapshot of the rewritten soft token"
    drill snapshot --slot "$CCA_SLOT" --out "$WORK/cca.p11.rewritten" || fail "PKCS#11 snapshot of the rewritten CCA token"
    drill compare --a "$WORK/sw.p11.pre" --b "$WORK/sw.p11.rewritten" \
        || fail "soft token after the rewrite: $(grep -m3 '^DIFF' "$WORK/drill.out" | tr '\n' ' ')"
    drill compare --a "$WORK/cca.p11.migrated" --b "$WORK/cca.p11.rewritten" \
        || fail "CCA token after the rewrite: $(grep -m3 '^DIFF' "$WORK/drill.out" | tr '\n' ' ')"
    drill verify --slot "$CCA_SLOT" --state "$WORK/cca.state" --extras \
        --migrated "$CCA_EXTRACTABLE,$CCA_NOT_FOUND_BY_381" \
        || fail "CCA keys after the rewrite: $(grep -m1 'FAILED' "$WORK/drill.out")"
    stop_slotd
}
run_check writer_roundtrip_accepted

harness_collect
STEP="done"
failed=$(grep -c ' FAIL ' "$RESULTS" || true)
((failed == 0)) || fail "$failed check(s) failed"
exit 0
