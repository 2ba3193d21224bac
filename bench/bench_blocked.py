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

Placements (the second null table): what a cluster makes of pairs that fail, nodes that
drain and large shared partitions -- 1 control + 2 treatment runs per node, a control
with 1 within-node df, unequal counts per node, many nodes with one run each, the
control's sigma 1.7x and 4x the treatment's, a linear drift over the experiment -- for
the fixed gate and for ``--until-decisive`` with ``pairing = "none"`` over 16 and 64
nodes. ``today`` is the test before the guard (pooled variance when an arm had no df,
plain Satterthwaite df), ``blocked`` the shipped one. The df grid checks the guard on
the reduced problem (Z over the square root of two scaled chi-squares) for every share
of variance, Rao-Blackwellised (the rejection probability given the variance estimates,
averaged), so its Monte Carlo SE is far below the binomial one.

Usage: ``python bench/bench_blocked.py [--sims N] [--quick]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special, stats

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


def _fixed(rows, hosts):
    return np.broadcast_to(np.asarray(hosts), (rows, len(hosts))).copy()


# name -> (nodes, control hosts (rows -> array), treatment hosts, control sigma, treatment sigma, drift s)
PLACEMENTS = {
    "1c+2t per node, 5 nodes": (5, lambda r, B: _fixed(B, range(5)), lambda r, B: _fixed(B, np.repeat(np.arange(5), 2)), SC, ST, 0.0),
    "1c+2t per node, 10 nodes": (10, lambda r, B: _fixed(B, range(10)), lambda r, B: _fixed(B, np.repeat(np.arange(10), 2)), SC, ST, 0.0),
    "1c+2t, 10 nodes, sigma_c 4x": (10, lambda r, B: _fixed(B, range(10)), lambda r, B: _fixed(B, np.repeat(np.arange(10), 2)), 4 * ST, ST, 0.0),
    "control 1 df (6 on 5 nodes)": (5, lambda r, B: _fixed(B, [0, 0, 1, 2, 3, 4]), lambda r, B: _fixed(B, np.repeat(np.arange(5), 2)), SC, ST, 0.0),
    "control 1 df, sigma_c 4x": (5, lambda r, B: _fixed(B, [0, 0, 1, 2, 3, 4]), lambda r, B: _fixed(B, np.repeat(np.arange(5), 2)), 4 * ST, ST, 0.0),
    "4 + 12 runs spread, 4 nodes, 1.7x": (4, lambda r, B: r.integers(0, 4, (B, 4)), lambda r, B: r.integers(0, 4, (B, 12)), 1.7 * ST, ST, 0.0),
    "spread 4 nodes, sigma_c 1.7x": (4, lambda r, B: r.integers(0, 4, (B, 10)), lambda r, B: r.integers(0, 4, (B, 10)), 1.7 * ST, ST, 0.0),
    "spread 4 nodes, sigma_c 4x": (4, lambda r, B: r.integers(0, 4, (B, 10)), lambda r, B: r.integers(0, 4, (B, 10)), 4 * ST, ST, 0.0),
    "skewed 4 nodes, sigma_c 4x": (4, lambda r, B: r.choice(4, (B, 10), p=SKEW["H0"]), lambda r, B: r.choice(4, (B, 10), p=SKEW["H1"]), 4 * ST, ST, 0.0),
    "spread 16 nodes": (16, lambda r, B: r.integers(0, 16, (B, 10)), lambda r, B: r.integers(0, 16, (B, 10)), SC, ST, 0.0),
    "spread 64 nodes": (64, lambda r, B: r.integers(0, 64, (B, 10)), lambda r, B: r.integers(0, 64, (B, 10)), SC, ST, 0.0),
    "spread 64 nodes, sigma_c 4x": (64, lambda r, B: r.integers(0, 64, (B, 10)), lambda r, B: r.integers(0, 64, (B, 10)), 4 * ST, ST, 0.0),
    "one pair per node, 10 nodes": (10, lambda r, B: _fixed(B, range(10)), lambda r, B: _fixed(B, range(10)), SC, ST, 0.0),
    "spread 4 nodes, drift 0.3 s": (4, lambda r, B: r.integers(0, 4, (B, 10)), lambda r, B: r.integers(0, 4, (B, 10)), SC, ST, 0.3),
}


