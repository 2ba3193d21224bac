"""The runner: its retry, resume and stopping logic in process on the in-memory backend;
end to end through the CLI with stand-in training scripts for a real local run, torchrun
and a script that writes its own logs (tests/test_faults.py has the signals and kills)."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, STAND_INS, harness, memory_runner, results_of, scripted, write_experiment
from harness.run.backends.memory import FakeRun, RunnerKilled


def test_run_writes_one_folder_per_run_with_records(tmp_path):
    exp = write_experiment(tmp_path, runs=2)
    out = harness("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = tmp_path / "results" / "exp"
    recs = results_of(res)
    assert [(r["hypothesis"], r["index"], r["status"]) for r in sorted(recs, key=lambda r: r["order"])] == [
        ("H0", 0, "ok"), ("H1", 0, "ok"), ("H0", 1, "ok"), ("H1", 1, "ok")]  # interleaved
    r = next(r for r in recs if r["hypothesis"] == "H1" and r["index"] == 1)
    for key in ("run_id", "hypothesis", "index", "seed", "status", "exit_code", "final_step",
                "expected_steps", "val_loss", "train_time_s", "step_avg_ms", "peak_mem_mib", "wall_s",
                "started_at", "finished_at", "host", "gpus", "torch_version", "cuda_version",
                "script_sha256", "git_commit", "command"):
        assert key in r
    assert r["seed"] == 1 and r["final_step"] == 18 and r["expected_steps"] == 18
    assert abs(r["train_time_s"] - ((9.5 + 0.01) + 0.005)) < 1e-9  # the val line's time
    assert r["val_loss"] == round(3.0 + 1 / 18 + 0.001, 4)
    assert r["peak_mem_mib"] == 123 and r["torch_version"] == "2.13.0"
    run_dir = res / "H1" / "001-1"
    assert (run_dir / "log.txt").read_text().count("step:18/18") == 2
    assert (run_dir / "snapshot-fake_train.py").read_bytes() == (STAND_INS / "fake_train.py").read_bytes()
    assert not (run_dir / "script-files").exists()  # the script wrote nothing of its own
    spec = json.loads((res / "spec.json").read_text())
    assert spec["control"] == "H0" and (res / "experiment.toml").read_text() == exp.read_text()


def test_dry_run_prints_commands_in_order_and_runs_nothing(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=2, launcher="torchrun")
    out = cli("run", exp, "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cmds = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    assert len(cmds) == 4
    assert "SEED=0" in cmds[0] and "--num-iterations 20" in cmds[0]
    assert "SEED=0" in cmds[1] and "--num-iterations 18" in cmds[1]
    assert "torchrun --standalone --nproc_per_node=1" in cmds[0]
    assert not (tmp_path / "results").exists()


def test_torchrun_launch_on_cpu(tmp_path):
    exp = write_experiment(tmp_path, runs=1, launcher="torchrun")
    # one torchrun launch is the point (it imports torch): H1 keeps the plain launcher
    exp.write_text(exp.read_text().replace('name = "H1"', 'name = "H1"\nlauncher = "python"'))
    out = harness("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    recs = {r["hypothesis"]: r for r in results_of(tmp_path / "results" / "exp")}
    assert [r["status"] for r in recs.values()] == ["ok", "ok"]
    assert "torchrun" in recs["H0"]["command"][0] and "torchrun" not in " ".join(recs["H1"]["command"])


def test_failures_are_kept_and_retried_and_divergence_is_data(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H0=FakeRun(failed=True, error="RuntimeError: CUDA error: boom"),
                                      H1=FakeRun(val_loss=math.nan)))
    out = cli("run", exp, "--retries", "1", cwd=tmp_path)
    assert out.returncode == 3, out.stderr  # a run without a result
    res = tmp_path / "results" / "exp"
    h0 = sorted((r for r in results_of(res) if r["hypothesis"] == "H0"), key=lambda r: r["attempt"])
    assert [r["status"] for r in h0] == ["failed", "failed"]  # first try + one retry, both kept
    assert "exit code 1" in h0[0]["message"] and str(res / "H0" / "000-1" / "log.txt") in h0[0]["message"]
    assert "CUDA error: boom" in (res / "H0" / "000-1" / "log.txt").read_text()
    h1 = [r for r in results_of(res) if r["hypothesis"] == "H1"]
    assert [r["status"] for r in h1] == ["diverged"] and h1[0]["val_loss"] is None  # not retried
    assert cli.backend.launched == [("H0", 0, 1), ("H0", 0, 2), ("H1", 0, 1)]  # the retry comes first

    status = cli("status", res, cwd=tmp_path)
    assert status.returncode == 0
    row = next(line for line in status.stdout.splitlines() if line.startswith("H0"))
    assert row.split()[1:] == ["0", "0", "1", "0", "0", "0", "0", "0", "2"]


def test_flaky_run_succeeds_on_retry(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory(scripted(H1=[FakeRun(failed=True, exit_code=3), FakeRun()]))
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    h1 = sorted((r for r in results_of(tmp_path / "results" / "exp") if r["hypothesis"] == "H1"),
                key=lambda r: r["attempt"])
    assert [(r["run_id"], r["status"]) for r in h1] == [("000-1", "failed"), ("000-2", "ok")]
    assert "exit code 3" in h1[0]["message"]


def test_timeout_and_truncated_log(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    # a hang meets the 2 s limit at its third poll (one fake second each): no wall clock
    cli.backend = cli.memory(scripted(H0=FakeRun(polls=math.inf), H1=FakeRun(truncated=True)))
    out = cli("run", exp, "--timeout", "2", "--retries", "0", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    recs = {r["hypothesis"]: r for r in results_of(tmp_path / "results" / "exp")}
    assert recs["H0"]["status"] == "timeout" and "2 s timeout" in recs["H0"]["message"]
    assert recs["H0"]["wall_s"] == 3.0
    assert recs["H1"]["status"] == "failed" and "stopped early" in recs["H1"]["message"]


def test_upstream_style_script_runs_unchanged_and_its_log_is_collected(tmp_path):
    upstream = tmp_path / "records" / "train_gpt.py"
    upstream.parent.mkdir()
    upstream.write_text((STAND_INS / "upstream_train_gpt.py").read_text())
    text = """
