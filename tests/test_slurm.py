"""The slurm backend against a real SLURM cluster of three nodes on this machine.

The session fixture brings the cluster up with ``scripts/slurm-cluster.sh up --nodes 3``
(it installs the Debian packages when missing) and takes it down again if it
started it; test sessions take turns on the cluster (a file lock). When SLURM cannot
start, every test here FAILS with the script's reason: these tests are never skipped.

Partitions (the script's): ``debug`` (default, every node, jobs share a node), ``one`` (the
first node only: the tests of one-node behaviour), ``nodes`` (every node, one job per node,
as on a GPU cluster: the multi-node tests) and ``urgent`` (preempts the others).
"""
from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.run.backends.base import LaunchSpec, Outcome

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "scripts" / "slurm-cluster.sh"
PY = sys.executable
NODES = 3


def cluster_nodes(partition: str = "debug") -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N"], capture_output=True, text=True)
    return sorted(set(out.stdout.split()))


@pytest.fixture(scope="session")
def slurm_cluster():
    # One test session at a time on the one-node cluster (the tests count running jobs and
    # one preempts every job of the node): a second session waits here.
    users = open(Path(tempfile.gettempdir()) / "harness-slurm-tests.lock", "a+")
    deadline = time.monotonic() + 900
    while True:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail("another test session has held the SLURM test cluster for 15 minutes "
                            f"({users.name})", pytrace=False)
            time.sleep(1)
    was_up = subprocess.run([str(CLUSTER), "status"], capture_output=True, text=True).returncode == 0
    if was_up and len(cluster_nodes()) != NODES:
        was_up = False   # up with another number of nodes: restarted with three (and stopped after)
    if not was_up:
        try:
            p = subprocess.run([str(CLUSTER), "up", "--nodes", str(NODES)], capture_output=True, text=True,
                               timeout=900)
        except subprocess.TimeoutExpired:
            pytest.fail("SLURM cluster did not come up: scripts/slurm-cluster.sh up ran for 15 minutes",
                        pytrace=False)
        if p.returncode != 0:
            lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            pytest.fail(f"SLURM cluster did not come up: {lines[-1] if lines else 'no output'}",
                        pytrace=False)
    yield
    if not was_up:
        subprocess.run([str(CLUSTER), "down"], capture_output=True, text=True, timeout=120)
    users.close()


def make_backend(tmp_path, **kw):
    # the shared-filesystem check job (a few seconds each) runs where it is the point: the
    # first test, the refused check and every `harness run` of the end-to-end tests
    from harness.run.backends.slurm import SlurmBackend
    opts = dict(max_parallel=2, folder=tmp_path / "results" / ".slurm", status_interval_s=0.5,
                result_grace_s=3.0, kill_grace_s=3.0, check_filesystem=False)
    opts.update(kw)
    return SlurmBackend(**opts)


def make_spec(tmp_path, name, code, timeout=None, env=None) -> LaunchSpec:
    run_dir = tmp_path / "results" / "exp" / name
    run_dir.mkdir(parents=True)
    work = run_dir / "work"
    work.mkdir()
    return LaunchSpec(run_dir=run_dir, workdir=work, argv=[PY, "-c", code],
                      env={"PYTHONUNBUFFERED": "1", "RUN_NAME": name, **(env or {})},
                      log_path=run_dir / "log.txt", timeout_s=timeout)


def wait_all(backend, handles, limit_s=120.0) -> list[Outcome]:
    out: dict[int, Outcome] = {}
    deadline = time.monotonic() + limit_s
    while len(out) < len(handles):
        assert time.monotonic() < deadline, f"jobs {[h.job_id for h in handles]} did not end in {limit_s}s"
        for i, h in enumerate(handles):
            if i not in out:
                o = backend.poll(h)
                if o is not None:
                    out[i] = o
        time.sleep(0.05)
    return [out[i] for i in range(len(handles))]


def wait_for_text(path: Path, text: str, limit_s=60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


def job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"],
                         capture_output=True, text=True).stdout.split()
    return out[0] if out else "GONE"


STAMPED = ("import os, time, socket\n"
           "print('start', time.time(), os.environ['RUN_NAME'], os.getcwd(), socket.gethostname())\n"
           "time.sleep({sleep})\n"
           "print('end', time.time())\n")


def stamps(log: Path) -> tuple[float, float]:
    lines = log.read_text().splitlines()
    start = next(float(ln.split()[1]) for ln in lines if ln.startswith("start "))
    end = next(float(ln.split()[1]) for ln in lines if ln.startswith("end "))
    return start, end


