"""The time test blocked by node (harness/analysis/blocked.py) and its use by the gate, on synthetic multi-node data."""
import json
import math
import random
import statistics

import pytest
from scipy import stats as sps

from harness.analysis import blocked
from harness.records import RunRecord
from harness.analysis.stats import welch_less

from conftest import harness


def _welch_t_df(t, c):
    vt, vc = statistics.variance(t) / len(t), statistics.variance(c) / len(c)
    return ((statistics.fmean(t) - statistics.fmean(c)) / math.sqrt(vt + vc),
            (vt + vc) ** 2 / (vt * vt / (len(t) - 1) + vc * vc / (len(c) - 1)))


def test_on_one_node_it_is_welchs_statistic_with_guarded_df():
    rng = random.Random(3)
    for n_c, n_t in ((2, 2), (5, 3), (10, 10), (200, 200)):
        c = [rng.gauss(98.1, 0.09) for _ in range(n_c)]
        t = [rng.gauss(97.7, 0.05) for _ in range(n_t)]
        bt = blocked.stratified([("a", x) for x in c], [("a", x) for x in t])
        w_t, w_df = _welch_t_df(t, c)
        assert bt.t == pytest.approx(w_t, rel=1e-9)
        assert bt.delta == pytest.approx(sum(t) / n_t - sum(c) / n_c)
        assert bt.df <= w_df + 1e-9 and bt.p >= welch_less(t, c) * (1 - 1e-9)
        assert bt.p == pytest.approx(sps.t.cdf(bt.t, bt.df), rel=1e-7)
        assert bt.nodes == 1 and not bt.unpaired and bt.variance == blocked.WITHIN
    # the guard fades as the df grow: at 200 runs per arm its df are within 10% of Welch's
    assert bt.df == pytest.approx(w_df, rel=0.1)


def test_guarded_df_against_scipy_and_its_limits():
    from scipy.stats import chi2
    for df in (1, 2, 5, 40):
        q = blocked.df_bound(df)
        assert blocked.chi2_lower_quantile(df, q) == pytest.approx(chi2.ppf(q, df), rel=1e-9)
    # an arm with 1 df carrying most of the variance: Satterthwaite says ~1.1 df at
    # these estimates but up to 60 when the 1-df estimate comes out small; the guard does not follow
    assert blocked.guarded_df(0.01, 1.0, 1, 60) < 2.0
    plain = (0.01 + 1.0) ** 2 / (0.01 ** 2 / 1 + 1.0 ** 2 / 60)
    assert plain > 50
    assert blocked.guarded_df(1.0, 1.0, 1000, 1000) == pytest.approx(2000, rel=0.1)


