#!/usr/bin/env bash
# The record's own train_gpt.py against the project's trainer on ONE GPU, through `harness run`
# (hypotheses/record-parity.toml), resumable across calls:
#   1. rebuild the record's script + kernels from LOG (`harness extract`) into data/record/ and
#      adapt them for the machine (bench/record_patch.py, documented there);
#   2. synthetic shards under the record's own file names (val >= 25M tokens: its warm-up
#      validates 12 times; documents of ~1200 tokens on average: its loader reserves one
#      sequence slot per 300 tokens), vocabulary 50257 (BOS 50256);
#   0. (LEVERS=1, the default) bench/gpu_levers.py: the trainer's GPU kernels against their
#      references, each lever timed on its own (LEVERS_BEFORE=OLD.py: an older trainer's
#      loss kernels beside them; LEVERS_ONLY=mlp: that lever alone); a failed check ends the
#      call there;
#   3. on an empty compile cache, PRIME=trainer runs the trainer arm's exact command once,
#      untimed, to fill the shared cache (PRIME=both: the record's too, started first, since
#      its compile is the longest; the default, none: no priming); their logs are not
#      results. SMOKE=1 first runs a 4-layer trainer for 12 steps on its own cache (every
#      code path of the full one, a fraction of its compile): if it fails, the call stops
#      there, before the full trainer's compile. ONLY_PRIME=1 stops after priming (a call
#      that only warms the machine's cache for the next one). Then `harness run`
#      (interleaved, every run on the shared cache) until done or the call's time is
#      nearly spent (Ctrl-C; the next call resumes);
#   4. once done and time is left: bench/bench_throughput.py (H0 and H1; before/after with
#      TRAINER_OLD);
#   5. the per-phase tokens/s (bench/phase_throughput.py), the table and the plot into $OUT.
# RUNS=N: N runs per arm instead of the experiment file's 2 (as many as the time allows).
# Measured on one H200 (2026-12-01/02) and one H100 (2026-12-08; results/record-parity*/):
# primed together on an empty cache, the record needed about 640 s (H100) and the trainer
# 203 s to its first step; warm runs took 192-195 s of wall (record) and 116-124 s (trainer).
# A lent machine's call is at most 10 minutes, so a call that starts on an empty cache
# finishes no run. Run the whole experiment as one job across calls (bench/detach.sh),
# each call sent within the machine's 30 s idle window. 2 runs per arm, from a bare machine,
# took 1408 s of job time on the H100:
#   bash bench/detach.sh start parity -- env OUT=/var/tmp/parity/out PRIME=both LEVERS=0 \
#       BENCH=0 RUNS=3 bash bench/record_parity.sh LOG 1450
#   bash bench/detach.sh wait parity 560 /var/tmp/parity/record-parity /var/tmp/parity/out/...
# The experiment's working copy and data live outside the repo (/var/tmp/parity), so on a
# machine that stays warm between calls they survive the tree being re-sent; on a fresh one
# the runs resume from the committed folder RESUME (default results/record-parity), on a cold
# cache, as long as the scripts are the ones it ran: its frozen spec refuses a changed trainer.
# Usage: OUT=/tmp/out bash bench/record_parity.sh LOG [seconds-for-this-call]
set -u
t0=$(date +%s)
LOG=${1:?usage: bench/record_parity.sh LOG [seconds]}
BUDGET=${2:-570}
OUT=${OUT:-/tmp/record_parity}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
EXP=hypotheses/record-parity.toml
SCHED=60; EXT=4
R=${RESUME:-results/record-parity}  # a committed experiment to resume on a fresh machine, if it exists
BASE=${WORK:-/var/tmp/parity}
W=$BASE/record-parity
D=$BASE/data
left() { echo $(( BUDGET - ($(date +%s) - t0) )); }
say() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$OUT/machine.txt"; }

