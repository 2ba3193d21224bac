#!/usr/bin/env bash
# A throw-away SLURM cluster of N compute nodes on localhost, for the slurm backend's tests.
#
#   scripts/slurm-cluster.sh up [--nodes N]  install (if missing), configure, start, wait until usable
#                                            (N compute nodes, default 1; also HARNESS_SLURM_NODES)
#   scripts/slurm-cluster.sh down            stop the daemons this script started
#   scripts/slurm-cluster.sh status          exit 0 when the cluster answers and runs a job; lists the nodes
#   scripts/slurm-cluster.sh kill-node NODE  a node crash: SIGKILL to NODE's slurmd, its job steps and
#                                            every process of its jobs, then NODE marked DOWN (reason
#                                            "test"); the next `up` starts it again
#
# Runs as root in a bare Debian 12 container (no systemd): munged, slurmctld and one
# slurmd per node are started as plain background daemons. Several nodes on one machine:
# Debian's SLURM is built with multiple-slurmd support (`scontrol show config` says
# MULTIPLE_SLURMD = Yes), so node k is `slurmd -N nodek` listening on its own port, all
# on 127.0.0.1; jobs see their node's name in SLURMD_NODENAME (the host name is the
# machine's for every node). One node keeps the machine's short host name as its name. Everything the script creates
# lives under $HARNESS_SLURM_DIR (default /tmp/harness-slurm); the only file
# outside it is the link /etc/slurm/slurm.conf -> $HARNESS_SLURM_DIR/slurm.conf,
# so that sbatch/squeue/submitit find the cluster without SLURM_CONF. An
# existing /etc/slurm/slurm.conf that this script did not write is never touched
# (the script refuses instead).
#
# On failure it prints ONE line "slurm-cluster: <reason>" on stderr and exits 1
# (details are in $HARNESS_SLURM_DIR/log/).
#
# Environment knobs:
#   HARNESS_SLURM_DIR      state folder (default /tmp/harness-slurm)
#   HARNESS_SLURM_WAIT_S   how long `up` waits for the node to become usable (default 60)
#   HARNESS_SLURM_JOBS_PER_CPU  jobs that may share one CPU (default 2, so that
#                          at least 2 single-CPU jobs run at once even on 1 core)
#   HARNESS_SLURM_NODES    compute nodes when `up` has no --nodes (default 1)
#   HARNESS_SLURM_PORT     node k's slurmd listens on this + k (default 6830)
set -u -o pipefail

STATE="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
WAIT_S="${HARNESS_SLURM_WAIT_S:-60}"
SHARE="${HARNESS_SLURM_JOBS_PER_CPU:-2}"
NNODES="${HARNESS_SLURM_NODES:-1}"
PORT_BASE="${HARNESS_SLURM_PORT:-6830}"
CONF="$STATE/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
MARK="# written by harness scripts/slurm-cluster.sh"
LOG="$STATE/log"
MUNGE_SOCKET_DIR=/run/munge
CTLD_MARK=0
MUNGE_STARTED=0
declare -A D_MARK=()   # node -> size of its slurmd log before this start

