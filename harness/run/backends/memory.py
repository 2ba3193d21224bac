"""An in-memory backend: every launch writes a speedrun-shaped log at once, no process.

For tests and audits of the runner's scheduling (how many runs ``--until-decisive``
launches with ``max_parallel`` jobs, retries, diverged runs) at thousands of
experiments a second. A ``generator(hypothesis, index, attempt)`` says what the run
produced: a ``FakeRun`` (its loss, time, steps, or a failure). Completion model: an
attempt ends at its ``polls``-th poll (default the first one after its start), so all
attempts started together end together, in start order.
"""
from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import thresholds as th
from harness.run.backends.base import Backend, Handle, LaunchSpec, Outcome
from harness.run.backends.local import now_iso


@dataclass(frozen=True)
class FakeRun:
    val_loss: float = th.TARGET_LOSS  # nan: the run diverged
    train_time_ms: float = 98_000.0
    steps: int = 20
    failed: bool = False            # crash before the end: no final result, exit code 1
    polls: int = 1                  # polls until it ends
    gpus: int = 8                   # GPUs named in the log (0: none, like a CPU log)


def speedrun_log(run: FakeRun) -> str:
    """A log with the lines a speedrun script prints (logparse reads it like a real one)."""
    n = run.steps
    lines = ["Running Python 3.11.7", "Running PyTorch 2.5.1 compiled for CUDA 12.4"]
    lines += [f"|   {i}  NVIDIA H100 80GB HBM3          On  |" for i in range(run.gpus)]
    lines += ["=" * 100, f"step:0/{n} val_loss:10.8258 train_time:0ms step_avg:0.03ms"]
    last = n // 2 if run.failed else n
    for k in range(1, last + 1):
        t = run.train_time_ms * k / n
        lines.append(f"step:{k}/{n} train_time:{t!r}ms step_avg:{t / k:.2f}ms")
    if run.failed:
        lines.append("Traceback (most recent call last):\nRuntimeError: CUDA error: simulated")
    else:
        loss = "nan" if math.isnan(run.val_loss) else repr(float(run.val_loss))
        lines.append(f"step:{n}/{n} val_loss:{loss} train_time:{float(run.train_time_ms)!r}ms "
                     f"step_avg:{run.train_time_ms / n:.2f}ms")
        lines.append("peak memory allocated: 123 MiB reserved: 456 MiB")
    return "\n".join(lines) + "\n"


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self, generator: Callable[[str, int, int], FakeRun], max_parallel: int = 1) -> None:
        self.generator = generator
        self.max_parallel = max_parallel
        self.launched: list[tuple[str, int, int]] = []     # (hypothesis, index, attempt) in start order
        self._left: dict[str, int] = {}
        self._runs: dict[str, FakeRun] = {}

    def start(self, spec: LaunchSpec) -> Handle:
        # results/<exp>/<hypothesis>/<index>-<attempt>/
        hyp = spec.run_dir.parent.name
        index, attempt = (int(x) for x in spec.run_dir.name.split("-"))
        run = self.generator(hyp, index, attempt)
        Path(spec.log_path).write_text(speedrun_log(run))
        job = f"mem-{len(self.launched)}"
        self.launched.append((hyp, index, attempt))
        self._left[job] = max(1, run.polls)
        self._runs[job] = run
        return Handle(spec, job, {"started_at": now_iso()})

    def poll(self, handle: Handle) -> Outcome | None:
        self._left[handle.job_id] -= 1
        if self._left[handle.job_id] > 0:
            return None
        run = self._runs[handle.job_id]
        now = now_iso()
        return Outcome(exit_code=1 if run.failed else 0, timed_out=False, started_at=now, finished_at=now,
                       wall_s=0.0, host=socket.gethostname())

    def cancel(self, handle: Handle) -> None:
        self._left[handle.job_id] = 0
