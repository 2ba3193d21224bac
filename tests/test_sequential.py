"""Sequential stopping (--until-decisive), ``harness plan`` and ``harness simulate``.

Error rates and costs are seeded simulations of the procedure with the very
boundaries ``SequentialPlan`` uses; the bound "at or below alpha within Monte Carlo
error" is alpha + 3 standard errors of the simulated rate.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness import cli
from harness.design import sequential as seq
from harness.errors import UserError
from harness.records import RunRecord
from harness.design.simulate import simulate

# Reference raw values of the untied-value-embeddings record (statistics.md).
H0L = [3.2776, 3.2785, 3.277, 3.2772, 3.2788, 3.2764, 3.2763, 3.2784, 3.2788, 3.2791]
H0T = [98.081, 98.053, 97.895, 98.193, 98.136, 98.093, 98.11, 98.124, 98.156, 98.225]
H1L = [3.2784, 3.2778, 3.2792, 3.2799, 3.2776, 3.2782, 3.2771, 3.2786, 3.2775, 3.2794]
H1T = [97.715, 97.704, 97.725, 97.666, 97.725, 97.632, 97.755, 97.831, 97.697, 97.691]

UVE = dict(time_sigma=0.0904, treatment_time_sigma=0.0533, time_delta=-0.3925)


def rec(h, i, loss, time, order=None, status="ok"):
    return RunRecord(run_id=f"{i:03d}-1", hypothesis=h, index=i, seed=i, status=status,
                     order=order, val_loss=loss, train_time_s=time)


def drive(plan, data, max_runs=10):
    """Run an interleaved experiment the way the runner does: launch only arms that need
    runs, look after every completed run, stop when done. data: {arm: [(loss, time)]}."""
    recs = {h: [] for h in data}
    names = list(data)
    order = 0
    look = plan.look(recs)
    for i in range(max_runs):
        for h in names:
            if look.done:
                return look, recs
            if not look.need.get(h, False):
                continue
            loss, t = data[h][i]
            recs[h].append(rec(h, i, loss, t, order, "diverged" if math.isnan(loss) else "ok"))
            order += 1
            look = plan.look(recs)
    return look, recs


# ------------------------------------------------------------------ calibration
def test_first_look_is_exact_spending_and_boundaries_are_small():
    b = seq.boundaries("one-sample", 0.01, 10, seq.RHO_PASS)
    assert len(b) == 9
    assert b[0] == pytest.approx(seq.TARGET * 0.01 * (2 / 10) ** 3)   # calibrated to 0.97 alpha
    assert all(0 < x < 0.01 for x in b)        # every look is stricter than the fixed test
    w = seq.boundaries("welch", 0.01, 10, seq.RHO_PASS)
    assert len(w) == 9 and all(0 < x < 0.01 for x in w)


def test_calibration_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(seq, "PACKAGED", tmp_path / "none")        # not the committed ones
    first = seq.calibration("welch", 0.05, 4, 3.0)
    files = list((tmp_path / "sequential").glob("welch-*.json"))
    assert len(files) == 1
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "other"))   # no cache: recompute
    again = seq.calibration("welch", 0.05, 4, 3.0)
    assert again["boundaries"] == first["boundaries"]
    assert first["error"] <= 0.05 + 1e-9
    # the least favourable variance ratio holds the level; equal variances are below it
    assert max(first["error_by_w"].values()) == pytest.approx(seq.TARGET * 0.05, rel=0.02)
    assert first["error_by_w"]["0.5"] <= 0.05


# ------------------------------------------------------------------ error rates under monitoring
SIGMAS = [(0.03, 0.03), (0.09, 0.09), (0.2, 0.2), (0.09, 0.045), (0.09, 0.18)]


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_false_faster_rate_at_most_alpha(alpha):
    naive = []
    for i, (sc, st) in enumerate(SIGMAS):
        r = simulate(sc, 0.0, 3.2784, 0.0009, treatment_time_sigma=st, alpha_time=alpha,
                     sims=30_000, seed=100 + i)
        assert r["reject_rate"] <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / r["sims"]), (sc, st, r)
        naive.append(r["naive_reject_rate"])
    # the peeker who stops at the first p < alpha after every pair: about 3x alpha
    assert min(naive) > 2.5 * alpha


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_false_below_target_rate_at_most_alpha(alpha):
    for i, sigma in enumerate((0.0005, 0.001, 0.002)):
        r = simulate(0.09, -0.4, 3.28, sigma, alpha_loss=alpha, sims=30_000, seed=200 + i)
        assert r["loss_pass_rate"] <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / r["sims"]), (sigma, r)
        assert r["naive_loss_pass_rate"] > 2.5 * alpha


# ------------------------------------------------------------------ cost against 10 + 10 runs
def test_cost_untied_value_embeddings():
    r = simulate(**UVE, loss_mean=3.2784, loss_sigma=0.0009, sims=20_000, seed=1)
    assert r["mean_total_runs"] <= 15
    assert r["reject_rate"] >= 0.97 and r["loss_pass_rate"] >= 0.97 and r["both_rate"] >= 0.97
    assert r["fixed_both_rate"] >= 0.98          # the fixed design's power, for comparison
    assert r["max_total_runs"] <= 20


def test_cost_same_speedup_lower_loss():
    r = simulate(**UVE, loss_mean=3.2778, loss_sigma=0.0010, sims=20_000, seed=2)
    assert r["mean_total_runs"] <= 14
    assert r["both_rate"] >= 0.97


def test_cost_no_speedup_never_more_than_fixed():
    r = simulate(time_sigma=0.0904, treatment_time_sigma=0.0533, time_delta=0.0,
                 loss_mean=3.2784, loss_sigma=0.0009, sims=20_000, seed=3)
    assert r["mean_total_runs"] <= 20 and r["max_total_runs"] <= 20
    assert r["mean_control_runs"] <= 10 and r["mean_treatment_runs"] <= 10
    assert r["reject_rate"] <= 0.001 + 3 * math.sqrt(0.001 / r["sims"])


def test_cost_loss_clearly_failing():
    r = simulate(**UVE, loss_mean=3.2815, loss_sigma=0.001, sims=20_000, seed=4)
    assert r["mean_total_runs"] <= 12
    assert r["loss_pass_rate"] == 0.0


def test_min_effect_stops_a_null_treatment_early():
    base = simulate(0.09, 0.0, 3.2784, 0.0009, sims=5000, seed=5)
    fut = simulate(0.09, 0.0, 3.2784, 0.0009, min_effect=0.1, sims=5000, seed=5)
    assert fut["mean_control_runs"] < base["mean_control_runs"] - 2
    assert fut["reject_rate"] <= base["reject_rate"] + 1e-12


# ------------------------------------------------------------------ the look() interface
@pytest.fixture
def plan():
    return seq.SequentialPlan("H0", ["H1"], alpha_time=0.001, alpha_loss=0.01, target_loss=3.28,
                              min_effect=0.0, max_runs=10)


def test_needs_two_runs_per_arm_first(plan):
    look = plan.look({"H0": [rec("H0", 0, 3.2776, 98.08, 0)], "H1": [rec("H1", 0, 3.2784, 97.7, 1)]})
    assert look.need == {"H0": True, "H1": True} and not look.done
    assert look.decisions["H1"]["time"]["decision"] == "open"
    assert any("needs 2 runs" in line for line in look.lines)
    empty = plan.look({})
    assert empty.need == {"H0": True, "H1": True}


def test_reference_record_in_launch_order(plan):
    look, recs = drive(plan, {"H0": list(zip(H0L, H0T)), "H1": list(zip(H1L, H1T))})
    assert look.done
    d = look.decisions["H1"]
    assert d["time"]["decision"] == "pass" and d["loss"]["decision"] == "pass"
    assert len(recs["H0"]) == d["time"]["look"] < 10        # control stopped at the time decision
    assert len(recs["H1"]) == max(d["time"]["look"], d["loss"]["look"])
    assert len(recs["H0"]) + len(recs["H1"]) < 20
    assert look.lines[-1].startswith("stop: every criterion is decided")
    assert "PASS" in look.lines[0] and "boundary" not in look.lines[-1]


def test_control_stops_when_time_decided_and_treatment_continues(plan):
    c = [rec("H0", i, 3.278, 98.0 + x, i * 2) for i, x in enumerate([0.05, -0.05, 0.1, -0.1, 0.0, 0.02, -0.02])]
    t = [rec("H1", i, 3.2795 + x, 97.0 + y, i * 2 + 1)
         for i, (x, y) in enumerate([(0.001, 0.05), (-0.001, -0.05), (0.0008, 0.1), (-0.0008, -0.1),
                                     (0.0, 0.0), (0.0003, 0.02), (-0.0003, -0.02)])]
    look = plan.look({"H0": c, "H1": t})
    assert look.decisions["H1"]["time"]["decision"] == "pass"
    assert look.decisions["H1"]["loss"]["decision"] == "open"
    assert look.need == {"H0": False, "H1": True} and not look.done


def test_diverged_treatment_run_fails_loss(plan):
    recs = {"H0": [rec("H0", i, H0L[i], H0T[i], 2 * i) for i in range(3)],
            "H1": [rec("H1", 0, H1L[0], H1T[0], 1), rec("H1", 1, math.nan, H1T[1], 3, "diverged"),
                   rec("H1", 2, H1L[2], H1T[2], 5)]}
    look = plan.look(recs)
    assert look.decisions["H1"]["loss"]["decision"] == "fail"
    assert "diverged" in look.decisions["H1"]["loss"]["why"]
    assert look.decisions["H1"]["time"]["decision"] == "open"
    # a lost cause: the verdict is FAIL whatever the time says, so both arms stop (finding 7)
    assert look.need == {"H0": False, "H1": False} and look.done
    assert "cannot matter" in look.reason
    # null loss from JSON (RunRecord.from_dict makes it NaN) behaves the same
    raw = RunRecord.from_dict({**json.loads(recs["H1"][1].to_json()), "val_loss": None})
    recs["H1"][1] = raw
    assert seq.SequentialPlan("H0", ["H1"], max_runs=10).look(recs).decisions["H1"]["loss"]["decision"] == "fail"


def test_failed_and_unknown_records_are_ignored(plan):
    recs = {"H0": [rec("H0", 0, 3.278, 98.0, 0), rec("H0", 1, None, None, 2, "failed")],
            "H1": [rec("H1", 0, 3.278, 97.6, 1)], "H9": [rec("H9", 0, 3.2, 90.0, 3)]}
    look = plan.look(recs)
    assert set(look.need) == {"H0", "H1"}
    assert look.decisions["H1"]["time"]["why"].startswith("needs 2 runs per arm (1 + 1")


def test_decisions_are_a_pure_function_of_the_records(plan):
    look, recs = drive(plan, {"H0": list(zip(H0L, H0T)), "H1": list(zip(H1L, H1T))})
    # runs that finished after the decision (parallel backends) change nothing
    more = {"H0": recs["H0"] + [rec("H0", 9, 3.2791, 90.0, 100)],
            "H1": recs["H1"] + [rec("H1", 9, 3.29, 99.0, 101)]}
    later = plan.look(more)
    for crit in ("time", "loss"):
        assert later.decisions["H1"][crit]["decision"] == look.decisions["H1"][crit]["decision"]
        assert later.decisions["H1"][crit]["look"] == look.decisions["H1"][crit]["look"]
    # the same records in another list order (sorted by launch order) give the same look
    shuffled = {h: list(reversed(v)) for h, v in recs.items()}
    assert plan.look(shuffled).decisions == look.decisions
    # a fresh plan (a resumed runner) and a plan rebuilt from its saved form agree
    fresh = seq.SequentialPlan("H0", ["H1"], max_runs=10)
    assert fresh.look(recs).decisions == look.decisions
    saved = seq.SequentialPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert saved.look(recs).decisions == look.decisions and saved.look(recs).lines == look.lines


def test_last_look_decides_every_criterion(plan):
    rng = np.random.default_rng(7)
    c = 98 + 0.09 * rng.standard_normal(10)
    t = 98 + 0.09 * rng.standard_normal(10)
    losses = 3.2800 + 0.001 * rng.standard_normal(10)
    recs = {"H0": [rec("H0", i, 3.278, c[i], 2 * i) for i in range(10)],
            "H1": [rec("H1", i, losses[i], t[i], 2 * i + 1) for i in range(10)]}
    look = plan.look(recs)
    assert look.done and look.need == {"H0": False, "H1": False}
    for crit in ("time", "loss"):
        assert look.decisions["H1"][crit]["decision"] in ("pass", "fail")


def test_min_effect_futility_fails_a_slower_treatment():
    p = seq.SequentialPlan("H0", ["H1"], max_runs=10, min_effect=0.2)
    c = [rec("H0", i, 3.278, 98.0 + x, 2 * i) for i, x in enumerate([0.05, -0.05, 0.08, -0.04])]
    t = [rec("H1", i, 3.278, 98.0 + x, 2 * i + 1) for i, x in enumerate([0.06, -0.03, 0.02, -0.01])]
    look = p.look({"H0": c, "H1": t})
    d = look.decisions["H1"]["time"]
    assert d["decision"] == "fail" and "not faster by 0.2 s" in d["why"]
    assert look.need["H0"] is False


def test_several_treatments_keep_the_control_running():
    p = seq.SequentialPlan("H0", ["H1", "H2"], max_runs=10)
    rng = np.random.default_rng(11)
    data = {"H0": [(3.278, 98.1 + 0.09 * z) for z in rng.standard_normal(10)],
            "H1": [(3.2778 + 0.001 * z, 97.6 + 0.05 * y) for z, y in rng.standard_normal((10, 2))],
            "H2": [(3.2778 + 0.001 * z, 98.1 + 0.09 * y) for z, y in rng.standard_normal((10, 2))]}
    look, recs = drive(p, data)
    assert look.decisions["H1"]["time"]["decision"] == "pass"
    h1_time_look = look.decisions["H1"]["time"]["look"]
    assert len(recs["H0"]) > h1_time_look        # H2's time question kept the control going
    assert len(recs["H0"]) == max(look.decisions[h]["time"]["look"] for h in ("H1", "H2"))
    assert look.done


def test_look_matches_the_vectorised_simulation(plan):
    """The scalar look and the Monte Carlo engine decide identically on the same data."""
    rng = np.random.default_rng(3)
    S, M = 60, 10
    c = 98 + 0.09 * rng.standard_normal((S, M))
    t = 98 - rng.uniform(0, 0.3, (S, 1)) + 0.06 * rng.standard_normal((S, M))
    losses = 3.28 - rng.uniform(-0.001, 0.002, (S, 1)) + 0.001 * rng.standard_normal((S, M))
    n = np.arange(2, M + 1)
    mc, vc = seq._moments(c - 98)
    mt, vt = seq._moments(t - 98)
    pt, pft, _ = seq.welch_p(mt - mc, vc, vt, n, plan.min_effect)
    kt, dt = seq.first_crossing(pt, plan.time_pass, pft, plan.time_fail, M)
    ml, vl = seq._moments(losses - 3.28)
    pl, pfl, _ = seq.one_sample_p(ml, vl, n)
    kl, dl = seq.first_crossing(pl, plan.loss_pass, pfl, plan.loss_fail, M)
    names = {1: "pass", -1: "fail"}
    for s in range(S):
        look = plan.replay({"H0": [rec("H0", i, 3.278, c[s, i], 2 * i) for i in range(M)],
                          "H1": [rec("H1", i, losses[s, i], t[s, i], 2 * i + 1) for i in range(M)]})
        assert look.decisions["H1"]["time"]["decision"] == names[int(dt[s])]
        assert look.decisions["H1"]["time"]["look"] == kt[s]
        assert look.decisions["H1"]["loss"]["decision"] == names[int(dl[s])]
        assert look.decisions["H1"]["loss"]["look"] == kl[s]


def test_resampled_reference_runs_stop_early_and_pass(plan):
    rng = np.random.default_rng(2024)
    totals, passed = [], 0
    for _ in range(60):
        i0, i1 = rng.integers(0, 10, 10), rng.integers(0, 10, 10)
        data = {"H0": [(H0L[i], H0T[i]) for i in i0], "H1": [(H1L[i], H1T[i]) for i in i1]}
        look, recs = drive(seq.SequentialPlan.from_dict(plan.to_dict()), data)
        assert look.done
        totals.append(len(recs["H0"]) + len(recs["H1"]))
        passed += seq.verdict(look, "H1") == "pass"
    assert passed >= 54
    assert np.mean(totals) <= 15


@pytest.mark.parametrize("kwargs", [dict(max_runs=1), dict(alpha_time=0.0), dict(alpha_loss=0.7),
                                    dict(min_effect=-1.0), dict(treatments=[]), dict(treatments=["H0"])])
def test_bad_parameters_are_user_errors(kwargs):
    args = dict(control="H0", treatments=["H1"])
    args.update(kwargs)
    with pytest.raises(UserError):
        seq.SequentialPlan(**args)


def test_saved_plan_with_wrong_shape_is_a_user_error(plan):
    d = plan.to_dict()
    d["boundaries"]["time_pass"] = d["boundaries"]["time_pass"][:3]
    with pytest.raises(UserError, match="time_pass"):
        seq.SequentialPlan.from_dict(d)


# ------------------------------------------------------------------ command line
def test_simulate_cli_json(capsys):
    rc = cli.main(["simulate", "--time-sigma", "0.0904", "--treatment-time-sigma", "0.0533",
                   "--time-delta", "-0.3925", "--loss-mean", "3.2784", "--loss-sigma", "0.0009",
                   "--sims", "2000", "--seed", "9", "--format", "json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("reject_rate", "loss_pass_rate", "both_rate", "mean_control_runs", "mean_treatment_runs",
                "mean_total_runs", "p95_total_runs", "sims"):
        assert key in r
    assert r["sims"] == 2000 and r["mean_total_runs"] <= 20
    rc = cli.main(["simulate", "--time-sigma", "0.09", "--time-delta", "0", "--loss-mean", "3.28",
                   "--loss-sigma", "0.001", "--sims", "500"])
    out = capsys.readouterr().out
    assert rc == 0 and "naive peek" in out and "runs per experiment" in out


@pytest.mark.parametrize("argv", [
    ["simulate", "--time-sigma", "-1", "--time-delta", "0", "--loss-mean", "3.28", "--loss-sigma", "0.001"],
    ["simulate", "--time-sigma", "0.09", "--time-delta", "0", "--loss-mean", "3.28", "--loss-sigma", "0.001",
     "--max-runs", "1"],
    ["simulate", "--time-sigma", "0.09", "--time-delta", "0", "--loss-mean", "3.28", "--loss-sigma", "0.001",
     "--sims", "0"],
    ["plan"],
    ["plan", "--time-sigma", "0.09"],
    ["plan", "/nonexistent/results"],
    ["plan", "--time-sigma", "0.09", "--time-delta", "-0.3", "--loss-mean", "3.278", "--loss-sigma", "0.001",
     "--power", "1.5"],
])
def test_bad_cli_input_exits_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_plan_from_flags(capsys):
    rc = cli.main(["plan", "--time-sigma", "0.0904", "--treatment-time-sigma", "0.0533", "--time-delta", "-0.3925",
                   "--loss-mean", "3.2784", "--loss-sigma", "0.0009", "--sims", "2000", "--format", "json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)["treatments"][0]
    assert 3 <= r["runs_time"] <= 5 and 6 <= r["runs_loss"] <= 10
    assert r["runs_fixed"] == max(r["runs_time"], r["runs_loss"])
    assert r["fixed_power_loss"] >= 0.9
    s = r["sequential"]
    assert s["max_runs"] == r["runs_fixed"]
    assert s["mean_control_runs"] < r["runs_fixed"] and s["mean_treatment_runs"] <= r["runs_fixed"]


def test_plan_no_speedup_says_never(capsys):
    rc = cli.main(["plan", "--time-sigma", "0.09", "--time-delta", "0.1", "--loss-mean", "3.2784",
                   "--loss-sigma", "0.0009", "--max-runs", "10", "--sims", "500"])
    out = capsys.readouterr().out
    assert rc == 0 and "never (not faster)" in out and "--max-runs 10" in out


def test_plan_from_results_folder(tmp_path, capsys):
    root = tmp_path / "untie-ve"
    spec = {"name": "untie-ve", "target_loss": 3.28, "alpha_time": 0.001, "alpha_loss": 0.01, "runs": 10,
            "min_effect": 0.0, "control": "H0",
            "hypotheses": [{"name": "H0", "control": True, "steps": 1600},
                           {"name": "H1", "control": False, "steps": 1575}]}
    root.mkdir()
    (root / "spec.json").write_text(json.dumps(spec))
    order = 0
    for i in range(10):
        for h, L, T in (("H0", H0L, H0T), ("H1", H1L, H1T)):
            r = rec(h, i, L[i], T[i], order)
            r.final_step = r.expected_steps = 1600 if h == "H0" else 1575
            r.save(root / h / r.run_id / "result.json")
            order += 1
    rc = cli.main(["plan", str(root), "--sims", "2000", "--max-runs", "10", "--format", "json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    (r,) = res["treatments"]
    assert r["name"] == "H1" and r["control"] == "H0" and r["runs"] == [10, 10]
    assert r["pilot_time_sigma"] == pytest.approx(0.0904, abs=1e-4)
    assert r["pilot_treatment_time_sigma"] == pytest.approx(0.0533, abs=1e-4)
    assert r["time_sigma"] > r["pilot_time_sigma"]          # planned at the upper bound
    assert r["time_delta"] == pytest.approx(-0.3925, abs=1e-4)
    assert r["loss_mean"] == pytest.approx(3.2784, abs=1e-4)
    assert r["sequential"]["mean_total_runs"] <= 17     # at the upper-bound sigmas: pessimistic
    rc = cli.main(["plan", str(root), "--sims", "500", "--max-runs", "10"])
    assert rc == 0 and "H1 vs H0 from 10 + 10 runs" in capsys.readouterr().out


def test_p_values_are_the_tables():
    from scipy import stats
    c, t = np.array(H0T), np.array(H1T)
    p = seq.welch_p(t.mean() - c.mean(), c.var(ddof=1), t.var(ddof=1), 10)[0]
    assert p == pytest.approx(stats.ttest_ind(t, c, equal_var=False, alternative="less").pvalue, rel=1e-9)
    x = np.array(H1L)
    p = seq.one_sample_p(x.mean() - 3.28, x.var(ddof=1), 10)[0]
    assert p == pytest.approx(stats.ttest_1samp(x, 3.28, alternative="less").pvalue, rel=1e-9)
