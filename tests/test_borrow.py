"""Borrowed and known variance (issue 16): the statistics, the table, the gate, the CLI."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis import borrow, stats
from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import analyze_builders as B  # noqa: E402

RNG = np.random.default_rng(16)


def run(capsys, *argv):
    code = main(["analyze", *map(str, argv)], prog="analyze.py")
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- statistics against scipy

def test_known_sigma_is_the_tracks_one_sided_z_test():
    # the track's rule: sigma 0.0013, p < 0.001, i.e. (3.28 - mean) * sqrt(n) >= 0.0013 * z_0.999
    sigma = borrow.known(0.0013)
    for n in (1, 3, 7):
        xs = list(3.2785 + 0.001 * RNG.standard_normal(n))
        z = (np.mean(xs) - 3.28) / (0.0013 / math.sqrt(n))
        assert borrow.one_sample_less(xs, 3.28, sigma) == pytest.approx(sps.norm.cdf(z), rel=1e-9)
    edge = 0.0013 * sps.norm.ppf(0.999)               # 0.00402: the rule's 0.004, unrounded
    for n in (4, 9):
        below = [3.28 - (edge + 1e-7) / math.sqrt(n)] * n
        above = [3.28 - (edge - 1e-7) / math.sqrt(n)] * n
        assert borrow.one_sample_less(below, 3.28, sigma) < 0.001 <= borrow.one_sample_less(above, 3.28, sigma)


def test_borrowed_one_sample_is_the_pooled_t():
    xs = list(3.279 + 0.001 * RNG.standard_normal(4))
    sig = borrow.Sigma(0.0012, 9.0, 10, "earlier")
    s2 = (3 * np.var(xs, ddof=1) + 9 * 0.0012 ** 2) / 12
    t = (np.mean(xs) - 3.28) / math.sqrt(s2 / 4)
    assert borrow.one_sample_less(xs, 3.28, sig) == pytest.approx(sps.t.cdf(t, 12), rel=1e-9)
    # one run is enough once sigma is borrowed
    assert borrow.one_sample_less(xs[:1], 3.28, sig) == pytest.approx(
        sps.t.cdf((xs[0] - 3.28) / 0.0012, 9), rel=1e-9)


def test_borrowed_time_test_is_the_pooled_t_with_a_third_sample():
    a = list(97.7 + 0.05 * RNG.standard_normal(3))
    b = list(98.1 + 0.09 * RNG.standard_normal(4))
    sig = borrow.Sigma(0.09, 9.0, 10, "earlier")
    s2 = (2 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1) + 9 * 0.09 ** 2) / 14
    want = sps.t.cdf((np.mean(a) - np.mean(b)) / math.sqrt(s2 * (1 / 3 + 1 / 4)), 14)
    assert borrow.pooled_t_less(a, b, sig) == pytest.approx(want, rel=1e-9)
    # with no borrowed sample it is scipy's equal-variance t-test
    want = sps.ttest_ind(a, b, equal_var=True, alternative="less").pvalue
    assert borrow.pooled_t_less(a, b, borrow.Sigma(1.0, 1e-300, 0, "")) == pytest.approx(want, rel=1e-6)


def test_f_cdf_and_consistency_p_match_scipy():
    for f, d1, d2 in ((0.3, 2, 9), (1.7, 5, 18), (4.0, 1, 3)):
        assert borrow.f_cdf(f, d1, d2) == pytest.approx(sps.f.cdf(f, d1, d2), rel=1e-9)
    xs = [1.0, 1.3, 0.7, 1.1]
    sig = borrow.Sigma(0.1, 9.0, 10, "x")
    f = np.var(xs, ddof=1) / 0.01
    want = sps.f.sf(f, 3, 9)          # one-sided: only a larger spread refuses
    assert borrow.consistency_p(xs, sig) == pytest.approx(want, rel=1e-9)


def test_estimate_pools_within_groups_with_their_df():
    g1, g2 = [1.0, 2.0, 3.0], [10.0, 10.5, float("nan"), 11.0]
    s = borrow.estimate([g1, g2, [5.0]], "logs")
    ss = 2.0 + 0.5
    assert (s.df, s.runs) == (4.0, 6)
    assert s.value == pytest.approx(math.sqrt(ss / 4))
    assert borrow.estimate([[1.0], [2.0]], "logs") is None


# ---------------------------------------------------------------- the table

H0_T = [98.10, 98.00, 98.21, 97.99]
H1_T = [97.70, 97.75, 97.66, 97.72]
H1_L = [3.2789, 3.2781, 3.2792, 3.2786]


def _summary(plan):
    arms = [stats.Arm("H0", [3.278] * 4, H0_T), stats.Arm("H1", H1_L, H1_T)]
    return stats.summarise(arms, "H0", variance=plan)


def test_table_uses_the_borrowed_sigma_and_says_so():
    plan = borrow.VariancePlan(loss=borrow.Sigma(0.0009, 18.0, 20, "rec"),
                               time=borrow.Sigma(0.09, 9.0, 10, "rec"))
    plain, bor = _summary(None), _summary(plan)
    h1 = bor.row("H1")
    assert h1.loss_p == pytest.approx(borrow.one_sample_less(H1_L, 3.28, plan.loss))
    assert h1.time_p == pytest.approx(borrow.pooled_t_less(H1_T, H0_T, plan.time))
    assert h1.loss_p < plain.row("H1").loss_p        # 22 df instead of 3
    assert "loss sigma 0.0009 borrowed from 20 runs of rec (18 df)" in bor.variance_line
    assert plain.variance_line == ""


def test_consistency_check_refuses_a_sigma_the_runs_contradict():
    plan = borrow.VariancePlan(loss=borrow.Sigma(0.00001, 18.0, 20, "rec"))   # 50x too small
    s = _summary(plan)
    assert s.row("H1").loss_p == pytest.approx(stats.ttest_1samp_less(H1_L, 3.28))
    msgs = [w.message for w in s.warnings if w.kind == "variance"]
    assert any("H1 loss sigma" in m and "own variance is used" in m for m in msgs)
    # a borrowed sigma larger than the runs' spread is kept: it only costs power
    big = _summary(borrow.VariancePlan(loss=borrow.Sigma(0.01, 18.0, 20, "rec")))
    assert not [w for w in big.warnings if w.kind == "variance"]
    assert big.row("H1").loss_p > stats.ttest_1samp_less(H1_L, 3.28)


def test_known_sigma_in_table_and_gate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    B.write_group(tmp_path / "H0", [3.2785, 3.2781, 3.2779], [98.1, 98.0, 98.2])
    B.write_group(tmp_path / "H1", [3.2776, 3.2770, 3.2774], [97.7, 97.6, 97.8], steps=1575, seed=5)
    code, out, _ = run(capsys, tmp_path, "--control", "H0", "--known-loss-sigma", "0.0013", "--gate")
    z = (np.mean([3.2776, 3.2770, 3.2774]) - 3.28) * math.sqrt(3) / 0.0013
    p = sps.norm.cdf(z)
    assert "loss sigma 0.0013 known" in out
    assert f"Loss p = {p:.4f}" in out or f"Loss p = {p:.2e}" in out
    row = [line for line in out.splitlines() if line.startswith("H1 ")][0]
    assert row.split()[-1] == f"{p:.4f}"


# ---------------------------------------------------------------- the CLI

def _earlier(tmp_path, gpu_name="NVIDIA H100 80GB HBM3"):
    # rounded as a log prints them (4 decimals of loss, whole milliseconds)
    losses = [round(x, 4) for x in 3.278 + 0.001 * np.random.default_rng(1).standard_normal(10)]
    times = [round(x, 3) for x in 98.1 + 0.09 * np.random.default_rng(2).standard_normal(10)]
    B.write_group(tmp_path / "earlier", losses, times, seed=100, gpu_name=gpu_name)
    return losses, times


def _current(tmp_path):
    B.write_group(tmp_path / "now" / "H0", [3.2781, 3.2776, 3.2779], [98.10, 98.02, 98.17])
    B.write_group(tmp_path / "now" / "H1", [3.2786, 3.2779, 3.2783], [97.72, 97.69, 97.75],
                  steps=1575, seed=50)


def test_variance_from_logs_changes_table_and_gate(tmp_path, capsys):
    losses, times = _earlier(tmp_path)
    _current(tmp_path)
    _, plain, _ = run(capsys, tmp_path / "now", "--control", "H0", "--format", "json")
    _, bor, _ = run(capsys, tmp_path / "now", "--control", "H0", "--format", "json",
                    "--variance-from", tmp_path / "earlier")
    p, b = json.loads(plain), json.loads(bor)
    sig = borrow.Sigma(float(np.std(losses, ddof=1)), 9.0, 10, "x")
    h1 = next(h for h in b["hypotheses"] if h["name"] == "H1")
    assert h1["loss_p"] == pytest.approx(borrow.one_sample_less([3.2786, 3.2779, 3.2783], 3.28, sig))
    assert h1["loss_p"] != next(h for h in p["hypotheses"] if h["name"] == "H1")["loss_p"]
    assert "; time sigma " in b["variance"] and "not borrowed" not in b["variance"] and "variance" not in p
    tsig = borrow.Sigma(float(np.std(times, ddof=1)), 9.0, 10, "x")
    assert h1["time_p"] == pytest.approx(borrow.pooled_t_less([97.72, 97.69, 97.75], [98.10, 98.02, 98.17], tsig))


def test_time_sigma_not_borrowed_across_hardware(tmp_path, capsys):
    _earlier(tmp_path, gpu_name="NVIDIA A100-SXM4-80GB")
    _current(tmp_path)
    code, out, _ = run(capsys, tmp_path / "now", "--control", "H0", "--variance-from", tmp_path / "earlier")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("variance:"))
    assert "loss sigma" in line and "time sigma not borrowed: the hardware differs" in line


@pytest.mark.parametrize("argv, needle", [
    (["--variance-from", "nowhere"], "--variance-from nowhere: no such folder"),
    (["--known-loss-sigma", "-1"], "--known-loss-sigma -1.0: expected a standard deviation > 0"),
    (["--variance-from", "now"], "holds runs being tested"),
])
def test_bad_variance_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    _current(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "now", "--control", "H0", *argv)
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_experiment_file_keys_reach_the_analysis(tmp_path, capsys):
    _earlier(tmp_path)
    recs = {"H0": (1600, [{"val_loss": x, "train_time_s": t} for x, t in
                          zip([3.2781, 3.2776, 3.2779], [98.10, 98.02, 98.17])]),
            "H1": (1575, [{"val_loss": x, "train_time_s": t} for x, t in
                          zip([3.2786, 3.2779, 3.2783], [97.72, 97.69, 97.75])])}
    B.write_results(tmp_path / "res", recs, known_loss_sigma=0.0013,
                    variance_from=str(tmp_path / "earlier"))
    code, out, _ = run(capsys, tmp_path / "res")
    line = next(x for x in out.splitlines() if x.startswith("variance:"))
    assert "loss sigma 0.0013 known" in line and "; time sigma " in line and "not borrowed" not in line


@pytest.mark.parametrize("line, needle", [
    ('known_loss_sigma = -0.1', "experiment.known_loss_sigma: got -0.1"),
    ('known_loss_sigma = true', "experiment.known_loss_sigma: got bool"),
    ('variance_from = "no/such/folder"', "experiment.variance_from: 'no/such/folder' is not a folder"),
])
def test_bad_variance_keys_in_the_experiment_file(tmp_path, line, needle):
    from conftest import write_experiment
    from harness.data import spec
    from harness.errors import UserError
    path = write_experiment(tmp_path, extra_exp=line)
    with pytest.raises(UserError, match=needle):
        spec.load(path, base_dir=tmp_path)


# ---------------------------------------------------------------- the sequential design and simulate (issue 16)

SIM = ["simulate", "--time-delta", "-0.12", "--loss-mean", "3.2784", "--alpha-time", "0.05",
       "--alpha-loss", "0.05", "--max-runs", "6", "--treatment-time-sigma", "0.0533", "--format", "json"]


def _sim(capsys, *argv):
    code = main([*SIM, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _variance(sl=0.0009, st=0.0904, df=9.0):
    return borrow.VariancePlan(loss=borrow.Sigma(sl, df, 10, "earlier"), time=borrow.Sigma(st, df, 10, "earlier"))


def test_borrowed_false_pass_rates_hold_alpha_when_right_and_the_robust_limit_when_off():
    # fresh seeds (none of the calibration's), each criterion at the edge of its null with the
    # other one passing; the runner's scheduling with 1 and 4 jobs at once
    from harness.design.simulate import simulate
    a, N = 0.05, 20_000
    kw = dict(treatment_time_sigma=0.0904, alpha_time=a, alpha_loss=a, max_runs=6, min_effect=0.0,
              target_loss=3.28, sims=N, variance=_variance())
    se = math.sqrt(1.5 * a / N)
    for i, (off, jobs, limit) in enumerate(((1.0, 1, 1.0), (1.0, 4, 1.0), (1.5, 1, 1.5))):
        t = simulate(0.0904, 0.0, 3.2764, 0.0009, seed=61 + 2 * i, sigma_off=off, max_parallel=jobs, **kw)
        lo = simulate(0.0904, -0.5, 3.28, 0.0009, seed=62 + 2 * i, sigma_off=off, max_parallel=jobs, **kw)
        assert t["reject_rate"] <= limit * a + 3 * se, (off, jobs, t["reject_rate"])
        assert lo["loss_pass_rate"] <= limit * a + 3 * se, (off, jobs, lo["loss_pass_rate"])


def test_simulate_borrowed_mode_from_flags_and_from_logs(tmp_path, capsys):
    code, out, _ = _sim(capsys, "--borrowed-loss-sigma", "0.0009", "--borrowed-time-sigma", "0.0904",
                        "--borrowed-df", "9", "--sims", "3000")
    bor = json.loads(out)
    assert code == 0 and bor["variance"]["loss"]["df"] == 9.0 and bor["sigma_off"] == 1.0
    assert bor["loss_sigma"] == 0.0009 and bor["time_sigma"] == 0.0904          # defaults: the borrowed ones
    assert bor["mean_total_runs"] < bor["fixed_total_runs"] and bor["both_rate"] > 0.5
    code, out, _ = _sim(capsys, "--borrowed-loss-sigma", "0.0009", "--borrowed-time-sigma", "0.0904",
                        "--borrowed-df", "9", "--sims", "3000", "--sigma-off", "1.5")
    off = json.loads(out)
    assert off["loss_sigma"] == pytest.approx(0.00135) and off["treatment_time_sigma"] == pytest.approx(0.07995)
    assert off["both_rate"] < bor["both_rate"]                  # the same seed, noisier runs
    # the same loading as analyze and run: 10 earlier runs in one group, 9 df
    losses, times = _earlier(tmp_path)
    code, out, _ = _sim(capsys, "--variance-from", tmp_path / "earlier", "--sims", "2000")
    r = json.loads(out)
    assert code == 0 and r["loss_sigma"] == pytest.approx(float(np.std(losses, ddof=1)))
    assert r["time_sigma"] == pytest.approx(float(np.std(times, ddof=1)))
    assert "time sigma" in r["variance_line"] and "borrowed from 10 runs" in r["variance_line"]
    code = main([*SIM[:-2], "--variance-from", str(tmp_path / "earlier"), "--sims", "500"])
    text = capsys.readouterr().out
    assert code == 0 and text.splitlines()[1].startswith("  variance: loss sigma") and "+- " in text


@pytest.mark.parametrize("argv, needle", [
    (["--loss-sigma", "0.0009"], "--time-sigma: required"),
    (["--time-sigma", "0.09", "--loss-sigma", "0.0009", "--sigma-off", "1.5"], "--sigma-off: needs a borrowed sigma"),
    (["--borrowed-loss-sigma", "0.0009", "--time-sigma", "0.09"], "--borrowed-df None: expected"),
    (["--borrowed-loss-sigma", "0.0009", "--borrowed-df", "9", "--time-sigma", "0.09", "--sigma-off", "0"],
     "--sigma-off 0.0: expected a factor > 0"),
    (["--variance-from", "nowhere", "--time-sigma", "0.09"], "--variance-from nowhere: no such folder"),
    (["--borrowed-loss-sigma", "-1", "--borrowed-df", "9", "--time-sigma", "0.09"], "--borrowed-loss-sigma -1.0"),
])
def test_bad_simulate_borrowed_flags_are_one_line_exit_2(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = _sim(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_diverged_run_after_a_borrowed_pass_keeps_the_borrowed_statistic():
    # the looks before a diverged run are judged on the borrowed statistic (before: the plain t
    # against the borrowed boundaries, which failed a loss the borrowed test had passed)
    from harness.design import borrow_seq
    from harness.records import RunRecord
    plan = borrow_seq.BorrowedPlan("H0", ["H1"], 0.05, 0.05, 3.28, 0.0, 6, variance=_variance())

    def rec(h, i, loss, t, status="ok"):
        return RunRecord(run_id=f"{h}-{i}", hypothesis=h, index=i, seed=i, status=status, val_loss=loss,
                         train_time_s=t, order=i)
    recs = {"H0": [rec("H0", i, 3.278, t) for i, t in enumerate([98.1, 98.0, 98.05])],
            "H1": [rec("H1", 0, 3.2765, 97.9), rec("H1", 1, 3.2777, 97.95),
                   rec("H1", 2, float("nan"), 97.9, "diverged")]}
    loss = plan.look(recs).decisions["H1"]["loss"]
    assert (loss["decision"], loss["look"]) == ("pass", 2)
    recs["H1"][1] = rec("H1", 1, 3.2815, 97.95)        # no pass before it: the diverged run fails it
    loss = borrow_seq.BorrowedPlan.from_dict({**plan.to_dict(), "decisions": []}).look(recs).decisions["H1"]["loss"]
    assert (loss["decision"], loss["look"]) == ("fail", 3) and "diverged" in loss["why"]


def test_committed_borrowed_calibrations_are_current(tmp_path, monkeypatch):
    # the packaged borrowed boundaries are the ones the code computes (no stale file is read)
    from harness.design import borrow_seq
    files = sorted(borrow_seq.PACKAGED.glob("*.json"))
    assert files, "no borrowed calibration is committed; python scripts/write_calibrations.py --borrowed"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(borrow_seq, "_calibrate", lambda *a, **k: pytest.fail("recomputed"))
    borrow_seq.boundaries.cache_clear()
    for f in files:
        rec = json.loads(f.read_text())
        k = rec["key"]
        df = math.inf if k["df_b"] == "inf" else float(k["df_b"])
        got = borrow_seq.calibration(k["kind"], float(k["alpha"]), k["max_runs"], float(k["rho"]), df,
                                     float(k["level"]), k["robust"] is not None)
        assert got == rec, f"{f.name} is stale; python scripts/write_calibrations.py --borrowed"
    borrow_seq.boundaries.cache_clear()


def test_a_committed_borrowed_calibration_equals_a_fresh_one(tmp_path, monkeypatch):
    # the cheapest committed plan, recomputed from nothing: the files hold real results
    from harness.design import borrow_seq
    recs = [json.loads(f.read_text()) for f in sorted(borrow_seq.PACKAGED.glob("*.json"))]
    k = min((r["key"] for r in recs), key=lambda k: (k["robust"] is not None, k["paths"], k["max_runs"]))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(borrow_seq, "PACKAGED", None)
    borrow_seq.boundaries.cache_clear()
    fresh = borrow_seq.calibration(k["kind"], float(k["alpha"]), k["max_runs"], float(k["rho"]),
                                   float(k["df_b"]), float(k["level"]), k["robust"] is not None)
    borrow_seq.boundaries.cache_clear()
    assert fresh["key"] == k and fresh == next(r for r in recs if r["key"] == k)
