"""Issue 27: plans in GPU-hours. The cost model (harness/design/cost.py), its flags (one place:
harness/cli/costs.py) and what plan and simulate report with them."""
from __future__ import annotations

import json
import math

import pytest

from conftest import memory_runner, scripted, write_experiment
from harness.design import cost
from harness.run.backends.memory import FakeRun

RUN = cost.RunCost(gpus=8, to_first_step_s=60.0, train_s=98.0, after_last_step_s=5.0, teardown_s=2.0)
FLAGS = ["--time-sigma", "0.1", "--time-delta", "-0.2", "--loss-mean", "3.277", "--loss-sigma", "0.001",
         "--sims", "400"]


def test_a_run_costs_its_gpus_times_every_phase():
    assert RUN.wall_s == 165.0 and RUN.gpu_s(1) == 8 * 165.0
    assert math.isclose(RUN.overhead_share, 1 - 98 / 165)
    # warm workers: one start-up for the arm's 10 runs
    assert RUN.gpu_s(10, warm=True) == 8 * (60.0 + 10 * 105.0)
    assert RUN.gpu_s(0, warm=True) == 0.0


def test_gpu_hours_follow_the_runs_of_each_arm_and_their_price():
    # the sequential design stops the control early: its arms' runs differ
    slow = cost.RunCost(gpus=8, to_first_step_s=60.0, train_s=100.0)
    h = cost.gpu_hours({"H0": 6.5, "H1": 10.0}, {"H0": RUN, "H1": slow}, price=2.0)
    assert math.isclose(h.hours_by_arm["H0"], 6.5 * 8 * 165 / 3600)
    assert math.isclose(h.hours_by_arm["H1"], 10 * 8 * 160 / 3600)
    assert math.isclose(h.hours, (6.5 * 8 * 165 + 10 * 8 * 160) / 3600) and math.isclose(h.cost, 2 * h.hours)
    assert h.to_dict()["runs_by_arm"] == {"H0": 6.5, "H1": 10.0}
    warm = cost.gpu_hours({"H0": 6.5, "H1": 10.0}, RUN, warm=True)
    assert math.isclose(warm.hours, 8 * (2 * 60 + 16.5 * 105) / 3600)
    with pytest.raises(ValueError):
        cost.RunCost(gpus=0, to_first_step_s=1, train_s=1)


def test_simulate_compares_the_designs_in_gpu_hours(cli, tmp_path):
    out = cli("simulate", *FLAGS, "--run-cost", "startup=60,train=98,after=5,teardown=2", "--gpus", "8",
              "--gpu-hour-price", "2.5", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    d = r["gpu_hours"]["designs"]
    seq = d["sequential"]
    assert seq["runs_by_arm"] == {"control": round(r["mean_control_runs"], 4),
                                  "treatment": round(r["mean_treatment_runs"], 4)}
    assert math.isclose(seq["gpu_hours"], r["mean_total_runs"] * 8 * 165 / 3600, rel_tol=1e-4)
    assert math.isclose(d["fixed"]["gpu_hours"], 2 * r["max_runs"] * 8 * 165 / 3600, rel_tol=1e-4)
    assert math.isclose(seq["cost"], 2.5 * seq["gpu_hours"], rel_tol=1e-3)
    assert r["gpu_hours"]["run_cost"]["control"]["gpu_s"] == 8 * 165
    text = cli("simulate", *FLAGS, "--run-cost", "startup=60,train=98", "--gpus", "8", cwd=tmp_path).stdout
    assert "GPU-hours per decision, sequential:" in text and "GPU-hours per decision, fixed:" in text


def test_simulate_names_the_borrowed_design(cli, tmp_path):
    out = cli("simulate", *FLAGS[:6], "--sims", "300", "--borrowed-loss-sigma", "0.001", "--borrowed-df", "9",
              "--run-cost", "startup=60,train=98", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)["gpu_hours"]["designs"]) == {"borrowed", "fixed"}


