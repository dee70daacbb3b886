# Shared steps for the harnesses that drive Debian's real openCryptoki 3.8.1
# over our software CCA library: tests/ock381/run.sh and tests/interop/run.sh.
# Source it from bash (it defines functions and variables only; nothing runs
# until the caller calls them):
#
#   H_NAME=interop; source tests/ock381/lib.sh
#   harness_preconditions; harness_install; harness_lock; harness_build
#   harness_backup            # installs the EXIT trap that restores everything
#   harness_configure         # opencryptoki.conf, syslog, tracer, emulator state
#   start_slotd; drill ...; stop_slotd
#
# What it touches on the system (/etc/opencryptoki, /var/lib/opencryptoki, the
# lock and log directories, /dev/shm segments, pkcsslotd's SysV segment, pid
# and socket files, /dev/log) is backed up by harness_backup and restored on
# exit, pass or fail; the restore is checked against a manifest.
#
# Caller-set variables: H_NAME (log prefix), H_PASS (text of the PASS line),
# H_KEEP (1 = keep the work directory). Hooks the caller may define:
# harness_on_exit RC (called before the restore, with the exit status).
#
# Facts the steps rely on are written up in the team notes
# (ock381-findings.md) and cited inline.

H_NAME=${H_NAME:-ock381}
H_PASS=${H_PASS:-real openCryptoki 3.8.1 over libcsulcca.so}
H_KEEP=${H_KEEP:-0}
H_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$H_LIB_DIR/../.." && pwd)"
START_TS=$(date +%s)

# Slot layout. Slot 0 must be a STDLL that loads (the soft token): Debian's
# CCA STDLL is underlinked and resolves `mechanism_list_transformations` only
# from a STDLL loaded before it. The CCA token sits in slot 1, which is also
# what pkcscca 3.8.1 needs: it refuses "-s 0" as a missing slot number
# (pkcscca.c main: `if (!slot_id)`).
SW_SLOT=0
CCA_SLOT=1
# Token directories of our own under the data root (3.8.1 honours `tokname`,
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
SW_DIR="$DATA_DIR/$SW_TOK"
CCA_DIR="$DATA_DIR/$CCA_TOK"

WORK=""
BACKUP_DONE=0
SLOTD_PID=""
SYSLOG_PID=""
SYSLOG_OURS=0
STEP="start"
installed_now=0

log() { printf '[%s %s] %s\n' "$H_NAME" "$(date +%H:%M:%S)" "$*"; }
# Ends the (sub)shell; with FAIL_NOTE set, the reason is also appended there
# (the interop suite runs each named check in a subshell and reports it).
fail() {
    printf '[%s] FAIL at step "%s": %s\n' "$H_NAME" "$STEP" "$*" >&2
    [[ -n ${FAIL_NOTE:-} ]] && printf 'at step "%s": %s\n' "$STEP" "$*" >>"$FAIL_NOTE"
    exit 1
}
step() {
    STEP="$1"; log "== $1"
    [[ -n ${CSULCCA_TRACE_LOG:-} ]] && echo "#### $1" >>"$CSULCCA_TRACE_LOG"
    return 0
}

harness_preconditions() {
    step "preconditions"
    [[ $(id -u) -eq 0 ]] || fail "must run as root (it installs packages and runs pkcsslotd)"
    [[ $(uname -m) == x86_64 ]] || fail "written for x86_64 (3.8.1's byte-order quirks are host-specific)"
    [[ -r /etc/debian_version ]] || fail "needs Debian (bookworm ships openCryptoki 3.8.1)"
}

pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Installs opencryptoki, python3, a C compiler (verb tracer) and binutils (nm)
# when missing; fails (never skips) when that is impossible.
harness_install() {
    step "install"
    local need=() p
    for p in opencryptoki python3; do pkg_ok "$p" || need+=("$p"); done
    command -v cc >/dev/null || need+=(gcc libc6-dev)
    command -v nm >/dev/null || need+=(binutils)
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
}

slotd_running_pid() {
    local pid
    [[ -r $PID_FILE ]] || return 1
    pid=$(tr -dc 0-9 <"$PID_FILE")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q pkcsslotd || return 1
    echo "$pid"
}

# One run at a time on a machine: the system paths are shared. The lock is
# taken on the daemon's own binary (opened read-only, fd 9), so no file is
# left. A daemon already running is an error, unless the package install we
# just did started it.
harness_lock() {
    exec 9</usr/sbin/pkcsslotd || fail "no /usr/sbin/pkcsslotd after install"
    flock -w 600 9 || fail "another run holds the lock on /usr/sbin/pkcsslotd"
    local pid
    if pid=$(slotd_running_pid); then
        if ((installed_now)); then
            log "stopping the pkcsslotd ($pid) that the package install started"
            kill "$pid"; sleep 1
        else
            fail "a pkcsslotd (pid $pid) is already running; stop it first (this harness rewrites opencryptoki.conf)"
        fi
    fi
}