[experiment]
name = "up"
runs = 2
[defaults]
launcher = "python"
[[hypothesis]]
name = "H0"
control = true
script = "records/train_gpt.py"
steps = 30
[[hypothesis]]
name = "H1"
script = "records/train_gpt.py"
steps = 30
"""
    (tmp_path / "up.toml").write_text(text)
    out = harness("run", "up.toml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    recs = results_of(tmp_path / "results" / "up")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    r = recs[0]
    assert r["log"].startswith("script-files/logs/") and r["gpus"] == {"names": ["NVIDIA H100 80GB HBM3"], "count": 1}
    assert r["val_loss"] == 3.2 and r["train_time_s"] == 3.007 and r["cuda_version"] == "12.8"
    assert not (tmp_path / "logs").exists()  # nothing written into the project root
    run_dir = tmp_path / "results" / "up" / "H0" / "000-1"
    assert list(run_dir.glob("script-files/logs/*.txt"))


def _wait_for(pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _spawn(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A shell's background job inherits SIGINT ignored, and Python then never turns it
    # into KeyboardInterrupt: give the runner the default, as a terminal would.
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_runner_killed_mid_run_then_resume_loses_nothing_and_redoes_the_interrupted_run(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=2)
    res = tmp_path / "results" / "exp"
    third_log = res / "H0" / "001-1" / "log.txt"

    def kill(backend, handle):
        # two runs are finished and the third is half way through its log
        if backend.launched[-1] == ("H0", 1, 1) and "step:5/" in third_log.read_text():
            raise RunnerKilled
    cli.backend = cli.memory(scripted(H0=FakeRun(polls=10), H1=FakeRun(polls=10)), on_poll=kill)
    with pytest.raises(RunnerKilled):
        cli("run", exp, cwd=tmp_path)
    before = {p: p.read_bytes() for p in res.glob("*/*/result.json")}
    assert len(before) == 2
    assert cli.backend.running() == []  # the run does not outlive its runner

    cli.backend.on_poll = None
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for p, data in before.items():
        assert p.read_bytes() == data  # finished runs untouched
    recs = results_of(res)
    done = [(r["hypothesis"], r["index"]) for r in recs if r["status"] == "ok"]
    assert sorted(done) == [("H0", 0), ("H0", 1), ("H1", 0), ("H1", 1)]  # each exactly once
    interrupted = [r for r in recs if r["status"] == "interrupted"]
    assert [(r["hypothesis"], r["index"], r["run_id"]) for r in interrupted] == [("H0", 1, "001-1")]
    assert "step:5/" in third_log.read_text() and "val_loss:3.28" not in third_log.read_text()  # partial, kept
    redo = json.loads((res / "H0" / "001-2" / "result.json").read_text())
    assert redo["status"] == "ok" and redo["attempt"] == 2

    # a third invocation has nothing left to do
    n = len(cli.backend.launched)
    again = cli("run", exp, cwd=tmp_path)
    assert again.returncode == 0 and len(results_of(res)) == len(recs) and len(cli.backend.launched) == n


def test_a_job_that_outlives_its_runner_is_reattached_and_recorded_once(tmp_path, memory):
    """A cluster's job survives a killed runner: the next runner follows it, launches nothing new."""
    from harness.run import events as ev
    exp = write_experiment(tmp_path, runs=1)
    res = tmp_path / "results" / "exp"

    def kill(backend, handle):
        if backend.launched[-1] == ("H1", 0, 1):
            raise RunnerKilled
    backend = memory(scripted(H1=FakeRun(polls=4)), on_poll=kill, survives_runner=True)
    with pytest.raises(RunnerKilled):
        memory_runner(tmp_path, exp, backend).run()
    assert backend.running() == ["mem-1"] and not (res / "H1" / "000-1" / "result.json").exists()
    backend.on_poll = None
    events = []
    slots = memory_runner(tmp_path, exp, backend, events).run()
    assert [e for e in events if isinstance(e, ev.Reattach)] == [ev.Reattach("H1", 0, "mem-1")]
    assert backend.launched == [("H0", 0, 1), ("H1", 0, 1)]   # nothing launched again
    assert [(r["run_id"], r["status"]) for r in results_of(res) if r["hypothesis"] == "H1"] == [("000-1", "ok")]
    assert slots[("H1", 0)].done.run_id == "000-1"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_second_runner_on_the_same_results_is_refused(tmp_path, cli):
    from harness.data.store import Store
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    first = Store(tmp_path / "results" / "exp")
    first.lock()  # flock: another open file holds it, as another runner's process would
    try:
        second = cli("run", exp, cwd=tmp_path)
    finally:
        first.unlock()
    assert second.returncode == 2
    assert "in use by another runner" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert cli.backend.launched == []
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    recs = results_of(tmp_path / "results" / "exp")
    assert sorted((r["hypothesis"], r["status"]) for r in recs) == [("H0", "ok"), ("H1", "ok")]


