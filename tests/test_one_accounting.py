"""Issue 12 finding 10: simulate counts runs the way the real Runner launches them.

The real ``Runner`` with the in-memory backend runs simulated experiments (a look
after every completed run, ``max_parallel`` jobs, retries, diverged runs); the
vectorised emulation in ``harness.design.simulate`` must give identical run counts and
verdicts on the same draws.
"""
from __future__ import annotations


import numpy as np
import pytest

from conftest import write_experiment
from harness.design import sequential as seq
from harness.design import simulate as sim
from harness.data import spec as specmod
from harness.run.backends.memory import FakeRun, MemoryBackend
from harness.run.runner import Options, Runner
from harness.data.store import Store

M = 10
STEPS = 20


def _emulate(plan, d, max_parallel):
    ctimes = sim._compact(d["ctime"], d["ok_c"])
    ttimes = sim._compact(d["ttime"], d["ok_t"])
    tloss = sim._compact(d["tloss"], d["ok_t"])
    div = sim._compact(d["diverged"].astype(float), d["ok_t"]) == 1.0
    kt, dt, kl, dl = sim.decision_looks(plan, ctimes, ttimes, tloss, div)
    return sim.schedule(plan, kt, dt, kl, dl, d["ok_c"], d["ok_t"], d["att_c"], d["att_t"], max_parallel)


def _real(tmp_path, s, d, plan_dict, max_parallel, retries, m=M, plan_from=seq.SequentialPlan.from_dict):
    def gen(hyp, index, attempt):
        if hyp == "H0":
            return FakeRun(3.278, float(d["ctime_ms"][s, index]), STEPS,
                           failed=bool(d["fails_c"][s, index, attempt - 1]))
        return FakeRun(float(d["tloss"][s, index]), float(d["ttime_ms"][s, index]), STEPS,
                       failed=bool(d["fails_t"][s, index, attempt - 1]))

    folder = tmp_path / f"e{s}"
    folder.mkdir()
    path = write_experiment(folder, name="acc", runs=m, h0_args={"num_iterations": STEPS},
                            h1_args={"num_iterations": STEPS})
    exp = specmod.load(path)
    backend = MemoryBackend(gen, max_parallel=max_parallel)
    decider = plan_from(plan_dict)
    r = Runner(exp, Store(folder / "results"), backend, folder, path.read_text(),
               Options(runs=m, retries=retries), decider=decider)
    slots = r.run()
    done = [sl.done for sl in slots.values() if sl.done is not None]
    nc = sum(1 for x in done if x.hypothesis == "H0")
    nt = sum(1 for x in done if x.hypothesis == "H1")
    dec = r.look.decisions["H1"]
    return nc, nt, len(backend.launched), dec["time"]["decision"], dec["loss"]["decision"]


NAMES = {1: "pass", -1: "fail", 0: "open"}


@pytest.mark.parametrize("max_parallel,fail_prob,diverge_prob,n_exp", [
    (1, 0.1, 0.03, 50),        # retries and diverged runs, one job at a time
    (4, 0.0, 0.03, 50),        # four jobs at once: the runner launches past the decision
])
def test_runner_and_emulation_count_the_same_runs(tmp_path, memory, max_parallel, fail_prob,
                                                  diverge_prob, n_exp):
    # the memory fixture: the runner does not pause between its polls
    plan = seq.SequentialPlan("H0", ["H1"], max_runs=M)
    rng = np.random.default_rng(1200 + max_parallel)
    # a mix of scenarios: the record's speedup and loss, no speedup, failing loss
    d = sim.draw(rng, n_exp, M, 0.0904, 0.0533, -0.3925, 3.2784, 0.0009, fail_prob, diverge_prob, 1)
    third = n_exp // 3
    d["ttime_ms"][third:2 * third] += 392.5          # no speedup
    d["ttime"][third:2 * third] += 0.3925
    d["tloss"][2 * third:] += 0.003                 # loss clearly failing
    nc, nt, att, td, ld = _emulate(plan, d, max_parallel)
    saved = plan.to_dict()
    for s in range(n_exp):
        got = _real(tmp_path, s, d, saved, max_parallel, 1)
        want = (int(nc[s]), int(nt[s]), int(att[s]), NAMES[int(td[s])], NAMES[int(ld[s])])
        assert got == want, (s, got, want)


