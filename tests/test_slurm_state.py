"""The SLURM backend's bookkeeping, without a cluster: job state and reattach.

A job whose submission file cannot be read must be reported, not presumed gone:
redoing its attempt while the job may still run would run it twice.
"""
from __future__ import annotations

import pickle
import re
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
    monkeypatch.setenv("PATH", str(fake_slurm(tmp_path)))   # a scancel that succeeds
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


# --------------------------------------------------------------------------------------------
# SLURM's answers, without a cluster: squeue and sacct are small scripts on PATH.

def fake_slurm(tmp_path: Path, squeue: str = "exit 0", sacct: str = "exit 0", scancel: str = "exit 0") -> Path:
    """A PATH folder whose squeue/sacct/scancel run the given shell bodies."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("squeue", squeue), ("sacct", sacct), ("scancel", scancel)):
        f = bin_dir / name
        f.write_text(f"#!/bin/sh\n{body}\n")
        f.chmod(0o755)
    return bin_dir


NO_ACCOUNTING = "echo 'Slurm accounting storage is disabled' >&2; exit 1"   # sacct on the CI cluster
DBD_DOWN = "echo 'sacct: error: Problem talking to the database: Connection refused' >&2; exit 1"


def test_a_job_that_left_squeue_on_a_cluster_without_accounting_is_gone_and_reported_lost(tmp_path, monkeypatch):
    """Why the backend asks squeue itself instead of submitit's SlurmInfoWatcher.

    Without accounting (the CI cluster: AccountingStorageType=accounting_storage/none) sacct
    fails. Once squeue no longer lists a job (MinJobAge after its end), our status calls it
    GONE and poll reports the attempt lost, so the runner retries it. submitit's watcher asks
    only sacct, logs the failure and says UNKNOWN, for ever: the runner would wait for ever.
    """
    monkeypatch.setenv("PATH", str(fake_slurm(tmp_path, squeue="exit 0", sacct=NO_ACCOUNTING)))
    b = backend(tmp_path / ".slurm")
    b.result_grace_s = 0.0
    handle = b._handle(spec(tmp_path), "31", "tok")
    assert b.status.get("31", fresh=True)["state"] == slurm.GONE
    assert b.status.sacct_works is False
    assert b.poll(handle) is None            # first sight of the end: a slow filesystem gets its grace
    out = b.poll(handle)
    assert out is not None and out.exit_code is None
    assert "SLURM job 31 is no longer known to SLURM" in out.message and "without reporting a result" in out.message

    # the behaviour that decided it: submitit's own watcher cannot tell this job from a running one
    from submitit.slurm.slurm import SlurmInfoWatcher
    watcher = SlurmInfoWatcher(delay_s=0)
    assert watcher.get_state("31", mode="force") == "UNKNOWN"
    assert not watcher.is_done("31", mode="force")


def test_sacct_that_fails_for_now_leaves_a_job_unknown_not_gone(tmp_path, monkeypatch):
    # accounting on, slurmdbd restarting: squeue has dropped the job, sacct cannot say; the
    # job must not be taken for gone (its attempt would be redone while it may still run)
    monkeypatch.setenv("PATH", str(fake_slurm(tmp_path, squeue="exit 0", sacct=DBD_DOWN)))
    b = backend(tmp_path / ".slurm")
    b.result_grace_s = 0.0
    handle = b._handle(spec(tmp_path), "32", "tok")
    assert b.status.get("32", fresh=True)["state"] == "UNKNOWN"
    assert b.status.sacct_works is not False and "Problem talking to the database" in b.status.error
    assert b.poll(handle) is None and b.poll(handle) is None
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)
    task = {"run_dir": str(run_dir.resolve()), "token": "t-32"}
    submitted(b.folder, "32").write_bytes(pickle.dumps(types.SimpleNamespace(args=[task])))
    assert b.reattach(run_dir, "32", spec(run_dir)) is not None   # adopted, not redone


def test_controller_that_does_not_answer_keeps_the_last_state(tmp_path, monkeypatch):
    squeue = tmp_path / "squeue-answer"
    squeue.write_text("33|RUNNING|node1|None|now\n")
    monkeypatch.setenv("PATH", str(fake_slurm(tmp_path, squeue=f"/bin/cat {squeue}", sacct=NO_ACCOUNTING)))
    b = backend(tmp_path / ".slurm")
    assert b.status.get("33", fresh=True)["state"] == "RUNNING"
    (tmp_path / "bin" / "squeue").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1\n")
    assert b.status.get("33", fresh=True)["state"] == "RUNNING"
    assert "Unable to contact slurm controller" in b.status.error


def test_reattach_without_a_job_id_when_squeue_fails_is_reported_not_presumed_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_slurm(
        tmp_path, squeue="echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1")))
    b = backend(tmp_path / ".slurm")
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)
    with pytest.raises(UserError) as e:
        b.reattach(run_dir, "", spec(run_dir))
    msg = str(e.value)
    assert str(run_dir.resolve()) in msg and "Unable to contact slurm controller" in msg and "\n" not in msg


def test_unreadable_result_file_is_reported_and_its_job_not_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_slurm(tmp_path, squeue="exit 0", sacct=NO_ACCOUNTING)))
    b = backend(tmp_path / ".slurm")
    b.result_grace_s = 0.0
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)
    task = {"run_dir": str(run_dir.resolve()), "token": "t-34"}
    submitted(b.folder, "34").write_bytes(pickle.dumps(types.SimpleNamespace(args=[task])))
    result = Path(submitit.SlurmJob(folder=b.folder, job_id="34").paths.result_pickle)
    result.write_bytes(b"\x80\x04not a whole pickle")
    # the job is gone from SLURM, but it ended: an attempt with a result file is not redone
    handle = b.reattach(run_dir, "34", spec(run_dir))
    assert handle is not None
    out = None
    for _ in range(3):
        out = out or b.poll(handle)
    assert out is not None and out.exit_code is None
    assert "result file is unreadable" in out.message and str(result) in out.message, out.message


def test_only_a_refused_submission_is_a_user_error(tmp_path, monkeypatch):
    from submitit.core.utils import FailedJobError
    b = backend(tmp_path / ".slurm")
    b.extra, b.partition, b.cpus_per_task, b.gpus_per_node, b.partition_has_gpus = {}, None, None, 0, False
    b.time_min, b.kill_grace_s, b._pythonpath = None, 1.0, str(tmp_path)
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)

    def refused(self, fn, *args):
        raise FailedJobError("sbatch: error: Batch job submission failed: Invalid account")

    monkeypatch.setattr(submitit.SlurmExecutor, "submit", refused)
    # submitit's executor looks for srun first; this test needs no cluster, so none is asked
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    with pytest.raises(UserError, match="sbatch refused the job for .*Invalid account"):
        b.start(spec(run_dir))

    def bug(self, fn, *args):
        raise TypeError("submit() got an unexpected keyword argument")

    monkeypatch.setattr(submitit.SlurmExecutor, "submit", bug)
    with pytest.raises(TypeError):  # a bug in the harness keeps its traceback
        b.start(spec(run_dir))


def test_a_cancel_that_slurm_refused_is_noted_and_tried_again(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_slurm(
        tmp_path, scancel="echo 'scancel: error: Kill job error on job id 35: Unable to contact slurm controller' >&2; "
                          "exit 1")))
    monkeypatch.setattr(slurm.time, "sleep", lambda s: None)
    b = backend(tmp_path / ".slurm")
    run_dir = tmp_path / "H0" / "000-1"
    run_dir.mkdir(parents=True)
    handle = b._handle(spec(run_dir), "35", "tok")
    b.cancel(handle)
    state = slurm.job_state(handle)
    assert not state.cancelled and "Unable to contact slurm controller" in state.cancel_error
    log = (run_dir / "log.txt").read_text()
    assert "scancel 35 failed" in log and "may still run" in log
    fake_slurm(tmp_path, scancel="exit 0")     # the controller is back: the next cancel goes through
    b.cancel(handle)
    assert state.cancelled


def test_a_requeued_job_ends_its_attempt_at_once_named_requeued_and_is_cancelled(tmp_path, monkeypatch):
    """`scontrol requeue` (of a job an admin made requeueable): SLURM stops the command, which
    reports the signal, and puts the job back in the queue (PENDING, BeginTime). That attempt
    is over: it is a failure named REQUEUED at once (not after result_grace_s, as a job still
    COMPLETING), and the job is cancelled so that it never runs a second time."""
    cancelled = tmp_path / "cancelled"
    monkeypatch.setenv("PATH", str(fake_slurm(tmp_path, squeue="echo '36|PENDING||BeginTime|later'",
                                              sacct=NO_ACCOUNTING, scancel=f"echo \"$@\" >> {cancelled}")))
    b = backend(tmp_path / ".slurm")
    b.result_grace_s = 3600.0      # a wait would show: poll must not wait for the grace
    run_dir = tmp_path / "H1" / "001-1"
    run_dir.mkdir(parents=True)
    handle = b._handle(spec(run_dir), "36", "t-36")
    result = Path(slurm.job_state(handle).result)
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(pickle.dumps(("success", {
        "token": "t-36", "host": "node2", "started_at": "a", "finished_at": "b", "wall_s": 2.0,
        "exit_code": -15, "timed_out": False, "slurm_signal": "SIGTERM", "error": None})))
    out = b.poll(handle)
    assert out is not None and out.exit_code is None and not out.timed_out
    assert "SLURM job 36 REQUEUED (SIGTERM from SLURM" in out.message, out.message
    assert "requeued job was cancelled" in out.message and out.host == "node2"
    assert cancelled.read_text().split() == ["36"]
    assert b.poll(handle) is out       # final: asked once, cancelled once
    assert cancelled.read_text().split() == ["36"]


def test_status_lists_nodes_jobs_pending_reasons_and_waiting_pairs(tmp_path, monkeypatch):
    """`harness status` on a paired cluster experiment, from records, launch files and squeue's
    answer (a fake squeue here; tests/test_slurm.py reads it on the real cluster)."""
    from harness.cli import status
    from harness.data.store import Slot
    from harness.records import RunRecord

    def rec(hyp, index, host, job):
        return RunRecord(run_id=f"{index:03d}-1", hypothesis=hyp, index=index, seed=index, status="ok",
                         host=host, backend="slurm", job_id=job, val_loss=3.0, train_time_s=1.0)

    slots = {("H0", 0): Slot("H0", 0, [rec("H0", 0, "node1", "200")]),
             ("H1", 0): Slot("H1", 0, [], [tmp_path / "H1" / "000-1"]),
             ("H1", 1): Slot("H1", 1, [rec("H1", 1, "node2", "201")]),
             ("H0", 1): Slot("H0", 1, [], [tmp_path / "H0" / "001-1"])}
    base = {"backend": "slurm", "pairing": "node", "attempt": 1}
    attempts = [
        {**base, "hypothesis": "H0", "index": 0, "run_id": "000-1", "status": "ok", "node": "node1",
         "job_id": "200", "pinned": ""},
        {**base, "hypothesis": "H1", "index": 0, "run_id": "000-1", "status": "unfinished", "node": "",
         "job_id": "206", "pinned": "node1"},
        {**base, "hypothesis": "H1", "index": 1, "run_id": "001-1", "status": "ok", "node": "node2",
         "job_id": "201", "pinned": ""},
        {**base, "hypothesis": "H0", "index": 1, "run_id": "001-1", "status": "unfinished", "node": "",
         "job_id": "207", "pinned": "node2"}]
    monkeypatch.setenv("PATH", str(fake_slurm(
        tmp_path, squeue="echo '206|PENDING||Resources|N/A'; echo '207|RUNNING|node2|None|now'",
        sacct=NO_ACCOUNTING)))
    states, why = slurm.ask_states(["206", "207"])
    assert why == "" and states["206"]["reason"] == "Resources"
    spec_ = {"name": "x", "runs": 2, "hypotheses": [{"name": "H0"}, {"name": "H1"}]}
    text = "\n".join(status.cluster_lines(spec_, slots, attempts, states, why))
    assert re.search(r"H0\s+#0\s+000-1\s+ok\s+node1\s+job 200\n", text), text
    assert re.search(r"H1\s+#0\s+000-1\s+unfinished\s+-\s+job 206  PENDING \(Resources\), pinned to node1", text)
    assert re.search(r"H0\s+#1\s+001-1\s+unfinished\s+node2\s+job 207  RUNNING, pinned to node2", text)
    assert "#0: H0 done on node1; waiting: H1 job 206 PENDING (Resources), pinned to node1" in text
    assert "#1: H1 done on node2; waiting: H0 job 207 RUNNING, pinned to node2" in text

    # SLURM cannot be asked: the attempts are still listed, with the reason
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    states, why = slurm.ask_states(["206"])
    assert states == {} and "squeue" in why
    text = "\n".join(status.cluster_lines(spec_, slots, attempts, states, why))
    assert "(SLURM could not be asked: squeue" in text and "job 206" in text


@pytest.mark.parametrize("args, says", [
    (["up", "--nodes", "0"], "--nodes '0': expected a number of nodes from 1 to 99"),
    (["up", "--nodes", "three"], "--nodes 'three': expected a number of nodes"),
    (["up", "--nodes"], "--nodes needs a number of nodes"),
    (["up", "--node", "3"], "usage: "),
    (["kill-node"], "usage: "),
])
def test_cluster_script_refuses_bad_arguments_in_one_line_before_touching_anything(tmp_path, args, says):
    import subprocess
    script = Path(__file__).resolve().parent.parent / "scripts" / "slurm-cluster.sh"
    env = {"PATH": "/usr/bin:/bin", "HARNESS_SLURM_DIR": str(tmp_path / "state")}
    p = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 2 and p.stdout == "", p
    assert says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "state").exists()     # nothing created, nothing started
