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
# Findings from running this are written up in the team notes
# (ock381-findings.md); the facts the steps below rely on are cited inline.
set -euo pipefail
exec 2>&1   # one interleaved log for the test wrapper

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
START_TS=$(date +%s)

# Slot layout. Slot 0 must be a STDLL that loads (the soft token); the CCA
# token sits in slot 1, which is also what pkcscca 3.8.1 needs: it refuses
# "-s 0" as a missing slot number (pkcscca.c main: `if (!slot_id)`).
SW_SLOT=0
CCA_SLOT=1
# Token directories of our own under CONFIG_PATH (3.8.1 honours `tokname`,
# new_host.c ST_Initialize; pkcsslotd creates them, slotmgr.c
# chk_create_tokdir), so the stock swtok/ccatok stores are never written.
SW_TOK=ock381-sw
CCA_TOK=ock381-cca
SO_PIN=76543210
USER_PIN=11223344
P11_LIB=/usr/lib/x86_64-linux-gnu/pkcs11/PKCS11_API.so

CONF_DIR=/etc/opencryptoki
DATA_DIR=/var/lib/opencryptoki
LOG_DIR=/var/log/opencryptoki
PID_FILE=/var/run/pkcsslotd.pid       # 3.8.1 slotmgr.h PID_FILE_PATH
SOCK_FILE=/var/run/pkcsslotd.socket   # 3.8.1 slotmgr.h SOCKET_FILE_PATH
SYSLOG_SOCK=/dev/log

WORK=""
BACKUP_DONE=0
SLOTD_PID=""
SYSLOG_PID=""
SYSLOG_OURS=0
STEP="start"

log() { printf '[ock381 %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() {
    printf '[ock381] FAIL at step "%s": %s\n' "$STEP" "$*" >&2
    exit 1
}
step() {
    STEP="$1"; log "== $1"
    [[ -n ${CSULCCA_TRACE_LOG:-} ]] && echo "#### $1" >>"$CSULCCA_TRACE_LOG"
    return 0
}

# ---------------------------------------------------------------- checks ---

step "preconditions"
[[ $(id -u) -eq 0 ]] || fail "must run as root (it installs packages and runs pkcsslotd)"
[[ $(uname -m) == x86_64 ]] || fail "written for x86_64 (3.8.1's byte-order quirks are host-specific)"
[[ -r /etc/debian_version ]] || fail "needs Debian (bookworm ships openCryptoki 3.8.1)"

# --------------------------------------------------------------- install ---

