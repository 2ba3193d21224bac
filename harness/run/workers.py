"""Warm workers: one long-lived process group per arm serves that arm's runs (docs/workers.md).

An arm with ``workers = true`` whose script contains the protocol's name
(``harness-worker: v1``) gets a worker: the arm's ordinary command, started once with
``HARNESS_WORKER_DIR`` set, in a folder of its own under ``<results>/.workers/``. Each run
is a request file there (its environment, SEED included, its working directory and its
log); the worker writes ``done-<n>.json`` when the run is over. Everything else about a
run stays as it is: its attempt folder, ``log.txt``, ``result.json``, its timeout, the
launch order (the other arm's worker waits idle meanwhile).

A worker that dies or outlives a run's timeout is ended (its whole tree) and the run is
recorded as a failed attempt; that run's next attempt is an ordinary fresh process, and
the arm's next run gets a new worker. Where workers cannot be used (the script does not
implement the protocol, another backend, the speed probe) this says so once and every run
is a fresh process.

This module is the backend the runner talks to: it passes every attempt that is not
for a worker to the backend it wraps.
"""
from __future__ import annotations

import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from harness.data.spec import Experiment
from harness.data.store import WORKERS_DIR, read_worker_done, write_worker_request
from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome
from harness.run.backends.local import end_tree, now_iso

PROTOCOL = "harness-worker: v1"   # in the script's source: it implements this protocol
DIR_ENV = "HARNESS_WORKER_DIR"
STOP_WAIT_S = 10.0                # a worker told to stop gets this long before it is ended
RUN_MARKER = "HARNESS_RUN_DIR"


def supports(script: Path) -> bool:
    """Whether the script implements the worker protocol (its source names it)."""
    try:
        return PROTOCOL in script.read_text(errors="replace")
    except OSError:
        return False


def wrap(backend: Backend, exp: Experiment, results: Path, base: Path,
         note: Callable[[str], None]) -> Backend:
    """The backend the runner uses: ``backend`` itself unless an arm asks for workers."""
    if not any(h.workers for h in exp.hypotheses):
        return backend
    return Workers(backend, exp, results, base, note)


class _Worker:
    """One live worker: its process (a handle of the wrapped backend) and its folder."""

    def __init__(self, key: tuple, folder: Path, handle: Handle) -> None:
        self.key = key
        self.folder = folder
        self.handle = handle
        self.runs = 0
        self.ended: Outcome | None = None

    def request(self, spec: LaunchSpec) -> int:
        self.runs += 1
        body = {"protocol": 1, "run": self.runs, "env": spec.env, "workdir": str(spec.workdir),
                "log": str(spec.log_path), "run_dir": str(spec.run_dir)}
        write_worker_request(self.folder, self.runs, body)
        return self.runs

    def done(self, n: int) -> dict | None:
        return read_worker_done(self.folder, n)