def test_plan_reports_gpu_hours_for_the_fixed_and_sequential_designs(cli, tmp_path):
    # --max-runs 10: a sequential design whose boundaries ship with the harness (no calibration)
    out = cli("plan", *FLAGS, "--max-runs", "10", "--run-cost", "startup=60,train=98,after=5,teardown=2", "--gpus", "8",
              "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)["treatments"][0]
    d = t["gpu_hours"]["designs"]
    assert d["fixed"]["runs_by_arm"] == {"control": t["runs_fixed"], "treatment": t["runs_fixed"]}
    s = t["sequential"]
    assert math.isclose(d["sequential"]["gpu_hours"],
                        (s["mean_control_runs"] + s["mean_treatment_runs"]) * 8 * 165 / 3600, rel_tol=1e-4)
    plain = cli("plan", *FLAGS, "--max-runs", "10", cwd=tmp_path)
    assert plain.returncode == 0 and "GPU-hours: n/a (no run cost" in plain.stdout   # none made up
    assert "GPU-hours per decision" not in plain.stdout


def _pilot(tmp_path, memory):
    """A results folder whose H0 runs start up in 4 s and H1's in 6 s (one log line per poll)."""
    def log(startup_lines: int, train_ms: float, loss: float) -> str:
        head = ["Running Python 3.11.7"] + ["compiling"] * (startup_lines - 1)
        return "\n".join(head + [f"step:0/2 val_loss:10.0 train_time:0ms step_avg:0.0ms",
                                 f"step:1/2 train_time:{train_ms / 2}ms step_avg:1.0ms",
                                 f"step:2/2 train_time:{train_ms}ms step_avg:1.0ms",
                                 f"step:2/2 val_loss:{loss} train_time:{train_ms}ms step_avg:1.0ms"]) + "\n"

    def run(startup, index):
        text = log(startup, 2000.0 + 10 * index, 3.27 + 0.001 * index)
        return FakeRun(log_text=text, polls=len(text.splitlines()) + 1, log_polls=len(text.splitlines()))
    path = write_experiment(tmp_path, runs=3, h0_args={"num_iterations": 2}, h1_args={"num_iterations": 2})
    backend = memory(scripted(steps={"H0": 2, "H1": 2}, H0=lambda i, a: run(4, i), H1=lambda i, a: run(6, i)),
                     tick_s=1.0)
    memory_runner(tmp_path, path, backend).run()
    return tmp_path / "results" / "exp"


def test_costs_from_a_results_folder_are_each_arms_median_phases(cli, memory, tmp_path):
    res = _pilot(tmp_path, memory)
    out = cli("simulate", *FLAGS, "--costs-from", res, "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rc = json.loads(out.stdout)["gpu_hours"]["run_cost"]
    # the log's line i arrives at poll i + 1: the first step line after 4 (H0) or 6 (H1) lines
    assert rc["control"]["to_first_step_s"] == 5.0 and rc["treatment"]["to_first_step_s"] == 7.0
    assert rc["control"]["train_s"] == 2.01 and rc["control"]["gpus"] == 1       # the median run
    assert "3 finished runs of H0" in rc["control"]["source"]
    # a flag overrides one phase of the medians
    out = cli("simulate", *FLAGS, "--costs-from", res, "--run-cost", "train=98", "--format", "json", cwd=tmp_path)
    assert json.loads(out.stdout)["gpu_hours"]["run_cost"]["treatment"]["train_s"] == 98.0
    # plan on a pilot that recorded its phases prices it by its own arms
    out = cli("plan", res, "--sims", "300", "--max-runs", "10", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)["treatments"][0]
    assert t["gpu_hours"]["run_cost"]["H1"]["to_first_step_s"] == 7.0


@pytest.mark.parametrize("argv, words", [
    (["--run-cost", "train=98"], "needs startup="),
    (["--run-cost", "startup=60,train=fast"], "train=fast is not a number"),
    (["--run-cost", "boot=60"], "'boot=60' is not PHASE=SECONDS"),
    (["--gpus", "8"], "need a run cost"),
    (["--run-cost", "startup=1,train=1", "--gpus", "0"], "--gpus 0"),
    (["--costs-from", "nowhere"], "--costs-from nowhere: not a results folder"),
])
def test_bad_cost_flags_get_one_line_and_exit_2(cli, tmp_path, argv, words):
    out = cli("simulate", *FLAGS, *argv, cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and words in out.stderr, out.stderr
