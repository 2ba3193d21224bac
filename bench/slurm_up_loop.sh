#!/usr/bin/env bash
# scripts/slurm-cluster.sh up, N times from a stopped state (default 20), then one start
# that is made to fail (HARNESS_SLURM_WAIT_S=0) to check that it stops what it started.
# Prints one line per failure and a summary; always leaves the cluster up. Needs root.
set -u
cd "$(dirname "$0")/.."
N="${1:-20}"
STATE="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
alive() { [ -f "$1" ] && [ -d "/proc/$(cat "$1" 2>/dev/null)" ]; }
ok=0 total=0 max=0 leftovers=0
for i in $(seq 1 "$N"); do
    scripts/slurm-cluster.sh down >/dev/null 2>&1
    if alive "$STATE/slurmctld.pid" || alive "$STATE/slurmd.pid"; then leftovers=$((leftovers + 1)); fi
    t0=$(date +%s%N)
    if out="$(scripts/slurm-cluster.sh up 2>&1)"; then ok=$((ok + 1)); else echo "start $i failed: $(echo "$out" | tail -n1)"; fi
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    total=$((total + ms)); [ "$ms" -gt "$max" ] && max=$ms
done
echo "up from stopped: $ok/$N succeeded; mean $((total / N)) ms, max $max ms; daemons left after down: $leftovers"
scripts/slurm-cluster.sh down >/dev/null 2>&1
out="$(HARNESS_SLURM_WAIT_S=0 scripts/slurm-cluster.sh up 2>&1)"; rc=$?
left=""
alive "$STATE/slurmctld.pid" && left="$left slurmctld"
alive "$STATE/slurmd.pid" && left="$left slurmd"
echo "forced failure: exit $rc, '$(echo "$out" | tail -n1)'; left running:${left:- nothing}"
scripts/slurm-cluster.sh up >/dev/null 2>&1 || scripts/slurm-cluster.sh up
scripts/slurm-cluster.sh status | head -n1