STARTED=()   # daemons this `up` started: a failed start stops them again (nothing left running)
die() {
    echo "slurm-cluster: $*" >&2
    if [ ${#STARTED[@]} -gt 0 ]; then teardown_started; fi
    exit 1
}
note() { echo "slurm-cluster: $*" >&2; }

export SLURM_CONF="$CONF"

# also for daemons of another user; a zombie is dead (a container's pid 1 may never reap
# the daemons it inherits, and waiting for one would stall every stop)
pid_alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
pidfile_alive() { [ -f "$1" ] && pid_alive "$(cat "$1" 2>/dev/null)"; }

need_root() {
    [ "$(id -u)" = 0 ] && return 0
    # not root: redo the whole command through passwordless sudo when there is one
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo -n HARNESS_SLURM_DIR="$STATE" HARNESS_SLURM_WAIT_S="$WAIT_S" \
            HARNESS_SLURM_JOBS_PER_CPU="$SHARE" HARNESS_SLURM_NODES="$NNODES" \
            HARNESS_SLURM_PORT="$PORT_BASE" PATH="$PATH" bash "$0" "$@"
    fi
    die "must run as root (it installs packages and starts daemons); run it with sudo"
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them; install SLURM (slurmctld, slurmd, slurm-client, munge) by hand"
    note "installing ${missing[*]} (apt-get)"
    mkdir -p "$LOG"
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -q >"$LOG/apt.log" 2>&1; then
        die "apt-get update failed (see $LOG/apt.log): $(tail -n1 "$LOG/apt.log")"
    fi
    # policy-rc.d: the packages' postinst must not try to start services.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        munge slurmctld slurmd slurm-client >>"$LOG/apt.log" 2>&1
    local rc=$?
    [ $created_policy = 1 ] && rm -f "$policy"
    [ $rc = 0 ] || die "apt-get install ${missing[*]} failed (see $LOG/apt.log): $(tail -n1 "$LOG/apt.log")"
    for b in munged slurmctld slurmd sbatch; do command -v $b >/dev/null || die "$b still missing after apt-get install"; done
}

# the compute nodes' names: the machine's short host name for one node (as before), node1..nodeN else
node_names() {
    if [ "$NNODES" = 1 ]; then hostname -s; else seq -f 'node%g' 1 "$NNODES"; fi
}

write_config() {
    local host cpus mem_mb real_mem node k=0 lines="" all
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    real_mem=$(( mem_mb / 2 / NNODES )); [ "$real_mem" -gt 16384 ] && real_mem=16384; [ "$real_mem" -lt 256 ] && real_mem=256
    mkdir -p "$STATE/spool/ctld" "$LOG"
    for node in $(node_names); do
        k=$((k + 1))
        mkdir -p "$STATE/spool/d-$node"
        # every node is this machine: its own slurmd (-N NAME) on its own port
        lines+="NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$host Port=$((PORT_BASE + k)) CPUs=$cpus RealMemory=$real_mem State=UNKNOWN"$'\n'
    done
    all="$(node_names | paste -sd, -)"
    cat >"$CONF.new" <<EOF
$MARK
# A $NNODES-node cluster on localhost for tests (partitions: debug, default, every node, jobs
# share nodes; one, the first node only; nodes, every node, one job per node; urgent, every
# node, preempts the others). Daemons run as root, no cgroups,
# no accounting database: job states come from squeue/scontrol (MinJobAge keeps
# finished jobs visible for a day).
ClusterName=harness
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
# %n: the node's name, one spool, pid file and log per slurmd
SlurmdSpoolDir=$STATE/spool/d-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# start a job at once even when the scheduler ran less than 3 s ago (the default delay:
# each test job would wait up to 3 s in PENDING)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=86400
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=20
${lines}PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=$all Default=YES MaxTime=UNLIMITED State=UP OverSubscribe=FORCE:$SHARE PriorityTier=1
PartitionName=one Nodes=$(node_names | head -n1) Default=NO MaxTime=UNLIMITED State=UP OverSubscribe=FORCE:$SHARE PriorityTier=1
# one job per node, as on a GPU cluster where a run takes the whole node
PartitionName=nodes Nodes=$all Default=NO MaxTime=UNLIMITED State=UP OverSubscribe=EXCLUSIVE PriorityTier=1
# jobs here preempt (cancel) jobs of 'debug': the tests' way to produce a PREEMPTED job
PartitionName=urgent Nodes=$all Default=NO MaxTime=UNLIMITED State=UP OverSubscribe=NO PriorityTier=2
EOF
    if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then rm -f "$CONF.new"; return 1; fi
    mv "$CONF.new" "$CONF"
    return 0   # changed
}

link_config() {
    mkdir -p /etc/slurm
    if [ -L "$ETC_CONF" ]; then
        [ "$(readlink "$ETC_CONF")" = "$CONF" ] && return 0
        head -n1 "$ETC_CONF" 2>/dev/null | grep -qF "$MARK" || die "$ETC_CONF links elsewhere ($(readlink "$ETC_CONF")); remove it or point HARNESS_SLURM_DIR at its folder"
        ln -sfn "$CONF" "$ETC_CONF"
    elif [ -e "$ETC_CONF" ]; then
        die "$ETC_CONF exists and was not written by this script (a real cluster?); refusing to replace it"
    else
        ln -s "$CONF" "$ETC_CONF"
    fi
}

start_munge() {
    if [ -S "$MUNGE_SOCKET_DIR/munge.socket.2" ] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    fi
    chown -R munge:munge /etc/munge; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
    mkdir -p "$MUNGE_SOCKET_DIR" /var/log/munge /var/lib/munge
    chown munge:munge "$MUNGE_SOCKET_DIR" /var/log/munge /var/lib/munge
    chmod 755 "$MUNGE_SOCKET_DIR"
    rm -f "$MUNGE_SOCKET_DIR/munge.socket.2" "$MUNGE_SOCKET_DIR/munge.socket.2.lock"
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged >"$LOG/munged.out" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- || die "munged did not start: $(tail -n1 "$LOG/munged.out")"
    else
        /usr/sbin/munged --force >"$LOG/munged.out" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- || die "munged did not start: $(tail -n1 "$LOG/munged.out")"
    fi
    MUNGE_STARTED=1

    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "munged started but munge -n | unmunge fails: $(munge -n 2>&1 | unmunge 2>&1 | tail -n1)"
}

# the reason a daemon gave up: its last error/fatal line written since this start-up,
# without the lines every start prints on a machine without PMIx (noise, not a cause)
NOISE='mpi/pmix|pmi/pmix|PMIx|CANCELLED AT|cgroup'
log_mark() { stat -c %s "$1" 2>/dev/null || echo 0; }
reason_since() {  # logfile byte-offset
    local line
    line="$(tail -c +"$(( $2 + 1 ))" "$1" 2>/dev/null | grep -iE 'error|fatal' | grep -vE "$NOISE" | tail -n1)"
    [ -n "$line" ] || line="$(tail -c +"$(( $2 + 1 ))" "$1" 2>/dev/null | grep -vE "$NOISE" | tail -n1)"
    echo "${line:-no message}"
}

d_pidfile() { echo "$STATE/slurmd-$1.pid"; }
d_log() { echo "$LOG/slurmd-$1.log"; }

start_daemon() {  # name pidfile [node]
    local name=$1 pidfile=$2 node=${3:-} mark log out args=()
    pidfile_alive "$pidfile" && return 0
    rm -f "$pidfile"
    log="$LOG/$name.log"; out="$LOG/$name.out"
    if [ -n "$node" ]; then log="$(d_log "$node")"; out="$LOG/slurmd-$node.out"; args=(-N "$node"); fi
    mark="$(log_mark "$log")"
    # daemonizes itself and writes its pid file; 3>&- .. 9>&-: it must not inherit the script's
    # lock nor a caller's (a test session's flock on its fd would be held for the daemon's life)
    "/usr/sbin/$name" -f "$CONF" "${args[@]}" >"$out" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- || die "$name ${node:+-N $node }did not start: $(tail -n1 "$out") (see $log)"
    STARTED+=("$pidfile")
    # the parent returns before the daemon has written its pid file: wait for it, so that
    # a slow start is not taken for a daemon that exited
    for _ in $(seq 1 100); do pidfile_alive "$pidfile" && return 0; sleep 0.1; done
    die "$name ${node:+$node }exited during start-up: $(reason_since "$log" "$mark") (see $log)"
}

wait_ctld() {  # slurmctld answers before slurmd registers with it
    for _ in $(seq 1 100); do
        scontrol ping 2>/dev/null | grep -q 'is UP' && return 0
        pidfile_alive "$STATE/slurmctld.pid" || break
        sleep 0.2
    done
    die "slurmctld does not answer: $(reason_since "$LOG/slurmctld.log" "$CTLD_MARK") (see $LOG/slurmctld.log)"
}

teardown_started() {
    local i
    for (( i=${#STARTED[@]}-1; i>=0; i-- )); do stop_pidfile "${STARTED[$i]}"; done
    STARTED=()
    if [ "${MUNGE_STARTED:-0}" = 1 ] && [ -f "$MUNGE_SOCKET_DIR/munged.pid" ]; then
        stop_pidfile "$MUNGE_SOCKET_DIR/munged.pid"
    fi
}

node_state() { sinfo -h -n "$1" -N -o '%T' 2>/dev/null | head -n1; }  # node
configured_nodes() { [ -f "$CONF" ] && sed -n 's/^NodeName=\([^ ]*\) .*/\1/p' "$CONF"; }

healthy() {  # daemons alive, every node usable, and (when all idle) a job step runs on each
    [ -f "$CONF" ] || return 1
    pidfile_alive "$STATE/slurmctld.pid" || return 1
    local node st idle=0 n=0
    for node in $(configured_nodes); do
        n=$((n + 1))
        pidfile_alive "$(d_pidfile "$node")" || return 1
        st="$(node_state "$node")"
        case "$st" in
            mixed|allocated) ;;   # running jobs: launching works
            idle) idle=$((idle + 1)) ;;
            *) return 1 ;;
        esac
    done
    [ "$n" -gt 0 ] || return 1
    [ "$idle" = "$n" ] || return 0
    timeout 20 srun -N"$n" -n"$n" -t 1 -J harness-check hostname >/dev/null 2>&1
}

wait_usable() {
    local deadline=$(( $(date +%s) + WAIT_S )) st="" out="" node bad="" n=0
    for node in $(node_names); do n=$((n + 1)); done
    while :; do
        pidfile_alive "$STATE/slurmctld.pid" || die "slurmctld exited: $(reason_since "$LOG/slurmctld.log" "$CTLD_MARK")"
        bad=""
        for node in $(node_names); do
            pidfile_alive "$(d_pidfile "$node")" || die "slurmd $node exited: $(reason_since "$(d_log "$node")" "${D_MARK[$node]:-0}")"
            st="$(node_state "$node")"
            case "$st" in
                idle|mixed|allocated) ;;
                drain*|down*|inval*|fail*)
                    # left over from an earlier run (config changed, a killed node): bring it back
                    scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1
                    bad="$node '$st'" ;;
                *) bad="$node '${st:-no answer}'" ;;
            esac
            [ -n "$bad" ] && break
        done
        [ -z "$bad" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || die "node $bad not usable after ${WAIT_S}s (reason: $(sinfo -h -n "${bad%% *}" -N -o '%E' 2>/dev/null | head -n1); see $LOG)"
        sleep 1
    done
    while :; do
        # one task on every node at once: each slurmd launches a step
        if out="$(timeout 30 srun -N"$n" -n"$n" -t 1 -J harness-check hostname 2>&1)"; then return 0; fi
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
    done
    die "test job 'srun -N$n hostname' fails: $(echo "$out" | tail -n1) (see $LOG)"
}

