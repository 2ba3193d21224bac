"""Record building: an ended attempt (its ``Outcome`` and its logs) becomes a ``RunRecord``.

The status comes from the one classifier of a log (``harness.logs.classify``), so the
runner and the analysis read every log the same way; the figures come from the most
complete of the attempt's logs. Where the record is stored is the store's business.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from harness.data.spec import Experiment, Hypothesis
from harness.data.store import read_probe
from harness.logs.classify import classify
from harness.logs.logparse import LogSummary, parse_file
from harness.records import RunRecord
from harness.run import attempt as attempts
from harness.run import deaths, retry
from harness.run import phases as phasing
from harness.run.backends.base import LaunchSpec, Outcome
from harness.run.tail import Arrivals


class Recorder:
    """Builds the records of one experiment's attempts (what it learns once: commit, GPUs)."""

    def __init__(self, exp: Experiment, backend_name: str, base: Path) -> None:
        self.exp = exp
        self.backend_name = backend_name
        self.base = base
        self._git = _git_commit(base)
        self._host_gpus: dict | None = None

    def finished(self, hyp: Hypothesis, index: int, attempt: int, order: int, run_dir: Path,
                 outcome: Outcome, spec: LaunchSpec, job_id: str | None,
                 earlier: list[RunRecord], arrivals: Arrivals | None = None,
                 seen_s: float | None = None, clock: Callable[[], float] | None = None) -> RunRecord:
        """The record of an attempt whose process ended; ``earlier``: the slot's records before it;
        ``arrivals``, ``seen_s`` (its exit seen), ``clock`` (now): seconds since its launch by
        the runner's clock, for its phases (``harness.run.phases``)."""
        summary, log_name = self.logs(run_dir)
        rec = self.build(hyp, index, attempt, order, run_dir, summary, log_name, outcome, spec, job_id,
                         arrivals, seen_s, clock)
        if rec.status == "failed":
            previous = next((r for r in reversed(earlier) if r.status == "failed"), None)
            rec.retryable = retry.retryable(rec.error, summary.step_lines > 0, outcome,
                                            previous.error if previous else None)
        return rec

    def logs(self, run_dir: Path) -> tuple[LogSummary, str]:
        """Tidy the folder; parse the most complete of the script's logs and log.txt."""
        best: tuple[LogSummary, str] | None = None
        best_rank: tuple = ()
        for name in attempts.tidy(run_dir, self.base):
            try:
                s = parse_file(run_dir / name)
            except OSError:
                continue
            # prefer a log with a result; among equals, the script's own (it has nvidia-smi)
            rank = (classify(s).completed, s.step_lines, name != "log.txt")
            if best is None or rank > best_rank:
                best, best_rank = (s, name), rank
        return best if best else (LogSummary(path=str(run_dir / "log.txt")), "log.txt")

    def build(self, hyp: Hypothesis, index: int, attempt: int, order: int, run_dir: Path,
              s: LogSummary, log_name: str, outcome: Outcome, spec: LaunchSpec | None,
              job_id: str | None = None, arrivals: Arrivals | None = None,
              seen_s: float | None = None, clock: Callable[[], float] | None = None) -> RunRecord:
        log_path = run_dir / log_name
        verdict = classify(s, hyp.steps)   # the one classifier: analysis reads logs the same way
        error = ""
        if outcome.timed_out:
            status, why = "timeout", outcome.message or "timed out"
        elif verdict.completed:
            status = verdict.record_status
            why = "" if outcome.exit_code in (0, None) else f"finished, then exited with code {outcome.exit_code}"
        else:
            status = "failed"
            # the script's own words name the cause (a typo in args, a missing file); its
            # traceback is on stderr, so in log.txt when the figures came from its own log
            error = verdict.error_line or (_error_line(run_dir / "log.txt") if log_name != "log.txt" else "")
            why = verdict.message
            if error and error not in why:
                why = f"{why}; the script said: {error}"
            # what ended it first, in words: a CUDA OOM with its figure, a signal by name
            oom = deaths.cuda_oom(error)
            if oom:
                why = f"{oom}; {why}"
            if outcome.exit_code not in (0, None):
                why = f"{deaths.signal_phrase(outcome.exit_code) or f'exit code {outcome.exit_code}'}; {why}"
            if outcome.message:
                why = f"{outcome.message}; {why}"
            if deaths.scheduler_oom(outcome.message):
                why = f"{deaths.scheduler_oom(outcome.message)}; {why}"
        snapshot = next(run_dir.glob("snapshot-*"), None)
        gpus = phasing.gpus_of(hyp)
        # wall 0: the backend never saw it run (an attempt found after its runner died)
        wall = outcome.wall_s if outcome.wall_s > 0 else None
        phases = phasing.split(s, arrivals, wall, seen_s, clock() if clock is not None else None)
        return RunRecord(
            run_id=run_dir.name, hypothesis=hyp.name, index=index, seed=self.exp.seed_for(index),
            status=status, attempt=attempt, order=order, exit_code=outcome.exit_code,
            final_step=s.final_step, expected_steps=hyp.steps if hyp.steps is not None else s.total_steps,
            val_loss=s.val_loss, train_time_s=s.train_time_s, step_avg_ms=s.step_avg_ms,
            peak_mem_mib=s.peak_mem_mib, wall_s=round(outcome.wall_s, 3), started_at=outcome.started_at,
            finished_at=outcome.finished_at, host=outcome.host, gpus=self._gpus(s),
            torch_version=s.torch_version, cuda_version=s.cuda_version,
            script_sha256=_sha256(snapshot) if snapshot else hyp.script_sha256, git_commit=self._git,
            command=list(spec.argv) if spec else [], backend=self.backend_name,
            job_id=job_id, message=f"{why} (log: {log_path})" if why else "",
            log=log_name, val_curve=[[int(a), b] for a, b in s.val_curve], probe_s=read_probe(run_dir), error=error,
            gpu_s=None if wall is None else round(wall * gpus, 3), gpus_used=gpus, phases=phases)

    def _gpus(self, s: LogSummary) -> dict:
        if s.gpu_names:
            return {"names": list(s.gpu_names), "count": len(s.gpu_names)}
        if self._host_gpus is None:
            self._host_gpus = host_gpus()
        return self._host_gpus


def _error_line(log: Path) -> str:
    try:
        return classify(parse_file(log)).error_line
    except OSError:
        return ""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit(base: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=base, capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=base, timeout=30).returncode
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host_gpus() -> dict:
    """GPUs of this host when the log does not list them (nvidia-smi, if present)."""
    if shutil.which("nvidia-smi") is None:
        return {"names": [], "count": 0}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    except (OSError, subprocess.SubprocessError):
        names = []
    return {"names": names, "count": len(names)}
