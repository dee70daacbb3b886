#!/usr/bin/python3
"""Helpers of benches/side_by_side.sh: time one tool process, print the tables.

  side_by_side.py run --tag "VARIANT|SIZE|TOOL|RUN" --results FILE --out FILE
                  [--stats FILE] [--timeout S] [--stdin FILE | --answer PROMPT=REPLY ...]
                  -- CMD ARGS...

Runs CMD as a direct child and measures it alone: wall time from just before the
fork to the return of wait4(), and the child's peak resident set from wait4's
rusage (ru_maxrss, KiB). With --stdin the child reads that file (our pkcscca gets
its PINs piped, as an admin's script does). With --answer it runs on a
pseudo-terminal (openCryptoki 3.8.1's pkcscca turns echo off with TCSAFLUSH before
reading each PIN, so it needs a terminal) and each reply is written as soon as its
prompt is out and echo is off; the time the child spends waiting for a reply
(polled every 0.2 ms) is recorded too, so it can be seen to be negligible. The
child's stdout and stderr go to --out. With --stats, the file the emulator appends
`calls=<n> nanos=<n>` to at exit (CSULCCA_EMU_STATS) is read afterwards; "n/a" when
the library wrote none. Appends one tab-separated line to --results:
VARIANT SIZE TOOL RUN wall_s maxrss_kib rc calls nanos wait_s.
Exit status: the child's.

  side_by_side.py table --results FILE [--latency US] [--big tN] [--last STAGE]
                  [--single FILE]

Prints one table per variant and store from the results file (tool runs and I/O
floor runs, medians and ratios), then issue 12's targets computed from them and from
the single-tool bench's output (--single, benches/migrate_keys.rs).

  side_by_side.py perfsum PERF_REPORT COMM TOP

Per-library shares and the TOP symbols of the samples of command COMM in a
`perf report --sort comm,dso,sym` text.

  side_by_side.py verbcost LIB STATE_FILE COUNT

Times COUNT CSNBKTC calls of the CCA library LIB on the key tokens recorded in
STATE_FILE (ock-drill bulk-keys format), through ctypes; prints "calls seconds
failed".

  side_by_side.py phases STRACE_OUTPUT

Splits one traced run of our pkcscca into phases (start, reads, verbs, commit
preparation, temporary files, renames) by the timestamps of its openat, rename and
sync calls; the verbs show as the emulator's openat of its state file, when it
opens it per verb.

Standard library only.
"""

import os
import pty
import select
import signal
import statistics
import sys
import termios
import time


def fail(msg):
    sys.stderr.write("side_by_side.py: %s\n" % msg)
    sys.exit(2)


def parse_run(argv):
    o = {"answers": [], "stdin": None, "stats": None, "timeout": 600.0}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            o["cmd"] = argv[i + 1:]
            return o
        if i + 1 >= len(argv):
            fail("%s needs a value" % a)
        v = argv[i + 1]
        if a == "--answer":
            prompt, sep, reply = v.partition("=")
            if not sep:
                fail("--answer needs PROMPT=REPLY")
            o["answers"].append((prompt.encode(), reply.encode()))
        elif a in ("--tag", "--results", "--out", "--stats", "--stdin"):
            o[a[2:]] = v
        elif a == "--timeout":
            o["timeout"] = float(v)
        else:
            fail("unexpected argument %r" % a)
        i += 2
    fail("missing -- CMD")


def echo_is_off(fd):
    try:
        return not (termios.tcgetattr(fd)[3] & termios.ECHO)
    except termios.error:
        return False


def run_pty(cmd, answers, out, deadline):
    """Returns (status, rusage, seconds spent waiting for our replies)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    seen = b""
    waited = 0.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                break
            out.write(data)
            seen += data
        if answers and answers[0][0] in seen:
            t = time.monotonic()
            while not echo_is_off(fd) and time.monotonic() < t + 5.0:
                time.sleep(0.0002)
            os.write(fd, answers[0][1] + b"\n")
            waited += time.monotonic() - t
            seen = b""
            answers.pop(0)
    _, status, ru = os.wait4(pid, 0)
    os.close(fd)
    return status, ru, waited


def run_pipe(cmd, stdin_path, out_path):
    pid = os.fork()
    if pid == 0:
        try:
            i = os.open(stdin_path, os.O_RDONLY)
            o = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(i, 0)
            os.dup2(o, 1)
            os.dup2(o, 2)
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    return status, ru


def read_stats(path):
    """(calls, nanos) summed over the lines the library appended, or None."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except OSError:
        return None
    calls = nanos = 0
    found = False
    for line in lines:
        fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
        if "calls" in fields and "nanos" in fields:
            calls += int(fields["calls"])
            nanos += int(fields["nanos"])
            found = True
    return (calls, nanos) if found else None