class Workers(Backend):
    def __init__(self, inner: Backend, exp: Experiment, results: Path, base: Path,
                 note: Callable[[str], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_parallel = inner.max_parallel
        self.may_span_nodes = inner.may_span_nodes
        self.can_preflight = inner.can_preflight     # a preflight is a fresh process: the inner one's
        self.exp = exp
        self.root = Path(results) / WORKERS_DIR
        self.base = Path(base)
        self.note = note
        self.live: dict[str, _Worker] = {}
        self.fresh: set[tuple[str, str]] = set()   # (arm, SEED) runs a worker lost: fresh from now on
        self.said: set[str] = set()
        self.serial = 0
        self.swept = False   # leftovers of an earlier runner: ended at the first start (under the lock)

    # -- which attempts a worker takes ----------------------------------------------------
    def _usable(self, arm: str) -> bool:
        hyp = self.exp.hypothesis(arm)
        script = Path(hyp.script) if Path(hyp.script).is_absolute() else self.base / hyp.script
        if self.inner.name != "local":
            return self._say("backend", f"warm workers need the local backend, not {self.inner.name}; "
                                        "running a fresh process per run")
        if self.exp.speed_probe:
            return self._say("probe", "speed_probe times a fresh process per run; running a fresh "
                                      "process per run (no warm workers)")
        if not supports(script):
            return self._say(str(script), f"{hyp.script} does not support warm workers; running a fresh "
                                          "process per run")
        return True

    def _say(self, what: str, text: str) -> bool:
        if what not in self.said:
            self.said.add(what)
            self.note(text)
        return False

    # -- Backend ----------------------------------------------------------------------------
    def start(self, spec: LaunchSpec) -> Handle:
        arm = spec.worker
        if arm is None or (arm, spec.env.get("SEED", "")) in self.fresh or not self._usable(arm):
            return self.inner.start(spec)
        worker = self.live.get(arm)
        key = _key(spec)
        if worker is not None and (worker.key != key or self._ended(worker)):
            self._retire(worker)
            worker = None
        if worker is None:
            worker = self._spawn(arm, spec, key)
        spec.log_path.touch()
        offset = _size(worker.handle.spec.log_path)
        n = worker.request(spec)
        started = now_iso()
        return Handle(spec, job_id=worker.handle.job_id,
                      extra={"worker": worker, "run": n, "t0": time.monotonic(), "started_at": started,
                             "offset": offset,
                             "info": {"folder": str(worker.folder), "run": n, "job_id": worker.handle.job_id}})

    def poll(self, handle: Handle) -> Outcome | None:
        worker: _Worker | None = handle.extra.get("worker")
        if worker is None:
            return self.inner.poll(handle)
        x = handle.extra
        done = worker.done(x["run"])
        if done is not None:
            code = done.get("exit_code")
            if code != 0:   # a worker ends after a failed run: wait for it before the next start
                self._retire(worker)
            return self._outcome(handle, code if isinstance(code, int) else None, False, done.get("error", ""))
        if self._ended(worker):
            self._lost(handle, worker, f"the warm worker ended during this run ({_how(worker.ended)})")
            return self._outcome(handle, worker.ended.exit_code, False,
                                 f"the warm worker ended during this run ({_how(worker.ended)}); "
                                 "a fresh process redoes the run")
        limit = handle.spec.timeout_s
        if limit is not None and time.monotonic() - x["t0"] >= limit:
            self._lost(handle, worker, f"the run outlived its {limit:g} s timeout; the warm worker is ended")
            return self._outcome(handle, None, True, f"killed after the {limit:g} s timeout (a warm worker: "
                                                     "ended and replaced; a fresh process redoes the run)")
        return None

    def cancel(self, handle: Handle) -> None:
        worker: _Worker | None = handle.extra.get("worker")
        if worker is None:
            self.inner.cancel(handle)
        else:
            self._kill(worker)

    def elapsed(self, handle: Handle, t0: float) -> float:
        return self.inner.elapsed(handle, t0)

    def reattach(self, run_dir: Path, job_id: str, spec: LaunchSpec) -> Handle | None:
        return self.inner.reattach(run_dir, job_id, spec)

    def node_usable(self, node: str) -> bool:
        return self.inner.node_usable(node)

    def close(self) -> None:
        try:
            for worker in list(self.live.values()):
                self._retire(worker)
        finally:
            self.inner.close()

    # -- workers ----------------------------------------------------------------------------
    def _spawn(self, arm: str, spec: LaunchSpec, key: tuple) -> _Worker:
        if not self.swept:
            self.swept = True
            self._end_leftovers()
        self.serial += 1
        folder = self.root / f"{arm}-{self.serial}"
        while folder.exists():
            self.serial += 1
            folder = self.root / f"{arm}-{self.serial}"
        folder.mkdir(parents=True)
        workdir = folder / "script-files"
        workdir.mkdir()
        for entry in self.base.iterdir():   # the project root's mirror, as a run's cwd is
            if entry.name != "logs":
                (workdir / entry.name).symlink_to(entry)
        env = {k: v for k, v in spec.env.items() if k != "SEED"}
        env[DIR_ENV] = str(folder)
        env[RUN_MARKER] = str(folder)      # ends the worker's whole tree, never a run's
        wspec = replace(spec, run_dir=folder, workdir=workdir, env=env, log_path=folder / "worker.log",
                        timeout_s=None, worker=None)
        worker = _Worker(key, folder, self.inner.start(wspec))
        self.live[arm] = worker
        return worker

    def _ended(self, worker: _Worker) -> bool:
        if worker.ended is None:
            worker.ended = self.inner.poll(worker.handle)
        return worker.ended is not None

    def _lost(self, handle: Handle, worker: _Worker, why: str) -> None:
        """The run's log gets what the worker printed outside it (torchrun's report) and why."""
        self._kill(worker)
        self.fresh.add((handle.spec.worker, handle.spec.env.get("SEED", "")))
        try:
            with open(worker.handle.spec.log_path, "rb") as f:
                f.seek(handle.extra["offset"])
                tail = f.read()[-64 * 1024:]
            with open(handle.spec.log_path, "ab") as f:
                f.write(tail)
                f.write(f"harness: {why}\n".encode())
        except OSError:
            pass   # the record still says why (its message)

    def _kill(self, worker: _Worker) -> None:
        self.inner.cancel(worker.handle)   # the worker's whole tree (its folder marks it)
        if worker.ended is None:
            worker.ended = Outcome(exit_code=None, timed_out=False, started_at="", finished_at=now_iso(),
                                   wall_s=0.0, host=socket.gethostname(), message="ended by the harness")
        self.live = {a: w for a, w in self.live.items() if w is not worker}

    def _retire(self, worker: _Worker) -> None:
        """Tell the worker to stop, give it time, then end what is left; remove its folder."""
        if not self._ended(worker):
            (worker.folder / "stop").touch()
            t0 = time.monotonic()
            while time.monotonic() - t0 < STOP_WAIT_S and not self._ended(worker):
                time.sleep(0.02)
        self._kill(worker)
        shutil.rmtree(worker.folder, ignore_errors=True)

    def _end_leftovers(self) -> None:
        """Workers of an earlier runner that died without ending them (their folders mark them)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.is_symlink():
                end_tree(str(folder), None)
                shutil.rmtree(folder, ignore_errors=True)

    def _outcome(self, handle: Handle, code: int | None, timed_out: bool, message: str) -> Outcome:
        x = handle.extra
        return Outcome(exit_code=code, timed_out=timed_out, started_at=x["started_at"], finished_at=now_iso(),
                       wall_s=time.monotonic() - x["t0"], host=socket.gethostname(), message=message)


def _key(spec: LaunchSpec) -> tuple:
    """What one worker may serve: the same command and environment (SEED and run folder aside)."""
    env = tuple(sorted((k, v) for k, v in spec.env.items() if k not in ("SEED", RUN_MARKER)))
    return tuple(spec.argv), env, spec.nproc


def _how(out: Outcome | None) -> str:
    if out is None or out.exit_code is None:
        return "killed"
    if out.exit_code < 0:
        return f"signal {-out.exit_code}"
    return f"exit code {out.exit_code}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
