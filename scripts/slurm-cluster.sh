#!/usr/bin/env bash
# A throw-away one-node SLURM cluster on localhost, for the slurm backend's tests.
#
#   scripts/slurm-cluster.sh up       install (if missing), configure, start, wait until usable
#   scripts/slurm-cluster.sh down     stop the daemons this script started
#   scripts/slurm-cluster.sh status   exit 0 when the cluster answers and runs a job
#
# Runs as root in a bare Debian 12 container (no systemd): munged, slurmctld and
# slurmd are started as plain background daemons. Everything the script creates
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
set -u -o pipefail

STATE="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
WAIT_S="${HARNESS_SLURM_WAIT_S:-60}"
SHARE="${HARNESS_SLURM_JOBS_PER_CPU:-2}"
CONF="$STATE/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
MARK="# written by harness scripts/slurm-cluster.sh"
LOG="$STATE/log"
MUNGE_SOCKET_DIR=/run/munge
CTLD_MARK=0
D_MARK=0
MUNGE_STARTED=0

STARTED=()   # daemons this `up` started: a failed start stops them again (nothing left running)
die() {
    echo "slurm-cluster: $*" >&2
    if [ ${#STARTED[@]} -gt 0 ]; then teardown_started; fi
    exit 1
}
note() { echo "slurm-cluster: $*" >&2; }

export SLURM_CONF="$CONF"

pid_alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ]; }  # also for daemons of another user
pidfile_alive() { [ -f "$1" ] && pid_alive "$(cat "$1" 2>/dev/null)"; }

need_root() {
    [ "$(id -u)" = 0 ] && return 0
    # not root: redo the whole command through passwordless sudo when there is one
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo -n HARNESS_SLURM_DIR="$STATE" HARNESS_SLURM_WAIT_S="$WAIT_S" \
            HARNESS_SLURM_JOBS_PER_CPU="$SHARE" PATH="$PATH" bash "$0" "$@"
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

write_config() {
    local host cpus mem_mb real_mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    real_mem=$(( mem_mb / 2 )); [ "$real_mem" -gt 16384 ] && real_mem=16384; [ "$real_mem" -lt 256 ] && real_mem=256
    mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$LOG"
    cat >"$CONF.new" <<EOF
$MARK
# One-node cluster on localhost for tests (partitions: debug, default; urgent, preempts debug). Daemons run as root, no cgroups,
# no accounting database: job states come from squeue/scontrol (MinJobAge keeps
# finished jobs visible for a day).
ClusterName=harness
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
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
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=$host Default=YES MaxTime=UNLIMITED State=UP OverSubscribe=FORCE:$SHARE PriorityTier=1
# jobs here preempt (cancel) jobs of 'debug': the tests' way to produce a PREEMPTED job
PartitionName=urgent Nodes=$host Default=NO MaxTime=UNLIMITED State=UP OverSubscribe=NO PriorityTier=2
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

start_daemon() {  # name pidfile
    local name=$1 pidfile=$2 mark
    pidfile_alive "$pidfile" && return 0
    rm -f "$pidfile"
    mark="$(log_mark "$LOG/$name.log")"
    # daemonizes itself and writes its pid file; 3>&- .. 9>&-: it must not inherit the script's
    # lock nor a caller's (a test session's flock on its fd would be held for the daemon's life)
    "/usr/sbin/$name" -f "$CONF" >"$LOG/$name.out" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- || die "$name did not start: $(tail -n1 "$LOG/$name.out") (see $LOG/$name.log)"
    STARTED+=("$pidfile")
    # the parent returns before the daemon has written its pid file: wait for it, so that
    # a slow start is not taken for a daemon that exited
    for _ in $(seq 1 100); do pidfile_alive "$pidfile" && return 0; sleep 0.1; done
    die "$name exited during start-up: $(reason_since "$LOG/$name.log" "$mark") (see $LOG/$name.log)"
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

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

healthy() {  # daemons alive, node usable, and (when idle) a job step runs
    [ -f "$CONF" ] || return 1
    pidfile_alive "$STATE/slurmctld.pid" && pidfile_alive "$STATE/slurmd.pid" || return 1
    local st; st="$(node_state)"
    case "$st" in
        mixed|allocated) return 0 ;;   # running jobs: launching works
        idle) timeout 20 srun -N1 -n1 -t 1 -J harness-check hostname >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

wait_usable() {
    local deadline=$(( $(date +%s) + WAIT_S )) st="" out=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        pidfile_alive "$STATE/slurmctld.pid" || die "slurmctld exited: $(reason_since "$LOG/slurmctld.log" "$CTLD_MARK")"
        pidfile_alive "$STATE/slurmd.pid" || die "slurmd exited: $(reason_since "$LOG/slurmd.log" "$D_MARK")"
        st="$(node_state)"
        case "$st" in
            idle|mixed|allocated) break ;;
            drain*|down*|inval*|fail*)
                # left over from an earlier run (e.g. config changed): bring it back
                scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 ;;
        esac
        sleep 1
    done
    case "$st" in
        idle|mixed|allocated) ;;
        *) die "node $(hostname -s) not usable after ${WAIT_S}s (sinfo state '${st:-no answer}'; reason: $(sinfo -h -N -o '%E' 2>/dev/null | head -n1); see $LOG)" ;;
    esac
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if out="$(timeout 30 srun -N1 -n1 -t 1 -J harness-check hostname 2>&1)"; then return 0; fi
        sleep 1
    done
    die "test job 'srun -N1 hostname' fails: $(echo "$out" | tail -n1) (see $LOG)"
}

