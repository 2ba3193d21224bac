#!/usr/bin/env bash
# Issue 5 on one lent GPU, in as many calls as it takes (each call resumes the last):
#   1. the reference experiment hypotheses/untie-ve-h100-reduced.toml through `harness run`
#      (compile cache on: run 1 compiles cold, runs 2..N reuse the cache), until done or
#      until the call's time is nearly spent (then Ctrl-C: `harness run` resumes next call);
#   2. once the experiment is done and time is left: bench/bench_throughput.py (H0, H1,
#      GPT-2-small baseline) on the same GPU, so the two never share it.
# The experiment's working copy lives outside the repo ($W), so on a machine that stays warm
# between calls its compile cache and runs survive the tree being re-sent; on a fresh machine
# it starts from the committed copy ($R, unpacked from an earlier call's results.tgz).
# Usage: OUT=/tmp/out bash bench/h100_reference.sh [seconds-for-this-call]
set -u
t0=$(date +%s)
OUT=${OUT:-/tmp/h100_reference}
BUDGET=${1:-570}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
EXP=${EXP:-hypotheses/untie-ve-h100-reduced.toml}  # EXP=hypotheses/untie-ve-smoke.toml tries this on a CPU
NAME=$(basename "$EXP" .toml)
R=results/$NAME
W=${WORK:-/var/tmp/h100ref}/$NAME
DATA=data/synthetic-50k
left() { echo $(( BUDGET - ($(date +%s) - t0) )); }

{ date -u; nvidia-smi -L; $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$OUT/machine.txt"
if [ -d "$W" ]; then
    echo "warm machine: resuming $W (with its compile cache)" | tee -a "$OUT/machine.txt"
else
    mkdir -p "$(dirname "$W")"
    if [ -d "$R" ]; then cp -a "$R" "$W"; echo "fresh machine: resuming from the committed $R (cold cache)"; else echo "fresh machine: new experiment"; fi | tee -a "$OUT/machine.txt"
fi
if [ ! -f "$DATA/synthetic_meta.json" ]; then
    $PY -m train.data synthetic --out "$DATA" --vocab-size 50304 --train-tokens 12000000 \
        --train-shards 2 --val-tokens 1400000 --mean-doc-len 600 2>&1 | tee -a "$OUT/machine.txt"
fi

# Leave 40 s for the Ctrl-C to land and for collecting.
start=$(date +%s)
timeout -s INT -k 20 $(( $(left) - 40 )) $PY -m harness run "$EXP" \
    --results "$W" --plain 2>&1 | tee "$OUT/harness_run.txt"
echo "harness run rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - start ))s" | tee -a "$OUT/harness_run.txt"

$PY -m harness status "$W" > "$OUT/status.txt" 2>&1
if grep -q "^finished in" "$OUT/harness_run.txt" && [ "$(left)" -gt 200 ]; then
    # Not the experiment's cache folder: inductor (torch 2.11) cannot load those graphs into
    # a process that imports the trainer under another module name, and says so at length.
    timeout -k 10 $(( $(left) - 30 )) $PY bench/bench_throughput.py --data-path "$DATA" \
        --steps 100 ${BENCH_FLAGS:-} 2>&1 | tee "$OUT/throughput.txt"
    echo "bench rc=${PIPESTATUS[0]}" >> "$OUT/throughput.txt"
fi

du -sh "$W/.cache" >> "$OUT/status.txt" 2>&1
$PY analyze.py "$W" --plot "$OUT/plot.png" > "$OUT/analyze.txt" 2>&1
tar czf "$OUT/results.tgz" -C "$(dirname "$W")" --exclude=.cache --exclude=.lock "$(basename "$W")"
echo "call wall $(( $(date +%s) - t0 ))s"