def test_two_jobs_run_at_once_and_stream_their_logs(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path, check_filesystem=True)
    assert backend.name == "slurm" and backend.max_parallel == 2
    assert not list((tmp_path / "results" / ".slurm" / "fs-check").iterdir())  # the check cleans up
    specs = [make_spec(tmp_path, f"run-{i}", STAMPED.format(sleep=4)) for i in range(2)]
    handles = [backend.start(s) for s in specs]
    assert all(h.job_id.isdigit() for h in handles) and handles[0].job_id != handles[1].job_id
    # the log streams while the job runs: 'start' is there before the job has ended
    wait_for_text(specs[0].log_path, "start ")
    assert backend.poll(handles[0]) is None
    outcomes = wait_all(backend, handles)
    for spec, o in zip(specs, outcomes):
        assert o.exit_code == 0 and not o.timed_out and o.message == "", o
        assert o.host and o.wall_s >= 4 and o.started_at < o.finished_at
        text = spec.log_path.read_text()
        assert f"{spec.env['RUN_NAME']} {spec.workdir}" in text, text  # env and cwd of the spec
    (s0, e0), (s1, e1) = (stamps(s.log_path) for s in specs)
    assert max(s0, s1) < min(e0, e1), f"jobs did not overlap: {s0:.1f}-{e0:.1f} vs {s1:.1f}-{e1:.1f}"
    backend.close()


def test_exit_code_and_timeout(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path)
    fail = make_spec(tmp_path, "fail", "import sys; print('bad', flush=True); sys.exit(3)")
    slow = make_spec(tmp_path, "slow", "import time; print('sleeping', flush=True); time.sleep(120)",
                     timeout=3)
    t0 = time.monotonic()
    o_fail, o_slow = wait_all(backend, [backend.start(fail), backend.start(slow)])
    assert o_fail.exit_code == 3 and not o_fail.timed_out
    assert o_slow.timed_out and o_slow.exit_code != 0 and "3 s timeout" in o_slow.message, o_slow
    assert 3 <= o_slow.wall_s < 15 and time.monotonic() - t0 < 40
    assert "killed after the 3 s timeout" in slow.log_path.read_text()


def test_scancel_mid_run_is_a_failure_with_the_slurm_state(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path)
    spec = make_spec(tmp_path, "victim", "import time; print('started', flush=True); time.sleep(300)")
    h = backend.start(spec)
    wait_for_text(spec.log_path, "started")
    assert backend.poll(h) is None
    subprocess.run(["scancel", h.job_id], check=True)  # as an admin or a preemption would
    (o,) = wait_all(backend, [h], limit_s=60)
    assert o.exit_code is None and not o.timed_out
    assert f"SLURM job {h.job_id} CANCELLED" in o.message, o.message
    assert str(tmp_path / "results" / ".slurm") in o.message  # names the job's stderr file
    assert job_state(h.job_id) == "CANCELLED"


