"""An in-memory backend: no process; each attempt writes a speedrun-shaped log as it "runs".

For tests and audits of the runner's scheduling, retry, resume and stopping logic (how
many runs ``--until-decisive`` launches with ``max_parallel`` jobs, retries, diverged
runs, timeouts, interruptions) at thousands of experiments a second. A
``generator(hypothesis, index, attempt)`` says what each attempt produces: a ``FakeRun``
(its loss, time, steps, or a failure, a hang, a log of its own).

Time is counted in polls, never read from the wall clock. An attempt ends at its
``polls``-th poll (default the first one after its start), so all attempts started
together end together, in start order; its log grows over its first ``log_polls`` polls
(a runner stopped before then leaves a partial log). ``tick_s`` fake seconds pass per
poll: an attempt still running past its ``timeout_s`` ends as timed out.
``on_poll(backend, handle)`` runs before every poll; a test raises ``KeyboardInterrupt``
there (Ctrl-C) or any exception (the runner dies at that moment). With
``survives_runner`` the jobs outlive their runner, like a cluster's: a later runner given
the same backend reattaches to the ones still running.
"""
from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import thresholds as th
from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome
from harness.data.store import PREFLIGHT
from harness.run.backends.local import now_iso

SIMULATED_ERROR = "RuntimeError: CUDA error: simulated"


class RunnerKilled(BaseException):
    """Raised from ``on_poll``: the runner dies there as under SIGKILL. Its unwinding still
    cancels its jobs; with ``survives_runner`` those cancels are ignored (a cluster's jobs
    outlive a killed runner), else they end (a local tree dies with its runner)."""


@dataclass(frozen=True)
class FakeRun:
    val_loss: float = th.TARGET_LOSS  # nan: the run diverged
    train_time_ms: float = 98_000.0
    steps: int = 20
    failed: bool = False            # crash before the end: no final result, exit code 1
    polls: int = 1                  # polls until it ends (math.inf: it hangs until killed)
    gpus: int = 8                   # GPUs named in the log (0: none, like a CPU log)
    error: str = SIMULATED_ERROR    # the last line of a failed run's traceback
    truncated: bool = False         # stops before the final validation and exits 0
    exit_code: int | None = None    # None: 1 when failed, else 0
    log_polls: int | None = None    # polls over which the log is written (None: polls);
    #                                 fewer than polls: it lingers after its last line
    log_text: str | bytes | None = None   # the whole log, verbatim, instead of a generated one
    script: Callable[[Path], None] | None = None   # what it does in its working directory


def speedrun_log(run: FakeRun) -> str:
    """A log with the lines a speedrun script prints (logparse reads it like a real one)."""
    if isinstance(run.log_text, str):
        return run.log_text
    n = run.steps
    lines = ["Running Python 3.11.7", "Running PyTorch 2.5.1 compiled for CUDA 12.4"]
    lines += [f"|   {i}  NVIDIA H100 80GB HBM3          On  |" for i in range(run.gpus)]
    lines += ["=" * 100, f"step:0/{n} val_loss:10.8258 train_time:0ms step_avg:0.03ms"]
    last = n // 2 if run.failed else n - 1 if run.truncated else n
    for k in range(1, last + 1):
        t = run.train_time_ms * k / n
        lines.append(f"step:{k}/{n} train_time:{t!r}ms step_avg:{t / k:.2f}ms")
    if run.failed:
        lines.append(f"Traceback (most recent call last):\n{run.error}")
    elif not run.truncated:
        loss = "nan" if math.isnan(run.val_loss) else repr(float(run.val_loss))
        lines.append(f"step:{n}/{n} val_loss:{loss} train_time:{float(run.train_time_ms)!r}ms "
                     f"step_avg:{run.train_time_ms / n:.2f}ms")
        lines.append("peak memory allocated: 123 MiB reserved: 456 MiB")
    return "\n".join(lines) + "\n"


