#!/usr/bin/env bash
# Compiled GPU step time at full width with a single batch shape (one compile for
# training, one for validation): speedrun-1gpu at 24 x 2048 tokens per step (the record's
# per-rank batch in its last third), no multi-token prediction, 20 steps after the untimed
# warm-up. If it overstays, the Python stacks are dumped into the log.
# Usage: OUT=/tmp/out bash bench/gpu_compile_check.sh [batch-in-2048s] [timeout-s]
set -u
OUT=${OUT:-/tmp/gpu_compile}
BATCH=${1:-24}
LIMIT=${2:-250}
mkdir -p "$OUT"
PY=${PYTHON:-python}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
nvidia-smi -L
DATA=/tmp/syn50k
$PY -m train.data synthetic --out $DATA --vocab-size 50304 --train-tokens 2000000 --train-shards 1 \
    --val-tokens 60000 --mean-doc-len 600 || exit 1
start=$(date +%s)
TORCH_LOGS="graph_breaks,recompiles" timeout -k 15 "$LIMIT" $PY bench/with_stacks.py train/train_gpt.py \
    --preset speedrun-1gpu --data-path $DATA --batch-schedule $BATCH,$BATCH,$BATCH --no-mtp \
    --val-tokens $((BATCH * 2048)) --val-batch-tokens $((BATCH * 2048)) --val-every 0 \
    --num-iterations 20 --extension-iterations 2 --momentum-warmup-steps 5 --momentum-cooldown-steps 2 \
    > "$OUT/compiled_b$BATCH.log" 2>&1
rc=$?
echo "rc=$rc wall=$(( $(date +%s) - start ))s"
grep -E "^step:|^peak" "$OUT/compiled_b$BATCH.log" | grep -E "val_loss|step:(1|2|5|10|20)/|peak"
$PY - "$OUT/compiled_b$BATCH.log" <<'PYEOF'
import re, sys
t = {int(m[0]): int(m[1]) for m in re.findall(r"^step:(\d+)/\d+ train_time:(\d+)ms", open(sys.argv[1]).read(), re.M)}
if 20 in t and 5 in t:
    print(f"steady ms/step (steps 6..20): {(t[20] - t[5]) / 15:.1f}; step 1: {t[1]} ms")
PYEOF
if [ $rc != 0 ]; then grep -vE "^step:" "$OUT/compiled_b$BATCH.log" | tail -60; fi
grep -ciE "graph break|recompil" "$OUT/compiled_b$BATCH.log"
grep -iE "graph break|recompil" "$OUT/compiled_b$BATCH.log" | head -12 | cut -c1-300