def cmd_run(argv):
    o = parse_run(argv)
    for k in ("tag", "results", "out"):
        if k not in o:
            fail("run needs --%s" % k)
    if o["stats"]:
        try:
            os.unlink(o["stats"])
        except FileNotFoundError:
            pass
    deadline = time.monotonic() + o["timeout"]
    t0 = time.perf_counter()
    if o["answers"]:
        with open(o["out"], "wb") as out:
            status, ru, waited = run_pty(o["cmd"], list(o["answers"]), out, deadline)
    else:
        if not o["stdin"]:
            fail("run needs --stdin or --answer")
        status, ru = run_pipe(o["cmd"], o["stdin"], o["out"])
        waited = 0.0
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    stats = read_stats(o["stats"]) if o["stats"] else None
    calls, nanos = stats if stats else ("n/a", "n/a")
    fields = o["tag"].split("|") + [
        "%.4f" % wall, str(ru.ru_maxrss), str(rc), str(calls), str(nanos), "%.4f" % waited]
    with open(o["results"], "a") as r:
        r.write("\t".join(fields) + "\n")
    print("    %s: %.3f s, peak RSS %d KiB, exit %d, CCA library %s" % (
        o["tag"].replace("|", " "), wall, ru.ru_maxrss, rc,
        "calls=%s nanos=%s" % (calls, nanos) if stats else "stats n/a"))
    sys.exit(rc if 0 <= rc < 256 else 1)


# ------------------------------------------------------------------ table ---

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def keys_of(size):
    """'2000+2000' -> 4000, '500' -> 500, 't4096' -> 4096."""
    size = size.lstrip("t")
    return sum(int(p) for p in size.split("+"))