def test_changed_spec_is_refused_with_what_changed(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    cli.backend = cli.memory()
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    stored = {p: p.read_bytes() for p in (tmp_path / "results" / "exp").rglob("*") if p.is_file() and p.name != ".lock"}
    # a change of every arm (a change of one arm keeps the others' runs: tests/test_deaths.py)
    write_experiment(tmp_path, runs=1, h0_args={"num_iterations": 19}, h1_args={"num_iterations": 16})
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 2
    assert "num_iterations: 18 -> 16" in out.stderr and "new name" in out.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "results" / "exp").rglob("*") if p.is_file() and p.name != ".lock"} == stored
    # more runs of the same spec is not a change: it extends the experiment
    write_experiment(tmp_path, runs=2)
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    assert len(results_of(tmp_path / "results" / "exp")) == 4


def test_ctrl_c_stops_the_run_marks_it_interrupted_and_resume_redoes_it(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    res = tmp_path / "results" / "exp"

    log = res / "H0" / "000-1" / "log.txt"

    def ctrl_c(backend, handle):
        if "step:2/" in log.read_text():    # H0 #0 has printed its first steps
            raise KeyboardInterrupt
    cli.backend = cli.memory(scripted(H0=FakeRun(polls=5)), on_poll=ctrl_c)
    out = cli("run", exp, cwd=tmp_path)
    assert out.returncode == 130, out.stderr
    assert cli.backend.cancelled == ["mem-0"] and cli.backend.running() == []
    rec = json.loads((res / "H0" / "000-1" / "result.json").read_text())
    assert rec["status"] == "interrupted" and "Ctrl-C" in rec["message"]
    assert "step:2/" in log.read_text()   # its partial log is kept
    cli.backend.on_poll = None
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    assert sorted((r["run_id"], r["status"]) for r in results_of(res) if r["hypothesis"] == "H0") == [
        ("000-1", "interrupted"), ("000-2", "ok")]


def test_runs_share_one_compile_cache_unless_turned_off(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1)
    out = cli("run", exp, "--dry-run", cwd=tmp_path)
    cache = tmp_path / "results" / "exp" / ".cache"
    assert out.stdout.count(f"TORCHINDUCTOR_CACHE_DIR={cache}/inductor") == 2
    assert f"TRITON_CACHE_DIR={cache}/triton" in out.stdout
    off = cli("run", exp, "--dry-run", "--no-compile-cache", cwd=tmp_path)
    assert "TORCHINDUCTOR_CACHE_DIR" not in off.stdout
    write_experiment(tmp_path, runs=1, extra_exp="compile_cache = false")
    assert "TORCHINDUCTOR_CACHE_DIR" not in cli("run", exp, "--dry-run", cwd=tmp_path).stdout
