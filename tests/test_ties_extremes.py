"""No spread, no test; absurd figures, no traceback: seeded randomized property loops
(tied, rounded and near-tied samples; extreme finite values) over every statistic."""
import math
import random

import numpy as np
import pytest

from harness.analysis import blocked, borrow, cuped, stats as S, sweep
from harness.design.sequential import SequentialPlan
from harness.records import RunRecord


def _tied(rng, n, kind):
    if kind == "loss":       # 4-decimal losses as the logs print them
        v = round(rng.uniform(3.25, 3.30), 4)
    else:                    # millisecond times in seconds
        v = round(rng.uniform(90, 140), 3)
    return [v] * n


def _rounded(rng, n, kind):
    nd = 4 if kind == "loss" else 3
    m, sd = (3.278, 0.001) if kind == "loss" else (98.0, 0.09)
    while True:
        xs = [round(rng.gauss(m, sd), nd) for _ in range(n)]
        if max(xs) > min(xs):
            return xs


def test_the_issue_case_six_equal_losses_give_no_loss_test():
    # today: PASS H1 loss Loss p = 1.21e-65
    xs = [3.2770] * 6
    assert math.isnan(S.ttest_1samp_less(xs, 3.28))
    assert S.std(xs) == 0.0


@pytest.mark.parametrize("kind", ["loss", "time"])
def test_tied_samples_give_no_test_in_every_statistic(kind):
    rng = random.Random(2026 if kind == "loss" else 2027)
    for _ in range(300):
        n, m = rng.randint(2, 12), rng.randint(2, 12)
        a, b = _tied(rng, n, kind), _tied(rng, m, kind)
        other = _rounded(rng, m, kind)
        assert math.isnan(S.ttest_1samp_less(a, 3.28 if kind == "loss" else 99.0))
        assert math.isnan(S.welch_less(a, b))
        assert math.isnan(S.welch_less(a, other)) and math.isnan(S.welch_less(other, a))
        assert math.isnan(S.mannwhitney_less(a, a))         # every value tied: no rank test
        # blocked: every node's runs tied within each arm
        hosts = [f"n{i % 3}" for i in range(max(n, 6))]
        c = [(h, a[0] + 0.5 * int(h[1])) for h in hosts]
        t = [(h, a[0] + 0.5 * int(h[1]) - 0.001) for h in hosts]
        assert math.isnan(blocked.stratified(c, t).p)
        # borrowed: no sigma from tied groups
        assert borrow.estimate([a, b], "x") is None
        # sweep: tied losses at two step counts leave no residual spread
        assert sweep.fit([(1000, a), (1100, b)]) is None


def test_tied_probe_times_give_no_cuped_slope():
    rng = random.Random(5)
    for _ in range(100):
        p = round(rng.uniform(2, 3), 3)
        c = [(p, rng.gauss(98, 0.1)) for _ in range(5)]
        t = [(p, rng.gauss(97.7, 0.1)) for _ in range(5)]
        r = cuped.adjust(c, t)
        assert math.isnan(r.p) and "same time" in r.problem


def test_sequential_looks_make_no_decision_on_tied_samples():
    recs = {h: [RunRecord(run_id=f"{i:03d}-1", hypothesis=h, index=i, seed=i, status="ok", order=2 * i + k,
                          val_loss=3.2770, train_time_s=98.0 - (0.001 if h == "H1" else 0.0))
                for i in range(4)] for k, h in enumerate(("H0", "H1"))}
    look = SequentialPlan("H0", ["H1"], max_runs=10).look(recs)
    assert look.decisions["H1"]["time"]["decision"] == "open", look.lines
    assert look.decisions["H1"]["loss"]["decision"] == "open", look.lines


@pytest.mark.parametrize("kind", ["loss", "time"])
def test_rounded_and_near_tied_samples_give_location_invariant_valid_p(kind):
    # one value one resolution step off the others: a real (tiny) spread, a valid p in [0, 1]
    # that does not depend on where the values sit (round-off would make it depend)
    rng = random.Random(11 if kind == "loss" else 12)
    step = 1e-4 if kind == "loss" else 1e-3
    for _ in range(300):
        n, m = rng.randint(2, 10), rng.randint(2, 10)
        a = _rounded(rng, n, kind) if rng.random() < 0.5 else _tied(rng, n, kind)[:-1] + [_tied(rng, 1, kind)[0]]
        if max(a) == min(a):
            a[-1] = a[-1] + step
        b = _rounded(rng, m, kind)
        for p in (S.welch_less(a, b), S.ttest_1samp_less(a, 3.28), S.mannwhitney_less(a, b)):
            assert 0.0 <= p <= 1.0
        shift = 1000.0
        moved = S.welch_less([x + shift for x in a], [x + shift for x in b])
        assert moved == pytest.approx(S.welch_less(a, b), rel=1e-6, abs=1e-12)