def describe(size):
    if size.startswith("t"):
        n = keys_of(size)
        return "%d keys (%d private + %d public), store made by our test kit in 3.8.1's layout" % (
            n, n // 2, n - n // 2)
    parts = size.split("+")
    if len(parts) == 2:
        text = "%s private + %s public keys" % tuple(parts)
    else:
        text = "%s private keys" % parts[0]
    return "%s (%d), store written by openCryptoki 3.8.1" % (text, keys_of(size))


def parse_single(path):
    """Per-key microseconds by size from benches/migrate_keys.rs output."""
    per_key = {}
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 4 and p[0].isdigit():
                    per_key[int(p[0])] = float(p[2])
    except OSError:
        pass
    return per_key


def cmd_table(argv):
    o = {}
    for i in range(0, len(argv) - 1, 2):
        o[argv[i].lstrip("-")] = argv[i + 1]
    if "results" not in o:
        fail("table --results FILE [--latency US --big tN --last STAGE --single FILE]")
    rows = []
    with open(o["results"]) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) >= 10:
                rows.append(p)
    order = []
    for p in rows:
        if (p[0], p[1]) not in order:
            order.append((p[0], p[1]))
    names = {"upstream": "upstream 3.8.1", "ours": "ours", "floor": "I/O floor"}
    variants = {"none": "no added latency",
                "latency": "%s us per verb (CSULCCA_EMU_LATENCY_US)" % o.get("latency", "?")}
    stat = {}  # (variant, size, tool) -> (median wall, max RSS KiB)
    for variant, size in order:
        n = keys_of(size)
        print()
        print("-- %s | %s" % (variants.get(variant, variant), describe(size)))
        print("%-15s %4s %9s %9s %9s %11s %13s %16s" % (
            "", "runs", "median s", "min s", "max s", "ms per key", "peak RSS MiB", "in CCA library"))
        med_of, min_of = {}, {}
        for tool in ("upstream", "ours", "floor"):
            rs = [p for p in rows if p[0] == variant and p[1] == size and p[2] == tool]
            if not rs:
                continue
            walls = [float(p[4]) for p in rs]
            med_of[tool] = med(walls)
            min_of[tool] = min(walls)
            rss = [int(p[5]) for p in rs if p[5].isdigit()]
            rss_s = "%.1f" % (max(rss) / 1024.0) if rss else "-"
            stat[(variant, size, tool)] = (med(walls), max(rss) if rss else None)
            lib = "-"
            if tool != "floor":
                shares = [int(p[8]) / 1e9 / float(p[4]) for p in rs
                          if p[8].isdigit() and float(p[4]) > 0]
                calls = [int(p[7]) for p in rs if p[7].isdigit()]
                lib = "%.0f%% (%d calls)" % (100 * med(shares), med(calls)) if shares else "n/a"
            print("%-15s %4d %9.3f %9.3f %9.3f %11.3f %13s %16s" % (
                names[tool], len(rs), med(walls), min(walls), max(walls),
                1000 * med(walls) / max(n, 1), rss_s, lib))
        ratios = []
        for a, b in (("upstream", "ours"), ("ours", "floor")):
            if a in med_of and b in med_of:
                ratios.append("%s/%s %.2fx (minima: %.2fx)" % (
                    a, b, med_of[a] / med_of[b], min_of[a] / min_of[b]))
        if ratios:
            print("%-15s %s" % ("", "; ".join(ratios)))
        waits = [float(p[9]) for p in rows
                 if p[0] == variant and p[1] == size and p[2] == "upstream"]
        if waits:
            print("%-15s upstream's wall time includes up to %.1f ms from a PIN prompt to its answer"
                  % ("", 1000 * max(waits)))

    # Issue 12's targets, from the figures above (printed, not asserted).
    print()
    print("-- issue 12 targets (figures from this run)")
    single = parse_single(o["single"]) if "single" in o else {}
    last, big = o.get("last"), o.get("big")

    def line(what, value, ok):
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        print("  %-62s %-18s %s" % (what, value, verdict))

    up = stat.get(("none", last, "upstream"))
    ours = stat.get(("none", last, "ours"))
    floor = stat.get(("none", last, "floor"))
    if up and ours:
        r = up[0] / ours[0]
        line("%s keys: upstream/ours >= 4" % last, "%.2fx" % r, r >= 4)
    if ours and floor:
        r = ours[0] / floor[0]
        line("%s keys: ours/I/O floor <= 1.5" % last, "%.2fx" % r, r <= 1.5)
    small, large = stat.get(("none", "t500", "ours")), stat.get(("none", big, "ours"))
    if small and large and big:
        r = (large[0] / keys_of(big)) / (small[0] / 500)
        line("ours per key, %d vs 500 keys (test-kit stores) <= 1.3" % keys_of(big), "%.2fx" % r, r <= 1.3)
    if 500 in single and 4096 in single:
        r = single[4096] / single[500]
        line("single-tool bench (migrate_keys) per key, 4096 vs 500 <= 1.3",
             "%.0f/%.0f us = %.2fx" % (single[4096], single[500], r), r <= 1.3)
    lat = stat.get(("latency", big, "ours"))
    if lat:
        line("%d keys at %s us per verb: ours < 1.0 s" % (keys_of(big), o.get("latency", "?")),
             "%.3f s" % lat[0], lat[0] < 1.0)
    if large and large[1]:
        line("%d keys: ours' peak RSS < 32 MiB" % keys_of(big), "%.1f MiB" % (large[1] / 1024.0),
             large[1] < 32 * 1024)


def cmd_phases(argv):
    """Phases of one run of our pkcscca from `strace -f -ttt -e trace=openat,rename,
    fsync,fdatasync,syncfs,exit_group` output: where the wall time goes."""
    if len(argv) != 1:
        fail("phases STRACE_OUTPUT")
    ev = []  # (time, text)
    with open(argv[0]) as f:
        for line in f:
            p = line.split(None, 2)
            if len(p) == 3 and p[0].isdigit():
                try:
                    ev.append((float(p[1]), p[2]))
                except ValueError:
                    pass
    if not ev:
        print("  (no strace output)")
        return
    start, end = ev[0][0], ev[-1][0]

    def times(pred):
        return [t for t, x in ev if pred(x)]

    def is_obj(x):
        return ("openat(" in x and "/TOK_OBJ/" in x and ".pkcscca.tmp" not in x
                and "OBJ.IDX" not in x and "O_CREAT" not in x)

    objs = times(is_obj)
    temps = times(lambda x: "openat(" in x and "O_CREAT" in x and "/TOK_OBJ/" in x)
    renames = times(lambda x: x.startswith("rename") and "/TOK_OBJ/" in x)
    syncs = {k: len(times(lambda x, k=k: x.startswith(k + "("))) for k in ("fsync", "fdatasync", "syncfs")}
    # Today's emulator opens its state file and its lock file on every verb call.
    verbs = times(lambda x: "openat(" in x and ".state" in x and "TOK_OBJ" not in x)
    if not (objs and temps and renames):
        print("  (no commit seen in the trace)")
        return
    rows = [("start, PIN checks, library load (to the first object read)", objs[0] - start)]
    before = [t for t in objs if t < temps[0]]
    if verbs and objs:
        in_run = [t for t in verbs if t > objs[0]]
        if in_run:
            first_v, last_v = in_run[0], in_run[-1]
            reads = [t for t in before if t < first_v]
            rows.append(("reading and decrypting the %d objects" % len(reads),
                         (reads[-1] if reads else first_v) - objs[0]))
            rows.append(("verbs (%d opens of the emulator's state and lock files)" % len(in_run),
                         last_v - first_v))
            rows.append(("preparing the commit (%d objects opened again, encoding)"
                         % len([t for t in before if t > last_v]), temps[0] - last_v))
        else:
            verbs = []
    if not verbs:
        rows.append(("reading, re-enciphering, preparing the commit", temps[0] - objs[0]))
    rows.append(("writing %d temporary files (%s)" % (
        len(temps), ", ".join("%d %s" % (n, k) for k, n in syncs.items() if n)),
        renames[0] - temps[0]))
    rows.append(("%d renames and the directory sync" % len(renames), renames[-1] - renames[0]))
    rows.append(("after the last rename (shared memory, report, exit)", end - renames[-1]))
    total = end - start
    for what, secs in rows:
        print("  %-66s %7.2f s %5.1f%%" % (what, secs, 100 * secs / total if total else 0))
    print("  %-66s %7.2f s" % ("total under strace (strace adds time to every traced call)", total))