def placement(rng, sims: int, name: str, delta: float):
    """Times and node indices of one placement; the drift rises linearly over the run index."""
    nodes, fc, ft, sc, st, drift = PLACEMENTS[name]
    hc, ht = fc(rng, sims), ft(rng, sims)
    u = rng.normal(0.0, NODE_SIGMA, (sims, nodes))
    rows = np.arange(sims)[:, None]
    nc, nt = hc.shape[1], ht.shape[1]
    c = u[rows, hc] + drift * np.arange(nc) / max(nc - 1, 1) + rng.normal(0.0, sc, (sims, nc))
    t = u[rows, ht] + delta + drift * np.arange(nt) / max(nt - 1, 1) + rng.normal(0.0, st, (sims, nt))
    return c, t, hc, ht


# ------------------------------------------------------------------------ tests (vectorised)
def welch_p(c, t):
    n_c, n_t = c.shape[1], t.shape[1]
    vc, vt = c.var(axis=1, ddof=1) / n_c, t.var(axis=1, ddof=1) / n_t
    s2 = vc + vt
    df = s2 * s2 / (vc * vc / (n_c - 1) + vt * vt / (n_t - 1))
    return special.stdtr(df, (t.mean(axis=1) - c.mean(axis=1)) / np.sqrt(s2))


def _node_moments(x, h, nodes):
    onehot = h[..., None] == np.arange(nodes)          # (sims, n, nodes)
    N = onehot.sum(axis=1).astype(float)
    S = (x[..., None] * onehot).sum(axis=1)
    mean = S / np.maximum(N, 1)
    dev = np.where(onehot, x[..., None] - mean[:, None, :], 0.0)
    ss = (dev * dev).sum(axis=(1, 2))                  # two-pass: tied groups give 0
    df = x.shape[1] - (N > 0).sum(axis=1)
    return N, S, ss, df


