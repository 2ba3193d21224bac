"""The opt-in speed probe (harness/run/probe.py) and the CUPED-adjusted difference (harness/analysis/cuped.py)."""
import dataclasses
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from harness.analysis import cuped

from conftest import ROOT, harness, results_of, scripted, write_experiment

PROBE = ROOT / "harness" / "run" / "probe.py"


def test_cuped_equals_the_ancova_regression_and_removes_node_variance():
    rng = random.Random(2)
    c, t = [], []
    for arm, d in ((c, 0.0), (t, -0.39)):
        for _ in range(12):
            node = rng.choice((0.0, 0.4, -0.3, 0.6))            # node speed shows in the probe and the run
            x = 2.0 * (1 + node / 10) + rng.gauss(0, 0.002)
            arm.append((x, 98.0 + 2.5 * node + d + rng.gauss(0, 0.07)))
    r = cuped.adjust(c, t)
    # independent check: least squares y ~ 1 + treatment + x gives the same slope and difference
    X = np.array([[1.0, 0.0, x] for x, _ in c] + [[1.0, 1.0, x] for x, _ in t])
    y = np.array([v for _, v in c] + [v for _, v in t])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    assert r.theta == pytest.approx(beta[2], rel=1e-9) and r.delta == pytest.approx(beta[1], rel=1e-9)
    assert r.variance_removed > 0.8 and r.p < r.plain_p
    assert r.delta == pytest.approx(-0.39, abs=0.08)
    (head, line) = cuped.lines({"H1": r})
    assert "CUPED" in head and "never in it" in head and "variance of the difference removed" in line


def test_cuped_needs_probe_times():
    assert cuped.adjust_all({"H0": [(None, 1.0)] * 3, "H1": [(None, 1.0)] * 3}, "H0") == {}
    few = cuped.adjust_all({"H0": [(1.0, 1.0), (1.1, 1.2)], "H1": [(1.0, 1.0)] * 3}, "H0")["H1"]
    assert "needs 3 runs per arm" in few.problem


def test_probe_runs_the_command_after_it_with_its_exit_code(tmp_path):
    out = tmp_path / "probe.json"
    p = subprocess.run([sys.executable, str(PROBE), "--out", str(out), "--nproc", "1", "--",
                        sys.executable, "-c", "import sys; print('trained'); sys.exit(3)"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    assert p.stdout.index("harness-probe: ") < p.stdout.index("trained")
    data = json.loads(out.read_text())
    assert data["probe_s"] > 0 and data["matmul_s"] == data["probe_s"] and data["device"] == "cpu"
    missing = subprocess.run([sys.executable, str(PROBE), "--out", str(out), "--", "no-such-command-x"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 127 and "could not start 'no-such-command-x'" in missing.stdout


def test_speed_probe_key_runs_the_probe_before_each_run(tmp_path):
    """End to end, once: the real probe runs first in each run's tree, then the run."""
    exp = write_experiment(tmp_path, runs=1, extra_exp="speed_probe = true")
    out = harness("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = tmp_path / "results" / "exp"
    recs = results_of(res)
    assert len(recs) == 2 and all(r["status"] == "ok" and r["probe_s"] > 0 for r in recs)
    for r in recs:
        folder = res / r["hypothesis"] / r["run_id"]
        assert json.loads((folder / "probe.json").read_text())["probe_s"] == r["probe_s"]
        log = (folder / "log.txt").read_text()
        assert log.index("harness-probe: ") < log.index("step:0/")


def _probe_writes(seconds):
    """What the probe leaves in a run folder (the memory backend runs no command)."""
    def script(workdir):
        (workdir.parent / "probe.json").write_text(json.dumps({"probe_s": seconds, "matmul_s": seconds}))
    return script


def test_speed_probe_times_reach_the_records_and_analyze_reports_cuped(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=3, extra_exp="speed_probe = true")
    base = scripted()
    cli.backend = cli.memory(lambda h, i, a: dataclasses.replace(
        base(h, i, a), script=_probe_writes(2.0 + 0.01 * i + (0.005 if h == "H1" else 0.0))))
    out = cli("run", exp, "--plain", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = tmp_path / "results" / "exp"
    recs = results_of(res)
    assert len(recs) == 6 and all(r["status"] == "ok" and r["probe_s"] > 0 for r in recs)
    for r in recs:
        folder = res / r["hypothesis"] / r["run_id"]
        assert json.loads((folder / "probe.json").read_text())["probe_s"] == r["probe_s"]
        argv = json.loads((folder / "launch.json").read_text())["argv"]
        assert argv[1:6] == [str(PROBE), "--out", str(folder / "probe.json"), "--nproc", "1"]
        assert argv[6] == "--" and "fake_train.py" in " ".join(argv[7:])
    text = cli("analyze", res, cwd=tmp_path).stdout
    assert "speed probe: time difference adjusted" in text
    js = json.loads(cli("analyze", res, "--format", "json", cwd=tmp_path).stdout)
    sp = js["speed_probe"]["H1"]
    assert sp["runs"] == {"H0": 3, "H1": 3} and sp["plain_time_delta"] == pytest.approx(
        js["hypotheses"][1]["time_delta"])   # the community's column is the plain difference
    # without the key there is no probe and no block
    plain = write_experiment(tmp_path, name="plain", runs=2)
    cli.backend = cli.memory()
    assert cli("run", plain, "--plain", cwd=tmp_path).returncode == 0
    assert all(r["probe_s"] is None for r in results_of(tmp_path / "results" / "plain"))
    assert "probe.py" not in json.dumps([json.loads(p.read_text())["argv"]
                                         for p in (tmp_path / "results" / "plain").glob("*/*/launch.json")])
    assert "speed probe" not in cli("analyze", tmp_path / "results" / "plain", cwd=tmp_path).stdout


def test_probe_with_several_processes_times_an_all_reduce(tmp_path):
    # without CUDA the same code path spawns the processes and all-reduces over gloo
    out = tmp_path / "probe.json"
    p = subprocess.run([sys.executable, str(PROBE), "--out", str(out), "--nproc", "2"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    assert data["processes"] == 2 and data["allreduce_s"] > 0
    assert data["probe_s"] == pytest.approx(data["matmul_s"] + data["allreduce_s"])