cmd_up() {
    mkdir -p "$STATE" "$LOG"
    install_packages
    local changed=0
    write_config && changed=1
    link_config
    start_munge
    if [ $changed = 0 ] && healthy; then echo "slurm-cluster: up (already running; conf $CONF)"; return 0; fi
    if [ $changed = 1 ] && { pidfile_alive "$STATE/slurmctld.pid" || pidfile_alive "$STATE/slurmd.pid"; }; then
        note "configuration changed: restarting daemons"
        stop_slurm
    fi
    CTLD_MARK="$(log_mark "$LOG/slurmctld.log")"
    D_MARK="$(log_mark "$LOG/slurmd.log")"
    start_daemon slurmctld "$STATE/slurmctld.pid"
    wait_ctld
    start_daemon slurmd "$STATE/slurmd.pid"
    wait_usable
    STARTED=()   # up: from here on, a later failure of this script leaves the cluster alone
    echo "slurm-cluster: up (node $(hostname -s), $(nproc) CPUs x $SHARE jobs, partition debug; conf $CONF, logs $LOG)"
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

stop_slurm() {
    # slurmd first so that running jobs' steps are torn down with it
    stop_pidfile "$STATE/slurmd.pid"
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
        echo "slurm-cluster: up (node $(hostname -s) $(node_state); conf $CONF)"
        squeue -h -o '  job %i %T %j' 2>/dev/null
        return 0
    fi
    local why="not running"
    [ -f "$CONF" ] || why="not configured (run: $0 up)"
    [ -f "$CONF" ] && ! pidfile_alive "$STATE/slurmctld.pid" && why="slurmctld not running"
    [ -f "$CONF" ] && pidfile_alive "$STATE/slurmctld.pid" && ! pidfile_alive "$STATE/slurmd.pid" && why="slurmd not running"
    [ -f "$CONF" ] && pidfile_alive "$STATE/slurmctld.pid" && pidfile_alive "$STATE/slurmd.pid" && why="node state '$(node_state)' or test job fails"
    echo "slurm-cluster: down ($why)"
    return 1
}

lock() {  # one up/down at a time (several test sessions may share the cluster)
    mkdir -p "$STATE"
    exec 9>"$STATE/.script.lock"
    flock -w 300 9 || die "another slurm-cluster.sh holds $STATE/.script.lock"
}

case "${1:-}" in
    up) need_root up; lock; cmd_up ;;
    down) if [ -d "$STATE" ]; then need_root down; lock; fi; cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
