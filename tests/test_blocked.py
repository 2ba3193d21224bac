"""The time test blocked by node (harness/analysis/blocked.py) and its use by the gate, on synthetic multi-node data."""
import json
import math
import random

import pytest
from scipy import stats as sps

from harness.analysis import blocked
from harness.records import RunRecord
from harness.analysis.stats import welch_less

from conftest import harness


def test_on_one_node_it_is_welchs_test():
    rng = random.Random(3)
    for n_c, n_t in ((2, 2), (5, 3), (10, 10)):
        c = [rng.gauss(98.1, 0.09) for _ in range(n_c)]
        t = [rng.gauss(97.7, 0.05) for _ in range(n_t)]
        bt = blocked.stratified([("a", x) for x in c], [("a", x) for x in t])
        assert bt.p == pytest.approx(welch_less(t, c), rel=1e-9)
        assert bt.p == pytest.approx(sps.ttest_ind(t, c, equal_var=False, alternative="less").pvalue, rel=1e-7)
        assert bt.delta == pytest.approx(sum(t) / n_t - sum(c) / n_c)
        assert bt.nodes == 1 and not bt.unpaired


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
    # Satterthwaite with df 2 per arm
    a = b = 0.25 * 0.5 * 2
    assert bt.df == pytest.approx((vc * a + vt * b) ** 2 / ((vc * a) ** 2 / 2 + (vt * b) ** 2 / 2))


def test_confounded_spread_and_degenerate_cases():
    only = blocked.stratified([("a", 1.0), ("a", 1.1)], [("b", 0.5), ("b", 0.6)])
    assert math.isnan(only.p) and only.problem == "no node ran both arms"
    (w,) = [c.message for c in blocked.warnings({"H1": only})]
    assert "never ran on the same node (a: H0 2, H1 0; b: H0 0, H1 2)" in w and 'pairing = "node"' in w
    once = blocked.stratified([("a", 1.0), ("b", 1.1)], [("a", 0.5), ("b", 0.6)])
    assert math.isnan(once.p) and "within-node variance is unknown" in once.problem
    # one arm without within-node df: both arms share the pooled variance
    mixed = blocked.stratified([("a", 1.0), ("b", 2.0)], [("a", 0.5), ("a", 0.6), ("b", 1.5), ("b", 1.7)])
    assert mixed.pooled_variance and mixed.p < 0.05
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