cmd_up() {
    mkdir -p "$STATE" "$LOG"
    install_packages
    local changed=0 node
    write_config && changed=1
    link_config
    start_munge
    if [ $changed = 0 ] && healthy; then echo "slurm-cluster: up (already running; $NNODES node(s); conf $CONF)"; return 0; fi
    if [ $changed = 1 ] && { pidfile_alive "$STATE/slurmctld.pid" || any_slurmd_alive; }; then
        note "configuration changed: restarting daemons"
        stop_slurm
    fi
    CTLD_MARK="$(log_mark "$LOG/slurmctld.log")"
    for node in $(node_names); do D_MARK[$node]="$(log_mark "$(d_log "$node")")"; done
    start_daemon slurmctld "$STATE/slurmctld.pid"
    wait_ctld
    for node in $(node_names); do start_daemon slurmd "$(d_pidfile "$node")" "$node"; done
    wait_usable
    STARTED=()   # up: from here on, a later failure of this script leaves the cluster alone
    echo "slurm-cluster: up ($NNODES node(s): $(node_names | paste -sd' ' -), $(nproc) CPUs x $SHARE jobs each, partitions debug (default), one, nodes, urgent; conf $CONF, logs $LOG)"
}

stop_pidfile() {  # pidfile
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null)"
    if pid_alive "$pid"; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.2; done
        pid_alive "$pid" && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

