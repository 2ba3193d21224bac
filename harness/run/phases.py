"""An attempt's time split into phases, for any script: from when its log's lines arrived.

The runner tails every attempt's log (``harness.run.tail``) and keeps when the first
line, the first step line, the first line at the last step and the latest line came, in
seconds from the launch. With the log's own ``train_time`` (and the project trainer's
``warmup:`` line where it prints one) that splits the attempt's wall time into:

    to_first_step_s      launch to the first step line: start-up, compile, warm-up
                         (to_first_output_s and warmup_s are parts of it)
    between_steps_s      the steps' wall time not counted in train_time (validation
                         during training, logging)
    train_s              the log's train_time (of the last step line when it never finished)
    after_last_step_s    from the end of the steps to the process's exit: final
                         validation, saving, the launcher's teardown
    teardown_s           from the runner seeing the exit to the record (tidying the folder,
                         reading the logs, writing result.json)

so that to_first_step_s + between_steps_s + train_s + after_last_step_s = wall_s (to the
poll's resolution). What is not known is None: an attempt that printed no step line has
no first step, one found again after its runner died has no arrival times at all.
"""
from __future__ import annotations

import math

from harness.data.spec import Hypothesis
from harness.logs.logparse import LogSummary
from harness.records import PHASE_KEYS
from harness.run.tail import Arrivals


def gpus_of(hyp: Hypothesis) -> int:
    """The GPUs one attempt holds: nproc_per_node on its one node (runs span one node)."""
    return hyp.nproc_per_node


def trained_s(s: LogSummary) -> float | None:
    """The timed training an attempt did: the final train_time, else its last step line's."""
    ms = s.train_time_ms if s.finished else (s.last_train_time_ms if s.last_train_time_ms is not None
                                             else s.train_time_ms)
    return None if ms is None or not math.isfinite(ms) else ms / 1000.0


def split(s: LogSummary, arrivals: Arrivals | None, wall_s: float | None,
          seen_s: float | None = None, record_s: float | None = None) -> dict:
    """The phases (``records.PHASE_KEYS``) of an attempt.

    ``wall_s``: launch to exit by the backend's account; ``arrivals``, ``seen_s`` (when the
    runner saw the exit) and ``record_s`` (its record made) by the runner's clock, which
    starts at the submission: the difference ``seen_s - wall_s`` (a SLURM job's time in
    the queue) is taken off the arrivals. None: not known.
    """
    out: dict = {k: None for k in PHASE_KEYS}
    out["train_s"] = _r(trained_s(s))
    if s.warmup_ms is not None:
        out["warmup_s"] = _r(s.warmup_ms / 1000.0)
    if arrivals is None or not wall_s:
        return out

    queued = max(0.0, seen_s - wall_s) if seen_s is not None else 0.0

    def at(t: float | None) -> float | None:   # a line read after the exit arrived by then
        return None if t is None else min(max(t - queued, 0.0), wall_s)

    first_out, first, last = at(arrivals.first_output), at(arrivals.first_step), at(arrivals.last_step)
    out["to_first_output_s"] = _r(first_out)
    out["to_first_step_s"] = _r(first)
    train = trained_s(s)
    if first is not None and last is not None and train is not None:
        out["between_steps_s"] = _r(max(0.0, last - first - train))
    if last is not None:
        out["after_last_step_s"] = _r(wall_s - last)
    if record_s is not None:
        out["teardown_s"] = _r(max(0.0, record_s - (seen_s if seen_s is not None else wall_s)))
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