def test_extreme_finite_values_never_raise():
    rng = random.Random(99)
    arms_seen = 0
    for _ in range(200):
        exp = rng.choice([100, 154, 155, 200, 205, 300, 307, 308])
        big = rng.choice([-1, 1]) * 10.0 ** exp * rng.uniform(1, 1.7)
        n = rng.randint(3, 8)
        times = [98.0 + 0.01 * i for i in range(n)]
        times[rng.randrange(n)] = big
        losses = [3.27 + 0.0001 * i for i in range(n)]
        if rng.random() < 0.5:
            losses[rng.randrange(n)] = big
        arms = [S.Arm("H0", losses, times, [100] * n, order=list(range(n))),
                S.Arm("H1", [3.27, 3.2701, 3.2702], [97.0, 97.1, 97.2], [100] * 3, order=[0, 1, 2])]
        s = S.summarise(arms, "H0")
        h1 = s.row("H1")
        assert math.isnan(h1.time_p) and math.isnan(h1.time_p_mw)
        assert any(w.kind == "absurd" for w in s.warnings)
        assert math.isnan(S.ttest_1samp_less(losses, 3.28)) or max(map(abs, losses)) <= S.LARGE
        assert math.isnan(blocked.stratified([("a", x) for x in times] + [("b", 1.0), ("b", 1.1)],
                                             [("a", 97.0), ("a", 97.1), ("b", 0.9), ("b", 1.0)]).p)
        assert math.isnan(cuped.adjust([(2.0 + i, x) for i, x in enumerate(times)],
                                       [(2.0, 97.0), (2.1, 97.1), (2.2, 97.3)]).p)
        assert sweep.fit([(1000, losses), (1100, [3.26, 3.2601])]) is None or max(map(abs, losses)) <= S.LARGE
        sig = borrow.estimate([times], "x")
        assert sig is None or math.isfinite(sig.value) or math.isinf(sig.value)
        S.std(times), S.mean(times)
        assert all(math.isnan(x) for x in S.welch_diff_ci(times, times))
        arms_seen += 1
    assert arms_seen == 200


def test_the_issue_case_train_time_1e205ms_is_one_line(tmp_path):
    from conftest import harness
    from tests.fixtures.make_record_logs import make_log
    rng = random.Random(1)
    for arm, times in (("H0", [98.0, 98.01, 98.02, 1e202]), ("H1", [97.7, 97.71, 97.73, 97.72])):
        (tmp_path / "logs" / arm).mkdir(parents=True)
        for i, t in enumerate(times):
            (tmp_path / "logs" / arm / f"r{i}.txt").write_text(make_log(100, 3.27 + 0.0001 * i, t, "", rng))
    out = harness("analyze", "--gate", "logs", cwd=tmp_path)
    assert "Traceback" not in out.stderr and "OverflowError" not in out.stderr, out.stderr
    assert out.returncode == 1
    assert "absurd figure: H0 time 1e+202 s" in out.stdout
    assert "FAIL  H1  time" in out.stdout


def test_gate_names_the_tied_arm_and_fails_time(tmp_path):
    from conftest import harness
    from tests.fixtures.make_record_logs import make_log
    rng = random.Random(3)
    for arm, times in (("H0", [98.0, 98.05, 98.1, 98.02]), ("H1", [97.5] * 4)):
        (tmp_path / "logs" / arm).mkdir(parents=True)
        for i, t in enumerate(times):
            (tmp_path / "logs" / arm / f"r{i}.txt").write_text(make_log(100, 3.27 + 0.0001 * i, t, "", rng))
    out = harness("analyze", "--gate", "logs", cwd=tmp_path)
    line = next(x for x in out.stdout.splitlines() if x.startswith(("PASS  H1  time", "FAIL  H1  time")))
    # today: PASS with p = 7.06e-05 from the control's spread alone
    assert line.startswith("FAIL") and "no spread in H1's times, no test" in line, line