def _null_rate(place, alpha, sims, seed):
    """Share of 'faster' verdicts of the module's test with no true effect (node sigma 0.5 s)."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(sims):
        shift = {}
        runs = {}
        for arm, hosts, sd in place:
            runs[arm] = [(h, shift.setdefault(h, rng.gauss(0, 0.5)) + rng.gauss(0, sd)) for h in hosts]
        hits += blocked.stratified(runs["c"], runs["t"]).p < alpha
    return hits / sims


def test_one_control_and_two_treatment_runs_per_node_hold_alpha():
    # today: the control had no within-node df, so both arms shared one pooled variance;
    # with the control's sigma 4x the treatment's that passed 0.30 at alpha 0.05
    nodes = [f"n{k}" for k in range(10)]
    place = [("c", nodes, 4 * 0.0533), ("t", [h for h in nodes for _ in range(2)], 0.0533)]
    rate = _null_rate(place, 0.05, 2000, 17)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 2000), rate


def test_balanced_nodes_without_within_df_use_the_node_differences():
    rng = random.Random(8)
    c, t, d = [], [], []
    for k in range(6):
        u = rng.gauss(0, 0.5)
        x = 98 + u + rng.gauss(0, 0.09)
        ys = [97.8 + u + rng.gauss(0, 0.05) for _ in range(2)]
        c.append((f"n{k}", x))
        t += [(f"n{k}", y) for y in ys]
        d.append(sum(ys) / 2 - x)
    bt = blocked.stratified(c, t)
    assert bt.variance == blocked.NODE_DIFFERENCES and bt.df == 5
    assert bt.p == pytest.approx(sps.ttest_1samp(d, 0.0, alternative="less").pvalue, rel=1e-7)
    # one pair per node: the paired t-test
    pairs = [(f"n{k}", 98 + k * 0.3 + rng.gauss(0, 0.09), 97.9 + k * 0.3 + rng.gauss(0, 0.05)) for k in range(8)]
    bt = blocked.stratified([(h, x) for h, x, _ in pairs], [(h, y) for h, _, y in pairs])
    ref = sps.ttest_rel([y for *_, y in pairs], [x for _, x, _ in pairs], alternative="less").pvalue
    assert bt.p == pytest.approx(ref, rel=1e-7) and bt.variance == blocked.NODE_DIFFERENCES


def test_no_spread_within_nodes_gives_no_result():
    # today: p = 7.65e-45 from zero within-node spread and a 0.001 s lead
    c = [(h, base) for h, base in (("a", 98.0), ("b", 98.5)) for _ in range(3)]
    t = [(h, base - 0.001) for h, base in (("a", 98.0), ("b", 98.5)) for _ in range(3)]
    bt = blocked.stratified(c, t)
    assert math.isnan(bt.p) and math.isnan(bt.p_slower) and "no spread" in bt.problem
    assert "no result (no spread" in "\n".join(blocked.lines({"H1": bt}))
    # rounded to the millisecond: tied within nodes in one arm only is still no test
    t2 = [("a", 97.9), ("a", 97.901), ("a", 97.9), ("b", 98.4), ("b", 98.4), ("b", 98.401)]
    assert math.isnan(blocked.stratified(c, t2).p)
    # equal node differences on balanced nodes: no test either
    pairs = [(f"n{k}", 98.0 + k) for k in range(5)]
    same = blocked.stratified(pairs, [(h, x - 0.001) for h, x in pairs])
    assert math.isnan(same.p) and "no spread" in same.problem


def _cluster(rng, shifts, pairs_per_node, delta, sc=0.09, st=0.05):
    c, t = [], []
    for host, shift in shifts.items():
        for _ in range(pairs_per_node):
            c.append((host, 98.0 + shift + rng.gauss(0, sc)))
            t.append((host, 98.0 + shift + delta + rng.gauss(0, st)))
    return c, t


def test_node_effects_cancel_and_are_reported():
    rng = random.Random(7)
    c, t = _cluster(rng, {"a": 0.0, "b": 0.0, "c": 0.0}, 3, -0.2)
    base = blocked.stratified(c, t)
    shifts = {"a": 0.0, "b": 0.8, "c": -0.5}
    moved = blocked.stratified([(h, x + shifts[h]) for h, x in c], [(h, x + shifts[h]) for h, x in t])
    assert moved.delta == pytest.approx(base.delta, abs=1e-9)
    assert moved.p == pytest.approx(base.p, rel=1e-6) and moved.df == pytest.approx(base.df)
    eff = {e.host: e.effect for e in moved.effects}
    gap = {h: eff[h] - eff["a"] for h in eff}
    base_eff = {e.host: e.effect for e in base.effects}
    for h in shifts:   # the reported node effects move by exactly the node shifts
        assert gap[h] - (base_eff[h] - base_eff["a"]) == pytest.approx(shifts[h], abs=1e-9)


def test_variance_pooled_within_nodes_per_arm():
    # two nodes, two runs per arm each: s_c^2 = within-node SS / (4 - 2)
    c = [("a", 10.0), ("a", 10.2), ("b", 11.0), ("b", 11.4)]
    t = [("a", 9.9), ("a", 10.1), ("b", 10.8), ("b", 11.0)]
    bt = blocked.stratified(c, t)
    vc = (0.02 + 0.08) / 2
    vt = (0.02 + 0.02) / 2
    d = [(10.0 - 10.1), (10.9 - 11.2)]
    w = [1 / (vc / 2 + vt / 2)] * 2   # balanced nodes: count weights are the inverse-variance ones
    assert bt.delta == pytest.approx(sum(d) / 2)
    assert bt.se == pytest.approx(math.sqrt(1 / sum(w)))
    # guarded Satterthwaite with df 2 per arm
    a = b = 0.25 * 0.5 * 2
    assert bt.df == pytest.approx(blocked.guarded_df(vc * a, vt * b, 2, 2))
    assert bt.df < (vc * a + vt * b) ** 2 / ((vc * a) ** 2 / 2 + (vt * b) ** 2 / 2)


def test_confounded_spread_and_degenerate_cases():
    only = blocked.stratified([("a", 1.0), ("a", 1.1)], [("b", 0.5), ("b", 0.6)])
    assert math.isnan(only.p) and only.problem == "no node ran both arms"
    (w,) = [c.message for c in blocked.warnings({"H1": only})]
    assert "never ran on the same node (a: H0 2, H1 0; b: H0 0, H1 2)" in w and 'pairing = "node"' in w
    once = blocked.stratified([("a", 1.0), ("a", 1.1)], [("a", 0.5), ("b", 0.6)])
    assert math.isnan(once.p) and "H1 has no within-node degree of freedom" in once.problem
    # one arm without within-node df, balanced nodes: the node differences decide (1 df)
    mixed = blocked.stratified([("a", 1.0), ("b", 2.0)], [("a", 0.5), ("a", 0.6), ("b", 1.5), ("b", 1.7)])
    assert mixed.variance == blocked.NODE_DIFFERENCES and mixed.df == 1 and mixed.p < 0.05
    # ... unbalanced: no result, never a variance pooled over arms of unequal sigma
    lop = blocked.stratified([("a", 1.0), ("b", 2.0), ("c", 3.0)],
                             [("a", 0.5), ("a", 0.6), ("b", 1.5), ("b", 1.7), ("b", 1.6), ("c", 2.5), ("c", 2.4)])
    assert math.isnan(lop.p) and "unequal counts" in lop.problem
    partial = blocked.stratified([("a", 1.0), ("a", 1.1), ("c", 3.0)], [("a", 0.5), ("a", 0.6), ("b", 9.0)])
    assert partial.nodes == 1 and partial.unpaired == {"b": {"H0": 0, "H1": 1}, "c": {"H0": 1, "H1": 0}}
    (w,) = [c.message for c in blocked.warnings({"H1": partial})]
    assert "do not count toward the blocked time difference (b: H1 1; c: H0 1)" in w


def _results(folder, runs):
    """runs: [(hypothesis, host, time)] in launch order."""
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({
        "name": "e", "target_loss": 3.28, "alpha_time": 0.001, "alpha_loss": 0.01, "runs": 10,
        "order": "interleaved", "control": "H0",
        "hypotheses": [{"name": "H0", "control": True, "steps": 100}, {"name": "H1", "control": False, "steps": 100}]}))
    count = {}
    for order, (hyp, host, t) in enumerate(runs):
        i = count[hyp] = count.get(hyp, -1) + 1
        d = folder / hyp / f"{i:03d}-1"
        d.mkdir(parents=True)
        RunRecord(run_id=d.name, hypothesis=hyp, index=i, seed=i, status="ok", order=order, final_step=100,
                  expected_steps=100, val_loss=3.275 + 0.0005 * (i % 3), train_time_s=t, host=host,
                  gpus={"names": ["NVIDIA H100 80GB HBM3"] * 8, "count": 8}).save(d / "result.json")


def _gate_time(out: str) -> str:
    return next(x for x in out.splitlines() if "  time  " in x and x.startswith(("PASS", "FAIL")))


def test_gate_does_not_take_a_fast_node_for_a_speedup(tmp_path, cli):
    # no true effect; the treatment ran mostly on the fast node: pooled Welch calls it faster
    rng = random.Random(11)
    speed = {"fast": -0.6, "slow": 0.0}
    runs = []
    for i in range(10):
        h0, h1 = ("slow" if i < 9 else "fast"), ("fast" if i < 9 else "slow")
        runs += [("H0", h0, 98.0 + speed[h0] + rng.gauss(0, 0.05)), ("H1", h1, 98.0 + speed[h1] + rng.gauss(0, 0.05))]
    res = tmp_path / "res"
    _results(res, runs)
    out = cli("analyze", res, "--gate", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    table_p = float(next(x for x in out.stdout.splitlines() if x.startswith("H1 ")).split()[6])
    assert table_p < 0.001          # the community column stays the pooled Welch p
    line = _gate_time(out.stdout)
    assert line.startswith("FAIL") and "blocked by node, stratified Welch by node (2 nodes)" in line, line
    assert "time blocked by node: stratified Welch t-test" in out.stdout
    assert "node effects" in out.stdout and "unevenly spread" in out.stdout
    js = json.loads(cli("analyze", res, "--format", "json", cwd=tmp_path).stdout)
    b = js["blocked"]["H1"]
    assert b["nodes"] == 2 and b["p"] > 0.01 and b["method"] == blocked.METHOD
    md = cli("analyze", res, "--format", "markdown", "--gate", cwd=tmp_path).stdout
    assert "**time blocked by node: stratified Welch" in md and "blocked by node, stratified Welch by node" in md
    eff = {e["host"]: e["effect_s"] for e in b["node_effects"]}
    assert eff["fast"] - eff["slow"] == pytest.approx(-0.6, abs=0.1)


def test_gate_finds_a_speedup_hidden_in_node_noise(tmp_path, cli):
    # paired runs on 4 nodes with 0.5 s node effects: the record's -0.39 s speedup
    rng = random.Random(5)
    shifts = {f"node{k}": s for k, s in enumerate((0.0, 0.7, -0.5, 0.9))}
    runs = []
    for i in range(12):
        host = f"node{i % 4}"
        first, second = (("H0", 0.0904, 0.0), ("H1", 0.0533, -0.3925))[:: 1 if i % 2 == 0 else -1]
        for hyp, sd, d in (first, second):
            runs.append((hyp, host, 98.0 + shifts[host] + d + rng.gauss(0, sd)))
    res = tmp_path / "res"
    _results(res, runs)
    out = cli("analyze", res, "--gate", cwd=tmp_path)
    table_p = float(next(x for x in out.stdout.splitlines() if x.startswith("H1 ")).split()[6])
    assert table_p > 0.001          # pooled Welch drowns it in node noise
    assert _gate_time(out.stdout).startswith("PASS"), out.stdout
    assert out.returncode == 0, out.stdout
    assert "unevenly spread" not in out.stdout and "do not count" not in out.stdout


def test_one_node_keeps_the_plain_time_criterion(tmp_path, cli):
    res = tmp_path / "res"
    _results(res, [(h, "n1", 98.0 - (0.4 if h == "H1" else 0) + 0.01 * i) for i in range(4) for h in ("H0", "H1")])
    out = cli("analyze", res, "--gate", cwd=tmp_path)
    assert "blocked" not in out.stdout
    assert _gate_time(out.stdout).startswith("PASS  H1  time      Time p = ")


def _recs(rows):
    out = {"H0": [], "H1": []}
    for order, (hyp, host, t) in enumerate(rows):
        out[hyp].append(RunRecord(run_id=f"{len(out[hyp]):03d}-1", hypothesis=hyp, index=len(out[hyp]), seed=0,
                                  status="ok", order=order, val_loss=3.27, train_time_s=t, host=host))
    return out


def test_sequential_design_uses_the_blocked_statistic_when_runs_span_nodes():
    from harness.design.sequential import SequentialPlan
    plan = SequentialPlan("H0", ["H1"], max_runs=10)
    rng = random.Random(4)
    shifts = [0.0, 0.8, -0.4, 0.5]
    rows = []
    for i in range(10):   # paired schedule, the record's speedup under 0.5 s node noise
        host = f"n{i % 4}"
        for hyp, d, sd in (("H0", 0.0, 0.0904), ("H1", -0.3925, 0.0533))[:: 1 if i % 2 == 0 else -1]:
            rows.append((hyp, host, 98.0 + shifts[i % 4] + d + rng.gauss(0, sd)))
    look = plan.look(_recs(rows))
    time = look.decisions["H1"]["time"]
    assert time["decision"] == "pass" and time["n"] < 10, look.lines
    assert "stratified Welch by node" in time["why"]
    # the same times on one node: the plain Welch statistic, which node noise drowns (a new
    # plan: a plan's decisions are final, so the first one would keep its PASS)
    one = SequentialPlan("H0", ["H1"], max_runs=10).look(_recs([(h, "n0", t) for h, _, t in rows]))
    assert one.decisions["H1"]["time"]["decision"] == "fail"
    assert "by node" not in " ".join(one.lines)