step "install"
need=()
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in opencryptoki python3; do pkg_ok "$p" || need+=("$p"); done
command -v cc >/dev/null || need+=(gcc libc6-dev)   # for the verb tracer
command -v nm >/dev/null || need+=(binutils)         # export check
installed_now=0
if ((${#need[@]})); then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || fail "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || fail "apt-get install ${need[*]} failed"
    installed_now=1
fi
OCK_VER=$(dpkg-query -W -f='${Version}' opencryptoki)
[[ $OCK_VER == 3.8.1* ]] || fail "opencryptoki is $OCK_VER; this harness is for 3.8.1 (Debian bookworm)"
PY=/usr/bin/python3
[[ -x $PY ]] || fail "$PY missing after install"
log "opencryptoki $OCK_VER"

# One run at a time on a machine: the system paths are shared. The lock is
# taken on the daemon's own binary (opened read-only), so no file is left.
exec 9</usr/sbin/pkcsslotd || fail "no /usr/sbin/pkcsslotd after install"
flock -w 600 9 || fail "another ock381 run holds the lock on /usr/sbin/pkcsslotd"

slotd_running_pid() {
    local pid
    [[ -r $PID_FILE ]] || return 1
    pid=$(tr -dc 0-9 <"$PID_FILE")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q pkcsslotd || return 1
    echo "$pid"
}
if pid=$(slotd_running_pid); then
    if ((installed_now)); then
        # The package's postinst may start the daemon on install; that one is ours.
        log "stopping the pkcsslotd ($pid) that the package install started"
        kill "$pid"; sleep 1
    else
        fail "a pkcsslotd (pid $pid) is already running; stop it first (this harness rewrites opencryptoki.conf)"
    fi
fi

# ----------------------------------------------------------------- build ---

step "build emulator and drill"
CARGO=${CARGO:-cargo}
(cd "$ROOT" && "$CARGO" build -q -p csulcca-emu -p ock-drill) || fail "cargo build failed"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/debug"
EMU_LIB="$BIN/libcsulcca.so"
EMU_ADMIN="$BIN/csulcca-emu-admin"
DRILL="$BIN/ock-drill"
for f in "$EMU_LIB" "$EMU_ADMIN" "$DRILL"; do [[ -x $f || -f $f ]] || fail "missing $f after build"; done
# The 93 verbs the 3.8.1 CCA STDLL resolves (it exit()s on any missing one)
# plus CSNBKTC2 for pkcscca: the table of the tracer lists exactly those.
VERBS=$(grep -o '^V([A-Z0-9]*' "$HERE/csulcca_trace.c" | cut -c3-)
missing=$(comm -23 <(sort <<<"$VERBS") <(nm -D --defined-only "$EMU_LIB" | awk '{print $3}' | sort))
[[ -z $missing ]] || fail "$EMU_LIB does not export: $(echo $missing)"

# ---------------------------------------------------------------- backup ---

WORK=$(mktemp -d /tmp/ock381.XXXXXX)
chmod 0755 "$WORK"
LOCK_DIR="$(readlink -f /var/lock)/opencryptoki"
SHM_KEY=""

# Paths we may touch. Sockets are not archived by tar; the daemon recreates
# (and on SIGTERM removes) its own, and we remove one only if we created it.
SYS_PATHS=("$CONF_DIR" "$DATA_DIR" "$LOCK_DIR" "$LOG_DIR" "$(readlink -f "$(dirname "$PID_FILE")")/pkcsslotd.pid")

manifest() {
    # Path, type, mode, owner, group, size and content hash of every path we
    # touch; sockets by type only.
    local p
    for p in "${SYS_PATHS[@]}" /dev/shm/var.lib.opencryptoki.*; do
        [[ -e $p || -L $p ]] || continue
        find "$p" -printf '%p %y %m %u %g %s\n'
        find "$p" -type f -exec sha256sum {} +
    done 2>/dev/null | LC_ALL=C sort
    ipcs -m | awk -v k="$SHM_KEY" 'tolower($1)==k {print "sysv", $1}'
}

# ftok(PKCS11_SHMEM_FILE or /usr/sbin/pkcsslotd, 'b') keys pkcsslotd's SysV
# segment (3.8.1 shmem.c); glibc: proj<<24 | (dev & 0xff)<<16 | (ino & 0xffff).
read -r ino dev < <(stat -L -c '%i %d' /usr/sbin/pkcsslotd)
SHM_KEY=$(printf '0x%08x' $(((0x62 << 24) | ((dev & 0xff) << 16) | (ino & 0xffff))))

step "backup"
manifest >"$WORK/manifest.before"
existing=()
for p in "${SYS_PATHS[@]}" /dev/shm/var.lib.opencryptoki.*; do
    [[ -e $p ]] && existing+=("${p#/}")
done
printf '%s\n' "${existing[@]}" >"$WORK/existed"
tar --numeric-owner -C / -cpf "$WORK/backup.tar" "${existing[@]}" \
    || fail "could not back up ${existing[*]}"
ipcs -m | awk 'NR>3 && $2 ~ /^[0-9]+$/ {print $2}' | sort >"$WORK/shmids.before"
BACKUP_DONE=1
log "backed up: ${existing[*]} (work dir $WORK)"

stop_slotd() {
    local pid=${SLOTD_PID:-}
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    SLOTD_PID=""
}

restore() {
    local rc=$? p
    set +e
    trap - EXIT
    stop_slotd
    if [[ -n $SYSLOG_PID ]]; then kill "$SYSLOG_PID" 2>/dev/null; wait "$SYSLOG_PID" 2>/dev/null; fi
    ((SYSLOG_OURS)) && rm -f "$SYSLOG_SOCK"
    if ((BACKUP_DONE)); then
        log "== restore"
        for p in "${SYS_PATHS[@]}"; do rm -rf "$p"; done
        for p in /dev/shm/var.lib.opencryptoki.*; do [[ -e $p ]] && rm -f "$p"; done
        [[ -e $SOCK_FILE ]] && ! grep -qx "${SOCK_FILE#/}" "$WORK/existed" && rm -f "$SOCK_FILE"
        tar --numeric-owner -C / -xpf "$WORK/backup.tar" || { log "tar restore FAILED"; rc=1; }
        # SysV segments created during the run under pkcsslotd's key.
        ipcs -m | awk -v k="$SHM_KEY" 'NR>3 && tolower($1)==k {print $2}' | while read -r id; do
            grep -qx "$id" "$WORK/shmids.before" || ipcrm -m "$id"
        done
        manifest >"$WORK/manifest.after"
        if diff "$WORK/manifest.before" "$WORK/manifest.after" >"$WORK/manifest.diff"; then
            log "system state restored and verified against the manifest"
        else
            log "RESTORE MISMATCH:"; cat "$WORK/manifest.diff"; rc=1
        fi
    fi
    local took=$(($(date +%s) - START_TS))
    if ((rc == 0)); then
        log "PASS: real openCryptoki 3.8.1 over libcsulcca.so, ${took}s"
    else
        log "FAILED (exit $rc) after ${took}s"
        if [[ -n $WORK ]]; then
            for p in "$WORK"/syslog "$WORK"/cca-trace.log; do
                [[ -s $p ]] && { log "--- $(basename "$p") (last 40 lines)"; tail -n 40 "$p"; }
            done
        fi
    fi
    if [[ -n $WORK ]]; then
        if [[ ${OCK381_KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap restore EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------- setup ---

step "configure"
if [[ ! -e $SYSLOG_SOCK ]]; then
    "$PY" "$HERE/syslog_catch.py" "$SYSLOG_SOCK" "$WORK/syslog" 9<&- &
    SYSLOG_PID=$!
    SYSLOG_OURS=1
    for _ in $(seq 50); do [[ -S $SYSLOG_SOCK ]] && break; sleep 0.05; done
fi
mkdir -p "$LOG_DIR"
# The lock root comes from tmpfiles.d, which a container without systemd may
# never have applied (and /run is emptied at boot); pkcsslotd needs it for
# LCK..APIlock and does not create it (3.8.1 mutex.c).
[[ -d $LOCK_DIR ]] || install -d -m 0770 -o root -g pkcs11 "$LOCK_DIR"
cat >"$CONF_DIR/opencryptoki.conf" <<EOF
version opencryptoki-3.8.1
# Written by pkcscca-rs tests/ock381/run.sh; the original is restored on exit.
slot $SW_SLOT
{
stdll = libpkcs11_sw.so
tokname = $SW_TOK
}
slot $CCA_SLOT
{
stdll = libpkcs11_cca.so
tokname = $CCA_TOK
description = "CCA over csulcca-emu"
}
EOF
chmod 0644 "$CONF_DIR/opencryptoki.conf"
CCA_DIR="$DATA_DIR/$CCA_TOK"

# The emulator's master key registers live in a state file shared by every
# process (the STDLL inside each PKCS#11 client, pkcscca, the admin tool).
export CSULCCA_EMU_STATE="$WORK/emu.state"
# The CCA STDLL dlopen()s the bare name "libcsulcca.so" inside the PKCS#11
# application (cca_specific.c token_specific_init), as does pkcscca itself.
# They get our tracing stand-in (csulcca_trace.c), which logs every verb call
# with its rule array and forwards it to the emulator.
mkdir -p "$WORK/trace"
cc -shared -fPIC -O1 -o "$WORK/trace/libcsulcca.so" "$HERE/csulcca_trace.c" -ldl -lpthread \
    || fail "cannot build the verb tracer"
export CSULCCA_TRACE_REAL="$EMU_LIB"
export CSULCCA_TRACE_LOG="$WORK/cca-trace.log"
CLIENT_ENV=(env LD_LIBRARY_PATH="$WORK/trace${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    OPENCRYPTOKI_TRACE_LEVEL="${OCK381_TRACE:-4}")

admin() {
    log "csulcca-emu-admin $*"
    "$EMU_ADMIN" "$@" 2>&1 | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}
admin status || fail "csulcca-emu-admin status failed"

# An emulated master key change for the SYM, ASYM, AES and APKA registers: a new
# random value into NEW, then SET (CURRENT -> OLD, NEW -> CURRENT).
mk_change() {
    local t
    for t in sym asym aes apka; do admin load-new "$t" --random || fail "csulcca-emu-admin load-new $t --random"; done
    for t in sym asym aes apka; do admin set "$t" || fail "csulcca-emu-admin set $t"; done
}

start_slotd() {
    rm -f "$PID_FILE"
    # No LD_LIBRARY_PATH: 3.8.1's pkcsslotd loads no STDLL and no CCA library
    # (the STDLL runs inside each PKCS#11 application).
    timeout 60 env -u LD_LIBRARY_PATH /usr/sbin/pkcsslotd 9<&- || fail "pkcsslotd exited with $?"
    for _ in $(seq 100); do
        SLOTD_PID=$(slotd_running_pid) && break
        sleep 0.05
    done
    [[ -n $SLOTD_PID ]] || fail "pkcsslotd did not write $PID_FILE"
    log "pkcsslotd running, pid $SLOTD_PID"
}

drill() {
    log "ock-drill $*"
    timeout 120 "${CLIENT_ENV[@]}" "$DRILL" --lib "$P11_LIB" "$@" 2>&1 | tee "$WORK/drill.out" | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}

# pkcscca 3.8.1 prompts for both PINs with echo off (get_pin: tcsetattr
# TCSAFLUSH on stdin), so it must run on a terminal.
pkcscca_keys() {
    local kind=$1 out="$WORK/pkcscca-$1.out"
    log "pkcscca -m keys -s $CCA_SLOT -k $kind -d $CCA_DIR -v"
    set +e
    "${CLIENT_ENV[@]}" "$PY" "$HERE/pty_answer.py" --timeout 120 \
        --answer "Enter the SO PIN: =$SO_PIN" --answer "Enter the USER PIN: =$USER_PIN" \
        -- /usr/sbin/pkcscca -m keys -s "$CCA_SLOT" -k "$kind" -d "$CCA_DIR" -v >"$out" 2>&1
    local rc=$?
    set -e
    tr -d '\r' <"$out" | sed 's/^/    /'
    tr -d '\r' <"$out" >"$out.txt"
    return $rc
}

# ----------------------------------------------------------------- drill ---

step "start pkcsslotd"
start_slotd

step "token init, PINs, key generation, encryption (slot $CCA_SLOT)"
drill info || fail "cannot list slots"
drill setup --slot "$CCA_SLOT" --label "ock381 cca" --state "$WORK/drill.state" \
    || fail "token setup through PKCS#11 failed (see the ock-drill line above)"

step "master key change (emulated: load NEW SYM, ASYM, AES and APKA, SET)"
# CURRENT register's MKVP of a type, as csulcca-emu-admin status shows it.
current_mkvp() {
    "$EMU_ADMIN" status | sed -n "s/^$1 .*CURRENT 2 \([0-9A-F]*\).*/\1/p" | tr A-F a-f
}
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

# Runs pkcscca -m keys -k KIND and checks its summary line is exactly
# "Successfully migrated: SUMMARY" with nothing failed. 3.8.1 exits 0 even
# when keys fail (pkcscca.c migrate_wrapped_keys), so the text is the verdict.
migrate() {
    local kind=$1 summary=$2 out="$WORK/pkcscca-$1.out.txt"
    step "pkcscca -m keys -k $kind"
    pkcscca_keys "$kind" || fail "pkcscca -k $kind exited $?"
    grep -qxF "Successfully migrated: $summary " "$out" \
        || fail "pkcscca -k $kind did not report 'Successfully migrated: $summary'"
    ! grep -q 'Failed to migrate' "$out" || fail "pkcscca -k $kind reported failures"
}
start_slotd
# DES and DES3 (3.8.1 counts both as DES).
migrate sym "DES: 2."
# Two extractable AES keys and one generic secret (HMAC, via CSNBKTC2). The
# non-extractable AES key is not found: 3.8.1 searches with CKA_EXTRACTABLE=TRUE.
migrate aes "AES: 2. HMAC: 1."
# Only the private half of the EC pair: the public object (which in 3.8.1
# holds the same full secure token) has no CKA_EXTRACTABLE and is not found.
migrate apka "ECC: 1."
# The RSA pair (3.8.1's RSA-CRT token, wrapped under the ASYM master key):
# again only the private object.
migrate asym "RSA: 1."
stop_slotd

step "restart and decrypt with the migrated keys"
start_slotd
drill verify --slot "$CCA_SLOT" --state "$WORK/drill.state" \
    --migrated des-gen,des3-gen,aes128-gen,aes256-gen,hmac-gen,ec-p256,rsa2048 \
    --untouched aes128-noextract,ec-p256-pub,rsa2048-pub \
    || fail "verification after migration failed (see the ock-drill lines above)"
# The re-enciphered fixed-length tokens carry the new CURRENT MKVP (cca.md
# 1.2/1.3, bytes 8..16); the key pkcscca never saw still carries the old one.
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

step "collect traces"
if compgen -G "$LOG_DIR/trace.*" >/dev/null; then
    mkdir -p "$WORK/traces" && cp -p "$LOG_DIR"/trace.* "$WORK/traces/"
    # (3.8.1 as packaged creates one per process but, in this flow, leaves
    # them empty; they are kept with OCK381_KEEP=1.)
    log "$(ls "$WORK/traces" | wc -l) openCryptoki trace files, $(cat "$WORK"/traces/trace.* | wc -l) lines"
    grep -h -i 'error\|fail' "$WORK"/traces/trace.* | sort | uniq -c | sed 's/^/    /' || true
fi
[[ -s $WORK/syslog ]] && { log "syslog during the run:"; sed 's/^/    /' "$WORK/syslog"; }
log "CCA verbs called, per step (pid verb >|< rc rsn rules keywords lengths):"
sed 's/^/    /' "$CSULCCA_TRACE_LOG"

STEP="done"
exit 0
