#!/usr/bin/env bash
# GPU check of train/train_gpt.py on one GPU (not a benchmark): versions, then a few
# full-width steps (speedrun-1gpu: 11 x 768, vocab 50304, one rank's share of a record
# step) on synthetic shards made here, first eager (FlexAttention compiled on its own),
# then with torch.compile + the untimed warm-up-and-reset. Logs go to $OUT.
# Usage: OUT=/tmp/out bash bench/gpu_smoke.sh [compiled-steps]
set -u
OUT=${OUT:-/tmp/gpu_smoke}
STEPS=${1:-30}
mkdir -p "$OUT"
PY=${PYTHON:-python}
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
nvidia-smi -L
DATA=/tmp/syn50k
$PY -m train.data synthetic --out $DATA --vocab-size 50304 --train-tokens 4000000 --train-shards 1 \
    --val-tokens 300000 --mean-doc-len 600 || exit 1
COMMON="--preset speedrun-1gpu --data-path $DATA --val-tokens 262144 --val-batch-tokens 262144 --val-every 0"

echo "== compiled: $STEPS steps (+ untimed warm-up)"
start=$(date +%s)
timeout ${COMPILED_TIMEOUT:-170} $PY train/train_gpt.py $COMMON --compile --num-iterations "$STEPS" \
    --extension-iterations 3 --momentum-warmup-steps 10 --momentum-cooldown-steps 3 \
    > "$OUT/compiled.log" 2>&1
crc=$?; echo "rc=$crc wall=$(( $(date +%s) - start ))s"
grep -E "^step:.*val_loss|^peak|rror" "$OUT/compiled.log" | tail -5
if [ "$crc" != 0 ]; then
tail -40 "$OUT/compiled.log"
echo "== eager (diagnostics, compiled run failed): 4 steps"
start=$(date +%s)
timeout 90 $PY train/train_gpt.py $COMMON --no-compile --num-iterations 4 --extension-iterations 1 \
    > "$OUT/eager.log" 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s"
grep -E "^step:.*val_loss|^peak|rror" "$OUT/eager.log" | tail -5
tail -25 "$OUT/eager.log"
fi
# ms per step in each third (batch 8, 16, 24 x 2048 tokens) from the cumulative train_time
$PY - "$OUT/compiled.log" "$STEPS" <<'PYEOF'
import re, sys
t = {int(m[0]): int(m[1]) for m in re.findall(r"^step:(\d+)/\d+ train_time:(\d+)ms", open(sys.argv[1]).read(), re.M)}
n = int(sys.argv[2]); s = n - 3
for name, a, b in [("8x2048", 1, s // 3), ("16x2048", s // 3 + 1, 2 * s // 3), ("24x2048", 2 * s // 3 + 1, n)]:
    if a - 1 in t or a == 1:
        if b in t:
            print(f"{name} tokens/step: {(t[b] - t.get(a - 1, 0)) / (b - a + 1):.1f} ms/step over steps {a}..{b}")
PYEOF
