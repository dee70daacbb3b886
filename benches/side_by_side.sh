#!/usr/bin/env bash
# Side-by-side benchmark: Debian's pkcscca 3.8.1 and ours, on the same store, after
# the same AES master key change, in one run (issue 12). `cargo bench --bench
# side_by_side` runs this script (as root, with PKCSCCA_BENCH_SIDE_BY_SIDE=1):
#
#   PKCSCCA_BENCH_SIDE_BY_SIDE=1 flock /work/system.lock cargo bench --bench side_by_side
#
# What one run does:
#
#  1. Builds, in release mode, the software CCA (tests/csulcca-emu), ock-drill and,
#     alone (without the testkit feature, as shipped), our pkcscca; runs the
#     single-tool bench (benches/migrate_keys.rs) at 500 and 4096 keys.
#  2. Backs up and configures the system exactly as the interop suites do
#     (tests/ock381/lib.sh: manifest, opencryptoki.conf with the CCA token in slot 1,
#     pkcsslotd), and restores and checks all of it on exit, pass or fail.
#  3. Real openCryptoki 3.8.1 (its CCA STDLL over the emulator) writes the stores:
#     ock-drill bulk-keys generates AES-256 keys through PKCS#11 and encrypts 32
#     known bytes with each; after each stage of PKCSCCA_BENCH_STAGES (default
#     500, 1000, 2000 private, then 2000 private + 2000 public) the token directory
#     is copied. Then our test kit builds two more stores in 3.8.1's layout, with
#     the attributes of the keys openCryptoki wrote: 500 and PKCSCCA_BENCH_BIG
#     (4096) keys, half of them public. Only our tool runs on those (they are not
#     openCryptoki's own); their results are checked through openCryptoki like the
#     others (3.8.1 keeps up to 2048 objects of each kind, MAX_TOK_OBJS in
#     usr/lib/common/defs.h, so 4096 is its limit).
#  4. An AES master key change on the emulated card (csulcca-emu-admin: parts on
#     standard input, then SET); the card state is saved.
#  5. For each variant (no latency, then CSULCCA_EMU_LATENCY_US per verb) and each
#     store, PKCSCCA_BENCH_RUNS (3) rounds of, interleaved: Debian's
#     `/usr/sbin/pkcscca -m keys -s 1 -k aes` (online: pkcsslotd running, PINs
#     answered on a pty), ours (offline: pkcsslotd stopped, PINs piped), and, in
#     the first variant, the I/O floor. Each on its own fresh copy of the store and
#     of the card state, after a `sync`, so no tool pays for another's writeback.
#     Measured: wall time of the tool process and its peak RSS (wait4's
#     ru_maxrss), and the time inside the CCA library when the emulator reports it
#     (CSULCCA_EMU_STATS; "n/a" otherwise).
#  6. Checks every result through openCryptoki (pkcsslotd restarted, token shared
#     memory removed, so the store is read from disk): every key found once, its
#     secure key token re-enciphered under the new AES master key (MKVP at bytes
#     8..16 = the new CURRENT MKVP) and still decrypting what it encrypted before
#     the change. Any wrong result is reported and makes the exit status 1.
#  7. Where the time goes, on the largest openCryptoki store: perf (cpu-clock
#     samples, per library and per symbol) of one run of each tool; the CCA
#     library alone (one CSNBKTC per key, timed through ctypes); strace -c -w
#     (wall time per system call) and strace -ttt phases of one run of ours.
#  8. Prints the machine, one table per variant and store, the targets of issue 12,
#     the single-tool bench's table and the profiles.
#
# About 7 minutes on the 2-core development VM, plus the builds.
#
# The I/O floor (`side_by_side floor`, benches/side_by_side.rs) is the least a
# durable batch commit of the same files must cost here: write one temporary file
# per object (same sizes), one syncfs, rename each over its object, one fsync of
# the directory.
#
# Environment:
#   PKCSCCA_BENCH_RUNS        runs per tool, store and variant (default 3)
#   PKCSCCA_BENCH_STAGES      stores openCryptoki writes, PRIVATE[+PUBLIC] keys each,
#                             growing (default "500 1000 2000 2000+2000")
#   PKCSCCA_BENCH_BIG         keys of the large test-kit store (default 4096; 0: none)
#   PKCSCCA_BENCH_LATENCY_US  per-verb latency of the second variant (default 500)
#   PKCSCCA_BENCH_SINGLE      sizes for the single-tool bench (default 500,4096; empty: skip)
#   PKCSCCA_BENCH_KEEP=1      keep the work directory (outputs, results, profiles)
#   CARGO                     cargo (default: cargo)
#   SBS_EXE                   the side_by_side bench binary (set by it)
set -euo pipefail
exec 2>&1

