#!/usr/bin/env python3
"""bench/compare.py — weft against the Tokio peer harness, workload by workload.

The machines these run on are shared and noisy: the same binary's time can
swing by half from one minute to the next. So each round runs one workload on
weft and then at once on Tokio, and the ratio is taken inside the round; the
report gives the median ratio over the rounds (and both medians).

Usage: bench/compare.py [--rounds N] [--workers N] [--weft PATH] [--tokio PATH]
                        [WORKLOAD ...]
  --weft   weft-bench binary (default: build/bench/weft-bench)
  --tokio  tokio-peer-bench binary (default: built by ../shared/peers/tokio/run
           into $CARGO_TARGET_DIR or /tmp/weft-peers/tokio-target)
Prints a Markdown table; exit status 0. For `starvation` (whose point is the
ticker's lateness, not its time) a second table gives the medians of the
STARVATION line's max_tick_late_us and p99_tick_late_us on both sides.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

DEFAULT_WORKLOADS = ["spawn_many_local", "spawn_many_remote", "yield_many", "chained_spawn", "skynet"]
# Targets from the issues: weft median / Tokio median, 2 workers.
TARGETS = {
    "spawn_many_local": 0.15,
    "spawn_many_remote": 0.4,
    "yield_many": 0.3,
    "chained_spawn": 0.25,
    "skynet": 0.05,
    "ping_pong": 0.4,
    "cross_thread_wake": 0.5,
    "timers": 0.3,
}
# weft-only workloads measured against a Tokio workload of the same definition
# (the thread-per-core executor's, issue 7).
PEER = {
    "tpc_cross_thread_wake": "cross_thread_wake",
    "tpc_spawn_local": "spawn_many_local",
}
TARGETS["tpc_cross_thread_wake"] = 0.5
LINE = re.compile(r"^BENCH (\S+) workers=(\d+) median_ns=(\d+) ops=(\d+) ns_per_op=([\d.]+)")
STARVATION = re.compile(r"^STARVATION max_tick_late_us=([\d.]+) p99_tick_late_us=([\d.]+) ticks=(\d+)")


def run(cmd):
    """{workload: ns_per_op}, {workload: (max_tick_late_us, p99_tick_late_us)}; a STARVATION
    line belongs to the BENCH line before it."""
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
    res, late = {}, {}
    last = None
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            last = m.group(1)
            res[last] = float(m.group(5))
        m = STARVATION.match(line)
        if m and last is not None:
            late[last] = (float(m.group(1)), float(m.group(2)))
    return res, late


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--weft", default=os.path.join(root, "build", "bench", "weft-bench"))
    target_dir = os.environ.get("CARGO_TARGET_DIR", "/tmp/weft-peers/tokio-target")
    ap.add_argument("--tokio", default=os.path.join(target_dir, "release", "tokio-peer-bench"))
    ap.add_argument("workloads", nargs="*")
    a = ap.parse_args()
    for p in (a.weft, a.tokio):
        if not os.access(p, os.X_OK):
            sys.exit(f"compare.py: {p} is not an executable; build weft (make) and the peer "
                     f"(../shared/peers/tokio/run --list) first")
    workloads = a.workloads or DEFAULT_WORKLOADS
    rows, late_rows = [], []
    for w in workloads:
        ratios, wefts, tokios = [], [], []
        weft_late, tokio_late = [], []
        for r in range(a.rounds):
            xs, xl = run([a.weft, "--workers", str(a.workers), w])
            pw = PEER.get(w, w)
            ys, yl = run([a.tokio, "--workers", str(a.workers), pw])
            x, y = xs.get(w), ys.get(pw)
            if w in xl and w in yl:
                weft_late.append(xl[w])
                tokio_late.append(yl[w])
            if x is None or y is None:
                sys.exit(f"compare.py: no BENCH line for {w}")
            wefts.append(x)
            tokios.append(y)
            ratios.append(x / y)
            print(f"# {w} round {r + 1}: weft {x:.2f} ns/op, tokio {y:.2f} ns/op, ratio {x / y:.3f}",
                  file=sys.stderr, flush=True)
        rows.append((w, statistics.median(wefts), statistics.median(tokios), statistics.median(ratios),
                     min(ratios), max(ratios)))
        if weft_late:
            med = lambda v, i: statistics.median(t[i] for t in v)
            late_rows.append((w, med(weft_late, 0), med(tokio_late, 0), med(weft_late, 1), med(tokio_late, 1)))
    print(f"| workload | weft ns/op | Tokio ns/op | weft/Tokio (median of {a.rounds}) | range | target |")
    print("|---|---:|---:|---:|---:|---:|")
    for w, x, y, r, lo, hi in rows:
        t = TARGETS.get(w)
        mark = "" if t is None else (f"<= {t} {'met' if r <= t else 'NOT met'}")
        print(f"| {w} | {x:.2f} | {y:.2f} | {r:.3f} | {lo:.3f}-{hi:.3f} | {mark} |")
    if late_rows:
        print()
        print("| workload | weft max tick late us | Tokio max tick late us | weft p99 us | Tokio p99 us |")
        print("|---|---:|---:|---:|---:|")
        for w, xm, ym, xp, yp in late_rows:
            print(f"| {w} | {xm:.1f} | {ym:.1f} | {xp:.1f} | {yp:.1f} |")


if __name__ == "__main__":
    main()
