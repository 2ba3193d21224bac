"""Local backend: one process tree at a time on this machine."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable
from datetime import datetime, timezone

from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome
from harness.run.deaths import cgroup_oom_kills, oom_phrase

KILL_GRACE_S = 10.0  # SIGTERM first so torchrun can stop its workers, then SIGKILL
SUPERVISOR = str(Path(__file__).resolve().parent.parent / "supervise.py")
MARKER = "HARNESS_RUN_DIR"  # every process of a run inherits it (set by the runner)


def kill_grace_s() -> float:
    # HARNESS_KILL_GRACE_S shortens the wait for tests of trainers that ignore SIGTERM
    try:
        value = float(os.environ.get("HARNESS_KILL_GRACE_S", KILL_GRACE_S))
    except ValueError:
        return KILL_GRACE_S
    return value if 0 <= value < 3600 else KILL_GRACE_S


def marked_pids(run_dir: str) -> list[int]:
    """Processes of this user whose environment names the run folder: the run's whole tree,
    including children that left its process group or session."""
    needle = f"\0{MARKER}={run_dir}\0".encode()
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = b"\0" + f.read() + b"\0"
        except OSError:
            continue  # gone, or another user's
        if needle in env:
            out.append(int(name))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def end_tree(run_dir: str, pgid: int | None, grace_s: float | None = None) -> None:
    """SIGTERM the run's process group and every marked process, then SIGKILL what is left."""
    grace = kill_grace_s() if grace_s is None else grace_s
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = set(marked_pids(run_dir))
        if pgid:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait:
            if not any(_alive(p) for p in pids) and not (pgid and _group_alive(pgid)):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # zombies still count for killpg; they hold no GPU: look for a live member
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def end_leftovers(run_dir: str, job_id: str | None) -> None:
    """On resume: end whatever an earlier runner's attempt left running on this machine."""
    pgid = int(job_id) if job_id and str(job_id).isdigit() else None
    if pgid is not None and not _is_run_group(pgid, run_dir):
        pgid = None  # the number was reused by an unrelated process group
    end_tree(run_dir, pgid)


def _is_run_group(pgid: int, run_dir: str) -> bool:
    return pgid in marked_pids(run_dir)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _die_with_parent() -> None:
    # If the runner is killed (even SIGKILL), its child gets SIGTERM instead of living on
    # as an orphan that keeps a GPU busy and writes into a folder resume will redo.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalBackend(Backend):
    name = "local"
    max_parallel = 1
    can_preflight = True
    # the cgroup's OOM-kill count, read at each start and end: the kernel's word on memory
    oom_probe: Callable[[], int | None] = staticmethod(cgroup_oom_kills)

    def __init__(self, oom_probe: Callable[[], int | None] | None = None) -> None:
        if oom_probe is not None:
            self.oom_probe = oom_probe

    def start(self, spec: LaunchSpec) -> Handle:
        log = open(spec.log_path, "ab", buffering=0)
        oom_before = self.oom_probe()
        env = {**os.environ, **spec.env}
        # the supervisor parents the run: its whole tree ends with it, even if we die
        argv = [sys.executable, SUPERVISOR, *spec.argv]
        try:
            proc = subprocess.Popen(argv, cwd=spec.workdir, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            log.write(f"harness: could not start {spec.argv[0]!r}: {e}\n".encode())
            log.close()
            return Handle(spec, job_id="", extra={"error": str(e), "t0": time.monotonic(),
                                                  "started_at": now_iso()})
        return Handle(spec, job_id=str(proc.pid),
                      extra={"proc": proc, "log": log, "t0": time.monotonic(), "started_at": now_iso(),
                             "oom_before": oom_before})

    def poll(self, handle: Handle) -> Outcome | None:
        x = handle.extra
        if "error" in x:
            return self._outcome(handle, None, False, f"could not start: {x['error']}")
        proc: subprocess.Popen = x["proc"]
        rc = proc.poll()
        if rc is None:
            limit = handle.spec.timeout_s
            if limit is None or time.monotonic() - x["t0"] < limit:
                return None
            self._kill(handle)
            return self._outcome(handle, proc.returncode, True, f"killed after the {limit:g} s timeout")
        # the leader is gone; children it forked (or detached) must not outlive the run
        end_tree(str(handle.spec.run_dir), proc.pid)
        oom = oom_phrase(x.get("oom_before"), self.oom_probe()) if rc != 0 else ""
        return self._outcome(handle, rc, False, oom)

    def cancel(self, handle: Handle) -> None:
        if handle.extra.get("proc") is not None:
            self._kill(handle)
        log = handle.extra.get("log")
        if log is not None and not log.closed:
            log.close()

    def _kill(self, handle: Handle) -> None:
        proc: subprocess.Popen = handle.extra["proc"]
        end_tree(str(handle.spec.run_dir), proc.pid)
        try:
            proc.wait(timeout=5.0)  # reap the leader
        except subprocess.TimeoutExpired:
            pass

    def _outcome(self, handle: Handle, rc, timed_out: bool, message: str) -> Outcome:
        log = handle.extra.get("log")
        if log is not None and not log.closed:
            log.close()
        wall = time.monotonic() - handle.extra["t0"]
        return Outcome(exit_code=rc, timed_out=timed_out, started_at=handle.extra["started_at"],
                       finished_at=now_iso(), wall_s=wall, host=socket.gethostname(), message=message)