@dataclass
class _Attempt:
    run: FakeRun
    spec: LaunchSpec
    lines: list[bytes]
    polled: int = 0
    written: int = 0                # lines of the log written so far
    ended: bool = False


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self, generator: Callable[[str, int, int], FakeRun], max_parallel: int = 1,
                 tick_s: float = 1.0, on_poll: Callable[["MemoryBackend", Handle], None] | None = None,
                 survives_runner: bool = False, preflight: bool = False) -> None:
        self.generator = generator
        self.can_preflight = preflight   # off by default: the runner's tests count launches of runs
        self.preflights: list[str] = []  # hypotheses whose preflight started, in start order
        self.max_parallel = max_parallel
        self.tick_s = tick_s
        self.on_poll = on_poll
        self.survives_runner = survives_runner
        self.launched: list[tuple[str, int, int]] = []     # (hypothesis, index, attempt) in start order
        self.cancelled: list[str] = []                     # job ids, in the order they were cancelled
        self.polls = 0                                     # polls so far, of every job
        self._dying = False
        self._jobs: dict[str, _Attempt] = {}

    def start(self, spec: LaunchSpec) -> Handle:
        # results/<exp>/<hypothesis>/<index>-<attempt>/
        if spec.run_dir.parent.name == PREFLIGHT:      # results/<exp>/preflight/<hypothesis>[.k]/
            name, dot, k = spec.run_dir.name.rpartition(".")
            hyp = name if dot and k.isdigit() and name else spec.run_dir.name
            run = self.generator(hyp, 0, 1)           # what the first run's first attempt does
            self.preflights.append(hyp)
        else:
            hyp = spec.run_dir.parent.name
            index, attempt = (int(x) for x in spec.run_dir.name.split("-"))
            run = self.generator(hyp, index, attempt)
            self.launched.append((hyp, index, attempt))
        self._dying = False
        job = f"mem-{len(self._jobs)}"
        text = run.log_text if isinstance(run.log_text, bytes) else speedrun_log(run).encode()
        lines = text.splitlines(keepends=True)
        self._jobs[job] = a = _Attempt(run, spec, lines)
        Path(spec.log_path).write_bytes(b"")
        if run.script is not None:
            run.script(Path(spec.workdir))
        if not math.isfinite(run.polls):
            self._write(a, len(lines) // 2)   # a hang: it stops printing half way
        return Handle(spec, job, {"started_at": now_iso()})

    def _write(self, a: _Attempt, upto: int) -> None:
        if upto > a.written:
            with open(a.spec.log_path, "ab") as f:
                f.writelines(a.lines[a.written:upto])
            a.written = upto

    def poll(self, handle: Handle) -> Outcome | None:
        if self.on_poll is not None:
            try:
                self.on_poll(self, handle)
            except RunnerKilled:
                self._dying = True
                raise
        self.polls += 1
        a = self._jobs[handle.job_id]
        if a.ended:
            return self._outcome(a, None, False, "cancelled")
        a.polled += 1
        run = a.run
        log_polls = max(1, min(run.log_polls or run.polls, run.polls))
        if math.isfinite(log_polls):
            self._write(a, len(a.lines) * min(a.polled, log_polls) // log_polls)
        limit = handle.spec.timeout_s
        if limit is not None and a.polled * self.tick_s > limit and a.polled < run.polls:
            a.ended = True
            return self._outcome(a, None, True, f"killed after the {limit:g} s timeout")
        if a.polled < max(1, run.polls):
            return None
        a.ended = True
        code = run.exit_code if run.exit_code is not None else 1 if run.failed else 0
        return self._outcome(a, code, False, "")

    def _outcome(self, a: _Attempt, code: int | None, timed_out: bool, message: str) -> Outcome:
        now = now_iso()
        return Outcome(exit_code=code, timed_out=timed_out, started_at=now, finished_at=now,
                       wall_s=a.polled * self.tick_s, host=socket.gethostname(), message=message)

    def elapsed(self, handle: Handle, t0: float) -> float:
        """The attempt's clock: its polls so far, ``tick_s`` each (its ``wall_s`` at the end)."""
        return self._jobs[handle.job_id].polled * self.tick_s

    def cancel(self, handle: Handle) -> None:
        a = self._jobs.get(handle.job_id)
        if self._dying and self.survives_runner:
            return
        if a is not None and not a.ended:
            a.ended = True
            self.cancelled.append(handle.job_id)

    def reattach(self, run_dir: Path, job_id: str, spec: LaunchSpec) -> Handle | None:
        self._dying = False
        a = self._jobs.get(job_id)
        if not self.survives_runner or a is None or a.ended:
            return None
        return Handle(spec, job_id, {"started_at": now_iso()})

    def running(self) -> list[str]:
        """Job ids started and not yet ended (finished, timed out or cancelled)."""
        return [j for j, a in self._jobs.items() if not a.ended]
