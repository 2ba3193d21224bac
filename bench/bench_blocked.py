#!/usr/bin/env python3
"""Benchmark of blocked designs across nodes (harness/analysis/blocked.py, harness/run/pairing.py).

Model: 4 nodes with node effects N(0, 0.5^2) drawn afresh for every simulated
experiment; within a node the run time is normal with the untied-value-embedding
record's sigmas (H0 0.0904 s, H1 0.0533 s); the treatment's effect is 0 (error
rates) or the record's -0.3925 s (power). Schedules:

* spread: every run lands on any of the 4 nodes (uniformly, independently), as the
  SLURM backend without pairing does on a cluster whose nodes are all free;
* skewed spread: the arms draw nodes from different mixes (H0 mostly nodes 1-2,
  H1 mostly 3-4: jobs of one arm submitted while the same nodes were free);
* paired: the runs of one index share a node (harness/run/pairing.py), the pair's node
  uniform over the 4.

Tests: the pooled Welch test (the community's Time p) and the stratified Welch
test blocked by node (the gate's time test when runs span nodes). The sequential
design (``--until-decisive``, boundaries of harness.design.sequential at M = 10) is
replayed on both statistics for the paired schedule. All rates are one-sided
"faster" verdicts with Monte Carlo standard errors; the null rates are checked on
two independent seeds. Nothing here is tuned.

Usage: ``python bench/bench_blocked.py [--sims N] [--quick]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis import blocked  # noqa: E402
from harness.design import sequential as seq  # noqa: E402

NODES = 4
NODE_SIGMA = 0.5
SC, ST = 0.0904, 0.0533
DELTA = -0.3925
SKEW = {"H0": np.array([0.4, 0.4, 0.1, 0.1]), "H1": np.array([0.1, 0.1, 0.4, 0.4])}
CHUNK = 50_000


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


# ------------------------------------------------------------------------ data
def draw(rng, sims: int, n: int, delta: float, schedule: str):
    """Times (sims, n) per arm and node indices (sims, n) per arm."""
    u = rng.normal(0.0, NODE_SIGMA, (sims, NODES))
    if schedule == "paired":
        hc = rng.integers(0, NODES, (sims, n))
        ht = hc
    elif schedule == "spread":
        hc = rng.integers(0, NODES, (sims, n))
        ht = rng.integers(0, NODES, (sims, n))
    elif schedule == "skewed":
        hc = rng.choice(NODES, size=(sims, n), p=SKEW["H0"])
        ht = rng.choice(NODES, size=(sims, n), p=SKEW["H1"])
    else:
        raise ValueError(schedule)
    rows = np.arange(sims)[:, None]
    c = u[rows, hc] + rng.normal(0.0, SC, (sims, n))
    t = u[rows, ht] + delta + rng.normal(0.0, ST, (sims, n))
    return c, t, hc, ht


# ------------------------------------------------------------------------ tests (vectorised)
def welch_p(c, t):
    n_c, n_t = c.shape[1], t.shape[1]
    vc, vt = c.var(axis=1, ddof=1) / n_c, t.var(axis=1, ddof=1) / n_t
    s2 = vc + vt
    df = s2 * s2 / (vc * vc / (n_c - 1) + vt * vt / (n_t - 1))
    return special.stdtr(df, (t.mean(axis=1) - c.mean(axis=1)) / np.sqrt(s2))


def _node_moments(x, h):
    onehot = h[..., None] == np.arange(NODES)          # (sims, n, nodes)
    N = onehot.sum(axis=1).astype(float)
    S = (x[..., None] * onehot).sum(axis=1)
    Q = ((x * x)[..., None] * onehot).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ss = np.where(N > 0, Q - S * S / np.maximum(N, 1), 0.0).sum(axis=1)
    df = x.shape[1] - (N > 0).sum(axis=1)
    return N, S, ss, df


def stratified_p(c, t, hc, ht, weights="counts"):
    """harness.analysis.blocked.stratified, vectorised over rows (nan where it has no result).

    ``weights="variance"``: the rejected variant with weights 1 / (s_c^2/n_ch + s_t^2/n_th)
    from the estimated variances, shown in the null table as ``blocked-iv``.
    """
    Nc, Sc, ssc, dfc = _node_moments(c, hc)
    Nt, St, sst, dft = _node_moments(t, ht)
    with np.errstate(invalid="ignore", divide="ignore"):
        both = (dfc >= 1) & (dft >= 1)
        pooled = (dfc + dft) / 1.0
        vp = (ssc + sst) / pooled
        vc = np.where(both, ssc / np.maximum(dfc, 1), vp)
        vt = np.where(both, sst / np.maximum(dft, 1), vp)
        dfc_e = np.where(both, dfc, dfc + dft).astype(float)
        dft_e = np.where(both, dft, dfc + dft).astype(float)
        shared = (Nc > 0) & (Nt > 0)
        a = np.where(shared, 1.0 / np.maximum(Nc, 1), 0.0)
        b = np.where(shared, 1.0 / np.maximum(Nt, 1), 0.0)
        d = np.where(shared, St / np.maximum(Nt, 1) - Sc / np.maximum(Nc, 1), 0.0)
        if weights == "counts":   # as harness.analysis.blocked
            w = np.where(shared, 1.0 / np.where(shared, a + b, 1.0), 0.0)
        else:
            w = np.where(shared, 1.0 / (vc[:, None] * a + vt[:, None] * b), 0.0)
        W = w.sum(axis=1)
        delta = (w * d).sum(axis=1) / W
        A = ((w / W[:, None]) ** 2 * a).sum(axis=1)
        B = ((w / W[:, None]) ** 2 * b).sum(axis=1)
        var = vc * A + vt * B
        df = var * var / ((vc * A) ** 2 / dfc_e + (vt * B) ** 2 / dft_e)
        p = special.stdtr(df, delta / np.sqrt(var))
    ok = shared.any(axis=1) & (dfc + dft >= 1)
    return np.where(ok, p, np.nan)


def check_against_module(rng) -> float:
    """Largest relative gap between the vectorised test and harness.analysis.blocked on random data."""
    worst = 0.0
    for schedule in ("paired", "spread", "skewed"):
        c, t, hc, ht = draw(rng, 200, 6, DELTA * 0.3, schedule)
        pv = stratified_p(c, t, hc, ht)
        for i in range(200):
            bt = blocked.stratified(list(zip(map(str, hc[i]), c[i])), list(zip(map(str, ht[i]), t[i])))
            if math.isnan(bt.p) or math.isnan(pv[i]):
                assert math.isnan(bt.p) == math.isnan(pv[i]), (schedule, i, bt.p, pv[i])
                continue
            worst = max(worst, abs(bt.p - pv[i]) / max(bt.p, 1e-300))
    return worst


# ------------------------------------------------------------------------ experiments
def rates(seed: int, sims: int, n: int, delta: float, alphas=(0.001, 0.05)) -> dict:
    rng = np.random.default_rng(seed)
    hits = {}
    done = 0
    while done < sims:
        B = min(CHUNK, sims - done)
        done += B
        for schedule in ("spread", "skewed", "paired"):
            c, t, hc, ht = draw(rng, B, n, delta, schedule)
            tests = [("welch", welch_p(c, t)), ("blocked", stratified_p(c, t, hc, ht))]
            if delta == 0.0 and schedule != "paired":   # on paired nodes both weightings coincide
                tests.append(("blocked-iv", stratified_p(c, t, hc, ht, weights="variance")))
            for test, p in tests:
                for a in alphas:
                    key = (schedule, test, a)
                    hits[key] = hits.get(key, 0) + int(np.sum(p < a))   # nan: no verdict
    return {k: v / sims for k, v in hits.items()}


def sequential(seed: int, sims: int, delta: float, max_runs: int = 10) -> dict:
    """--until-decisive's time criterion replayed on the paired schedule, both statistics."""
    plan = seq.SequentialPlan("H0", ["H1"], 0.001, 0.01, 3.28, 0.0, max_runs)
    rng = np.random.default_rng(seed)
    out = {"welch": [0, 0.0], "blocked": [0, 0.0]}
    done = 0
    while done < sims:
        B = min(CHUNK, sims - done)
        done += B
        c, t, hc, ht = draw(rng, B, max_runs, delta, "paired")
        for test in out:
            pp = np.empty((B, max_runs - 1))
            pf = np.empty((B, max_runs - 1))
            for j, k in enumerate(range(2, max_runs + 1)):
                if test == "welch":
                    pp[:, j] = welch_p(c[:, :k], t[:, :k])
                    pf[:, j] = welch_p(t[:, :k], c[:, :k])
                else:
                    pp[:, j] = stratified_p(c[:, :k], t[:, :k], hc[:, :k], ht[:, :k])
                    pf[:, j] = stratified_p(t[:, :k], c[:, :k], ht[:, :k], hc[:, :k])
            k, dec = seq.first_crossing(pp, plan.time_pass, pf, plan.time_fail, max_runs)
            out[test][0] += int(np.sum(dec == 1))
            out[test][1] += float(np.sum(2 * k))
    return {t: (v[0] / sims, v[1] / sims) for t, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=400_000, help="simulated experiments per null cell")
    ap.add_argument("--quick", action="store_true", help="20x fewer simulations")
    args = ap.parse_args()
    sims = args.sims // (20 if args.quick else 1)
    t0 = time.time()
    gap = check_against_module(np.random.default_rng(99))
    print(f"vectorised stratified test vs harness.analysis.blocked on 600 random data sets: max relative gap {gap:.1e}")
    print(f"model: {NODES} nodes, node sigma {NODE_SIGMA} s, within-node sigma H0 {SC} / H1 {ST} s, "
          f"speedup {DELTA} s")
    print()
    print(f"== false 'faster' verdicts (no true effect), 10 runs per arm, {sims} experiments per seed ==")
    print("(blocked-iv: the stratified test with weights from the estimated variances, not used)")
    print(f"{'schedule':10}{'test':11}{'alpha':>7}{'seed 101':>10}{'seed 102':>10}{'+- se':>9}")
    # seeds 1, 2 (and 11 in a side check) chose the count weights; these two are fresh
    r1, r2 = rates(101, sims, 10, 0.0), rates(102, sims, 10, 0.0)
    for key in sorted(r1, key=lambda k: (k[0], k[1], k[2])):
        print(f"{key[0]:10}{key[1]:11}{key[2]:>7g}{r1[key]:>10.5f}{r2[key]:>10.5f}{se(r1[key], sims):>9.5f}")
    print()
    psims = max(sims // 10, 2000)
    print(f"== power at alpha 0.001 (the record's speedup), {psims} experiments per cell ==")
    ns = (4, 6, 8, 10, 16, 24, 40)
    print(f"{'schedule':10}{'test':9}" + "".join(f"{'n=' + str(n):>9}" for n in ns) + f"{'+- se max':>11}")
    table = {n: rates(1000 + n, psims, n, DELTA, alphas=(0.001,)) for n in ns}
    for schedule in ("spread", "skewed", "paired"):
        for test in ("welch", "blocked"):
            vals = [table[n][(schedule, test, 0.001)] for n in ns]
            need = next((f"{n}" for n, v in zip(ns, vals) if v >= 0.9), f"> {ns[-1]}")
            print(f"{schedule:10}{test:9}" + "".join(f"{v:>9.3f}" for v in vals)
                  + f"{max(se(v, psims) for v in vals):>11.4f}   90% power at n = {need}")
    print()
    ssims = max(sims // 4, 2000)
    print(f"== --until-decisive time criterion on the paired schedule (M = 10), {ssims} experiments ==")
    print(f"{'statistic':10}{'false pass':>12}{'+- se':>9}{'power':>9}{'+- se':>9}{'runs (null)':>13}"
          f"{'runs (speedup)':>16}")
    null, alt = sequential(201, ssims, 0.0), sequential(202, ssims, DELTA)
    for test in ("welch", "blocked"):
        print(f"{test:10}{null[test][0]:>12.5f}{se(null[test][0], ssims):>9.5f}{alt[test][0]:>9.3f}"
              f"{se(alt[test][0], ssims):>9.4f}{null[test][1]:>13.1f}{alt[test][1]:>16.1f}")
    print()
    print(f"(runs = control + treatment runs when the time criterion decided; fixed design: 20)")
    print(f"elapsed {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
