"""Preflight: each distinct command of an experiment started once and stopped at its first step line.

A flag the trainer does not take, a layout the model cannot hold or a missing file ends
a run before its first step, after minutes of start-up on a full node. Started once per
distinct command before the runs, such an error costs one start-up instead of one per
run. The attempt is stopped as soon as its log shows a step line (the start-up worked);
one that ends before that is classified like a run (``record.Recorder``) and judged by
the retry policy: a failure a retry cannot fix breaks the arms that share the command.

Its folder, ``preflight/<arm>/`` (``<arm>.2``, ... when an earlier preflight was cut
short), keeps the log and what the script wrote; it holds no ``result.json`` and is
never counted as a run. Nothing here prints: the runner emits what it found.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.data.spec import Hypothesis
from harness.data.store import Store
from harness.records import RunRecord
from harness.run import attempt as attempts
from harness.run import retry
from harness.run.backends.base import Backend
from harness.run.record import Recorder
from harness.run.tail import Tail

POLL_S = 0.05
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class Check:
    """What the preflight of one command found."""

    arms: list[str]                 # the arms that run this command
    verdict: str                    # passed | failed | skipped
    why: str                        # one line
    folder: Path | None = None
    wall_s: float = 0.0
    record: RunRecord | None = None  # failed: the attempt as a record would be (not stored)
    broken: bool = False            # failed in a way a retry cannot fix: the arms cannot run


def commands(hypotheses: list[Hypothesis], env_of: Callable[[Hypothesis], dict]) -> list[list[Hypothesis]]:
    """The arms grouped by the command they start (script content, argv, env but SEED)."""
    groups: dict[tuple, list[Hypothesis]] = {}
    for hyp in hypotheses:
        env = {k: v for k, v in env_of(hyp).items() if k != "SEED"}
        key = (hyp.script_sha256, hyp.script, tuple(hyp.argv(hyp.script)), tuple(sorted(env.items())))
        groups.setdefault(key, []).append(hyp)
    return list(groups.values())


def check(store: Store, backend: Backend, recorder: Recorder, hyps: list[Hypothesis], base: Path,
          env: dict[str, str], timeout: float | None) -> Check:
    """Start the command of ``hyps`` once; stop it at its first step line."""
    hyp = hyps[0]
    arms = [h.name for h in hyps]
    spec = attempts.prepare_preflight(store, hyp, base, env, timeout)
    t0 = time.monotonic()
    handle = backend.start(spec)
    tail = Tail(spec.log_path)
    outcome = None
    try:
        while outcome is None:
            time.sleep(POLL_S)
            tail.read()
            if tail.summary.step_lines:
                break
            outcome = backend.poll(handle)
        if outcome is None:
            backend.cancel(handle)
    except BaseException:
        backend.cancel(handle)      # Ctrl-C, a dying runner: its tree ends with it
        raise
    tail.read()
    wall = time.monotonic() - t0
    summary, log_name = recorder.logs(spec.run_dir)     # tidies the folder too
    log = spec.run_dir / log_name
    if tail.summary.step_lines or summary.step_lines:
        return Check(arms, PASSED, f"reached its first step line; stopped (log: {log})", spec.run_dir, wall)
    if outcome.timed_out:
        return Check(arms, SKIPPED, f"cannot be stopped early: no step line within the {timeout:g} s "
                                    f"timeout (log: {log})", spec.run_dir, wall)
    rec = recorder.build(hyp, 0, 0, 0, spec.run_dir, summary, log_name, outcome, spec)
    rec.run_id = "preflight"
    if rec.status != "failed" or (outcome.exit_code == 0 and not rec.error):
        return Check(arms, SKIPPED, f"cannot be stopped early: it exited with code {outcome.exit_code} "
                                    f"before any step line (log: {log})", spec.run_dir, wall)
    rec.retryable = retry.retryable(rec.error, False, outcome, None)
    if rec.retryable:
        return Check(arms, FAILED, f"{rec.message}; this may pass: the runs go ahead", spec.run_dir,
                     wall, rec)
    return Check(arms, FAILED, rec.message, spec.run_dir, wall, rec, broken=True)
