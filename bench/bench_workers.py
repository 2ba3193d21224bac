"""The smoke H0/H1 experiment three ways: what warm workers save, and that they change nothing else.

    python bench/bench_workers.py [--experiment hypotheses/untie-ve-smoke.toml] [--runs 3]
                                  [--compile] [--keep DIR]

Ways, each a whole `harness run` of the same experiment (same seeds) in its own folder:
  fresh+cache  a fresh process per run, the shared compile cache (the default)
  workers      workers = true: one warm process per arm (docs/workers.md)
  fresh        a fresh process per run, --no-compile-cache and TORCHINDUCTOR_FORCE_DISABLE_CACHES=1
               (without it inductor would fall back on its default cache in /tmp, shared after all)

Per way it prints, from the records and the logs: GPU-seconds per run (wall x processes;
on a CPU these are process-seconds), the overhead share (1 - sum train_time / sum wall), the
time from launch to the first step line (watched here as the log grows), the median of each
over the runs and over the runs after each arm's first, the experiment's whole wall, and
whether every run's loss and training steps equal those of the first way (the seeds are the
same, so they must). On the CPU the tiny preset does not compile unless --compile is given
(then a cold compile takes minutes per process on a small machine).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAYS = ("fresh+cache", "workers", "fresh")
STEP = re.compile(rb"^step:\d+/\d+ ", re.M)


def variant(text: str, way: str, compile_: bool) -> str:
    """The experiment file for one way: workers = true and/or compile = true in [defaults]."""
    extra = []
    if way == "workers":
        extra.append("workers = true")
    if compile_:
        if re.search(r"^\[defaults\][^\[]*^args\s*=", text, re.M | re.S):
            raise SystemExit("--compile: the experiment's [defaults] has args already; add compile = true there")
        extra.append("args = { compile = true }")
    if not extra:
        return text
    if "[defaults]" not in text:
        raise SystemExit("the experiment has no [defaults] section")
    return text.replace("[defaults]", "[defaults]\n" + "\n".join(extra), 1)


class FirstSteps(threading.Thread):
    """Notes when each run's log.txt first holds a step line (polled every 10 ms)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.seen: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for log in self.folder.glob("*/*/log.txt"):
                key = str(log.parent)
                if key in self.seen:
                    continue
                try:
                    if STEP.search(log.read_bytes()):
                        self.seen[key] = time.time()
                except OSError:
                    pass
            time.sleep(0.01)


def iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_way(exp_text: str, way: str, work: Path, runs: int, compile_: bool) -> dict:
    exp = work / f"{way}.toml"
    exp.write_text(variant(exp_text, way, compile_))
    results = work / way
    cmd = [sys.executable, "-m", "harness", "run", str(exp), "--results", str(results), "--plain",
           "--runs", str(runs)] + (["--no-compile-cache"] if way == "fresh" else [])
    watch = FirstSteps(results)
    watch.start()
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if way == "fresh":
        env["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"   # every run's processes inherit it
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    watch.halt.set()
    watch.join()
    if out.returncode != 0:
        raise SystemExit(f"{way}: harness run exited {out.returncode}:\n{out.stderr[-3000:]}")
    rows = []
    for res in sorted(results.glob("*/*/result.json")):
        rec = json.loads(res.read_text())
        launch = json.loads((res.parent / "launch.json").read_text())
        nproc = int(next((a.split("=", 1)[1] for a in rec["command"] if a.startswith("--nproc_per_node=")), 1))
        first = watch.seen.get(str(res.parent))
        rows.append(dict(hyp=rec["hypothesis"], index=rec["index"], status=rec["status"], loss=rec["val_loss"],
                         steps=rec["final_step"], train=rec["train_time_s"], wall=rec["wall_s"], nproc=nproc,
                         order=rec["order"], worker_run=(launch.get("worker") or {}).get("run"),
                         to_first=None if first is None else first - iso(launch["started_at"])))
    return {"way": way, "wall": wall, "rows": sorted(rows, key=lambda r: r["order"]), "stderr": out.stderr}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def later(rows):
    """The runs after each arm's first (a worker's warm runs; a fresh process's second and on)."""
    firsts = {}
    for r in rows:
        firsts.setdefault(r["hyp"], r["order"])
    return [r for r in rows if r["order"] != firsts[r["hyp"]]]


def report(ways: list[dict]) -> str:
    lines = [f"{'way':<12} {'GPU-s/run':>9} {'warm runs':>9} {'overhead':>8} {'1st step':>8} {'warm 1st':>8} "
             f"{'train/run':>9} {'exp wall':>8} {'exp GPU-s':>9} {'same runs':>9}"]
    base = {(r["hyp"], r["index"]): (r["loss"], r["steps"]) for r in ways[0]["rows"]}
    for w in ways:
        rows = w["rows"]
        gpu = [r["wall"] * r["nproc"] for r in rows]
        warm = [r["wall"] * r["nproc"] for r in later(rows)]
        share = 1 - sum(r["train"] for r in rows) / sum(r["wall"] for r in rows)
        nproc = max(r["nproc"] for r in rows)
        same = all(base.get((r["hyp"], r["index"])) == (r["loss"], r["steps"]) for r in rows)
        lines.append(f"{w['way']:<12} {median(gpu):>9.2f} {median(warm):>9.2f} {100 * share:>7.1f}% "
                     f"{median([r['to_first'] for r in rows]):>8.2f} "
                     f"{median([r['to_first'] for r in later(rows)]):>8.2f} "
                     f"{median([r['train'] for r in rows]):>9.3f} {w['wall']:>8.1f} {w['wall'] * nproc:>9.1f} "
                     f"{'yes' if same else 'NO':>9}")
    lines.append("")
    lines.append("GPU-s/run: median wall x processes per run; warm runs: the same over the runs after each "
                 "arm's first; overhead: 1 - sum(train_time) / sum(wall) over all runs; 1st step: median "
                 "seconds from launch to the first step line (warm 1st: runs after each arm's first); "
                 "train/run: median train_time (s); exp wall: the whole `harness run` (start, runs, "
                 "workers' teardown, table), exp GPU-s = exp wall x processes; same runs: every run's "
                 "final loss and step equal the first way's.")
    lines.append("")
    for w in ways:
        lines.append(f"{w['way']}: " + ", ".join(
            f"{r['hyp']}#{r['index']} wall {r['wall']:.2f} train {r['train']:.2f} first-step "
            f"{'-' if r['to_first'] is None else format(r['to_first'], '.2f')}"
            + (f" (worker run {r['worker_run']})" if r["worker_run"] else "") for r in w["rows"]))
    return "\n".join(lines)


def machine() -> str:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"date {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine {platform.node()}: "
            f"{os.cpu_count()} CPUs ({cpu}), load average {load}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="hypotheses/untie-ve-smoke.toml")
    ap.add_argument("--runs", type=int, default=3, help="runs per arm")
    ap.add_argument("--compile", action="store_true", help="add compile = true (minutes per cold process on a CPU)")
    ap.add_argument("--keep", help="keep the results folders here (default: a temporary folder, removed)")
    a = ap.parse_args()
    text = (ROOT / a.experiment).read_text()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-workers-"))
    work.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(f"experiment {a.experiment}, {a.runs} runs per arm, compile {'on' if a.compile else 'off (tiny preset on CPU)'}")
    ways = [run_way(text, way, work, a.runs, a.compile) for way in WAYS]
    notes = [line for w in ways for line in w["stderr"].splitlines() if "warm workers" in line]
    print(report(ways))
    if notes:
        print("\n".join(notes))
    if not a.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
