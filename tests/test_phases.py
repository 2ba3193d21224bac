"""Issue 27: every attempt's time split into phases, and what it cost in GPU-seconds.

The in-memory backend's clock is its polls (``tick_s`` each): a log written one line per
poll puts each landmark line at a known second, so every phase has an exact expected value.
"""
from __future__ import annotations

import json
import math

import pytest

from conftest import memory_runner, scripted, write_experiment
from harness.records import PHASE_KEYS, RunRecord, gpu_totals
from harness.run.backends.memory import FakeRun

# one line per poll (log_polls = 8): line i arrives at poll i + 1; the process exits at poll 11
LOG = "\n".join([
    "Running Python 3.11.7",                                             # 1 s: first output
    "Running PyTorch 2.5.1 compiled for CUDA 12.4",                      # 2
    "warmup: 1500ms compile and untimed warm-up, 2100ms since process start",  # 3
    "step:0/3 val_loss:10.8258 train_time:0ms step_avg:0.03ms",          # 4: first step line
    "step:1/3 train_time:1000ms step_avg:1000.00ms",                     # 5
    "step:2/3 train_time:2000ms step_avg:1000.00ms",                     # 6
    "step:3/3 train_time:2500ms step_avg:833.33ms",                      # 7: the end of the steps
    "step:3/3 val_loss:3.2700 train_time:2500ms step_avg:833.33ms",      # 8
]) + "\n"


def _one_run(tmp_path, memory, run: FakeRun, nproc=1, **options):
    path = write_experiment(tmp_path, runs=1, h0_args={"num_iterations": 3}, h1_args={"num_iterations": 3},
                            extra_defaults="")
    if nproc != 1:
        path.write_text(path.read_text().replace("nproc_per_node = 1", f"nproc_per_node = {nproc}"))
    backend = memory(scripted(steps={"H0": 3, "H1": 3}, H0=run, H1=run), tick_s=1.0)
    r = memory_runner(tmp_path, path, backend, **options)
    slots = r.run()
    return slots[("H0", 0)].records[-1], slots


def test_phases_of_a_finished_run_follow_its_lines(tmp_path, memory):
    rec, _ = _one_run(tmp_path, memory, FakeRun(log_text=LOG, polls=11, log_polls=8), nproc=4)
    p = rec.phases
    assert set(p) == set(PHASE_KEYS)
    assert p["to_first_output_s"] == 1.0
    assert p["warmup_s"] == 1.5                  # the script's own line
    assert p["to_first_step_s"] == 4.0
    assert p["train_s"] == 2.5                   # the log's train_time
    assert p["between_steps_s"] == 0.5           # 7 - 4 s of steps, 2.5 of them timed
    assert p["after_last_step_s"] == 4.0         # 7 s to the exit at 11 s
    assert p["teardown_s"] == 0.0                # the memory clock stops at the exit
    assert rec.wall_s == 11.0
    assert p["to_first_step_s"] + p["between_steps_s"] + p["train_s"] + p["after_last_step_s"] == rec.wall_s
    assert rec.gpus_used == 4 and rec.gpu_s == 44.0   # wall x nproc_per_node


def test_a_failed_attempt_keeps_what_is_known(tmp_path, memory):
    cut = "\n".join(LOG.splitlines()[:6]) + "\nTraceback (most recent call last):\nRuntimeError: boom\n"
    rec, _ = _one_run(tmp_path, memory, FakeRun(log_text=cut, polls=10, log_polls=8, exit_code=1),
                      retries=0)
    assert rec.status == "failed"
    p = rec.phases
    assert p["to_first_step_s"] == 4.0 and p["train_s"] == 2.0     # trained to step 2
    # its last step line (step 2) came at 6 s (its log was 8 lines over 8 polls): the crash after
    assert p["after_last_step_s"] == 4.0 and rec.gpu_s == 10.0


def test_a_run_that_never_printed_a_step_has_no_first_step(tmp_path, memory):
    rec, _ = _one_run(tmp_path, memory, FakeRun(log_text="Running Python 3.11\nerror: bad flag\n",
                                                polls=3, exit_code=2), retries=0)
    assert rec.phases["to_first_step_s"] is None and rec.phases["train_s"] is None
    assert rec.phases["to_first_output_s"] is not None and rec.gpu_s == 3.0


def test_an_interrupted_attempt_counts_its_gpu_seconds(tmp_path, memory):
    from harness.run.runner import Stopped
    path = write_experiment(tmp_path, runs=1, h0_args={"num_iterations": 3}, h1_args={"num_iterations": 3})

    def ctrl_c(backend, handle):
        if backend.polls == 5:
            raise KeyboardInterrupt()
    backend = memory(scripted(steps={"H0": 3, "H1": 3}, H0=FakeRun(log_text=LOG, polls=11, log_polls=8)),
                     tick_s=1.0, on_poll=ctrl_c)
    with pytest.raises(Stopped):
        memory_runner(tmp_path, path, backend).run()
    rec = RunRecord.load(next((tmp_path / "results").rglob("result.json")))
    assert rec.status == "interrupted"
    assert rec.gpu_s == 5.0 and rec.phases["to_first_step_s"] == 4.0


