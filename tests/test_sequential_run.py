"""``harness run --until-decisive`` in process, on the in-memory backend (fake_train.py's numbers)."""
from __future__ import annotations

import json

import math

from conftest import results_of, scripted, write_experiment
from harness.run.backends.memory import FakeRun


def _count(folder, hyp):
    return sum(1 for r in results_of(folder) if r["hypothesis"] == hyp and r["status"] in ("ok", "diverged"))


def test_until_decisive_stops_early_and_resumes_with_the_same_decision(exp_dir, cli):
    exp = write_experiment(exp_dir, name="seq", runs=10)
    cli.backend = cli.memory()
    r = cli("run", exp, "--until-decisive", "--plain", cwd=exp_dir)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "H1 time: PASS" in out and "H1 loss: PASS" in out
    assert "stop: every criterion is decided" in out
    res = exp_dir / "results" / "seq"
    n0, n1 = _count(res, "H0"), _count(res, "H1")
    assert 2 <= n0 <= n1 < 10                       # far fewer than 10 + 10
    # running the same command again launches nothing and decides the same
    n = len(cli.backend.launched)
    assert n == n0 + n1
    again = cli("run", exp, "--until-decisive", "--plain", cwd=exp_dir)
    assert again.returncode == 0, again.stderr
    assert len(cli.backend.launched) == n
    assert (_count(res, "H0"), _count(res, "H1")) == (n0, n1)
    assert "H1 time: PASS" in again.stdout + again.stderr and "H1 loss: PASS" in again.stdout + again.stderr
    # the plan is stored beside the results; analysis replays it and does not call the
    # runs that were never needed "not run yet"
    plan = json.loads((res / "sequential.json").read_text())
    assert plan["max_runs"] == 10 and plan["boundaries"]["time_pass"]
    table = cli("analyze", res, cwd=exp_dir)
    assert table.returncode == 0, table.stderr
    assert "sequential decisions" in table.stdout and "H1 time: PASS" in table.stdout
    assert "not run yet" not in table.stdout
    js = json.loads(cli("analyze", res, "--format", "json", cwd=exp_dir).stdout)
    assert js["sequential"]["done"] is True
    # a different --max-runs cannot silently change a running sequential design
    other = cli("run", exp, "--until-decisive", "--max-runs", "6", cwd=exp_dir)
    assert other.returncode == 2 and "fixed at --max-runs 10" in other.stderr


def test_until_decisive_diverged_treatment_fails_loss_and_stops_both_arms(exp_dir, cli):
    exp = write_experiment(exp_dir, name="seqnan", runs=4, h1_args={"mode": "nan"})
    cli.backend = cli.memory(scripted(H1=FakeRun(val_loss=math.nan)))
    r = cli("run", exp, "--until-decisive", "--plain", cwd=exp_dir)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "H1 loss: FAIL" in out and "diverged" in out
    res = exp_dir / "results" / "seqnan"
    assert _count(res, "H0") <= 4 and _count(res, "H1") <= 4
    recs = [json.loads(p.read_text()) for p in res.glob("H1/*/result.json")]
    assert recs and all(x["status"] == "diverged" for x in recs)