# every slurmd pid file in the state folder: also those of nodes an earlier, larger
# configuration had (and slurmd.pid of the one-node script before --nodes)
slurmd_pidfiles() { compgen -G "$STATE/slurmd*.pid" || true; }
any_slurmd_alive() {
    local f
    for f in $(slurmd_pidfiles); do pidfile_alive "$f" && return 0; done
    return 1
}

stop_slurm() {
    # slurmd first so that running jobs' steps are torn down with it
    local f
    for f in $(slurmd_pidfiles); do stop_pidfile "$f"; done
    stop_pidfile "$STATE/slurmctld.pid"
}

cmd_down() {
    [ -d "$STATE" ] || { echo "slurm-cluster: down (nothing was started)"; return 0; }
    if pidfile_alive "$STATE/slurmctld.pid"; then
        scancel --quiet --user="$(id -un)" >/dev/null 2>&1 || true   # jobs of this cluster only
        sleep 1
    fi
    stop_slurm
    # munged: only if we started it (its pid file lives in /run/munge)
    if [ -f "$LOG/munged.out" ] && [ -f "$MUNGE_SOCKET_DIR/munged.pid" ]; then
        stop_pidfile "$MUNGE_SOCKET_DIR/munged.pid"
        rm -f "$LOG/munged.out"
    fi
    if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then rm -f "$ETC_CONF"; fi
    # the spool (job id counter, job records) is kept so that job ids are not reused
    echo "slurm-cluster: down"
}