H_NAME=bench
H_PASS="side-by-side benchmark (pkcscca 3.8.1 and ours), every result checked"
H_KEEP=${PKCSCCA_BENCH_KEEP:-0}
# shellcheck source=../tests/ock381/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/ock381/lib.sh"
HERE="$ROOT/benches"

RUNS=${PKCSCCA_BENCH_RUNS:-3}
STAGES=${PKCSCCA_BENCH_STAGES:-"500 1000 2000 2000+2000"}
BIG=${PKCSCCA_BENCH_BIG:-4096}
LAT=${PKCSCCA_BENCH_LATENCY_US:-500}
SINGLE=${PKCSCCA_BENCH_SINGLE-500,4096}
SBS_EXE=${SBS_EXE:-}
[[ -x $SBS_EXE ]] || { echo "run through: cargo bench --bench side_by_side (SBS_EXE unset)"; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ && $BIG =~ ^[0-9]+$ && $LAT =~ ^[0-9]+$ ]] \
    || { echo "PKCSCCA_BENCH_RUNS, _BIG and _LATENCY_US must be numbers"; exit 2; }
for st in $STAGES; do
    [[ $st =~ ^[0-9]+(\+[0-9]+)?$ ]] || { echo "bad stage '$st' in PKCSCCA_BENCH_STAGES (PRIVATE or PRIVATE+PUBLIC)"; exit 2; }
done
# Only the knobs this script sets reach the tools.
unset CSULCCA_EMU_LATENCY_US CSULCCA_EMU_FAIL CSULCCA_EMU_STATS PKCSCCA_THREADS OPENCRYPTOKI_TRACE_LEVEL

