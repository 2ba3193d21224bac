"""The one classifier of a run's log, and the one rule for which attempt of a slot counts.

API (stable: the runner, the store and the analysis all call these)::

    from harness.logs.classify import classify, Classification, counted_attempt

    c = classify(summary, expected_steps=None)   # summary: logparse.LogSummary
    c.status        # "finished" | "failed" | "diverged"
    c.reason        # one line: why it failed or diverged ("" when finished)
    c.error_line    # the script's own last error line ("ModuleNotFoundError: No module
                    # named 'x'", "train.py: error: unrecognized arguments: ..."), or ""
    c.record_status # the RunRecord status: "ok" | "failed" | "diverged"
    c.message       # reason and error line together, one line ("" when finished)

    counted_attempt(records)  # the RunRecord that counts for a slot, or None

What the log alone can say. "Never finished" (the runner died), "timeout" (the
harness killed it) and the exit code are the runner's to add: a log cannot know
them. Pure functions: nothing here reads files, prints or warns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from harness.logs.logparse import LogSummary
from harness.records import COMPLETED

FINISHED, FAILED, DIVERGED = "finished", "failed", "diverged"
_RECORD_STATUS = {FINISHED: "ok", FAILED: "failed", DIVERGED: "diverged"}


@dataclass(frozen=True)
class Classification:
    status: str           # finished | failed | diverged
    reason: str = ""      # one line; "" when finished
    error_line: str = ""  # the script's own last error line, "" when it printed none

    @property
    def record_status(self) -> str:
        return _RECORD_STATUS[self.status]

    @property
    def completed(self) -> bool:
        """A final result exists (finished or diverged): the run is data."""
        return self.status != FAILED

    @property
    def message(self) -> str:
        """Reason and the script's error line, one line ("" when finished)."""
        if not self.reason:
            return ""
        if self.error_line and self.error_line not in self.reason:
            return f"{self.reason}; the script said: {self.error_line}"
        return self.reason


def classify(s: LogSummary, expected_steps: int | None = None) -> Classification:
    """Status of one run from its parsed log.

    A run is finished only when its last validation line is at the final step, that
    line is complete (not cut at the end of the file) and carries both figures with
    their units (val_loss bare, train_time in ms or s). ``expected_steps``: the final
    step the experiment asked for; a log that finished elsewhere ran something else.
    A finite time with a NaN/inf loss is "diverged": data against the hypothesis.
    """
    err = s.error_line or s.launcher_error_line or ""
    if s.read_problem:
        return Classification(FAILED, f"the log cannot be read to its end: {s.read_problem}", err)
    if not s.is_log and err:
        return Classification(FAILED, "ended before its first 'step:k/N' line", err)
    if not s.finished:
        return Classification(FAILED, s.problem(), err)
    if expected_steps is not None and s.total_steps != expected_steps:
        return Classification(FAILED, f"final step {s.total_steps} differs from the expected "
                                      f"{expected_steps}; fix the hypothesis's steps or its args", err)
    line = f"the final validation line (step {s.final_step})"
    if s.final_problem:
        return Classification(FAILED, f"{line} does not count: {s.final_problem}", err)
    if s.train_time_ms is None:
        return Classification(FAILED, f"{line} has no train_time", err)
    if not math.isfinite(s.train_time_ms):
        return Classification(FAILED, f"{line} has train_time {s.train_time_ms}", err)
    if not math.isfinite(s.val_loss):
        return Classification(DIVERGED, f"val_loss {s.val_loss} at step {s.final_step}", err)
    return Classification(FINISHED)


def counted_attempt(records: Iterable) -> object | None:
    """The attempt that counts for a slot: the FIRST completed one (ok or diverged).

    Why the first: the runner stops retrying a slot once an attempt completes, so a
    second completed attempt exists only when a slot was run again by hand (or a
    reattached job finished late). The first is the one every decision (early stop,
    retries) was made on, and taking a later one would let a slot be re-run until it
    looks good. ``records``: RunRecords of one slot, any order (sorted by attempt here).
    """
    done = [r for r in records if r.status in COMPLETED]
    return min(done, key=lambda r: r.attempt) if done else None