{ date -u; nvidia-smi -L; $PY -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/machine.txt"

# 0. the trainer's kernels on this GPU, before anything expensive
if [ "${LEVERS:-1}" = 1 ]; then
    timeout -k 10 240 $PY bench/gpu_levers.py ${LEVERS_BEFORE:+--before "$LEVERS_BEFORE"} \
        ${LEVERS_ONLY:+--only "$LEVERS_ONLY"} 2>&1 | tee "$OUT/levers.txt"
    rc=${PIPESTATUS[0]}
    say "gpu_levers rc=$rc"
    [ $rc = 0 ] || exit 1
fi

# 1. the record's code, rebuilt and adapted (deterministic: same bytes every call)
rm -rf data/record
mkdir -p "$BASE"
$PY -m harness extract "$LOG" --out data/record > "$BASE/extract.txt" 2>&1; rc=$?
cat "$BASE/extract.txt" | tee -a "$OUT/machine.txt"; [ $rc = 0 ] || exit 2
$PY bench/record_patch.py data/record --scheduled $SCHED --extension $EXT > "$BASE/patch.txt" 2>&1; rc=$?
cat "$BASE/patch.txt" | tee -a "$OUT/machine.txt"; [ $rc = 0 ] || exit 2

# 2. data (kept outside the tree on a warm machine)
if [ ! -f "$D/synthetic_meta.json" ]; then
    $PY -m train.data synthetic --out "$D" --vocab-size 50257 --train-tokens ${TRAIN_TOKENS:-48000000} \
        --train-shards 2 --val-tokens ${VAL_TOKENS:-26000000} --mean-doc-len 1200 2>&1 | tee -a "$OUT/machine.txt"
fi
mkdir -p "$D/links/data/fineweb10B"
for f in "$D"/synthetic_train_*.bin "$D"/synthetic_val_*.bin; do
    b=$(basename "$f"); ln -sfn "$f" "$D/links/data/fineweb10B/fineweb_${b#synthetic_}"
done
mkdir -p data && ln -sfn "$D/links" data/parity
say "data ready: $(ls data/parity/data/fineweb10B | tr '\n' ' ')"

# 3. the experiment
if [ -d "$W" ]; then
    say "warm machine: resuming $W (with its compile cache)"
else
    mkdir -p "$BASE"
    if [ -d "$R" ]; then cp -a "$R" "$W"; say "fresh machine: resuming from the committed $R (cold cache)"; else say "fresh machine: new experiment"; fi
fi
prime_ok=1
PRIME=${PRIME:-none}
if [ ! -d "$W/.cache/inductor" ] && [ "$PRIME" != none ]; then
    # the exact commands `harness run` will launch (dry run), run 0 of the arm(s), at once
    mkdir -p "$BASE/prime"
    $PY -m harness run "$EXP" --results "$W" --dry-run > "$BASE/prime/dry-run.txt" 2>&1
    arms="record trainer"; [ "$PRIME" = trainer ] && arms=trainer
    pids=()
    prime() {  # the arm's run-0 command, untimed, in the background
        local cmd
        cmd=$(grep -A1 "^# $1 #0" "$BASE/prime/dry-run.txt" | tail -1)
        ( eval "timeout -k 10 $(( $(left) - 60 )) env $cmd" > "$BASE/prime/$1.txt" 2>&1
          echo "rc=$?" >> "$BASE/prime/$1.txt" ) &
        pids+=($!)
        say "priming $1"
    }
    [ "$PRIME" = both ] && prime record
    if [ "${SMOKE:-0}" = 1 ]; then
        TORCHINDUCTOR_CACHE_DIR=$BASE/smoke-cache/inductor TRITON_CACHE_DIR=$BASE/smoke-cache/triton \
        timeout -k 10 300 $PY train/train_gpt.py --preset speedrun --num-layers 4 --ve-layout .1...1 \
            --num-iterations 12 --extension-iterations 2 --val-tokens 2097152 --val-every 0 \
            --data-path data/parity/data/fineweb10B > "$BASE/prime/smoke.txt" 2>&1
        rc=$?
        say "smoke (4-layer trainer, 12 steps) rc=$rc"
        grep -E "warmup:|val_loss|peak memory" "$BASE/prime/smoke.txt" | tee -a "$OUT/machine.txt"
        if [ $rc != 0 ]; then
            grep -v "^W1\|^  " "$BASE/prime/smoke.txt" | tail -40 | tee -a "$OUT/machine.txt"
            pkill -f data/record/train_gpt.py
            wait
            exit 3
        fi
    fi
    prime trainer
    wait "${pids[@]}"
    rm -rf logs  # the priming runs' own logs are not results
    for arm in $arms; do
        rc=$(tail -1 "$BASE/prime/$arm.txt")
        say "primed $arm: $rc"
        grep -E "step:[0-9]+/[0-9]+ val_loss|warmup:|peak memory" "$BASE/prime/$arm.txt" | tail -4 | tee -a "$OUT/machine.txt"
        if [ "$rc" != "rc=0" ]; then
            grep -v "^W1\|^  " "$BASE/prime/$arm.txt" | tail -25 | tee -a "$OUT/machine.txt"
            [ "$arm" = record ] && prime_ok=0
        fi
    done
    tar czf "$OUT/prime.tgz" -C "$BASE" prime
    du -sh "$W/.cache"/* 2>&1 | tee -a "$OUT/machine.txt"
fi
if [ "${ONLY_PRIME:-0}" = 1 ]; then
    say "ONLY_PRIME: no harness run this call"
    : > "$OUT/harness_run.txt"
elif [ "$prime_ok" = 0 ]; then
    say "the record did not run; no harness run this call"
    : > "$OUT/harness_run.txt"
elif [ "$(left)" -lt 150 ]; then
    say "too little time left for a run this call; the next call resumes"
    : > "$OUT/harness_run.txt"
else
start=$(date +%s)
timeout -s INT -k 20 $(( $(left) - 45 )) $PY -m harness run "$EXP" --results "$W" ${RUNS:+--runs "$RUNS"} --plain 2>&1 | tee "$OUT/harness_run.txt"
say "harness run rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - start ))s"
fi
$PY -m harness status "$W" > "$OUT/analyze.txt" 2>&1

# 4. H0 and H1 (and the older trainer, TRAINER_OLD), only with the experiment done
if grep -q "^finished in" "$OUT/harness_run.txt" && [ "${BENCH:-1}" = 1 ] && [ "$(left)" -gt 200 ]; then
    TORCHINDUCTOR_CACHE_DIR=$W/.cache/inductor TRITON_CACHE_DIR=$W/.cache/triton \
    timeout -s INT -k 10 $(( $(left) - 40 )) $PY bench/bench_throughput.py --data-path data/parity/data/fineweb10B \
        --steps 30 --only h0,h1 ${BENCH_FLAGS:-} 2>&1 | tee "$OUT/throughput.txt"
    if [ -n "${TRAINER_OLD:-}" ] && [ "$(left)" -gt 200 ]; then
        timeout -s INT -k 10 $(( $(left) - 30 )) $PY bench/bench_throughput.py --data-path data/parity/data/fineweb10B \
            --steps 30 --only h0 --trainer "$TRAINER_OLD" ${BENCH_FLAGS:-} 2>&1 | tee -a "$OUT/throughput.txt"
    fi
fi

# 5. figures
$PY bench/phase_throughput.py "$W" --scheduled $SCHED --markdown > "$OUT/phases.md" 2>&1
$PY analyze.py "$W" --plot "$OUT/plot.png" >> "$OUT/analyze.txt" 2>&1
du -sh "$W/.cache" >> "$OUT/analyze.txt" 2>&1
tar czf "$OUT/results.tgz" -C "$(dirname "$W")" --exclude=.cache --exclude=.lock "$(basename "$W")"
say "call wall $(( $(date +%s) - t0 ))s"