def test_gpu_totals_count_every_attempt_and_the_training_share(tmp_path, memory):
    run = FakeRun(log_text=LOG, polls=11, log_polls=8)
    _, slots = _one_run(tmp_path, memory, run)
    records = [r for s in slots.values() for r in s.records]
    t = gpu_totals(records + [RunRecord("x", "H0", 0, 0, "ok")])   # a record of schema 1: no cost
    assert (t.attempts, t.unknown) == (2, 1)
    assert t.gpu_s == 22.0 and t.train_gpu_s == 5.0
    assert math.isclose(t.overhead_share, 1 - 5 / 22)
    assert "GPU-seconds spent 22.0 over 2 attempts" in t.line() and "overhead 77%" in t.line()


def test_phases_are_stored_in_result_json_of_schema_2(tmp_path, memory):
    _one_run(tmp_path, memory, FakeRun(log_text=LOG, polls=11, log_polls=8))
    data = json.loads(next((tmp_path / "results").rglob("result.json")).read_text())
    assert data["schema_version"] == 2
    assert data["gpu_s"] == 11.0 and data["phases"]["train_s"] == 2.5


def test_a_real_local_run_splits_its_wall_time_plausibly(tmp_path):
    from conftest import STAND_INS, harness
    exp = write_experiment(tmp_path, runs=1, script=STAND_INS / "timed_train.py",
                           h0_args={"num_iterations": 4}, h1_args={"num_iterations": 4})
    out = harness("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for rec in map(RunRecord.load, (tmp_path / "results" / "exp").rglob("result.json")):
        p = rec.phases
        assert p["to_first_step_s"] >= 0.3 and p["after_last_step_s"] >= 0.3, p
        assert 0.4 <= p["train_s"] < 0.4 + 0.2, p
        parts = p["to_first_step_s"] + p["between_steps_s"] + p["train_s"] + p["after_last_step_s"]
        assert abs(parts - rec.wall_s) < 0.3, (p, rec.wall_s)   # a poll is 0.05 s; the machine may lag
        assert 0 <= p["to_first_output_s"] <= p["to_first_step_s"] and 0 <= p["teardown_s"] < 1.0
        assert rec.gpu_s == rec.wall_s and rec.gpus_used == 1
    assert "GPU-seconds" in out.stderr and "of which timed training" in out.stderr


def test_status_shows_each_hypothesis_gpu_seconds_and_overhead(tmp_path, memory, cli):
    _one_run(tmp_path, memory, FakeRun(log_text=LOG, polls=11, log_polls=8), nproc=2)
    res = tmp_path / "results" / "exp"
    out = cli("status", res, cwd=tmp_path)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cost (every attempt"))
    assert lines[start + 1].split() == ["hypothesis", "GPU-seconds", "training", "overhead", "attempts"]
    # 11 s of wall on 2 GPUs; 2.5 s of timed training: 1 - 5/22 overhead
    assert lines[start + 2].split() == ["H0", "22.0", "5.0", "77%", "1"]
    # a record of schema 1 has no cost: n/a, never a zero
    for p in res.glob("H1/*/result.json"):
        data = json.loads(p.read_text())
        data = {k: v for k, v in data.items() if k not in ("gpu_s", "gpus_used", "phases", "schema_version")}
        p.write_text(json.dumps(data))
    lines = cli("status", res, cwd=tmp_path).stdout.splitlines()
    assert lines[start + 3].split() == ["H1", "n/a", "n/a", "n/a", "1"]


def test_harness_run_ends_with_the_gpu_seconds_spent(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=1, h0_args={"num_iterations": 3}, h1_args={"num_iterations": 3})
    cli.backend = cli.memory(scripted(steps={"H0": 3, "H1": 3}, H0=FakeRun(log_text=LOG, polls=11, log_polls=8),
                                      H1=[FakeRun(failed=True, polls=4), FakeRun(log_text=LOG, polls=11, log_polls=8)]),
                             tick_s=1.0)
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # three attempts: 11 + 4 + 11 s; timed training 2.5 + 2.5 s (the failed one's 10 steps of
    # 98 s / 20 before its crash: 49 s of train_time in 4 s of wall is the fake's own figure)
    line = next(x for x in out.stderr.splitlines() if x.startswith("GPU-seconds spent"))
    assert line.startswith("GPU-seconds spent 26.0 over 3 attempts (every status), of which timed training")


def test_a_timed_out_attempt_is_charged_to_its_kill(tmp_path, memory):
    # a hang prints half its log at once, then nothing: killed at the first poll past 5 s
    rec, _ = _one_run(tmp_path, memory, FakeRun(log_text=LOG, polls=math.inf), retries=0, timeout_s=5)
    assert rec.status == "timeout" and rec.wall_s == 6.0 and rec.gpu_s == 6.0
    p = rec.phases
    assert p["to_first_step_s"] == 0.0 and p["train_s"] == 0.0     # its step 0, read before the first poll
    assert p["after_last_step_s"] == 6.0