def stratified_p(c, t, hc, ht, weights="counts", rule="guarded", nodes=None):
    """harness.analysis.blocked.stratified, vectorised over rows (nan where it has no result).

    ``rule="guarded"``: the shipped test; ``rule="today"``: the test before the guard
    (pooled variance when an arm has no within-node df, plain Satterthwaite df).
    ``weights="variance"``: the rejected variant with weights 1 / (s_c^2/n_ch + s_t^2/n_th)
    from the estimated variances, shown in the null table as ``blocked-iv``.
    """
    nodes = nodes or int(max(hc.max(), ht.max())) + 1
    Nc, Sc, ssc, dfc = _node_moments(c, hc, nodes)
    Nt, St, sst, dft = _node_moments(t, ht, nodes)
    with np.errstate(invalid="ignore", divide="ignore"):
        both = (dfc >= 1) & (dft >= 1)
        if rule == "today":
            vp = (ssc + sst) / (dfc + dft)
            vc = np.where(both, ssc / np.maximum(dfc, 1), vp)
            vt = np.where(both, sst / np.maximum(dft, 1), vp)
            dfc_e = np.where(both, dfc, dfc + dft).astype(float)
            dft_e = np.where(both, dft, dfc + dft).astype(float)
        else:
            vc, vt = ssc / np.maximum(dfc, 1), sst / np.maximum(dft, 1)
            dfc_e, dft_e = np.maximum(dfc, 1).astype(float), np.maximum(dft, 1).astype(float)
        shared = (Nc > 0) & (Nt > 0)
        k = shared.sum(axis=1)
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
        x, y = vc * A, vt * B
        sat = lambda x, y: (x + y) ** 2 / (x * x / dfc_e + y * y / dft_e)
        if rule == "today":
            df = sat(x, y)
            ok = shared.any(axis=1) & (dfc + dft >= 1)
            p = special.stdtr(df, delta / np.sqrt(x + y))
            return np.where(ok, p, np.nan)
        xu = x * dfc_e / stats.chi2.ppf(np.where(dfc_e <= 1, blocked.df_bound(1), blocked.df_bound(2)), dfc_e)
        yu = y * dft_e / stats.chi2.ppf(np.where(dft_e <= 1, blocked.df_bound(1), blocked.df_bound(2)), dft_e)
        df = np.minimum(np.minimum(sat(x, y), sat(xu, y)), sat(x, yu))
        p_within = special.stdtr(df, delta / np.sqrt(x + y))
        p_within = np.where(both & (ssc > 0) & (sst > 0), p_within, np.nan)
        # node differences: equal counts on every shared node, more df than the smaller arm's
        big = np.where(shared, Nc, -np.inf).max(axis=1), np.where(shared, Nt, -np.inf).max(axis=1)
        small = np.where(shared, Nc, np.inf).min(axis=1), np.where(shared, Nt, np.inf).min(axis=1)
        balanced = (big[0] == small[0]) & (big[1] == small[1])
        use_nd = balanced & (k >= 2) & (k - 1 > np.minimum(dfc, dft))
        kk = np.maximum(k, 2)
        dm = np.where(shared, d, 0.0).sum(axis=1) / np.maximum(k, 1)
        sd2 = (np.where(shared, d - dm[:, None], 0.0) ** 2).sum(axis=1) / (kk - 1)
        p_nd = special.stdtr(kk - 1, dm / np.sqrt(sd2 / kk))
        p_nd = np.where(sd2 > 0, p_nd, np.nan)
        p = np.where(use_nd, p_nd, p_within)
    return np.where(shared.any(axis=1), p, np.nan)


def check_against_module(rng) -> float:
    """Largest relative gap between the vectorised test and harness.analysis.blocked on random data."""
    worst = 0.0
    cases = [draw(rng, 200, 6, DELTA * 0.3, schedule) for schedule in ("paired", "spread", "skewed")]
    cases += [placement(rng, 200, name, 0.0) for name in PLACEMENTS]
    for schedule, (c, t, hc, ht) in enumerate(cases):
        pv = stratified_p(c, t, hc, ht, nodes=int(max(hc.max(), ht.max())) + 1)
        for i in range(len(c)):
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
            tests = [("welch", welch_p(c, t)), ("blocked", stratified_p(c, t, hc, ht, nodes=NODES)),
                     ("today", stratified_p(c, t, hc, ht, rule="today", nodes=NODES))]
            if delta == 0.0 and schedule != "paired":   # on paired nodes both weightings coincide
                tests.append(("blocked-iv", stratified_p(c, t, hc, ht, weights="variance", nodes=NODES)))
            for test, p in tests:
                for a in alphas:
                    key = (schedule, test, a)
                    hits[key] = hits.get(key, 0) + int(np.sum(p < a))   # nan: no verdict
    return {k: v / sims for k, v in hits.items()}


def sequential(seed: int, sims: int, delta: float, max_runs: int = 10) -> dict:
    """--until-decisive's time criterion replayed on the paired schedule, both statistics."""
    plan = seq.SequentialPlan("H0", ["H1"], 0.001, 0.01, 3.28, 0.0, max_runs)
    rng = np.random.default_rng(seed)
    out = {"welch": [0, 0.0], "today": [0, 0.0], "blocked": [0, 0.0]}
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
                    rule = "today" if test == "today" else "guarded"
                    pp[:, j] = stratified_p(c[:, :k], t[:, :k], hc[:, :k], ht[:, :k], rule=rule, nodes=NODES)
                    pf[:, j] = stratified_p(t[:, :k], c[:, :k], ht[:, :k], hc[:, :k], rule=rule, nodes=NODES)
            k, dec = seq.first_crossing(pp, plan.time_pass, pf, plan.time_fail, max_runs)
            out[test][0] += int(np.sum(dec == 1))
            out[test][1] += float(np.sum(2 * k))
    return {t: (v[0] / sims, v[1] / sims) for t, v in out.items()}


