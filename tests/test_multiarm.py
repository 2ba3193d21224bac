"""Issue 28: several treatments against one control, decided as a family (harness/design/multiarm.py)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import numpy as np
import pytest

from conftest import results_of
from harness.data import spec as specmod
from harness.data.store import Store
from harness.design import multiarm as ma
from harness.design import multiarm_sim as msim
from harness.run.backends.memory import FakeRun, MemoryBackend
from harness.run.runner import Options, Runner

ROOT = Path(__file__).resolve().parent.parent
NAN = math.nan


def _events(order, K, B=1):
    yes = np.ones(B, dtype=bool)
    no = np.zeros(B, dtype=bool)
    return [(a, yes, yes, no) for a in order]


def _replay(pt, order, M=3):
    """replay_paths on one path with given time p-values (no futility, no loss decisions)."""
    K = len(pt)
    PT = np.array(pt, dtype=float)[None]
    nan = np.full_like(PT, NAN)
    BT = np.array([[0.01, 0.02], [0.005, 0.01]])[:K]
    FT = np.array([NAN, NAN])
    T, L, c = ma.replay_paths(_events(order, K), PT, nan, nan, nan, BT, FT, BT, FT, M)
    return T


def test_a_pass_lowers_the_bar_for_the_other_arm_also_on_looks_already_made():
    # arm 0 crosses only the alpha/1 boundary at pair 2, arm 1 the alpha/2 one: Holm passes
    # arm 1 (strength 2 >= 2 arms open), then arm 0 (strength 1 >= 1 left) at the same event
    order = [-1, 0, 1, -1, 0, 1]
    T = _replay([[0.008, NAN], [0.004, NAN]], order)
    assert T.dec[0].tolist() == [1, 1]
    assert T.look[0].tolist() == [2, 2]
    assert T.at_t[0].tolist() == [2, 2]          # arm 0 passed when arm 1 had its 2nd run
    # without arm 1's pass, arm 0's p of 0.008 is not enough (it needs alpha/2: <= 0.005)
    T = _replay([[0.008, 0.5], [0.5, 0.5]], order)
    assert T.dec[0].tolist() == [0, 0]           # two runs of three: still open
    T = _replay([[0.008, 0.5], [0.5, 0.5]], order + [-1, 0, 1])
    # and at the last look an arm still open fails only once no arm of the family can pass
    assert T.dec[0].tolist() == [-1, -1] and T.how[0].tolist() == [ma.RAN_OUT, ma.RAN_OUT]


def test_each_level_boundary_is_the_two_arm_calibration_at_alpha_over_m():
    from harness.design import sequential as seq
    b = ma.level_boundaries("welch", 0.001, 3, 10)
    for m in (1, 2, 3):
        two = np.array(seq.boundaries("welch", 0.001 / m, 10, seq.RHO_PASS))
        assert (b[m - 1] <= two).all()
    assert (np.diff(b, axis=0) <= 0).all()       # monotone: crossing level m implies every lower one


def test_holm_rejects_step_down():
    p = np.array([[0.01, 0.02, 0.04], [0.001, 0.04, 0.04]])
    assert msim.holm(p, 0.05).tolist() == [[True, True, True], [True, False, False]]


def _exp_text(K: int, runs: int, script: Path) -> str:
    arms = "".join(f'\n[[hypothesis]]\nname = "H{j}"\nsteps = 20\nargs = {{ num_iterations = 20 }}\n'
                   for j in range(1, K + 1))
    return (f'[experiment]\nname = "fam"\nruns = {runs}\nretries = 1\n\n[defaults]\nscript = "{script}"\n'
            f'launcher = "python"\nnproc_per_node = 1\n\n[[hypothesis]]\nname = "H0"\ncontrol = true\n'
            f'steps = 20\nargs = {{ num_iterations = 20 }}\n{arms}')


def test_runner_and_family_emulation_count_the_same_runs(tmp_path, memory):
    """One accounting: the real Runner (memory backend) on the simulator's draws."""
    K, M, n_exp = 3, 6, 6
    plan = ma.MultiArmPlan("H0", [f"H{j}" for j in range(1, K + 1)], max_runs=M)
    rng = np.random.default_rng(2800)
    d = msim.draw(rng, n_exp, M, 0.09, [0.09] * K, [-0.39, 0.0, 0.2], [3.2784, 3.2784, 3.281], 0.0009,
                  diverge_prob=0.03)
    d["ttime_ms"][: n_exp // 2, 1] -= 390.0          # half the experiments: two fast arms
    d["ttime"][: n_exp // 2, 1] -= 0.39
    T, L, c = msim.run_paths(plan, d)
    (tmp_path / "train.py").write_text("")
    kinds = set()
    for s in range(n_exp):
        def gen(hyp, index, attempt, s=s):
            if hyp == "H0":
                return FakeRun(3.278, float(d["ctime_ms"][s, index]), 20)
            j = int(hyp[1:]) - 1
            return FakeRun(float(d["tloss"][s, j, index]), float(d["ttime_ms"][s, j, index]), 20)
        folder = tmp_path / f"e{s}"
        folder.mkdir()
        path = folder / "fam.toml"
        path.write_text(_exp_text(K, M, tmp_path / "train.py"))
        exp = specmod.load(path)
        r = Runner(exp, Store(folder / "results"), MemoryBackend(gen), tmp_path, path.read_text(),
                   Options(runs=M, retries=1), decider=ma.MultiArmPlan.from_dict(plan.to_dict()))
        slots = r.run()
        done = [x.done for x in slots.values() if x.done is not None]
        got = [sum(1 for x in done if x.hypothesis == h) for h in ["H0", *plan.treatments]]
        want = [int(c["nc"][s])] + [int(v) for v in c["n"][s]]
        assert got == want, (s, got, want)
        names = {1: "pass", -1: "fail", 0: "open"}
        for j, h in enumerate(plan.treatments):
            dec = r.look.decisions[h]
            assert (dec["time"]["decision"], dec["loss"]["decision"]) == \
                (names[int(T.dec[s, j])], names[int(L.dec[s, j])]), (s, h)
            kinds.add((dec["time"]["decision"], dec["loss"]["decision"]))
        assert r.look.done
    assert len(kinds) >= 3          # passes and fails of both criteria, not one kind only


# --------------------------------------------------------------------------- the twin, end to end
TWIN = ROOT / "hypotheses" / "ve-ablations-smoke.toml"
# what each arm of the twin produces on the memory backend: time (s) and mean loss (target 5.0)
TWIN_NUMBERS = {"H0": (10.0, 4.95), "untied": (9.0, 4.95), "tied-more": (9.3, 4.95), "tied-fewer": (10.6, 4.95),
                "tied-inner": (9.0, 5.07), "every-layer": (10.4, 4.95)}
TWIN_STEPS = {h["name"]: h["steps"] for h in tomllib.loads(TWIN.read_text())["hypothesis"]}


def _twin_gen(hyp, index, attempt):
    base, loss = TWIN_NUMBERS[hyp]
    return FakeRun(val_loss=round(loss + 0.002 * (index % 3), 4),
                   train_time_ms=base * 1000 + 10.0 * index + 5.0, steps=TWIN_STEPS[hyp])


def test_the_twin_runs_until_decisive_dropping_arms_and_the_control(exp_dir, cli):
    cli.backend = cli.memory(_twin_gen)
    twin = exp_dir / TWIN.name
    twin.write_text(TWIN.read_text())
    (exp_dir / "train").mkdir()
    (exp_dir / "train" / "train_gpt.py").write_text("")     # the memory backend runs nothing
    r = cli("run", twin, "--until-decisive", "--plain", cwd=exp_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    res = exp_dir / "results" / "ve-ablations-smoke"
    plan = json.loads((res / "sequential.json").read_text())
    assert plan["design"] == ma.DESIGN_KIND and plan["familywise"] is True
    # spec.json names the family's design too: a lost sequential.json cannot make it fixed
    assert json.loads((res / "spec.json").read_text())["design"]["kind"] == ma.DESIGN_KIND
    runs = {h: sum(1 for x in results_of(res) if x["hypothesis"] == h) for h in TWIN_NUMBERS}
    assert runs["tied-fewer"] < 6 and runs["every-layer"] < 6 and runs["tied-inner"] < 6   # dropped early
    assert runs["H0"] < 6                                                                  # control stopped
    assert runs["untied"] < 6
    journal = {(e["hypothesis"], e["criterion"]): e["decision"] for e in plan["decisions"]}
    assert journal[("untied", "time")] == journal[("untied", "loss")] == "pass"
    assert journal[("tied-more", "time")] == "pass"
    assert journal[("tied-fewer", "time")] == journal[("every-layer", "time")] == "fail"
    assert journal[("tied-inner", "loss")] == "fail"
    # analyze --gate: each arm's verdict from the family's decisions, and the family's report
    g = cli("analyze", res, "--gate", cwd=exp_dir)
    out = g.stdout
    assert "family of 5 arms" in out and "best: untied" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip() and ln.split()[0] in TWIN_NUMBERS}
    assert "pass" in lines["untied"] and "fail" in lines["tied-fewer"]
    assert g.returncode == 1          # the gate fails: some arms failed
    js = cli("analyze", res, "--format", "json", cwd=exp_dir)
    fam = json.loads(js.stdout)["family"]
    assert fam["best"]["arm"] == "untied" and "tied-more" in fam["ranked"]
    # without its decisions the family's folder does not pass, and a fixed run is refused
    (res / "sequential.json").unlink()
    lost = cli("analyze", res, "--gate", cwd=exp_dir)
    assert lost.returncode == 1 and "multi-arm design but its sequential.json is missing" in lost.stdout + lost.stderr
    fixed = cli("run", twin, "--runs", "8", "--plain", cwd=exp_dir)
    assert fixed.returncode == 2 and "multi-arm" in fixed.stderr


def test_every_layout_of_the_examples_parses_on_its_model():
    from train.train_gpt import parse_ve_layout
    for path, layers in ((ROOT / "hypotheses" / "ve-ablations.toml", 11), (TWIN, 8)):
        exp = specmod.load(path)
        assert len([h for h in exp.hypotheses if not h.control]) == 5
        for h in exp.hypotheses:
            per_layer, tables = parse_ve_layout(h.args["ve_layout"], layers)
            assert len(per_layer) == layers and tables >= 2


def test_a_stored_family_plan_is_refused_when_damaged_and_kept_final():
    plan = ma.MultiArmPlan("H0", ["A", "B"], max_runs=6)
    d = plan.to_dict()
    d["boundaries"]["time_levels"] = d["boundaries"]["time_levels"][:1]
    from harness.errors import UserError
    with pytest.raises(UserError, match="sequential.json"):
        ma.MultiArmPlan.from_dict(d)
    with pytest.raises(UserError, match="two treatments"):
        ma.MultiArmPlan("H0", ["A"], max_runs=6)


def test_simulate_family_json_keys_and_errors(cli, tmp_path):
    r = cli("simulate", "--arms", "3", "--time-sigma", "0.09", "--time-delta=-0.39,0,0.2",
            "--loss-mean", "3.2784", "--loss-sigma", "0.001", "--max-runs", "6", "--sims", "400",
            "--compare", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    for k in ("familywise_error_time", "familywise_error_time_se", "familywise_error_loss",
              "familywise_error_loss_se", "runs_total", "expected_runs", "power", "pick_best_rate"):
        assert k in j
    assert set(j["expected_runs"]) == {"H0", "H1", "H2", "H3"}
    assert j["runs_total"] == pytest.approx(sum(j["expected_runs"].values()))
    assert j["separate"]["runs_total"] > 0 and j["fixed_holm"]["runs_total"] == 24
    bad = cli("simulate", "--arms", "3", "--time-sigma", "0.09", "--time-delta=-0.39,0",
              "--loss-mean", "3.2784", "--loss-sigma", "0.001", cwd=tmp_path)
    assert bad.returncode == 2 and "--time-delta" in bad.stderr and "Traceback" not in bad.stderr


def test_simulate_family_prices_each_design_in_gpu_hours(cli, tmp_path):
    # one cost model (harness/design/cost.py) for the family, the K separate experiments (each
    # with its own control) and the fixed design with Holm
    r = cli("simulate", "--arms", "2", "--time-sigma", "0.09", "--time-delta=-0.39,0",
            "--loss-mean", "3.2784", "--loss-sigma", "0.001", "--max-runs", "6", "--sims", "400",
            "--compare", "--run-cost", "startup=60,train=98", "--gpus", "8", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    d = j["gpu_hours"]["designs"]
    per_run_h = 8 * (60 + 98) / 3600
    assert d["family"]["gpu_hours"] == pytest.approx(j["runs_total"] * per_run_h, rel=1e-3)
    assert d["2 separate experiments"]["gpu_hours"] == pytest.approx(j["separate"]["runs_total"] * per_run_h, rel=1e-3)
    assert d["fixed + Holm"]["gpu_hours"] == pytest.approx(3 * 6 * per_run_h, rel=1e-3)


def test_the_family_keeps_its_error_where_separate_experiments_add_theirs_up():
    # 5 arms at the edge of the loss null: five separate experiments pass one of them about
    # five times as often as alpha_loss; the family stays at it (bench/bench_multiarm.py measures it)
    r = msim.simulate_family(0.09, 0.0, 3.28, 0.001, arms=5, max_runs=6, sims=3000, seed=5, compare=True)
    assert r["familywise_error_loss"] < 0.02
    assert r["separate"]["familywise_error_loss"] > 0.03
    assert r["familywise_error_time"] < 0.005


def test_the_report_says_when_the_data_cannot_tell_the_top_arms_apart(exp_dir, cli):
    numbers = {"H0": 10.0, "A": 9.0, "B": 9.0}

    def gen(hyp, index, attempt):
        return FakeRun(val_loss=round(4.55 + 0.002 * (index % 3), 4),
                       train_time_ms=numbers[hyp] * 1000 + 10.0 * index + 5.0, steps=20)
    cli.backend = cli.memory(gen)
    text = _exp_text(2, 6, exp_dir / "train.py").replace('name = "H1"', 'name = "A"').replace(
        'name = "H2"', 'name = "B"').replace("retries = 1", "retries = 1\ntarget_loss = 4.6")
    (exp_dir / "train.py").write_text("")
    path = exp_dir / "fam.toml"
    path.write_text(text)
    r = cli("run", path, "--until-decisive", "--plain", cwd=exp_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    out = cli("analyze", exp_dir / "results" / "fam", cwd=exp_dir).stdout
    assert "best: A" in out and "cannot tell it apart from B" in out
    # plan --arms on that folder: the pilot's two treatments, their deltas and sigmas
    p = cli("plan", exp_dir / "results" / "fam", "--arms", "2", "--sims", "300", "--format", "json", cwd=exp_dir)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["arms"] == 2 and j["max_runs"] == 6 and j["time_delta"][0] == pytest.approx(-1.0, abs=0.01)
    wrong = cli("plan", exp_dir / "results" / "fam", "--arms", "3", cwd=exp_dir)
    assert wrong.returncode == 2 and "--arms 2" in wrong.stderr


def test_a_family_with_jobs_in_parallel_resumes_to_the_same_decisions(exp_dir, cli):
    cli.backend = cli.memory(_twin_gen, max_parallel=3)
    twin = exp_dir / TWIN.name
    twin.write_text(TWIN.read_text())
    (exp_dir / "train").mkdir()
    (exp_dir / "train" / "train_gpt.py").write_text("")
    r = cli("run", twin, "--until-decisive", "--plain", cwd=exp_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    res = exp_dir / "results" / "ve-ablations-smoke"
    first = json.loads((res / "sequential.json").read_text())["decisions"]
    n = len(cli.backend.launched)
    again = cli("run", twin, "--until-decisive", "--plain", cwd=exp_dir)
    assert again.returncode == 0, again.stderr
    assert len(cli.backend.launched) == n                     # nothing more to run
    assert json.loads((res / "sequential.json").read_text())["decisions"] == first
    verdicts = {(e["hypothesis"], e["criterion"]): e["decision"] for e in first}
    assert verdicts[("untied", "time")] == verdicts[("untied", "loss")] == "pass"


def test_simulate_family_takes_the_control_sigmas_from_earlier_runs(cli, tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    import analyze_builders as B
    losses = [round(x, 4) for x in 3.278 + 0.001 * np.random.default_rng(1).standard_normal(10)]
    times = [round(x, 3) for x in 98.1 + 0.09 * np.random.default_rng(2).standard_normal(10)]
    B.write_group(tmp_path / "earlier", losses, times, seed=100)
    r = cli("simulate", "--arms", "2", "--variance-from", tmp_path / "earlier", "--time-delta=-0.39,0",
            "--loss-mean", "3.2784", "--max-runs", "6", "--sims", "300", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["time_sigma"] == pytest.approx(float(np.std(times, ddof=1)))
    assert j["loss_sigma"] == pytest.approx(float(np.std(losses, ddof=1)))