def test_parallel_jobs_cost_runs_and_simulate_says_so():
    one = sim.simulate(0.0904, -0.3925, 3.2784, 0.0009, treatment_time_sigma=0.0533, sims=4000, seed=3)
    four = sim.simulate(0.0904, -0.3925, 3.2784, 0.0009, treatment_time_sigma=0.0533, sims=4000, seed=3,
                        max_parallel=4)
    assert four["mean_total_runs"] > one["mean_total_runs"] + 1.0
    assert four["both_rate"] == pytest.approx(one["both_rate"], abs=0.02)


# ---------------------------------------------------------------- borrowed sigma (issue 16)

def _borrowed_plan(alpha=0.05, m=6):
    from harness.analysis import borrow
    from harness.design import borrow_seq
    v = borrow.VariancePlan(loss=borrow.Sigma(0.0009, 9.0, 10, "earlier"), time=borrow.Sigma(0.0904, 9.0, 10, "earlier"))
    return borrow_seq.BorrowedPlan("H0", ["H1"], alpha, alpha, 3.28, 0.0, m, variance=v)


@pytest.mark.parametrize("max_parallel,fail_prob,diverge_prob,n_exp", [
    (1, 0.1, 0.05, 24),        # retries and diverged runs, one job at a time
    (3, 0.0, 0.05, 24),        # three jobs at once
])
def test_runner_and_emulation_count_the_same_runs_with_a_borrowed_sigma(tmp_path, memory, max_parallel,
                                                                        fail_prob, diverge_prob, n_exp):
    # each experiment borrows its own draw of the earlier runs' sigma, as simulate draws it
    from harness.design import borrow_seq
    m = 6
    plan = _borrowed_plan(m=m)
    rng = np.random.default_rng(1600 + max_parallel)
    d = sim.draw(rng, n_exp, m, 0.0904, 0.0533, -0.12, 3.2784, 0.0009, fail_prob, diverge_prob, 1)
    third = n_exp // 3
    d["ttime_ms"][third:2 * third] += 120.0          # no speedup
    d["ttime"][third:2 * third] += 0.12
    d["tloss"][2 * third:] += 0.0025                 # loss failing
    bor = sim.draw_borrowed(rng, n_exp, plan.variance)
    ctimes, ttimes = sim._compact(d["ctime"], d["ok_c"]), sim._compact(d["ttime"], d["ok_t"])
    tloss = sim._compact(d["tloss"], d["ok_t"])
    div = sim._compact(d["diverged"].astype(float), d["ok_t"]) == 1.0
    kt, dt, kl, dl = sim.decision_looks(plan, ctimes, ttimes, tloss, div, bor)
    nc, nt, att, td, ld = sim.schedule(plan, kt, dt, kl, dl, d["ok_c"], d["ok_t"], d["att_c"], d["att_t"],
                                       max_parallel)
    decided = set()
    for s in range(n_exp):
        saved = plan.to_dict()
        saved["variance"]["time"]["sigma"] = float(bor["time"][s, 0])
        saved["variance"]["loss"]["sigma"] = float(bor["loss"][s, 0])
        got = _real(tmp_path, s, d, saved, max_parallel, 1, m=m, plan_from=borrow_seq.plan_from_dict)
        want = (int(nc[s]), int(nt[s]), int(att[s]), NAMES[int(td[s])], NAMES[int(ld[s])])
        assert got == want, (s, got, want)
        decided.add(want[3:])
    assert len(decided) >= 3          # passes and fails of both criteria, not one kind only
