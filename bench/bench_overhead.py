"""Harness overhead per run against the same commands from a plain shell loop.

The trainer only prints its final line, so everything beyond the process's own cost
is the harness's: folder setup, snapshot, launch.json, polling, parsing, result.json.
Both sides run the same torchrun (or python) command; rounds alternate so drift hits
both alike. Prints medians per run and the ratio.

    python bench/bench_overhead.py [--runs 10] [--rounds 3] [--launcher torchrun|python]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FINAL_ONLY = '''import os
n = 100
print(f"step:{n}/{n} val_loss:3.2800 train_time:{1000 + int(os.environ.get('SEED', 0))}ms step_avg:10.00ms")
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="runs per arm (2 arms)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--launcher", default="torchrun", choices=("torchrun", "python"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    script = tmp / "final_only.py"
    script.write_text(FINAL_ONLY)
    harness_per_run, shell_per_run = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for r in range(a.rounds):
        exp = tmp / f"e{r}.toml"
        exp.write_text(f'[experiment]\nname = "e{r}"\nruns = {a.runs}\n[defaults]\nscript = "{script}"\n'
                       f'launcher = "{a.launcher}"\n[[hypothesis]]\nname = "H0"\ncontrol = true\nsteps = 100\n'
                       f'[[hypothesis]]\nname = "H1"\nsteps = 100\n')
        dry = subprocess.run([sys.executable, "-m", "harness", "run", str(exp), "--dry-run"], cwd=tmp, env=env,
                             capture_output=True, text=True, check=True).stdout
        cmds = [line for line in dry.splitlines() if not line.startswith("#")]
        loop = "\n".join(f"( {c} ) > {tmp}/shell-{r}-{i}.log 2>&1" for i, c in enumerate(cmds))
        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", loop], cwd=tmp, check=True)
        shell = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", "run", str(exp), "--plain"], cwd=tmp, env=env,
                       check=True, capture_output=True)
        har = time.perf_counter() - t0
        n = len(cmds)
        shell_per_run.append(shell / n)
        harness_per_run.append(har / n)
        print(f"round {r}: {n} runs  shell loop {shell:.2f} s  harness {har:.2f} s")
    sh, ha = statistics.median(shell_per_run), statistics.median(harness_per_run)
    print(f"launcher {a.launcher}: per run, median of {a.rounds} rounds: shell {sh:.3f} s, harness {ha:.3f} s, "
          f"overhead {ha - sh:+.3f} s per run ({(ha / sh - 1) * 100:+.1f}% of wall time)")


if __name__ == "__main__":
    main()
