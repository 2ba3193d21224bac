"""The SLURM backend's bookkeeping, without a cluster: job state and reattach.

A job whose submission file cannot be read must be reported, not presumed gone:
redoing its attempt while the job may still run would run it twice.
"""
from __future__ import annotations

import pickle
import types
from pathlib import Path

import pytest

pytest.importorskip("submitit")

import submitit  # noqa: E402

from harness.run.backends import slurm  # noqa: E402
from harness.run.backends.base import LaunchSpec, Outcome  # noqa: E402
from harness.errors import UserError  # noqa: E402


def backend(folder: Path) -> slurm.SlurmBackend:
    # the constructor checks the cluster (sbatch, sinfo, a shared filesystem): not here
    b = object.__new__(slurm.SlurmBackend)
    b.folder = folder.resolve()
    b.status = slurm._Status(5.0)
    b.result_grace_s = 15.0
    return b


def spec(run_dir: Path) -> LaunchSpec:
    return LaunchSpec(run_dir=run_dir, workdir=run_dir, argv=["true"], env={}, log_path=run_dir / "log.txt",
                      timeout_s=None)


def submitted(folder: Path, job_id: str) -> Path:
    path = Path(submitit.SlurmJob(folder=folder, job_id=job_id).paths.submitted_pickle)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_unreadable_submission_file_is_reported_not_presumed_gone(tmp_path):
    b = backend(tmp_path / ".slurm")
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)
    submitted(b.folder, "4242").write_bytes(b"\x80\x04truncated")
    with pytest.raises(UserError) as e:
        b.reattach(run_dir, "4242", spec(run_dir))
    msg = str(e.value)
    assert "4242" in msg and "unreadable" in msg and str(run_dir.resolve()) in msg
    assert "\n" not in msg and "scancel" in msg


def test_readable_submission_is_adopted_with_its_job_state(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))       # no squeue: SLURM's answer stays UNKNOWN
    b = backend(tmp_path / ".slurm")
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)
    task = {"run_dir": str(run_dir.resolve()), "token": "t-123"}
    submitted(b.folder, "77").write_bytes(pickle.dumps(types.SimpleNamespace(args=[task])))
    handle = b.reattach(run_dir, "77", spec(run_dir))
    assert handle is not None and handle.job_id == "77"
    state = slurm.job_state(handle)
    assert isinstance(state, slurm.JobState)
    assert state.token == "t-123" and state.adopted and state.outcome is None
    assert handle.extra["started_at"] == state.started_at
    # another attempt's job (another run folder) is not ours: gone for this attempt
    other = tmp_path / "H0" / "000-2"
    other.mkdir()
    assert b.reattach(other, "77", spec(other)) is None


def test_poll_returns_the_final_outcome_and_cancel_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))       # no scancel either
    b = backend(tmp_path / ".slurm")
    handle = b._handle(spec(tmp_path), "9", "tok")
    state = slurm.job_state(handle)
    done = Outcome(exit_code=0, timed_out=False, started_at="a", finished_at="b", wall_s=1.0, host="n1")
    state.outcome = done
    assert b.poll(handle) is done
    b.cancel(handle)                 # already ended: nothing to cancel
    assert not state.cancelled
    state.outcome = None
    b.cancel(handle)
    b.cancel(handle)
    assert state.cancelled
