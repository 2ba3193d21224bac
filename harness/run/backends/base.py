"""The interface every backend implements: start one attempt, poll it, cancel it.

A backend only runs processes. It never parses logs or computes statistics: the
runner turns a finished attempt (an ``Outcome`` plus the ``log.txt`` it wrote)
into a ``RunRecord``.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LaunchSpec:
    """One attempt of one run, fully resolved by the runner."""

    run_dir: Path            # results/<exp>/<hyp>/<run-id>/ (exists before start)
    workdir: Path            # cwd of the process
    argv: list[str]          # the whole command: torchrun ... script args
    env: dict[str, str]      # variables to set on top of the inherited environment
    log_path: Path           # stdout and stderr both stream into this file
    timeout_s: float | None  # wall-clock limit; None means no limit
    nproc: int = 1           # processes (GPUs) the command uses on its node
    node: str | None = None  # run on this node (the partner's, in a paired design); None: any
    worker: str | None = None  # the arm whose warm worker may run it (run/workers.py); None: a fresh process


@dataclass(frozen=True)
class Outcome:
    """How an attempt's process ended (not whether the run succeeded)."""

    exit_code: int | None    # None when it never exited normally (killed, lost)
    timed_out: bool
    started_at: str          # ISO-8601 UTC
    finished_at: str
    wall_s: float
    host: str
    message: str = ""        # why, when the backend knows (preempted, cancelled...)


@dataclass
class Handle:
    """A started attempt. ``job_id`` is what a later runner needs to find it again."""

    spec: LaunchSpec
    job_id: str
    extra: dict = field(default_factory=dict)


class Backend(abc.ABC):
    name: str = "?"
    max_parallel: int = 1
    may_span_nodes: bool = False   # runs may land on different machines (pairing matters)
    can_preflight: bool = False    # a start can be watched and stopped at its first step line

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> Handle:
        """Start the attempt without waiting for it."""

    @abc.abstractmethod
    def poll(self, handle: Handle) -> Outcome | None:
        """The outcome once the attempt has ended, else None."""

    @abc.abstractmethod
    def cancel(self, handle: Handle) -> None:
        """Stop the attempt (idempotent)."""

    def elapsed(self, handle: Handle, t0: float) -> float:
        """Seconds since the attempt was launched (at ``time.monotonic()`` ``t0``), by this
        backend's clock: when its log's lines arrived (its phases, ``harness.run.phases``)."""
        return time.monotonic() - t0

    def reattach(self, run_dir: Path, job_id: str, spec: LaunchSpec) -> Handle | None:
        """Find an attempt that a previous, killed runner started.

        Returns a handle when the job still exists (queued, running, or finished
        with a known outcome), None when it is gone and must be redone. Local
        processes die with their runner, so the default is None.
        """
        return None

    def node_usable(self, node: str) -> bool:
        """Whether a job pinned to ``node`` can run there now (not down or drained)."""
        return True

    def close(self) -> None:
        """Release whatever the backend holds (called once, at the end)."""
