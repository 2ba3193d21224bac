#!/usr/bin/env bash
# A long GPU job across several short device calls, with nothing lost at a call's end.
# A lent machine kills what a call leaves running, except a process in its own session, and
# it re-sends the working tree before each call; so `start` copies the tree to a private
# folder and runs the job there in a session of its own, and `wait` (the next calls, each
# sent within the machine's idle window) only watches it and brings its files back.
#
#   bash bench/detach.sh start NAME -- CMD [ARG...]   # CMD runs in /var/tmp/detach/NAME/repo
#   bash bench/detach.sh wait NAME SECONDS [PATH...]  # until CMD ends or SECONDS pass
#   bash bench/detach.sh stop NAME PATTERN            # SIGINT to the job's processes whose
#                                                     # command line matches PATTERN (pkill -f)
# e.g. `stop parity '^[^ ]*python[0-9.]* -m harness run'`: anchored, so that a `timeout` around
# the harness is not matched too and does not forward it a second SIGINT.
#
# `wait` prints the job's state (`job NAME: running` or `job NAME: ended rc=N`) and the end of
# its output, and puts into $OUT the output (NAME.log) and each PATH (a file as it is, a folder
# as PATH-NAME.tgz without compile caches and locks). Exit: 0 ended with rc 0, 1 ended
# otherwise, 3 still running, 2 bad use.
set -u
ROOT=${DETACH_ROOT:-/var/tmp/detach}
usage() { echo "usage: bench/detach.sh start NAME -- CMD... | wait NAME SECONDS [PATH...] | stop NAME PATTERN" >&2; exit 2; }
[ $# -ge 2 ] || usage
verb=$1 name=$2; shift 2
J=$ROOT/$name
case $verb in
start)
    [ "${1:-}" = "--" ] || usage; shift
    [ $# -ge 1 ] || usage
    if [ -f "$J/pid" ] && [ ! -f "$J/rc" ]; then echo "job $name is already running (pid $(cat "$J/pid"))" >&2; exit 2; fi
    rm -rf "$J"; mkdir -p "$J/repo"
    cp -a . "$J/repo"  # the job's own tree: the next call's re-sent tree cannot touch it
    printf '%q ' "$@" > "$J/cmd"
    # setsid: a session of its own, which the call's end does not kill; rc written when it ends.
    # env --default-signal: a background child starts with SIGINT ignored, and then neither
    # `stop` nor a `timeout -s INT` inside the job could stop a harness run as Ctrl-C does.
    # its pid is its session's id (a background child is no group leader: setsid need not fork)
    (cd "$J/repo" || exit 2
     setsid nohup env --default-signal=INT,QUIT bash -c "$(cat "$J/cmd") ; echo \$? > '$J/rc'" > "$J/log" 2>&1 < /dev/null &
     echo $! > "$J/pid")
    echo "job $name started: $(cat "$J/cmd")"
    ;;
wait)
    [ $# -ge 1 ] || usage
    secs=$1; shift
    [ -f "$J/cmd" ] || { echo "no job $name under $ROOT" >&2; exit 2; }
    t0=$(date +%s)
    while [ ! -f "$J/rc" ] && [ $(( $(date +%s) - t0 )) -lt "$secs" ]; do sleep 2; done
    if [ -n "${OUT:-}" ]; then
        cp "$J/log" "$OUT/$name.log"
        for p in "$@"; do
            if [ -d "$p" ]; then
                tar czf "$OUT/$(basename "$p")-$name.tgz" -C "$(dirname "$p")" --exclude=.cache --exclude=.lock "$(basename "$p")"
            elif [ -f "$p" ]; then
                cp "$p" "$OUT/"
            fi
        done
    fi
    tail -n 40 "$J/log"
    if [ -f "$J/rc" ]; then
        rc=$(cat "$J/rc"); echo "job $name: ended rc=$rc"; [ "$rc" = 0 ] && exit 0 || exit 1
    fi
    echo "job $name: running ($(( $(date +%s) - $(stat -c %Y "$J/cmd") ))s since start)"
    exit 3
    ;;
stop)
    # e.g. a harness run told to stop as Ctrl-C would: it ends its run, keeps its folder, and
    # the job goes on to whatever follows it
    [ $# -eq 1 ] && [ -f "$J/pid" ] || usage
    if [ -f "$J/rc" ]; then echo "job $name already ended rc=$(cat "$J/rc")"; exit 0; fi
    pkill -INT -s "$(cat "$J/pid")" -f "$1" && echo "job $name: SIGINT sent to '$1'" \
        || { echo "job $name: no process matches '$1'" >&2; exit 1; }
    ;;
*) usage ;;
esac
