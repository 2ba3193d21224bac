#!/usr/bin/env bash
# Issue 5 on a lent machine with 2 GPUs, in one call:
#   GPU 0: the reference experiment hypotheses/untie-ve-h100-reduced.toml through `harness run`
#          (compile cache on: run 1 compiles cold, runs 2..N reuse the cache);
#   GPU 1: bench/bench_throughput.py (H0, H1, GPT-2-small baseline), at the same time.
# Everything it measured lands in $OUT (results as one tarball). If one call is not enough,
# call again with `carry: ["results/untie-ve-h100-reduced"]` after unpacking the tarball
# (the tarball leaves the compile cache out, so the first resumed run compiles again):
# `harness run` resumes where it stopped.
# Usage: OUT=/tmp/out bash bench/h100_reference.sh [experiment-timeout-s]
set -u
OUT=${OUT:-/tmp/h100_reference}
LIMIT=${1:-520}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD
{ date -u; nvidia-smi -L; $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$OUT/machine.txt"
$PY -m train.data synthetic --out data/synthetic-50k --vocab-size 50304 --train-tokens 12000000 \
    --train-shards 2 --val-tokens 1400000 --mean-doc-len 600 | tee -a "$OUT/machine.txt"

CUDA_VISIBLE_DEVICES=1 timeout -k 10 450 $PY bench/bench_throughput.py --data-path data/synthetic-50k \
    --steps 40 ${BENCH_FLAGS:-} > "$OUT/throughput.txt" 2>&1 &
bench=$!

start=$(date +%s)
CUDA_VISIBLE_DEVICES=0 timeout -s INT -k 20 "$LIMIT" $PY -m harness run hypotheses/untie-ve-h100-reduced.toml --plain \
    > "$OUT/harness_run.txt" 2>&1
echo "harness run rc=$? wall=$(( $(date +%s) - start ))s" | tee -a "$OUT/harness_run.txt"
wait $bench; echo "bench rc=$?" >> "$OUT/throughput.txt"

R=results/untie-ve-h100-reduced
$PY -m harness status $R > "$OUT/status.txt" 2>&1
$PY analyze.py $R --plot "$OUT/plot.png" > "$OUT/analyze.txt" 2>&1
$PY analyze.py $R --format markdown > "$OUT/analyze.md" 2>&1
du -sh $R/.cache >> "$OUT/status.txt" 2>&1
tar czf "$OUT/results.tgz" --exclude=.cache --exclude=.lock $R
tail -3 "$OUT/harness_run.txt"; cat "$OUT/throughput.txt" | grep -vE "^\s*$" | head -60; cat "$OUT/analyze.txt"
