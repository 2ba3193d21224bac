"""Stand-in trainer for the multi-node SLURM tests: one node is slower than the others.

Prints speedrun log lines as ``fake_train.py`` does. Its training time is the time a run
would take on its node: ``base_time + 0.02 * SEED`` seconds, plus ``SLOW_BY`` seconds
(default 2) on the node named by ``$SLOW_NODE``; the node is SLURM's name for it
(``SLURMD_NODENAME``: every node of the test cluster is this one machine, so the host
name cannot tell them apart). The reported times are computed, not measured, so that a
busy 2-core machine does not blur them; the run also sleeps ``step_sleep`` per step and
``SLOW_BY / 10`` seconds more on the slow node, so the slow node is slower in wall time too.

``$HANG_RUNS`` (comma-separated ``ARM/NNN-A`` run folders, e.g. ``H0/002-1``) names attempts
that print their first step and then sleep for 600 s instead of training: a job that
outlives its SLURM time limit. ``$HARNESS_RUN_DIR`` (set by the harness) says which run
this is.
"""
import argparse
import os
import time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--num-iterations", type=int, default=20)
p.add_argument("--step-sleep", type=float, default=0.0)
p.add_argument("--base-time", type=float, default=10.0)
a = p.parse_args()
seed = int(os.environ.get("SEED", "0"))
node = os.environ.get("SLURMD_NODENAME", "")
run = Path(os.environ.get("HARNESS_RUN_DIR", "."))
slow = node != "" and node == os.environ.get("SLOW_NODE")
extra = float(os.environ.get("SLOW_BY", "2.0")) if slow else 0.0
n = a.num_iterations
print(f"config: {{\"seed\": {seed}, \"node\": \"{node}\"}}")
print("=" * 100, flush=True)
ms_per_step = (a.base_time + 0.02 * seed + extra) * 1000 / n
print(f"step:0/{n} val_loss:10.0000 train_time:0ms step_avg:0.03ms", flush=True)
hang = f"{run.parent.name}/{run.name}" in os.environ.get("HANG_RUNS", "").split(",")
for k in range(1, n + 1):
    time.sleep(a.step_sleep + extra / 10 / n)
    t = ms_per_step * k
    print(f"step:{k}/{n} train_time:{t:.0f}ms step_avg:{t / k:.2f}ms", flush=True)
    if hang:
        time.sleep(600)
    if k == n:
        loss = 3.0 + 1.0 / k + 0.001 * (seed % 3)
        print(f"step:{k}/{n} val_loss:{loss:.4f} train_time:{t + 5:.0f}ms step_avg:{t / k:.2f}ms", flush=True)
print("peak memory allocated: 123 MiB reserved: 456 MiB", flush=True)