# Builds the emulator, its admin tool and the drill (plus EXTRA_PACKAGES).
harness_build() {
    step "build emulator and drill"
    CARGO=${CARGO:-cargo}
    local pkgs=(-p csulcca-emu -p ock-drill) p f
    for p in ${EXTRA_PACKAGES:-}; do pkgs+=(-p "$p"); done
    (cd "$ROOT" && "$CARGO" build -q "${pkgs[@]}") || fail "cargo build failed"
    TARGET_DIR=${CARGO_TARGET_DIR:-target}
    [[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
    BIN="$TARGET_DIR/debug"
    EMU_LIB="$BIN/libcsulcca.so"
    EMU_ADMIN="$BIN/csulcca-emu-admin"
    DRILL="$BIN/ock-drill"
    for f in "$EMU_LIB" "$EMU_ADMIN" "$DRILL"; do [[ -x $f || -f $f ]] || fail "missing $f after build"; done
    # The 93 verbs the 3.8.1 CCA STDLL resolves (it exit()s on any missing one)
    # plus CSNBKTC2 for pkcscca: the table of the tracer lists exactly those.
    local verbs missing
    verbs=$(grep -o '^V([A-Z0-9]*' "$H_LIB_DIR/csulcca_trace.c" | cut -c3-)
    missing=$(comm -23 <(sort <<<"$verbs") <(nm -D --defined-only "$EMU_LIB" | awk '{print $3}' | sort))
    [[ -z $missing ]] || fail "$EMU_LIB does not export: $(echo $missing)"
}

# ---------------------------------------------------------------- backup ---

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

# Backs up every system path the run may touch and installs the EXIT trap that
# puts them back. Sets WORK (the run's work directory).
harness_backup() {
    WORK=$(mktemp -d "/tmp/$H_NAME.XXXXXX")
    chmod 0755 "$WORK"
    LOCK_DIR="$(readlink -f /var/lock)/opencryptoki"
    SYS_PATHS=("$CONF_DIR" "$DATA_DIR" "$LOCK_DIR" "$LOG_DIR" "$(readlink -f "$(dirname "$PID_FILE")")/pkcsslotd.pid")
    # ftok(PKCS11_SHMEM_FILE or /usr/sbin/pkcsslotd, 'b') keys pkcsslotd's SysV
    # segment (3.8.1 shmem.c); glibc: proj<<24 | (dev & 0xff)<<16 | (ino & 0xffff).
    local ino dev p existing=()
    read -r ino dev < <(stat -L -c '%i %d' /usr/sbin/pkcsslotd)
    SHM_KEY=$(printf '0x%08x' $(((0x62 << 24) | ((dev & 0xff) << 16) | (ino & 0xffff))))

    step "backup"
    manifest >"$WORK/manifest.before"
    for p in "${SYS_PATHS[@]}" /dev/shm/var.lib.opencryptoki.*; do
        [[ -e $p ]] && existing+=("${p#/}")
    done
    printf '%s\n' "${existing[@]}" >"$WORK/existed"
    tar --numeric-owner -C / -cpf "$WORK/backup.tar" "${existing[@]}" \
        || fail "could not back up ${existing[*]}"
    ipcs -m | awk 'NR>3 && $2 ~ /^[0-9]+$/ {print $2}' | sort >"$WORK/shmids.before"
    BACKUP_DONE=1
    log "backed up: ${existing[*]} (work dir $WORK)"
    trap harness_restore EXIT
    trap 'exit 130' INT TERM
}

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

harness_restore() {
    local rc=$? p
    set +e
    trap - EXIT
    if declare -F harness_on_exit >/dev/null; then harness_on_exit "$rc"; fi
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
        log "PASS: $H_PASS, ${took}s"
    else
        log "FAILED (exit $rc) after ${took}s"
        if [[ -n $WORK ]]; then
            for p in "$WORK"/syslog "$WORK"/cca-trace.log; do
                [[ -s $p ]] && { log "--- $(basename "$p") (last 40 lines)"; tail -n 40 "$p"; }
            done
        fi
    fi
    if [[ -n $WORK ]]; then
        if [[ $H_KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}

# ----------------------------------------------------------------- setup ---

# Writes opencryptoki.conf (slot 0 soft token, slot 1 CCA), binds /dev/log when
# nothing does, builds the verb tracer, and points every process at one
# emulator state file. Sets CLIENT_ENV (the environment of PKCS#11 clients).
harness_configure() {
    step "configure"
    if [[ ! -e $SYSLOG_SOCK ]]; then
        "$PY" "$H_LIB_DIR/syslog_catch.py" "$SYSLOG_SOCK" "$WORK/syslog" 9<&- &
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
# Written by pkcscca-rs tests ($H_NAME); the original is restored on exit.
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

    # The emulator's master key registers live in a state file shared by every
    # process (the STDLL inside each PKCS#11 client, pkcscca, the admin tool).
    export CSULCCA_EMU_STATE="$WORK/emu.state"
    # The CCA STDLL dlopen()s the bare name "libcsulcca.so" inside the PKCS#11
    # application (cca_specific.c token_specific_init), as does pkcscca itself.
    # They get our tracing stand-in (csulcca_trace.c), which logs every verb call
    # with its rule array and forwards it to the emulator.
    mkdir -p "$WORK/trace"
    cc -shared -fPIC -O1 -o "$WORK/trace/libcsulcca.so" "$H_LIB_DIR/csulcca_trace.c" -ldl -lpthread \
        || fail "cannot build the verb tracer"
    export CSULCCA_TRACE_REAL="$EMU_LIB"
    export CSULCCA_TRACE_LOG="$WORK/cca-trace.log"
    CLIENT_ENV=(env LD_LIBRARY_PATH="$WORK/trace${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        OPENCRYPTOKI_TRACE_LEVEL="${OCK381_TRACE:-4}")
    admin status || fail "csulcca-emu-admin status failed"
}

admin() {
    log "csulcca-emu-admin $*"
    "$EMU_ADMIN" "$@" 2>&1 | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}

# An emulated master key change for the SYM, ASYM, AES and APKA registers: a new
# random value into NEW, then SET (CURRENT -> OLD, NEW -> CURRENT).
mk_change() {
    local t
    for t in sym asym aes apka; do admin load-new "$t" --random || fail "csulcca-emu-admin load-new $t --random"; done
    for t in sym asym aes apka; do admin set "$t" || fail "csulcca-emu-admin set $t"; done
}

# CURRENT register's MKVP of a type, as csulcca-emu-admin status shows it.
current_mkvp() {
    "$EMU_ADMIN" status | sed -n "s/^$1 .*CURRENT 2 \([0-9A-F]*\).*/\1/p" | tr A-F a-f
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

# Runs Debian's /usr/sbin/pkcscca -m keys -k KIND [-d DIR] on a pty. pkcscca
# 3.8.1 prompts for both PINs with echo off (get_pin: tcsetattr TCSAFLUSH on
# stdin), so it must run on a terminal. Output in $WORK/pkcscca-KIND.out.txt.
pkcscca_keys() {
    local kind=$1 dir=${2:-$CCA_DIR} out="$WORK/pkcscca-$1.out"
    log "pkcscca -m keys -s $CCA_SLOT -k $kind -d $dir -v"
    set +e
    "${CLIENT_ENV[@]}" "$PY" "$H_LIB_DIR/pty_answer.py" --timeout 120 \
        --answer "Enter the SO PIN: =$SO_PIN" --answer "Enter the USER PIN: =$USER_PIN" \
        -- /usr/sbin/pkcscca -m keys -s "$CCA_SLOT" -k "$kind" -d "$dir" -v >"$out" 2>&1
    local rc=$?
    set -e
    tr -d '\r' <"$out" | sed 's/^/    /'
    tr -d '\r' <"$out" >"$out.txt"
    return $rc
}

# Runs pkcscca 3.8.1 -m keys -k KIND and checks its summary line is exactly
# "Successfully migrated: SUMMARY" with nothing failed. 3.8.1 exits 0 even
# when keys fail (pkcscca.c migrate_wrapped_keys), so the text is the verdict.
pkcscca_381_migrate() {
    local kind=$1 summary=$2 out="$WORK/pkcscca-$1.out.txt"
    step "pkcscca 3.8.1 -m keys -k $kind"
    pkcscca_keys "$kind" || fail "pkcscca -k $kind exited $?"
    grep -qxF "Successfully migrated: $summary " "$out" \
        || fail "pkcscca -k $kind did not report 'Successfully migrated: $summary'"
    ! grep -q 'Failed to migrate' "$out" || fail "pkcscca -k $kind reported failures"
}

# Copies the openCryptoki traces, syslog and the verb log into the run's log.
harness_collect() {
    step "collect traces"
    if compgen -G "$LOG_DIR/trace.*" >/dev/null; then
        mkdir -p "$WORK/traces" && cp -p "$LOG_DIR"/trace.* "$WORK/traces/"
        # (3.8.1 as packaged creates one per process but, in this flow, leaves
        # them empty; they are kept with H_KEEP=1.)
        log "$(ls "$WORK/traces" | wc -l) openCryptoki trace files, $(cat "$WORK"/traces/trace.* | wc -l) lines"
        grep -h -i 'error\|fail' "$WORK"/traces/trace.* | sort | uniq -c | sed 's/^/    /' || true
    fi
    [[ -s $WORK/syslog ]] && { log "syslog during the run:"; sed 's/^/    /' "$WORK/syslog"; }
    log "CCA verbs called, per step (pid verb >|< rc rsn rules keywords lengths):"
    sed 's/^/    /' "$CSULCCA_TRACE_LOG"
}
