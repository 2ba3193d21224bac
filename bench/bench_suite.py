"""Wall time of the test suite, before and after, side by side on one machine.

    python bench/bench_suite.py OLD_TREE NEW_TREE [--rounds 2] [--python PY]

Each tree is a checkout (``git worktree add /tmp/old a4705b1``). The suites run one
after the other, alternating (old, new, new, old, ...) so that a change in the machine's
load falls on both; each gets ``python -m pytest -q -p no:cacheprovider`` with SLURM
left out (the old suite has no marker: its test_slurm.py is ignored, as the new default
deselects them). The old suite reads its calibration cache from ``$HARNESS_CACHE``: a
folder of its own, filled by one cold run first (reported apart). Prints each run's wall
and CPU seconds (the suite and its children), the load average, the pytest summary, then
the medians and the ratio new / old.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def run_suite(tree: Path, python: str, old: bool, cache: Path, tests: list[str]) -> dict:
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    env = dict(os.environ)
    if old:
        cmd += ["--ignore=tests/test_slurm.py"]
        env["HARNESS_CACHE"] = str(cache)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = p.stdout.strip().splitlines()
    return {"wall": wall, "cpu": cpu, "load": load, "rc": p.returncode,
            "summary": lines[-1] if lines else p.stderr.strip()[-200:],
            "failed": [line for line in lines if line.startswith(("FAILED", "ERROR"))]}


def show(label: str, r: dict) -> None:
    print(f"{label:5s} wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  load1 {r['load']:5.2f}  "
          f"rc {r['rc']}  {r['summary']}", flush=True)
    for line in r["failed"]:
        print(f"      {line}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--also", type=Path, help="a third tree, measured in every round (e.g. today's main)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--python", default=os.environ.get("PYTHON", "python"))
    p.add_argument("--no-cold", action="store_true", help="no cold run first (an old tree with a sealed cache)")
    p.add_argument("--cache", type=Path, help="the old suite's calibration cache (default: a new folder)")
    p.add_argument("--tests", nargs="*", default=[], help="only these test files (the same in every tree)")
    a = p.parse_args()
    cache = a.cache or Path(tempfile.mkdtemp(prefix="old-suite-cache-"))
    if not a.no_cold:
        show("cold", run_suite(a.old, a.python, True, cache, a.tests))   # fills the old suite's cache
    trees = {"old": a.old, "new": a.new, **({"also": a.also} if a.also else {})}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for i in range(a.rounds):
        order = list(trees) if i % 2 == 0 else list(trees)[::-1]
        for which in order:
            r = run_suite(trees[which], a.python, which == "old", cache, a.tests)
            runs[which].append(r)
            show(which, r)
    for key in ("wall", "cpu"):
        med = {k: statistics.median(r[key] for r in v) for k, v in runs.items()}
        extra = f", also {med['also']:.1f} s (new/also {med['new'] / med['also']:.2f})" if "also" in med else ""
        print(f"median {key}: old {med['old']:.1f} s, new {med['new']:.1f} s, "
              f"new/old {med['new'] / med['old']:.2f}{extra}")


if __name__ == "__main__":
    main()
