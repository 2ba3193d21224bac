#!/usr/bin/env python3
"""Speed of ``python analyze.py`` and of the log parser.

    python bench/bench_analyze.py [--logs 2000] [--gb 1.0] [--repeat 5]

Prints
1. wall time of the whole command (interpreter start, imports, parse, table) on the 20
   committed record logs: median of ``--repeat`` runs (the target is < 1 s);
2. the same on a generated tree of ``--logs`` upstream-shaped logs (about 4,100 lines
   each, in a temp dir, deleted afterwards), with the parse rate in MB/s and logs/s;
3. parse throughput and peak RSS on one generated log of ``--gb`` GB (a temp file):
   the parser streams, so memory must not grow with the log.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(ROOT))
import make_record_logs as mrl  # noqa: E402

RECORD = ROOT / "tests" / "fixtures" / "record_logs"


def wall(argv: list[str], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode not in (0, 1):
            sys.exit(f"command failed ({r.returncode}): {' '.join(argv)}\n{r.stderr}")
    return statistics.median(times), times


def make_tree(folder: Path, n: int) -> int:
    """n distinct logs, half at 1600 steps and half at 1575; returns total bytes."""
    rng = random.Random(1)
    total = 0
    for i in range(n):
        steps = 1600 if i % 2 == 0 else 1575
        base = mrl.H0_TIMES if steps == 1600 else mrl.H1_TIMES
        loss = round(rng.gauss(3.278, 0.001), 4)
        t = round(rng.gauss(statistics.mean(base), 0.08), 3)
        text = mrl.make_log(steps, loss, t, ".12...012", rng)
        p = folder / f"{i:05d}.txt"
        p.write_text(text)
        total += len(text)
    return total


def make_big_log(path: Path, gb: float) -> int:
    """One log of ``gb`` GB: the upstream header, then step lines up to the size."""
    target = int(gb * (1 << 30))
    head = mrl.make_log(1600, 3.28, 98.0, ".12...012", random.Random(2))
    head = head[:head.index("\nstep:0/") + 1]
    n = target // 46                       # a step line is about 46 bytes
    with open(path, "w") as f:
        f.write(head)
        size = len(head)
        k = 0
        while size < target:
            lines = []
            for _ in range(20000):
                k += 1
                ms = 60 * k
                if k % 250 == 0:
                    lines.append(f"step:{k}/{n} val_loss:{3.3 + 1.0 / k:.4f} train_time:{ms}ms step_avg:60.00ms\n")
                lines.append(f"step:{k}/{n} train_time:{ms}ms step_avg:60.00ms\n")
            chunk = "".join(lines)
            f.write(chunk)
            size += len(chunk)
    return size


_CHILD = """
import json, resource, sys, time
from harness.logs.logparse import parse_file
t0 = time.perf_counter()
s = parse_file(sys.argv[1])
dt = time.perf_counter() - t0
print(json.dumps({"s": dt, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": s.step_lines, "curve": len(s.val_curve)}))
"""
_IDLE = ("import json, resource; import harness.logs.logparse; "
         "print(json.dumps({'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=int, default=2000)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")

    cmd = [py, "analyze.py", str(RECORD), "--group-by", "steps", "--control", "1600"]
    med, ts = wall(cmd, max(args.repeat, 5))
    size = sum(p.stat().st_size for p in RECORD.glob("*.txt"))
    print(f"record logs (20 runs + 1 duplicate, {size / 1e6:.1f} MB): analyze.py wall "
          f"median {med:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in ts)})")
    med, ts = wall(cmd + ["--gate", "--format", "json"], max(args.repeat, 5))
    print(f"  with --gate --format json: median {med:.3f} s")

    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        tree = Path(tmp) / "logs"
        tree.mkdir()
        t0 = time.perf_counter()
        total = make_tree(tree, args.logs)
        print(f"generated {args.logs} logs, {total / 1e6:.0f} MB, in {time.perf_counter() - t0:.1f} s")
        cmd = [py, "analyze.py", str(tree), "--group-by", "steps", "--control", "1600"]
        med, ts = wall(cmd, args.repeat)
        print(f"{args.logs} logs: analyze.py wall median {med:.2f} s (runs: {', '.join(f'{t:.2f}' for t in ts)})"
              f" -> {total / 1e6 / med:.0f} MB/s, {args.logs / med:.0f} logs/s end to end")
        from harness.logs.logparse import parse_file
        paths = sorted(tree.iterdir())
        t0 = time.perf_counter()
        for p in paths:
            parse_file(p)
        dt = time.perf_counter() - t0
        print(f"  parser alone, one process: {dt:.2f} s -> {total / 1e6 / dt:.1f} MB/s, {len(paths) / dt:.0f} logs/s")

    with tempfile.TemporaryDirectory(prefix="bench-biglog-") as tmp:
        big = Path(tmp) / "big.txt"
        t0 = time.perf_counter()
        size = make_big_log(big, args.gb)
        print(f"generated a {size / (1 << 30):.2f} GB log in {time.perf_counter() - t0:.1f} s")
        idle = json.loads(subprocess.run([py, "-c", _IDLE], cwd=ROOT, capture_output=True,
                                         text=True, check=True).stdout)
        r = json.loads(subprocess.run([py, "-c", _CHILD, str(big)], cwd=ROOT, capture_output=True,
                                      text=True, check=True).stdout)
        print(f"{args.gb:g} GB log: parse {r['s']:.1f} s -> {size / 1e6 / r['s']:.0f} MB/s, "
              f"{r['lines'] / r['s'] / 1e6:.2f} M step lines/s; peak RSS {r['rss_mib']:.0f} MiB "
              f"(interpreter + parser idle: {idle['rss_mib']:.0f} MiB; val curve kept {r['curve']} points)")


if __name__ == "__main__":
    main()
