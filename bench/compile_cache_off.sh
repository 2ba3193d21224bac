#!/usr/bin/env bash
# "Without the compile cache" side of issue 5: each arm of the reference experiment once,
# launched exactly as `harness run` launches it (torchrun, same flags), but with inductor's
# caches disabled and an empty Triton cache of its own, as on a node that has never
# compiled this model. Prints wall time from launch to exit and the trainer's warm-up line.
# Usage: OUT=/tmp/out bash bench/compile_cache_off.sh   (data/synthetic-50k must exist)
set -u
OUT=${OUT:-/tmp/compile_cache_off}
mkdir -p "$OUT"
COMMON="--preset speedrun-1gpu --batch-schedule 24,24,24 --extension-iterations 4 --momentum-warmup-steps 20 --momentum-cooldown-steps 4"
for arm in "H0 .12...012 100" "H1 .01...345 98"; do
    set -- $arm
    tmp=$(mktemp -d)
    start=$(date +%s.%N)
    DATA_PATH=data/synthetic-50k TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 \
        TORCHINDUCTOR_CACHE_DIR=$tmp/inductor TRITON_CACHE_DIR=$tmp/triton \
        torchrun --standalone --nproc_per_node=1 train/train_gpt.py $COMMON --ve-layout "$2" \
        --num-iterations "$3" > "$OUT/$1-nocache.log" 2>&1
    rc=$?
    wall=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    echo "$1 no cache: rc=$rc wall ${wall}s; $(grep -E '^warmup:' "$OUT/$1-nocache.log"); $(grep -E "^step:$3/$3 val_loss" "$OUT/$1-nocache.log")" | tee -a "$OUT/compile_cache_off.txt"
    rm -rf "$tmp"
done