def cmd_perfsum(argv):
    """Per-library shares and top symbols of one command's samples, from the text
    of `perf report --stdio --no-children --sort comm,dso,sym -g none`, as
    shares of that command's samples (a pty driver or other processes in the
    same recording are left out)."""
    if len(argv) != 3:
        fail("perfsum REPORT COMM TOP")
    comm, top = argv[1], int(argv[2])
    rows = []
    with open(argv[0]) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            p = line.split(None, 3)
            if len(p) < 4 or not p[0].endswith("%") or p[1] != comm:
                continue
            sym = p[3].strip()
            rows.append((float(p[0].rstrip("%")), p[2], sym))
    total = sum(r[0] for r in rows)
    if not total:
        print("  (no samples of %s)" % comm)
        return
    by_dso = {}
    for pct, dso, _ in rows:
        by_dso[dso] = by_dso.get(dso, 0.0) + pct
    for dso, pct in sorted(by_dso.items(), key=lambda kv: -kv[1])[:6]:
        print("  %6.2f%%  %s" % (100 * pct / total, dso))
    print("  top symbols")
    for pct, dso, sym in sorted(rows, key=lambda r: -r[0])[:top]:
        print("  %6.2f%%  %-24s %s" % (100 * pct / total, dso[:24], sym[:88]))


def cmd_verbcost(argv):
    """Times COUNT calls of CSNBKTC (RTCMK AES) in the CCA library LIB, each on a
    fresh copy of a recorded key token (under the OLD master key, so each call
    re-enciphers), in this process through ctypes: what one verb of the
    migration costs in this library, apart from any tool."""
    if len(argv) != 3:
        fail("verbcost LIB STATE_FILE COUNT")
    import ctypes
    lib = ctypes.CDLL(argv[0])
    with open(argv[1]) as f:
        tokens = [bytes.fromhex(line.split()[1]) for line in f if line.strip()]
    tokens = tokens[:int(argv[2])]
    c_long = ctypes.c_long
    verb = lib.CSNBKTC
    rule = b"RTCMK   AES     "
    failed = 0
    t0 = time.perf_counter()
    for t in tokens:
        rc, rsn, exit_len, rule_count = c_long(0), c_long(0), c_long(0), c_long(2)
        buf = ctypes.create_string_buffer(t, len(t))
        verb(ctypes.byref(rc), ctypes.byref(rsn), ctypes.byref(exit_len), None,
             ctypes.byref(rule_count), rule, buf)
        failed += rc.value != 0
    secs = time.perf_counter() - t0
    print("%d %.4f %d" % (len(tokens), secs, failed))


def main():
    if len(sys.argv) < 2:
        fail("run ... | table ...")
    if sys.argv[1] == "run":
        cmd_run(sys.argv[2:])
    elif sys.argv[1] == "table":
        cmd_table(sys.argv[2:])
    elif sys.argv[1] == "phases":
        cmd_phases(sys.argv[2:])
    elif sys.argv[1] == "perfsum":
        cmd_perfsum(sys.argv[2:])
    elif sys.argv[1] == "verbcost":
        cmd_verbcost(sys.argv[2:])
    else:
        fail("unknown command %r" % sys.argv[1])


if __name__ == "__main__":
    main()
