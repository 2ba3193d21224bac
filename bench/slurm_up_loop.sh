#!/usr/bin/env bash
# scripts/slurm-cluster.sh up --nodes K, N times from a stopped state (default 20 ups of a
# 3-node cluster), then one start that is made to fail (the last node's slurmd port is
# taken by another process) to check that it stops what it started. After every `down` it counts the cluster's daemons still
# alive (slurmctld, any slurmd, munged started by the script) and the processes left with a
# job's SLURMD_NODENAME. Prints one line per failure and a summary; always leaves the
# cluster up. Needs root.
#
#   bench/slurm_up_loop.sh [N] [NODES]
set -u
cd "$(dirname "$0")/.."
N="${1:-20}"
NODES="${2:-3}"
STATE="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
alive() {  # a zombie (never reaped by a container's pid 1) is not alive
    local pid; pid="$(cat "$1" 2>/dev/null)"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}
daemons_left() {  # daemons of the state folder still alive, and job processes of any node
    local n=0 f p
    for f in "$STATE"/slurmctld.pid "$STATE"/slurmd*.pid /run/munge/munged.pid; do alive "$f" && n=$((n + 1)); done
    for p in /proc/[0-9]*; do
        { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q '^SLURMD_NODENAME=' && n=$((n + 1))
    done
    echo $n
}
ok=0 total=0 max=0 leftovers=0
for i in $(seq 1 "$N"); do
    scripts/slurm-cluster.sh down >/dev/null 2>&1
    leftovers=$((leftovers + $(daemons_left)))
    t0=$(date +%s%N)
    if out="$(scripts/slurm-cluster.sh up --nodes "$NODES" 2>&1)"; then ok=$((ok + 1)); else echo "start $i failed: $(echo "$out" | tail -n1)"; fi
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    total=$((total + ms)); [ "$ms" -gt "$max" ] && max=$ms
done
echo "up --nodes $NODES from stopped: $ok/$N succeeded; mean $((total / N)) ms, max $max ms; daemons left after down: $leftovers"
scripts/slurm-cluster.sh down >/dev/null 2>&1
# the forced failure: the last node's slurmd port is taken, so that node cannot start after
# slurmctld and the other nodes have: `up` must stop those again
port=$(( ${HARNESS_SLURM_PORT:-6830} + NODES ))
python3 -c "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', $port)); s.listen(); time.sleep(120)" &
holder=$!
sleep 0.5
out="$(scripts/slurm-cluster.sh up --nodes "$NODES" 2>&1)"; rc=$?
kill "$holder"; wait "$holder" 2>/dev/null
left=""
alive "$STATE/slurmctld.pid" && left="$left slurmctld"
for f in "$STATE"/slurmd*.pid; do alive "$f" && left="$left $(basename "$f" .pid)"; done
echo "forced failure: exit $rc, '$(echo "$out" | tail -n1)'; left running:${left:- nothing}"
scripts/slurm-cluster.sh up --nodes "$NODES" >/dev/null 2>&1 || scripts/slurm-cluster.sh up --nodes "$NODES"
scripts/slurm-cluster.sh status | head -n1