def test_preempted_job_is_a_failure_naming_the_preemption(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path)
    spec = make_spec(tmp_path, "low", "import time; print('started', flush=True); time.sleep(300)")
    h = backend.start(spec)
    wait_for_text(spec.log_path, "started")
    # a job of the higher-priority partition that needs the whole node preempts ours
    node = subprocess.run(["squeue", "-h", "-j", h.job_id, "-o", "%N"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["sbatch", "--partition=urgent", "--exclusive", f"--nodelist={node}", "--output=/dev/null",
                    "--wrap", "sleep 1"], check=True, capture_output=True)
    (o,) = wait_all(backend, [h], limit_s=60)
    assert o.exit_code is None and not o.timed_out
    assert f"SLURM job {h.job_id} PREEMPTED" in o.message, o.message
    assert "received SIGTERM from SLURM" in spec.log_path.read_text()


def test_job_that_dies_without_reporting_is_a_failure_naming_its_state(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path, result_grace_s=1.0, partition="one")
    spec = make_spec(tmp_path, "lost", "import time; print('started', flush=True); time.sleep(300)")
    h = backend.start(spec)
    wait_for_text(spec.log_path, "started")
    # SIGKILL to the job's processes (scancel --signal=KILL would be a polite cancel): like
    # a node that dies or an OOM kill, nothing is left to report
    pids = subprocess.run(["scontrol", "listpids", h.job_id, cluster_nodes("one")[0]], capture_output=True,
                          text=True).stdout
    step = [int(ln.split()[0]) for ln in pids.splitlines()[1:] if ln.split()[2:3] == ["0"]]
    assert step, pids
    for pid in step:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    (o,) = wait_all(backend, [h], limit_s=60)
    assert o.exit_code is None and not o.timed_out
    assert re.search(rf"SLURM job {h.job_id} ended in state (FAILED|CANCELLED).* without reporting a result",
                     o.message), o.message
    assert f"{h.job_id}_0_log.err" in o.message


def test_cancel_stops_queued_and_running_jobs_and_is_idempotent(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path, result_grace_s=1.0)
    spec = make_spec(tmp_path, "c", "import time; print('started', flush=True); time.sleep(300)")
    h = backend.start(spec)
    wait_for_text(spec.log_path, "started")
    backend.cancel(h)
    backend.cancel(h)
    (o,) = wait_all(backend, [h], limit_s=60)
    assert o.exit_code is None and "CANCELLED" in o.message
    # a job cancelled before it ever ran
    q = backend.start(make_spec(tmp_path, "q", "print('never')"))
    backend.cancel(q)
    (oq,) = wait_all(backend, [q], limit_s=60)
    assert oq.exit_code is None and "CANCELLED" in oq.message, oq
    assert job_state(q.job_id) == "CANCELLED"


def test_reattach_after_the_backend_is_gone(slurm_cluster, tmp_path):
    first = make_backend(tmp_path)
    spec = make_spec(tmp_path, "long", STAMPED.format(sleep=3))
    h = first.start(spec)
    job_id = h.job_id
    wait_for_text(spec.log_path, "start ")
    first.close()
    del first, h  # the runner was killed: only run_dir and job_id are left

    second = make_backend(tmp_path)
    assert second.reattach(spec.run_dir, "999999", spec) is None          # not a job of ours
    other = make_spec(tmp_path, "other", "pass")
    assert second.reattach(other.run_dir, job_id, other) is None          # job of another run
    h2 = second.reattach(spec.run_dir, job_id, spec)
    assert h2 is not None and h2.job_id == job_id
    assert second.poll(h2) is None  # still running
    (o,) = wait_all(second, [h2])
    assert o.exit_code == 0 and o.wall_s >= 3
    assert spec.log_path.read_text().count("start ") == 1  # not started again

    # once finished, a third runner still finds the outcome
    third = make_backend(tmp_path)
    h3 = third.reattach(spec.run_dir, job_id, spec)
    assert h3 is not None
    (o3,) = wait_all(third, [h3], limit_s=5)
    assert o3.exit_code == 0


def test_reattach_without_a_saved_job_id_finds_the_job_by_run_folder(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path)
    spec = make_spec(tmp_path, "unsaved", STAMPED.format(sleep=3))
    h = backend.start(spec)
    other = make_backend(tmp_path)
    h2 = other.reattach(spec.run_dir, "", spec)
    assert h2 is not None and h2.job_id == h.job_id
    (o,) = wait_all(other, [h2])
    assert o.exit_code == 0


def test_mistakes_are_one_line_user_errors(slurm_cluster, tmp_path, monkeypatch):
    from harness.errors import UserError
    with pytest.raises(UserError, match="partition 'nosuch' does not exist.*debug"):
        make_backend(tmp_path, partition="nosuch")
    with pytest.raises(UserError, match="sbatch refused the check job: .*(feature|constraint)"):
        make_backend(tmp_path, extra={"constraint": "nosuchfeature"}, check_filesystem=True)
    # GPUs asked for on a cluster without any: refused at the first start, one line
    backend = make_backend(tmp_path, gpus_per_node=1)
    with pytest.raises(UserError, match="sbatch refused the job for .*gres"):
        backend.start(make_spec(tmp_path, "gpu", "pass"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    with pytest.raises(UserError, match="'sbatch' not found on PATH"):
        make_backend(tmp_path)


def test_job_resources_follow_the_spec(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path, extra={"exclusive": "", "job_name": "x"})
    h = backend.start(make_spec(tmp_path, "res", "pass", timeout=90))
    script = (tmp_path / "results" / ".slurm" / f"{h.job_id}_submission.sh").read_text()
    assert "#SBATCH --time=7" in script  # ceil(90 s) + 5 min, so the harness's own kill comes first
    assert "#SBATCH --no-requeue" in script and "#SBATCH --exclusive" in script
    assert "gpus" not in script  # the partition has no GPUs: none asked for
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks-per-node=1" in script
    (o,) = wait_all(backend, [h])
    assert o.exit_code == 0


# ---------------------------------------------------------------------------------------------
# End to end: `harness run --backend slurm` with the stand-in trainer (deterministic per seed).

import json  # noqa: E402

from conftest import harness, results_of, write_experiment  # noqa: E402


def spawn(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # SIGINT as on a terminal, even when the tests run as a shell's background job
    return subprocess.Popen([PY, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_until(cond, limit_s=90.0, what="condition", proc=None):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"harness exited before {what}: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def launched(res: Path) -> dict[str, str]:
    """run folder (H0/000-1) -> job id, for attempts whose job id is saved."""
    out = {}
    for p in res.glob("*/*/launch.json"):
        try:
            job_id = json.loads(p.read_text()).get("job_id")
        except ValueError:
            continue
        if job_id:
            out[f"{p.parent.parent.name}/{p.parent.name}"] = job_id
    return out


def running_jobs(ids) -> set[str]:
    if not ids:
        return set()
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", ",".join(ids), "-o", "%i %T"],
                         capture_output=True, text=True).stdout.split("\n")
    return {ln.split()[0] for ln in out if ln.strip().endswith(" RUNNING")}


def table(res: Path, cwd: Path) -> dict:
    out = harness("analyze", res, "--format", "json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)
    for h in t["hypotheses"]:
        # which files, how many failures and what the attempts cost differ by design
        for key in ("sources", "failed", "failed_runs", "cost"):
            h.pop(key, None)
    gate = t.get("gate") or {}
    gate["notes"] = [n for n in gate.get("notes", []) if not n.startswith("failed run")]
    return t


def test_e2e_slurm_table_equals_local_with_a_job_killed_mid_run(slurm_cluster, tmp_path):
    exp = write_experiment(tmp_path, runs=2, h0_args={"step_sleep": 0.15}, h1_args={"step_sleep": 0.15})
    # the local reference runs meanwhile: the stand-in's times are a function of the seed
    local = spawn(["run", exp, "--results", tmp_path / "local", "--plain"], tmp_path)

    res = tmp_path / "slurm"
    t0 = time.monotonic()
    proc = spawn(["run", exp, "--results", res, "--plain", "--backend", "slurm", "--partition", "one",
                  "--max-parallel", "2"], tmp_path)
    # the first two runs are SLURM jobs running at the same time
    wait_until(lambda: len(running_jobs(list(launched(res).values()))) == 2, what="2 jobs running", proc=proc)
    first = launched(res)
    assert set(first) == {"H0/000-1", "H1/000-1"}, first
    victim = first["H0/000-1"]
    log = res / "H0" / "000-1" / "log.txt"
    wait_until(lambda: log.exists() and "step:3/" in log.read_text(), what="H0 #0 mid-run", proc=proc)
    subprocess.run(["scancel", victim], check=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    elapsed = time.monotonic() - t0

    recs = results_of(res)
    ok = sorted((r["hypothesis"], r["index"]) for r in recs if r["status"] == "ok")
    assert ok == [("H0", 0), ("H0", 1), ("H1", 0), ("H1", 1)], [(r["run_id"], r["status"]) for r in recs]
    (failed,) = [r for r in recs if r["status"] != "ok"]
    assert (failed["hypothesis"], failed["index"], failed["run_id"]) == ("H0", 0, "000-1")
    assert failed["status"] == "failed" and failed["exit_code"] is None
    assert f"SLURM job {victim} CANCELLED" in failed["message"], failed["message"]
    assert all(r["backend"] == "slurm" for r in recs)
    assert json.loads((res / "H0" / "000-2" / "result.json").read_text())["status"] == "ok"  # the retry
    local_out, local_err = local.communicate(timeout=240)
    assert local.returncode == 0, local_err
    # same seeds, same table as the local backend
    assert table(res, tmp_path) == table(tmp_path / "local", tmp_path)
    print(f"slurm e2e: 5 attempts in {elapsed:.1f}s")


def test_e2e_runner_killed_then_rerun_adopts_its_jobs_without_duplicates(slurm_cluster, tmp_path):
    # H0 runs ~1.5 s, H1 ~5.5 s: when the runner dies, one job has finished, one still runs
    exp = write_experiment(tmp_path, runs=1, h0_args={"step_sleep": 0.05}, h1_args={"step_sleep": 0.3})
    res = tmp_path / "results" / "exp"
    args = ["run", exp, "--plain", "--backend", "slurm", "--partition", "one", "--max-parallel", "2"]
    proc = spawn(args, tmp_path)
    wait_until(lambda: len(launched(res)) == 2, what="2 jobs submitted", proc=proc)
    jobs = launched(res)
    h1_log = res / "H1" / "000-1" / "log.txt"
    wait_until(lambda: h1_log.exists() and "step:2/" in h1_log.read_text(), what="H1 running", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (res / "H1" / "000-1" / "result.json").exists()
    # the H0 job finishes while no runner is alive; H1's is still running
    wait_until(lambda: job_state(jobs["H0/000-1"]) == "COMPLETED", what="H0 job to finish")
    assert job_state(jobs["H1/000-1"]) == "RUNNING"

    again = harness("run", *args[1:], cwd=tmp_path, timeout=180)
    assert again.returncode == 0, again.stderr
    recs = results_of(res)
    assert sorted((r["run_id"], r["hypothesis"], r["status"]) for r in recs) == [
        ("000-1", "H0", "ok"), ("000-1", "H1", "ok")], recs  # nothing redone, nothing interrupted
    assert launched(res) == jobs  # no new job was submitted
    for run in ("H0/000-1", "H1/000-1"):
        text = (res / run / "log.txt").read_text()
        assert len(re.findall(r"^config: ", text, re.M)) == 1, text  # the command ran once


def test_e2e_ctrl_c_cancels_running_jobs_and_keeps_finished_runs(slurm_cluster, tmp_path):
    exp = write_experiment(tmp_path, runs=2, h0_args={"step_sleep": 0.02}, h1_args={"step_sleep": 2.0})
    res = tmp_path / "results" / "exp"
    proc = spawn(["run", exp, "--plain", "--backend", "slurm", "--partition", "one", "--max-parallel", "2"],
                 tmp_path)
    done = res / "H0" / "000-1" / "result.json"
    wait_until(lambda: done.exists() and len(launched(res)) >= 3, what="H0 #0 done, next job started",
               proc=proc)
    kept = done.read_bytes()
    jobs = launched(res)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    wait_until(lambda: all(job_state(j) != "COMPLETING" for j in jobs.values()), what="jobs to end")
    states = {run: job_state(j) for run, j in jobs.items()}
    assert states.pop("H0/000-1") == "COMPLETED"
    assert all(s == "CANCELLED" for s in states.values()), states
    assert done.read_bytes() == kept  # finished run untouched
    others = [r for r in results_of(res) if r["run_id"] != "000-1" or r["hypothesis"] != "H0"]
    assert others and all(r["status"] == "interrupted" for r in others), others


def test_e2e_smoke_experiment_through_both_backends(slurm_cluster, tmp_path):
    """hypotheses/untie-ve-smoke.toml (torchrun, the project's trainer on synthetic data)."""
    for name in ("train", "hypotheses"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {"OMP_NUM_THREADS": "1"}
    made = harness_env(["-m", "train.data", "synthetic", "--out", "data/synthetic"], tmp_path, env)
    assert made.returncode == 0, made.stderr
    exp = "hypotheses/untie-ve-smoke.toml"
    # one run per arm: H0 and H1 still run as two torchrun jobs at once on the node (what only
    # the real trainer shows); seeds per index across backends are the stand-in e2e test's part
    local = harness("run", exp, "--runs", "1", "--results", "local", "--plain", cwd=tmp_path, env=env)
    assert local.returncode == 0, local.stderr
    t0 = time.monotonic()
    slurm = harness("run", exp, "--runs", "1", "--results", "slurm", "--plain", "--backend", "slurm",
                    "--partition", "one", "--max-parallel", "2", cwd=tmp_path, env=env)
    assert slurm.returncode == 0, slurm.stderr
    print(f"smoke experiment through slurm: {time.monotonic() - t0:.1f}s")
    recs = results_of(tmp_path / "slurm")
    assert sorted((r["hypothesis"], r["index"], r["status"]) for r in recs) == [("H0", 0, "ok"), ("H1", 0, "ok")]
    assert all(r["backend"] == "slurm" and r["command"][0].endswith("torchrun") for r in recs)
    assert _overlapping(recs), [(r["started_at"], r["finished_at"]) for r in recs]
    a, b = table(tmp_path / "slurm", tmp_path), table(tmp_path / "local", tmp_path)
    # losses and steps are a function of the seed; times are measured, so they only match in shape
    for ha, hb in zip(a["hypotheses"], b["hypotheses"]):
        assert (ha["name"], ha["runs"], ha["steps"], ha["losses"]) == (hb["name"], hb["runs"], hb["steps"],
                                                                     hb["losses"])
        assert ha["loss_mean"] == pytest.approx(hb["loss_mean"]) and len(ha["times"]) == len(hb["times"])


def _overlapping(recs) -> bool:
    spans = sorted((r["started_at"], r["finished_at"]) for r in recs)
    return any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))


def harness_env(args, cwd, env):
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([PY, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=full)


def test_e2e_until_decisive_stops_submitting_and_counts_running_jobs(slurm_cluster, tmp_path):
    exp = write_experiment(tmp_path, name="seq", runs=10, h0_args={"step_sleep": 0.05},
                           h1_args={"step_sleep": 0.05})
    res = tmp_path / "results" / "seq"
    out = harness("run", exp, "--until-decisive", "--plain", "--backend", "slurm", "--partition", "one",
                  "--max-parallel", "2", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "stop: every criterion is decided" in out.stderr
    recs = results_of(res)
    # every submitted job finished and was counted: nothing was cancelled or left behind
    assert len(recs) == len(launched(res)) and all(r["status"] == "ok" for r in recs)
    # at most one job beyond the deciding run was already running when the decision came
    # (max-parallel 2); far fewer than the fixed design's 20
    assert len(recs) <= 3 + 3 + 1
    table = harness("analyze", res, cwd=tmp_path).stdout
    assert "H1 time: PASS" in table and "H1 loss: PASS" in table


def test_e2e_paired_design_keeps_pairs_on_one_node_and_retries_a_failed_half_there(slurm_cluster, tmp_path):
    """pairing = "node": each index's H0 and H1 run one after the other, pinned to one node."""
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    exp = write_experiment(tmp_path, name="pairs", runs=2, h0_args={"step_sleep": 0.05},
                           h1_args={"step_sleep": 0.05, "mode": "flaky"}, extra_exp='pairing = "node"',
                           extra_defaults=f'env = {{ FLAKY_DIR = "{flaky}" }}')
    res = tmp_path / "results" / "pairs"
    out = harness("run", exp, "--plain", "--backend", "slurm", "--partition", "one", "--max-parallel", "2",
                  cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "paired design" in out.stderr
    (node,) = cluster_nodes("one")
    recs = {(r["hypothesis"], r["index"], r["attempt"]): r for r in results_of(res)}
    launches = {(p.parent.parent.name, int(p.parent.name[:3]), int(p.parent.name[4:])): json.loads(p.read_text())
                for p in res.glob("*/*/launch.json")}

    def script(key):
        job = launches[key]["job_id"]
        return (res / ".slurm" / f"{job}_submission.sh").read_text()

    # block 0: H0 opens it on any node; H1 crashes there and its retry is pinned to H0's node
    assert recs[("H0", 0, 1)]["status"] == "ok" and recs[("H1", 0, 1)]["status"] == "failed"
    assert "--nodelist" not in script(("H0", 0, 1))
    for key in (("H1", 0, 1), ("H1", 0, 2)):
        assert f"#SBATCH --nodelist={node}" in script(key), script(key)
    # block 1: H1 opens it (alternating), crashes with no partner yet, is retried on any node; H0 follows it
    assert recs[("H1", 1, 1)]["status"] == "failed" and recs[("H1", 1, 2)]["status"] == "ok"
    assert "--nodelist" not in script(("H1", 1, 2))
    assert f"#SBATCH --nodelist={node}" in script(("H0", 1, 1))
    ok = [r for r in recs.values() if r["status"] == "ok"]
    assert len(ok) == 4 and {r["host"] for r in ok} == {node}   # SLURM's node name is the record's host
    for i in range(2):   # one run of a pair at a time
        a, b = sorted((r for r in ok if r["index"] == i), key=lambda r: r["started_at"])
        assert a["finished_at"] <= b["started_at"], (a, b)
    assert (a["hypothesis"], b["hypothesis"]) == ("H1", "H0")   # block 1 ran H1 first
    # one node: the analysis keeps the plain Welch time test (the blocked one equals it there)
    report = harness("analyze", res, "--gate", cwd=tmp_path)
    assert report.returncode in (0, 1), report.stderr
    assert "runs per node" not in report.stdout and "blocked by node" not in report.stdout
    assert "H1  time      Time p = " in report.stdout


def test_backend_knows_a_one_node_partition_and_node_states(slurm_cluster, tmp_path):
    backend = make_backend(tmp_path, partition="one")
    assert backend.may_span_nodes is False      # one node: no pairing by default
    assert make_backend(tmp_path, partition="nodes").may_span_nodes is True   # three: pairs by default
    (node,) = cluster_nodes("one")
    assert backend.node_usable(node) and not backend.node_usable("no-such-node")


# ---------------------------------------------------------------------------------------------
# Several nodes: partition `nodes` (three nodes, one job per node, as on a GPU cluster), the
# stand-in tests/stand_ins/node_train.py (its times depend on SLURM's node name).

from conftest import STAND_INS  # noqa: E402

NODE_TRAIN = STAND_INS / "node_train.py"
ON_NODES = ["--plain", "--backend", "slurm", "--partition", "nodes"]


def squeue_jobs(ids) -> dict[str, tuple[str, str]]:
    """job id -> (state, node) as squeue records it (finished jobs included: MinJobAge)."""
    out = subprocess.run(["squeue", "-h", "--states=all", "-j", ",".join(ids), "-o", "%i|%T|%N"],
                         capture_output=True, text=True).stdout
    return {p[0]: (p[1], p[2]) for p in (ln.split("|") for ln in out.splitlines() if ln.strip())}


def records_by_key(res: Path) -> dict[tuple[str, int, int], dict]:
    return {(r["hypothesis"], r["index"], r["attempt"]): r for r in results_of(res)}


def submission(res: Path, job_id: str) -> str:
    return (res / ".slurm" / f"{job_id}_submission.sh").read_text()


def assert_pairs_on_one_node(recs: dict, runs: int, res: Path) -> None:
    """Each index's two counted runs: one node, one after the other, the first arm alternating,
    the second pinned to the first's node; result.json and squeue name the same node."""
    ok = {(r["hypothesis"], r["index"]): r for r in recs.values() if r["status"] == "ok"}
    jobs = squeue_jobs([r["job_id"] for r in ok.values()])
    for i in range(runs):
        first, second = sorted((ok[("H0", i)], ok[("H1", i)]), key=lambda r: r["started_at"])
        assert first["host"] == second["host"], (i, first["host"], second["host"])
        assert first["finished_at"] <= second["started_at"], (first, second)
        assert first["hypothesis"] == ("H0", "H1")[i % 2], (i, first["hypothesis"])   # H0 H1 | H1 H0 | ...
        assert f"#SBATCH --nodelist={first['host']}" in submission(res, second["job_id"])
        for r in (first, second):
            assert jobs[r["job_id"]] == ("COMPLETED", r["host"]), (r["job_id"], jobs.get(r["job_id"]), r["host"])


def test_e2e_pairs_share_a_node_and_a_slow_node_fools_only_the_pooled_test(slurm_cluster, tmp_path):
    """Six pairs on three nodes; the last node is 2 s slower; H1 is truly 0.3 s faster."""
    nodes = cluster_nodes("nodes")
    assert len(nodes) == NODES, nodes
    slow = nodes[-1]
    runs = 6
    exp = write_experiment(tmp_path, name="nodes", runs=runs, script=NODE_TRAIN,
                           h0_args={"step_sleep": 0.02, "base_time": 10.0},
                           h1_args={"step_sleep": 0.02, "base_time": 9.7},
                           extra_defaults=f'env = {{ SLOW_NODE = "{slow}" }}')
    res = tmp_path / "results" / "nodes"
    t0 = time.monotonic()
    out = harness("run", exp, *ON_NODES, "--max-parallel", "3", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "paired design" in out.stderr
    recs = records_by_key(res)
    assert len(recs) == 2 * runs and all(r["status"] == "ok" for r in recs.values())
    assert_pairs_on_one_node(recs, runs, res)
    hosts = {r["host"] for r in recs.values()}
    assert len(hosts) >= 2 and hosts <= set(nodes), hosts        # more pairs than nodes: several used
    assert slow in hosts, f"no pair ran on the slow node {slow}: {hosts}"
    print(f"6 pairs on {sorted(hosts)} in {time.monotonic() - t0:.1f}s")

    # the analysis: node effects swamp the pooled Welch test; within nodes the speedup is plain
    report = harness("analyze", res, "--gate", "--allow-unknown-hardware", "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr + report.stdout
    data = json.loads(report.stdout)
    (h1,) = [h for h in data["hypotheses"] if h["name"] == "H1"]
    assert h1["time_p"] > 0.001, h1["time_p"]                   # pooled: the speedup is not seen
    blocked = data["blocked"]["H1"]
    # at the gate's alpha (the guarded df of the blocked test cost a little power at 2 pairs a node)
    assert blocked["p"] < 0.001 and blocked["time_delta"] == pytest.approx(-0.3, abs=0.01), blocked
    text = harness("analyze", res, "--gate", "--allow-unknown-hardware", cwd=tmp_path).stdout
    assert re.search(r"PASS\s+H1\s+time\s+blocked by node, stratified Welch by node \(\d nodes\)", text), text
    assert f"{slow} +" in text      # the slow node's effect is printed, and positive


def test_e2e_node_killed_mid_run_retries_the_attempt_and_breaks_the_pair_by_the_rule(slurm_cluster, tmp_path):
    """The node of a pair's second half dies while it runs: that attempt fails (NODE_FAIL),
    its retry cannot go to the partner's node (DOWN), so it runs elsewhere and the pair is
    said broken; every other pair stays on one node; nothing is lost or counted twice."""
    exp = write_experiment(tmp_path, name="lost", runs=3, script=NODE_TRAIN,
                           h0_args={"step_sleep": 0.05}, h1_args={"step_sleep": 0.4})
    res = tmp_path / "results" / "lost"
    proc = spawn(["run", exp, *ON_NODES, "--max-parallel", "3"], tmp_path)
    victim_log = res / "H1" / "000-1" / "log.txt"
    try:
        wait_until(lambda: victim_log.exists() and "step:2/" in victim_log.read_text(), limit_s=120,
                   what="H1 #0 (pinned to H0 #0's node) running", proc=proc)
        launch = json.loads((res / "H1" / "000-1" / "launch.json").read_text())
        node, job = launch["node"], launch["job_id"]
        h0 = json.loads((res / "H0" / "000-1" / "result.json").read_text())
        assert node == h0["host"]
        killed = subprocess.run([str(CLUSTER), "kill-node", node], capture_output=True, text=True)
        assert killed.returncode == 0, killed.stderr
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([str(CLUSTER), "up", "--nodes", str(NODES)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, err
    assert squeue_jobs([job])[job][0] == "NODE_FAIL"
    recs = records_by_key(res)
    lost = recs[("H1", 0, 1)]
    assert lost["status"] == "failed" and lost["job_id"] == job and "NODE_FAIL" in lost["message"], lost
    retry = recs[("H1", 0, 2)]
    assert retry["status"] == "ok" and retry["host"] != node, retry
    assert "--nodelist" not in submission(res, retry["job_id"])                     # any node
    assert f"H1 #0 runs on any node: the partner's node {node} is down or drained (the pair is broken)" in err
    # no record lost, none twice: one record per submitted job, each run counted once
    assert sorted(r["job_id"] for r in recs.values()) == sorted(launched(res).values())
    assert len(recs) == 7 and sum(r["status"] == "ok" for r in recs.values()) == 6
    ok = {(r["hypothesis"], r["index"]): r for r in recs.values() if r["status"] == "ok"}
    for i in (1, 2):
        assert ok[("H0", i)]["host"] == ok[("H1", i)]["host"]
    # the analysis names the broken pair's runs
    report = harness("analyze", res, cwd=tmp_path)
    assert "runs on nodes without the other arm do not count" in report.stdout + report.stderr, report.stdout


def test_e2e_scancel_requeue_and_time_limit_each_become_their_status_once(slurm_cluster, tmp_path):
    """Three jobs at once on three nodes: one cancelled outside the harness, one requeued by an
    admin, one that outlives its SLURM time limit (--slurm-time 1). Each is one failed or timeout
    record, retried once, and counted once."""
    exp = write_experiment(tmp_path, name="ends", runs=3, script=NODE_TRAIN,
                           h0_args={"step_sleep": 0.3}, h1_args={"step_sleep": 0.3},
                           extra_defaults='env = { HANG_RUNS = "H0/002-1" }')
    res = tmp_path / "results" / "ends"
    proc = spawn(["run", exp, *ON_NODES, "--max-parallel", "3", "--slurm-time", "1"], tmp_path)
    firsts = ("H0/000-1", "H1/001-1", "H0/002-1")   # the first half of each block (alternating)
    try:
        wait_until(lambda: all((res / r / "log.txt").exists() and "step:1/" in (res / r / "log.txt").read_text()
                               for r in firsts), limit_s=120, what="3 first halves running", proc=proc)
        jobs = launched(res)
        cancelled, requeued, limited = (jobs[r] for r in firsts)
        subprocess.run(["scancel", cancelled], check=True)
        # the harness's jobs are submitted --no-requeue: SLURM refuses a requeue...
        refused = subprocess.run(["scontrol", "requeue", requeued], capture_output=True, text=True)
        assert refused.returncode != 0 and "disabled" in refused.stderr, refused
        # ... unless an admin makes the job requeueable first
        subprocess.run(["scontrol", "update", f"jobid={requeued}", "requeue=1"], check=True)
        subprocess.run(["scontrol", "requeue", requeued], check=True)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    recs = records_by_key(res)
    c, q, t = recs[("H0", 0, 1)], recs[("H1", 1, 1)], recs[("H0", 2, 1)]
    assert c["status"] == "failed" and f"SLURM job {cancelled} CANCELLED" in c["message"], c
    assert q["status"] == "failed" and f"SLURM job {requeued} REQUEUED" in q["message"], q
    assert t["status"] == "timeout" and f"SLURM job {limited} TIMEOUT" in t["message"], t
    states = squeue_jobs([cancelled, requeued, limited])
    assert [states[j][0] for j in (cancelled, requeued, limited)] == ["CANCELLED", "CANCELLED", "TIMEOUT"]
    # the requeued job never ran a second time: one start in its log
    assert (res / "H1" / "001-1" / "log.txt").read_text().count("config: ") == 1
    assert all(recs[k]["status"] == "ok" for k in (("H0", 0, 2), ("H1", 1, 2), ("H0", 2, 2)))
    assert len(recs) == 9 and sorted(r["job_id"] for r in recs.values()) == sorted(launched(res).values())
    status = harness("status", res, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {ln.split()[0]: ln.split()[1:] for ln in status.stdout.splitlines()     # the counts table
            if ln.split()[:1] in (["H0"], ["H1"]) and all(t.isdigit() for t in ln.split()[1:])}
    assert rows["H0"][0] == "3" and rows["H0"][-1] == "5", status.stdout    # 3 ok, 5 attempts
    assert rows["H1"][0] == "3" and rows["H1"][-1] == "4", status.stdout
    assert f"job {limited}" in status.stdout


def test_e2e_harness_killed_with_jobs_queued_on_several_nodes_resumes_without_submitting_twice(
        slurm_cluster, tmp_path):
    exp = write_experiment(tmp_path, name="queued", runs=6, script=NODE_TRAIN,
                           h0_args={"step_sleep": 0.15}, h1_args={"step_sleep": 0.15})
    res = tmp_path / "results" / "queued"
    args = ["run", exp, *ON_NODES, "--max-parallel", "6"]
    proc = spawn(args, tmp_path)

    def queued_and_running() -> bool:
        states = squeue_jobs(list(launched(res).values())) if launched(res) else {}
        running = {n for s, n in states.values() if s == "RUNNING"}
        return len(launched(res)) == 6 and len(running) >= 2 and any(s == "PENDING" for s, _ in states.values())

    wait_until(queued_and_running, limit_s=120, what="6 jobs submitted, some pending, 2+ nodes running", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    first = launched(res)
    # what a user reads meanwhile: each run's job and node, SLURM's pending reason, the waiting pairs
    status = harness("status", res, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert re.search(r"unfinished\s+\S+\s+job \d+\s+PENDING \(\w+", status.stdout), status.stdout
    assert all(f"job {j}" in status.stdout for j in first.values()), status.stdout

    again = harness(*args, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    recs = records_by_key(res)
    assert len(recs) == 12 and all(r["status"] == "ok" and r["attempt"] == 1 for r in recs.values()), \
        sorted((k, r["status"]) for k, r in recs.items())
    jobs = launched(res)
    assert {k: jobs[k] for k in first} == first            # the first six jobs adopted, none resubmitted
    assert len(set(jobs.values())) == 12                   # one job per run
    for r in recs.values():
        log = (res / r["hypothesis"] / r["run_id"] / "log.txt").read_text()
        assert log.count("config: ") == 1, log             # every command ran once
    assert_pairs_on_one_node(recs, 6, res)
    status = harness("status", res, cwd=tmp_path).stdout
    assert "pairs whose partner is still waiting" not in status
    assert all(f"job {j}" in status for j in jobs.values())