WRONG=""          # file of wrong results, set once WORK exists
LAST_STAGE=${STAGES##* }

# Stage "P+Q" -> "P Q"; "P" -> "P 0" (stages are checked above).
stage_counts() {
    local p=${1%%+*} q=0
    if [[ $1 == *+* ]]; then q=${1#*+}; fi
    echo "$p $q"
}

# ----------------------------------------------------------------- build ---

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
harness_preconditions
harness_install
harness_lock

step "build (release: emulator, ock-drill, then pkcscca alone as shipped)"
CARGO=${CARGO:-cargo}
(cd "$ROOT" && "$CARGO" build --release -q -p csulcca-emu -p ock-drill) || fail "cargo build failed"
# Alone, so the testkit feature the emulator's crate asks for is not unified in.
(cd "$ROOT" && "$CARGO" build --release -q -p pkcscca) || fail "cargo build -p pkcscca failed"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/release"
EMU_LIB="$BIN/libcsulcca.so"
EMU_ADMIN="$BIN/csulcca-emu-admin"
DRILL="$BIN/ock-drill"
for f in "$EMU_LIB" "$EMU_ADMIN" "$DRILL" "$BIN/pkcscca"; do [[ -f $f ]] || fail "missing $f after build"; done
# Copies: a later cargo command may relink target/release/pkcscca with other features.
STAGED=$(mktemp -d /tmp/bench-bin.XXXXXX)
trap 'rm -rf "$STAGED"' EXIT   # until harness_backup installs the restore
cp "$BIN/pkcscca" "$STAGED/pkcscca"
cp "$EMU_LIB" "$STAGED/libcsulcca.so"

if [[ -n $SINGLE ]]; then
    step "single-tool bench (benches/migrate_keys.rs) at $SINGLE keys"
    (cd "$ROOT" && env -u CSULCCA_EMU_STATE PKCSCCA_BENCH_SIZES="$SINGLE" "$CARGO" bench -q --bench migrate_keys) \
        | tee "$STAGED/migrate_keys.out" | sed 's/^/    /' || fail "cargo bench --bench migrate_keys failed"
else
    : >"$STAGED/migrate_keys.out"
fi

harness_backup
mkdir -p "$WORK/bin" "$WORK/lib" "$WORK/out" "$WORK/stores"
mv "$STAGED/pkcscca" "$WORK/bin/pkcscca"
mv "$STAGED/libcsulcca.so" "$WORK/lib/libcsulcca.so"
mv "$STAGED/migrate_keys.out" "$WORK/migrate_keys.out"
rm -rf "$STAGED"
harness_configure
OURS="$WORK/bin/pkcscca"
STORES="$WORK/stores"
RESULTS="$WORK/results.tsv"
WRONG="$WORK/wrong"
: >"$RESULTS"
: >"$WRONG"
printf '%s\n%s\n' "$SO_PIN" "$USER_PIN" >"$WORK/pins"
# Every process that loads the CCA library gets the emulator itself (no tracer).
# Ours takes openCryptoki's lock directory, so it serialises with openCryptoki.
LIBENV=(LD_LIBRARY_PATH="$WORK/lib" CSULCCA_EMU_STATE="$CSULCCA_EMU_STATE" PKCSCCA_LOCK_DIR="$LOCK_DIR")

bdrill() {
    log "ock-drill $*"
    timeout 1800 env "${LIBENV[@]}" "$DRILL" --lib "$P11_LIB" "$@" 2>&1 \
        | tee "$WORK/drill.out" | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}

# A wrong result: loud, recorded, and the run goes on (the exit status will be 1).
wrong() {
    printf '[%s] WRONG RESULT: %s\n' "$H_NAME" "$*"
    printf '%s\n' "$*" >>"$WRONG"
}

# ---------------------------------------------------------------- stores ---

step "openCryptoki 3.8.1 writes the stores (stages: $STAGES)"
start_slotd
bdrill bulk-init --slot "$CCA_SLOT" --label "pkcscca bench" || fail "token init through PKCS#11 failed"
have_p=0 have_q=0
GEN_T0=$(date +%s%N)
for st in $STAGES; do
    read -r p q < <(stage_counts "$st")
    ((p >= have_p && q >= have_q)) || fail "PKCSCCA_BENCH_STAGES must grow ('$st')"
    if ((p > have_p)); then
        bdrill bulk-keys --slot "$CCA_SLOT" --state "$WORK/keys.state" --first "$have_p" --count $((p - have_p)) \
            || fail "key generation through PKCS#11 failed"
    fi
    if ((q > have_q)); then
        bdrill bulk-keys --slot "$CCA_SLOT" --state "$WORK/keys.state" --public --first "$have_q" --count $((q - have_q)) \
            || fail "key generation through PKCS#11 failed"
    fi
    have_p=$p have_q=$q
    cp -a "$CCA_DIR" "$STORES/$st"
    cp "$WORK/keys.state" "$STORES/$st.state"
    log "store $st: $(wc -l <"$STORES/$st.state") keys, $(du -sk "$STORES/$st" | cut -f1) KiB"
done
stop_slotd
GEN_S=$(awk -v a="$GEN_T0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
log "openCryptoki generated $((have_p + have_q)) keys in ${GEN_S} s"

KIT_SIZES=()
if ((BIG > 0)); then
    read -r p q < <(stage_counts "$LAST_STAGE")
    ((p > 0 && q > 0)) || fail "the last stage must have private and public keys (the test kit copies their attributes)"
    kit=("$BIG")
    ((BIG > 500)) && kit=(500 "$BIG")
    step "test-kit stores (3.8.1 layout, attributes of openCryptoki's keys): ${kit[*]} keys"
    for n in "${kit[@]}"; do
        [[ -e $STORES/t$n ]] && continue
        "$SBS_EXE" build-store --lib "$WORK/lib/libcsulcca.so" --like "$STORES/$LAST_STAGE" \
            --out "$STORES/t$n" --private $((n / 2)) --public $((n - n / 2)) --state "$STORES/t$n.state" \
            | sed 's/^/    /' || fail "build-store $n failed"
        # Owner, group and modes as openCryptoki left its own stores.
        chown -R --reference="$STORES/$LAST_STAGE" "$STORES/t$n"
        KIT_SIZES+=("t$n")
    done
fi

step "AES master key change (csulcca-emu-admin: NEW from two parts on stdin, SET)"
OLD_AES=$(current_mkvp AES)
part() { printf '%s' "pkcscca side-by-side bench, AES master key part $1" | sha256sum | cut -c1-64; }
part 1 | admin load-new aes --first || fail "load-new aes --first"
part 2 | admin load-new aes --last || fail "load-new aes --last"
admin set aes || fail "set aes"
NEW_AES=$(current_mkvp AES)
[[ -n $NEW_AES && $NEW_AES != "$OLD_AES" ]] || fail "the AES MKVP did not change"
cp -p "$CSULCCA_EMU_STATE" "$WORK/emu.after"
log "AES master key: OLD $OLD_AES, CURRENT $NEW_AES"

# ------------------------------------------------------------------ runs ---

# The token's shared memory segment (3.8.1 names it after the token directory).
remove_token_shm() { rm -f "/dev/shm/$(tr / . <<<"${CCA_DIR#/}")"; }

# A fresh copy of store $1 as the CCA token's directory and a fresh copy of the
# card state after the change; pkcsslotd stopped; nothing dirty in the page cache.
# Used copies are moved aside, not deleted, until the end: ext4 avoids reusing
# recently freed inodes (recently_deleted() in its inode allocator), and deleting
# thousands of files just before a run would make the tools that create files
# (ours, the floor) pay for the harness's deletions.
TRASH="$DATA_DIR/.bench-trash"
fresh() {
    stop_slotd
    mkdir -p "$TRASH"
    [[ -e $CCA_DIR ]] && mv "$CCA_DIR" "$TRASH/$(date +%s%N)"
    cp -a "$STORES/$1" "$CCA_DIR"
    remove_token_shm
    cp -p "$WORK/emu.after" "$CSULCCA_EMU_STATE"
    sync
}

# run_tool VARIANT STORE TOOL RUN: one timed run on a fresh copy, then its check.
run_tool() {
    local variant=$1 st=$2 tool=$3 run=$4 n out rc=0 lat=()
    n=$(wc -l <"$STORES/$st.state")
    out="$WORK/out/$variant.$st.$tool.$run"
    [[ $variant == latency ]] && lat=(CSULCCA_EMU_LATENCY_US="$LAT")
    fresh "$st"
    local common=(env "${LIBENV[@]}" "${lat[@]}" CSULCCA_EMU_STATS="$out.stats"
        "$PY" "$HERE/side_by_side.py" run --tag "$variant|$st|$tool|$run" --results "$RESULTS"
        --out "$out" --stats "$out.stats" --timeout 900)
    if [[ $tool == upstream ]]; then
        start_slotd
        "${common[@]}" --answer "Enter the SO PIN: =$SO_PIN" --answer "Enter the USER PIN: =$USER_PIN" \
            -- /usr/sbin/pkcscca -m keys -s "$CCA_SLOT" -k aes -d "$CCA_DIR" || rc=$?
        stop_slotd
    else
        "${common[@]}" --stdin "$WORK/pins" \
            -- "$OURS" -m keys -s "$CCA_SLOT" -k aes -d "$CCA_DIR" || rc=$?
    fi
    tr -d '\r' <"$out" >"$out.txt"
    if ((rc != 0)); then
        wrong "$tool ($variant, $st, run $run) exited $rc: $(tail -n 3 "$out.txt" | tr '\n' ' ')"
    fi
    grep -qx "Successfully migrated: AES: $n\. " "$out.txt" \
        || wrong "$tool ($variant, $st, run $run) did not print 'Successfully migrated: AES: $n.': $(grep -m1 'migrat' "$out.txt" || true)"
    ! grep -q 'Failed to migrate' "$out.txt" || wrong "$tool ($variant, $st, run $run) reported failures"
    # The check reads the store from disk: new pkcsslotd, no shared memory left.
    remove_token_shm
    start_slotd
    bdrill bulk-verify --slot "$CCA_SLOT" --state "$STORES/$st.state" --mkvp "$NEW_AES" \
        || wrong "$tool ($variant, $st, run $run): $(grep -m3 'BAD\|FAILED' "$WORK/drill.out" | tr '\n' ' ')"
    stop_slotd
}

# run_floor STORE RUN: the I/O floor on a copy of the store, in the same file system.
run_floor() {
    local st=$1 run=$2 line floor="$DATA_DIR/bench-floor"
    mkdir -p "$TRASH"
    [[ -e $floor ]] && mv "$floor" "$TRASH/$(date +%s%N)"
    cp -a "$STORES/$st" "$floor"
    sync
    line=$("$SBS_EXE" floor "$floor") || fail "floor failed on $st"
    log "    floor|$st|$run: $line"
    local total=${line##*total_s=}
    printf 'none\t%s\tfloor\t%s\t%s\t-\t0\tn/a\tn/a\t0\t%s\n' "$st" "$run" "$total" "$line" >>"$RESULTS"
}

THREADS="the build's default"
if "$OURS" --help 2>&1 | grep -q -- '--threads'; then
    THREADS="the build's default (--threads not given)"
else
    THREADS="serial (this build has no --threads)"
fi

for variant in none latency; do
    for st in $STAGES "${KIT_SIZES[@]}"; do
        if [[ $variant == none ]]; then
            step "runs: $st keys, no added latency"
        else
            step "runs: $st keys, ${LAT} us per verb"
        fi
        for run in $(seq "$RUNS"); do
            if [[ $st != t* ]]; then run_tool "$variant" "$st" upstream "$run"; fi
            run_tool "$variant" "$st" ours "$run"
            if [[ $variant == none ]]; then run_floor "$st" "$run"; fi
        done
    done
done

# --------------------------------------------------------------- profile ---

# First N lines of a file (no pipe that could end in SIGPIPE under pipefail).
first() { awk -v n="$1" 'NR <= n' "$2"; }

# One run of TOOL on a fresh copy of the largest openCryptoki store under perf
# (cpu-clock samples: on-CPU time per library and symbol); the summary goes to
# $PROFILE. Not timed, not counted; a failure is reported, never fatal.
perf_one() {
    local tool=$1 data="$WORK/perf.$1.data" rep="$WORK/perf.$1.txt" how wall samples
    fresh "$LAST_STAGE"
    if [[ $tool == upstream ]]; then
        start_slotd
        how=(--answer "Enter the SO PIN: =$SO_PIN" --answer "Enter the USER PIN: =$USER_PIN"
            -- /usr/sbin/pkcscca)
    else
        how=(--stdin "$WORK/pins" -- "$OURS")
    fi
    env "${LIBENV[@]}" perf record -q -e cpu-clock -F 4000 -o "$data" -- \
        "$PY" "$HERE/side_by_side.py" run --tag "profile|$LAST_STAGE|$tool|perf" \
        --results "$WORK/profile.tsv" --out "$WORK/out/perf.$tool" \
        "${how[@]}" -m keys -s "$CCA_SLOT" -k aes -d "$CCA_DIR" >/dev/null 2>&1 \
        || echo "  ($tool under perf failed)" >>"$PROFILE"
    stop_slotd
    wall=$(awk -F'\t' -v t="$tool" '$3 == t {w = $5} END {print w}' "$WORK/profile.tsv")
    samples=$(perf script -i "$data" --comm pkcscca -F comm 2>/dev/null | wc -l || true)
    perf report -i "$data" --no-children --stdio --sort comm,dso,sym -g none >"$rep" 2>/dev/null || true
    {
        awk -v t="$tool" -v n="$LAST_STAGE" -v w="$wall" -v s="$samples" -v note="$PERF_NOTE" 'BEGIN {
            printf "perf, %s, %s keys: %.2f s wall, %.2f s on a CPU (%d cpu-clock samples at 4000 Hz%s)\n",
                t, n, w, s / 4000, s, note }'
        "$PY" "$HERE/side_by_side.py" perfsum "$rep" pkcscca 14 || true
    } >>"$PROFILE"
}

step "where the time goes: profiles of one run of each tool on $LAST_STAGE keys"
PROFILE="$WORK/profile.txt"
: >"$PROFILE"
PERF_NOTE=""
if perf stat -e instructions true 2>&1 | grep -q '<not supported>'; then
    PERF_NOTE="; this machine has no hardware counters"
fi
if command -v perf >/dev/null && perf record -q -e cpu-clock -o "$WORK/perf.probe" true >/dev/null 2>&1; then
    perf_one ours
    perf_one upstream
else
    echo "perf cannot sample here: no CPU profile" >>"$PROFILE"
fi
# The CCA library alone: one CSNBKTC per key, timed in a process of its own.
fresh "$LAST_STAGE"
read -r VC_N VC_S VC_BAD < <(env "${LIBENV[@]}" "$PY" "$HERE/side_by_side.py" verbcost \
    "$WORK/lib/libcsulcca.so" "$STORES/$LAST_STAGE.state" 100000) || true
if [[ -n ${VC_N:-} ]]; then
    OURS_MED=$(awk -F'\t' -v s="$LAST_STAGE" '$1 == "none" && $2 == s && $3 == "ours" {print $5}' "$RESULTS" \
        | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    awk -v n="$VC_N" -v s="$VC_S" -v bad="$VC_BAD" -v m="$OURS_MED" -v st="$LAST_STAGE" 'BEGIN {
        printf "the CCA library alone: %d CSNBKTC calls (RTCMK AES, %d failed) take %.3f s, %.1f us each;\n", n, bad, s, 1e6 * s / n
        if (m > 0) printf "  that is %.1f%% of ours'"'"' median wall time on %s keys without added latency\n", 100 * s / m, st }' >>"$PROFILE"
fi
if command -v strace >/dev/null; then
    fresh "$LAST_STAGE"
    env "${LIBENV[@]}" strace -f -c -w -o "$WORK/strace.c" \
        "$OURS" -m keys -s "$CCA_SLOT" -k aes -d "$CCA_DIR" <"$WORK/pins" >/dev/null 2>&1 \
        || echo "  (ours under strace -c failed)" >>"$PROFILE"
    fresh "$LAST_STAGE"
    env "${LIBENV[@]}" strace -f --seccomp-bpf -ttt -o "$WORK/strace.t" \
        -e trace=openat,rename,renameat,renameat2,fsync,fdatasync,syncfs,exit_group \
        "$OURS" -m keys -s "$CCA_SLOT" -k aes -d "$CCA_DIR" <"$WORK/pins" >/dev/null 2>&1 \
        || echo "  (ours under strace -ttt failed)" >>"$PROFILE"
    {
        echo "strace -c -w, ours, $LAST_STAGE keys: wall time inside system calls (strace slows each call)"
        first 14 "$WORK/strace.c"
        echo "phases of one run of ours, $LAST_STAGE keys (strace -ttt of openat, rename and the syncs;"
        echo "each traced call stops the process, so phases with many of them, like the verbs, look longer)"
        "$PY" "$HERE/side_by_side.py" phases "$WORK/strace.t" || true
    } >>"$PROFILE"
else
    echo "no strace here: no system call profile" >>"$PROFILE"
fi

# ---------------------------------------------------------------- report ---

STEP="report"
FS_INFO=$(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$DATA_DIR" | tr -s ' ')
echo
echo "================ side-by-side: pkcscca -m keys -k aes after an AES master key change ================"
echo "load:      at the start $LOAD_START; now $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; other work on the machine adds noise)"
echo "machine:   $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(free -m | awk '/^Mem:/ {print $2}') MiB,"
echo "           kernel $(uname -r); store in $DATA_DIR on $(stat -f -c %T "$DATA_DIR") ($FS_INFO)"
echo "upstream:  Debian's /usr/sbin/pkcscca, opencryptoki $OCK_VER, online (pkcsslotd, PKCS#11, CCA STDLL), PINs on a pty"
echo "ours:      $("$OURS" --version 2>/dev/null | head -n1 || echo pkcscca), offline, PINs piped; threads: $THREADS"
echo "card:      software CCA (tests/csulcca-emu, release build), AES master key OLD $OLD_AES -> CURRENT $NEW_AES"
echo "stores:    openCryptoki 3.8.1 generated $((have_p + have_q)) AES-256 keys in $GEN_S s; 't' stores: our test kit"
echo "runs:      $RUNS per tool, store and variant, interleaved, each on a fresh copy after sync;"
echo "           wall time of the tool process, peak RSS from wait4 (ru_maxrss); 'in CCA library':"
echo "           time inside the library's verbs / wall time (CSULCCA_EMU_STATS; n/a if not reported)"
"$PY" "$HERE/side_by_side.py" table --results "$RESULTS" --latency "$LAT" --big "t$BIG" --last "$LAST_STAGE" \
    --single "$WORK/migrate_keys.out"
if [[ -s $WORK/migrate_keys.out ]]; then
    echo
    echo "-- single-tool bench (cargo bench --bench migrate_keys: test-kit 3.12+ stores, debug build of the emulator)"
    sed 's/^/  /' "$WORK/migrate_keys.out"
fi
echo
echo "-- where the time goes"
sed 's/^/  /' "$PROFILE"
echo
if [[ -s $WRONG ]]; then
    echo "WRONG RESULTS ($(wc -l <"$WRONG")):"
    sed 's/^/    /' "$WRONG"
    fail "a tool migrated keys wrongly (see WRONG RESULTS above)"
fi
echo "checked: after every run of both tools, every key is under AES MKVP $NEW_AES and decrypts what it encrypted before"
STEP="done"
exit 0
