"""The parent of every local run: the run's whole process tree ends with it.

``python supervise.py ARGV...`` runs ARGV as its child and becomes the child
subreaper of the run, so every process the trainer forks stays its descendant even
after it detaches (setsid, double fork). When the trainer exits, what it left behind
is ended; when the supervisor is told to stop (SIGTERM/SIGINT/SIGHUP, or its runner
died: the backend sets PDEATHSIG), the whole tree gets SIGTERM, then SIGKILL after
the grace period. It exits as the trainer did (the same code or the same signal).

Standalone on purpose (no harness imports): it runs in the run's scratch folder with
the run's environment, where the harness package need not be importable.
"""
import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.05


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _signal_all(sig: int) -> None:
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(leader: int, status: list) -> bool:
    """Reap every exited child; False once no child is left."""
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if pid == leader:
            status.append(st)


def main(argv: list[str]) -> None:
    grace = float(os.environ.get("HARNESS_KILL_GRACE_S", "10") or 10)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: stop.append(s))
    leader = os.fork()
    if leader == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            sys.stderr.write(f"harness: could not start {argv[0]!r}: {e}\n")
            sys.stderr.flush()
            os._exit(127)
    status: list = []
    killed_at = None
    term_sent = False
    while True:
        alive = _reap(leader, status)
        if not alive:
            break
        if (status or stop) and not term_sent:
            # the trainer exited (its leftovers must go) or we were told to stop
            _signal_all(signal.SIGTERM)
            term_sent, killed_at = True, time.monotonic()
        elif term_sent and time.monotonic() - killed_at > grace:
            _signal_all(signal.SIGKILL)
        time.sleep(POLL_S)
    if not status:
        os._exit(128 + (stop[0] if stop else signal.SIGTERM))
    st = status[0]
    if os.WIFSIGNALED(st):
        _die_as(os.WTERMSIG(st))
    os._exit(os.WEXITSTATUS(st))


def _die_as(sig: int) -> None:
    """End this process by ``sig``, so the runner sees the trainer's own death (-9, -11...).

    SIGKILL and SIGSTOP take no handler (setting one raises EINVAL): SIGKILL needs none
    to kill, and a signal that cannot kill (SIGSTOP, one ignored by default) falls
    through to the 128 + N exit code that shells use for a death by signal.
    """
    try:
        # the trainer's core dump, if any, is the trainer's: none of this process beside it
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass        # a hard limit we may not lower: at worst one more core file
    try:
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):
        pass        # uncatchable: its default action already holds
    if sig not in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        time.sleep(1)
    os._exit(128 + sig)


if __name__ == "__main__":
    main(sys.argv[1:])
