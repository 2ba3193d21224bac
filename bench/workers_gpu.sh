#!/usr/bin/env bash
# Warm workers on ONE H100 (issue 27; docs/workers.md). NOT RUN YET: no GPU was lent when
# this was written, so none of its figures exist.
#   1. the reduced H0/H1 experiment (hypotheses/untie-ve-h100-reduced.toml) three ways with
#      bench/bench_workers.py: fresh processes on the shared compile cache, warm workers,
#      fresh processes without the cache. Each way is a whole `harness run` in its own folder
#      (its own cache, empty at its start), the same seeds; it prints GPU-seconds per run,
#      the overhead share, the time to the first step and whether every run's loss and
#      steps equal across the ways. Goal: with workers, the experiment's GPU-seconds at most
#      1.25 x (sum of train_time + one compile per arm).
#   2. the A/A experiment (hypotheses/workers-aa-h100-reduced.toml): the same H0 as fresh
#      processes and through a worker, interleaved; `harness analyze` must find no time
#      difference at alpha 0.01 (two-sided), and the peak memory per run must be the same.
# Resumable: the folders live in $WORK (default /var/tmp/workers-gpu) and `harness run`
# resumes them, so a job cut off at a call's end goes on in the next; as one job across
# device calls (each call sent within the machine's idle window):
#   bash bench/detach.sh start workers -- env OUT=/var/tmp/workers-gpu/out RUNS=3 bash bench/workers_gpu.sh
#   bash bench/detach.sh wait workers 560 /var/tmp/workers-gpu/out
# Cost estimate from the H100 parity runs (about 200 s to the first step on a cold cache,
# 116-124 s of wall per warm run): RUNS=3 is about 12 min (fresh+cache), 8 min (workers),
# 20 min (fresh, cold each run), 15 min (A/A, RUNS_AA=5): about 55 minutes of one H100.
# Usage: OUT=/tmp/out [RUNS=3] [RUNS_AA=5] [WAYS=1] [AA=1] bash bench/workers_gpu.sh
set -u
OUT=${OUT:-/tmp/workers_gpu}
WORK=${WORK:-/var/tmp/workers-gpu}
RUNS=${RUNS:-3}
RUNS_AA=${RUNS_AA:-5}
PY=${PYTHON:-python3}
DATA=data/synthetic-50k
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/machine.txt"; }

{ date -u; nvidia-smi -L; $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$OUT/machine.txt"
if [ ! -f "$DATA/synthetic_meta.json" ]; then
    $PY -m train.data synthetic --out "$DATA" --vocab-size 50304 --train-tokens 12000000 \
        --train-shards 2 --val-tokens 1400000 --mean-doc-len 600 2>&1 | tee -a "$OUT/machine.txt"
fi

# 1. three ways (bench/bench_workers.py keeps its folders in $WORK/ways: a rerun resumes them)
if [ "${WAYS:-1}" = 1 ]; then
    say "three ways, $RUNS runs per arm"
    $PY bench/bench_workers.py --experiment hypotheses/untie-ve-h100-reduced.toml --runs "$RUNS" \
        --keep "$WORK/ways" 2>&1 | tee "$OUT/three-ways.txt"
    say "three ways rc=${PIPESTATUS[0]}"
fi

# 2. A/A: worker against fresh processes, same config
if [ "${AA:-1}" = 1 ]; then
    say "A/A, $RUNS_AA runs per arm"
    $PY -m harness run hypotheses/workers-aa-h100-reduced.toml --runs "$RUNS_AA" --results "$WORK/aa" \
        --plain > "$OUT/aa-table.txt" 2> "$OUT/aa-progress.txt"
    say "A/A rc=$?"
    $PY -m harness analyze "$WORK/aa" --format json > "$OUT/aa.json"
    $PY - "$WORK/aa" <<'EOF' | tee "$OUT/aa-summary.txt"
import json, sys
from pathlib import Path
recs = [json.loads(p.read_text()) for p in sorted(Path(sys.argv[1]).glob("*/*/result.json"))]
for arm in ("fresh", "worker"):
    ok = [r for r in recs if r["hypothesis"] == arm and r["status"] == "ok"]
    print(arm, "train_time_s", [r["train_time_s"] for r in ok], "peak_mem_mib", [r["peak_mem_mib"] for r in ok],
          "wall_s", [r["wall_s"] for r in ok])
EOF
    tar czf "$OUT/aa-results.tgz" -C "$WORK" --exclude=.cache --exclude=.lock aa
fi
tar czf "$OUT/ways-results.tgz" -C "$WORK" --exclude=.cache --exclude=.lock ways 2>/dev/null
say "done"
