#!/usr/bin/env bash
# Wall time of the SLURM test step, two checkouts side by side, alternating (A B A B ...).
#
#   bench/slurm_test_time.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS]     (as root; default 2 rounds)
#
# Each session first runs its own checkout's `scripts/slurm-cluster.sh up --nodes 3` (a changed
# cluster configuration restarts the daemons; that start is not timed), then times
# `python -m pytest -q -p no:cacheprovider -m slurm tests/test_slurm.py` there.
# PYTHON picks the interpreter (default: python3). Prints one line per session, then
# the median of each side and the ratio.
set -u -o pipefail
OLD=$(cd "$1" && pwd) NEW=$(cd "$2" && pwd) ROUNDS=${3:-2}
PY=${PYTHON:-python3}
declare -A times=([old]="" [new]="")
for r in $(seq 1 "$ROUNDS"); do
    for side in old new; do
        dir=$OLD; [ $side = new ] && dir=$NEW
        (cd "$dir" && scripts/slurm-cluster.sh up --nodes 3 >/dev/null) || { echo "slurm-cluster.sh up failed in $dir" >&2; exit 1; }
        t0=$(date +%s.%N)
        tail=$(cd "$dir" && "$PY" -m pytest -q -p no:cacheprovider -m slurm tests/test_slurm.py 2>&1 | tail -n1)
        t=$(echo "$(date +%s.%N) - $t0" | bc)
        printf 'round %d %-3s %7.1f s  load %s  (%s)\n' "$r" "$side" "$t" "$(cut -d' ' -f1 /proc/loadavg)" "$tail"
        times[$side]+="$t "
    done
done
"$PY" - "${times[old]}" "${times[new]}" <<'PYEOF'
import statistics, sys
old, new = ([float(x) for x in a.split()] for a in sys.argv[1:3])
mo, mn = statistics.median(old), statistics.median(new)
print(f"median old {mo:.1f} s, new {mn:.1f} s, new/old {mn / mo:.2f}")
PYEOF