def placement_rates(seed: int, sims: int, alphas=(0.001, 0.01, 0.05)) -> dict:
    """(placement, rule, alpha) -> false 'faster' rate; (placement, 'none') -> share without a result."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in PLACEMENTS:
        done = 0
        nodes = PLACEMENTS[name][0]
        chunk = max(2000, CHUNK * 4 // nodes)
        while done < sims:
            B = min(chunk, sims - done)
            done += B
            c, t, hc, ht = placement(rng, B, name, 0.0)
            for rule in ("today", "blocked"):
                p = stratified_p(c, t, hc, ht, rule="today" if rule == "today" else "guarded", nodes=nodes)
                for a in alphas:
                    out[(name, rule, a)] = out.get((name, rule, a), 0) + int(np.sum(p < a))
                if rule == "blocked":
                    out[(name, "none")] = out.get((name, "none"), 0) + int(np.sum(np.isnan(p)))
    return {k: v / sims for k, v in out.items()}


def df_grid(seed: int, draws: int, alphas=(0.001, 0.01, 0.05)) -> dict:
    """Worst size / alpha of plain and guarded Satterthwaite df on the reduced problem, per smaller df."""
    rng = np.random.default_rng(seed)
    dfs = (1, 2, 3, 4, 6, 10, 20, 60)
    out = {}
    for i, nc in enumerate(dfs):
        for nt in dfs[i:]:
            uc, ut = rng.chisquare(nc, draws) / nc, rng.chisquare(nt, draws) / nt
            for lam in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98):
                for small, big, x, y in ((nc, nt, lam * uc, (1 - lam) * ut), (nt, nc, lam * ut, (1 - lam) * uc)):
                    sat = lambda x, y: (x + y) ** 2 / (x * x / small + y * y / big)
                    xu = x * small / stats.chi2.ppf(blocked.df_bound(small), small)
                    yu = y * big / stats.chi2.ppf(blocked.df_bound(big), big)
                    rules = {"satterthwaite": sat(x, y),
                             "guarded": np.minimum(np.minimum(sat(x, y), sat(xu, y)), sat(x, yu))}
                    for rule, df in rules.items():
                        for a in alphas:
                            cond = special.ndtr(-special.stdtrit(df, 1 - a) * np.sqrt(x + y)) / a
                            key = (rule, a, min(nc, nt))
                            size = float(cond.mean())
                            if size > out.get(key, (0.0, 0.0))[0]:
                                out[key] = (size, float(cond.std() / math.sqrt(draws)))
    return out


def sequential_spread(seed: int, sims: int, nodes: int, alpha: float, delta: float = 0.0, max_runs: int = 10) -> dict:
    """--until-decisive's time criterion with pairing = "none": each run on any of ``nodes``."""
    plan = seq.SequentialPlan("H0", ["H1"], alpha, 0.01, 3.28, 0.0, max_runs)
    rng = np.random.default_rng(seed)
    out = {"today": [0, 0.0], "blocked": [0, 0.0]}
    done = 0
    chunk = max(2000, CHUNK * 4 // nodes)
    while done < sims:
        B = min(chunk, sims - done)
        done += B
        u = rng.normal(0.0, NODE_SIGMA, (B, nodes))
        hc, ht = rng.integers(0, nodes, (B, max_runs)), rng.integers(0, nodes, (B, max_runs))
        rows = np.arange(B)[:, None]
        c = u[rows, hc] + rng.normal(0.0, SC, (B, max_runs))
        t = u[rows, ht] + delta + rng.normal(0.0, ST, (B, max_runs))
        for test in out:
            rule = "today" if test == "today" else "guarded"
            pp = np.empty((B, max_runs - 1))
            pf = np.empty((B, max_runs - 1))
            for j, k in enumerate(range(2, max_runs + 1)):
                pp[:, j] = stratified_p(c[:, :k], t[:, :k], hc[:, :k], ht[:, :k], rule=rule, nodes=nodes)
                pf[:, j] = stratified_p(t[:, :k], c[:, :k], ht[:, :k], hc[:, :k], rule=rule, nodes=nodes)
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
        for test in ("welch", "today", "blocked"):
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
    for test in ("welch", "today", "blocked"):
        print(f"{test:10}{null[test][0]:>12.5f}{se(null[test][0], ssims):>9.5f}{alt[test][0]:>9.3f}"
              f"{se(alt[test][0], ssims):>9.4f}{null[test][1]:>13.1f}{alt[test][1]:>16.1f}")
    print()
    print(f"(runs = control + treatment runs when the time criterion decided; fixed design: 20)")
    print()
    gsims = max(sims // 4, 5000)
    print(f"== placements: false 'faster' verdicts (no true effect), {gsims} experiments per cell, seeds 301 / 302 ==")
    print("(today: pooled variance when an arm has no within-node df, plain Satterthwaite df; "
          "no result: share of experiments where the shipped test gives none)")
    g1, g2 = placement_rates(301, gsims), placement_rates(302, gsims)
    print(f"{'placement':36}{'test':9}" + "".join(f"{'a=' + format(a, 'g'):>17}" for a in (0.001, 0.01, 0.05))
          + f"{'no result':>11}")
    for name in PLACEMENTS:
        for rule in ("today", "blocked"):
            cells = "".join(f"{g1[(name, rule, a)]:>8.5f}/{g2[(name, rule, a)]:.5f}"[:17].rjust(17)
                            for a in (0.001, 0.01, 0.05))
            none = f"{g1[(name, 'none')]:>11.3f}" if rule == "blocked" else ""
            print(f"{name:36}{rule:9}{cells}{none}")
    print("+- se at alpha 0.001 / 0.01 / 0.05: "
          + " / ".join(f"{se(a, gsims):.5f}" for a in (0.001, 0.01, 0.05)))
    print()
    draws = max(sims // 8, 20000)
    print(f"== df rule on the reduced problem: worst size / alpha over 7 variance shares and the larger df "
          f"(1..60), {draws} Rao-Blackwellised draws, seed 401 ==")
    grid = df_grid(401, draws)
    smalls = sorted({k[2] for k in grid})
    print(f"{'rule':15}{'alpha':>7}" + "".join(f"{'df ' + str(m):>8}" for m in smalls))
    for rule in ("satterthwaite", "guarded"):
        for a in (0.001, 0.01, 0.05):
            print(f"{rule:15}{a:>7g}" + "".join(f"{grid[(rule, a, m)][0]:>8.3f}" for m in smalls)
                  + f"   +- se max {max(grid[(rule, a, m)][1] for m in smalls):.3f}")
    print()
    qsims = max(sims // 16, 2000)
    print(f"== --until-decisive (M = 10), pairing = \"none\": each run on any node, {qsims} experiments ==")
    print(f"{'nodes':>6}{'alpha':>7}{'test':>9}{'false pass':>12}{'+- se':>9}{'power':>8}{'runs (null)':>13}")
    for nodes in (16, 64):
        for a in (0.001, 0.01, 0.05):
            null = sequential_spread(500 + nodes + int(1000 * a), qsims, nodes, a)
            alt = sequential_spread(600 + nodes + int(1000 * a), qsims // 4, nodes, a, DELTA) if a == 0.001 else None
            for test in ("today", "blocked"):
                pw = f"{alt[test][0]:>8.3f}" if alt else f"{'':>8}"
                print(f"{nodes:>6}{a:>7g}{test:>9}{null[test][0]:>12.5f}{se(null[test][0], qsims):>9.5f}{pw}"
                      f"{null[test][1]:>13.1f}")
    print(f"elapsed {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