cmd_status() {
    if healthy; then
        echo "slurm-cluster: up ($(configured_nodes | wc -l) node(s); conf $CONF)"
        sinfo -h -N -p debug -o '  node %N %T %E' 2>/dev/null
        squeue -h -o '  job %i %T %j %N' 2>/dev/null
        return 0
    fi
    local why="not running" node
    if [ ! -f "$CONF" ]; then why="not configured (run: $0 up)"
    elif ! pidfile_alive "$STATE/slurmctld.pid"; then why="slurmctld not running"
    else
        why=""
        for node in $(configured_nodes); do
            if ! pidfile_alive "$(d_pidfile "$node")"; then why+="${why:+; }slurmd $node not running"
            else
                case "$(node_state "$node")" in idle|mixed|allocated) ;; *) why+="${why:+; }node $node '$(node_state "$node")'" ;; esac
            fi
        done
        why="${why:-test job fails}"
    fi
    echo "slurm-cluster: down ($why)"
    return 1
}

# A node crash, for the tests: the node's slurmd, its job steps and every process of the
# jobs it runs die at once (SIGKILL), then the controller is told (DOWN) instead of waiting
# SlurmdTimeout for it to notice. Jobs on it end NODE_FAIL; `up` starts the node again.
cmd_kill_node() {
    local node=$1 jobs pid f
    configured_nodes | grep -qx "$node" || die "kill-node: no node '$node' in $CONF (nodes: $(configured_nodes | paste -sd' ' -))"
    jobs="$(squeue -h -w "$node" -t RUNNING,COMPLETING -o %i 2>/dev/null | paste -sd'|' -)"
    stop_pidfile_now "$(d_pidfile "$node")"
    for f in /proc/[0-9]*; do
        pid=${f#/proc/}
        # (processes that end meanwhile, or kernel threads, have nothing to read: skipped)
        if [ -n "$jobs" ] && { tr '\0' ' ' <"$f/cmdline"; } 2>/dev/null | grep -qE "^slurmstepd: \[($jobs)\."; then
            kill -9 "$pid" 2>/dev/null; continue
        fi
        { tr '\0' '\n' <"$f/environ"; } 2>/dev/null | grep -qx "SLURMD_NODENAME=$node" && kill -9 "$pid" 2>/dev/null
    done
    scontrol update NodeName="$node" State=DOWN Reason=test >/dev/null 2>&1 || die "kill-node: scontrol update NodeName=$node State=DOWN failed"
    echo "slurm-cluster: node $node killed${jobs:+ (jobs ${jobs//|/ })}; '$0 up' starts it again"
}

stop_pidfile_now() {  # pidfile: SIGKILL, no goodbye to the controller
    local pid
    [ -f "$1" ] || return 0
    pid="$(cat "$1" 2>/dev/null)"
    pid_alive "$pid" && kill -9 "$pid" 2>/dev/null
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    rm -f "$1"
}

lock() {  # one up/down at a time (several test sessions may share the cluster)
    mkdir -p "$STATE"
    exec 9>"$STATE/.script.lock"
    flock -w 300 9 || die "another slurm-cluster.sh holds $STATE/.script.lock"
}

parse_up() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --nodes) [ $# -ge 2 ] || { echo "slurm-cluster: --nodes needs a number of nodes, e.g. --nodes 3" >&2; exit 2; }
                NNODES=$2; shift 2 ;;
            --nodes=*) NNODES=${1#--nodes=}; shift ;;
            *) echo "usage: $0 up [--nodes N]" >&2; exit 2 ;;
        esac
    done
    [[ "$NNODES" =~ ^[1-9][0-9]?$ ]] || { echo "slurm-cluster: --nodes '$NNODES': expected a number of nodes from 1 to 99" >&2; exit 2; }
}

case "${1:-}" in
    up) shift; parse_up "$@"; need_root up; lock; cmd_up ;;
    down) if [ -d "$STATE" ]; then need_root down; lock; fi; cmd_down ;;
    status) cmd_status ;;
    kill-node) [ $# = 2 ] || { echo "usage: $0 kill-node NODE" >&2; exit 2; }; need_root kill-node "$2"; lock; cmd_kill_node "$2" ;;
    *) echo "usage: $0 up [--nodes N]|down|status|kill-node NODE" >&2; exit 2 ;;
esac
