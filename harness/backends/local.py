"""Local backend: one process tree at a time on this machine."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone

from harness.backends.base import Backend, Handle, LaunchSpec, Outcome

KILL_GRACE_S = 10.0  # SIGTERM first so torchrun can stop its workers, then SIGKILL


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

    def start(self, spec: LaunchSpec) -> Handle:
        log = open(spec.log_path, "ab", buffering=0)
        env = {**os.environ, **spec.env}
        try:
            proc = subprocess.Popen(spec.argv, cwd=spec.workdir, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            log.write(f"harness: could not start {spec.argv[0]!r}: {e}\n".encode())
            log.close()
            return Handle(spec, job_id="", extra={"error": str(e), "t0": time.monotonic(),
                                                  "started_at": now_iso()})
        return Handle(spec, job_id=str(proc.pid),
                      extra={"proc": proc, "log": log, "t0": time.monotonic(), "started_at": now_iso()})

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
            self._kill(proc)
            return self._outcome(handle, proc.returncode, True, f"killed after the {limit:g} s timeout")
        return self._outcome(handle, rc, False, "")

    def cancel(self, handle: Handle) -> None:
        proc = handle.extra.get("proc")
        if proc is not None and proc.poll() is None:
            self._kill(proc)
        log = handle.extra.get("log")
        if log is not None and not log.closed:
            log.close()

    def _kill(self, proc: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _outcome(self, handle: Handle, rc, timed_out: bool, message: str) -> Outcome:
        log = handle.extra.get("log")
        if log is not None and not log.closed:
            log.close()
        wall = time.monotonic() - handle.extra["t0"]
        return Outcome(exit_code=rc, timed_out=timed_out, started_at=handle.extra["started_at"],
                       finished_at=now_iso(), wall_s=wall, host=socket.gethostname(), message=message)
