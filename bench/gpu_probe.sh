#!/usr/bin/env bash
# A short GPU call before an experiment: one lever's check and timing (gpu_levers --only),
# then the trainer's H0 step at --slots 8 (a record rank's optimizer share) with a profile,
# beside an older trainer's H0 when OLD is given. Output in $OUT.
# Usage: OUT=/tmp/out [OLD=old_train_gpt.py] [ONLY=mlp] bash bench/gpu_probe.sh
set -u
OUT=${OUT:-/tmp/gpu_probe}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
D=${WORK:-/var/tmp/probe}
{ date -u; nvidia-smi -L; $PY -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/machine.txt"
if [ -n "${ONLY:-mlp}" ]; then
    timeout -k 10 200 $PY bench/gpu_levers.py --only "${ONLY:-mlp}" 2>&1 | tee "$OUT/levers.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || exit 1
fi
[ -f "$D/synthetic_meta.json" ] || $PY -m train.data synthetic --out "$D" --vocab-size 50257 \
    --train-tokens 8000000 --train-shards 1 --val-tokens 2000000 --mean-doc-len 1200 > "$OUT/data.txt" 2>&1
timeout -s INT -k 10 ${BENCH_S:-240} $PY bench/bench_throughput.py --data-path "$D" --only ${CASES:-h0} \
    --slots 8 --steps ${STEPS:-8} --warmup 2 --profile --profile-rows 45 2>&1 | tee "$OUT/throughput.txt"
if [ -n "${OLD:-}" ]; then
    timeout -s INT -k 10 ${BENCH_S:-240} $PY bench/bench_throughput.py --data-path "$D" --only h0 \
        --slots 8 --steps ${STEPS:-8} --warmup 2 --trainer "$OLD" 2>&1 | tee -a "$OUT/throughput.txt"
fi
