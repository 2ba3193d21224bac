#!/usr/bin/env python3
"""Benchmark of step sweeps (harness/analysis/sweep.py) against testing each step count as its own arm.

Steps [1550, 1560, 1575], loss sigma 0.0009, target 3.28, alpha_loss 0.01; the true mean
loss is linear in the step count (within a 25-step range the record's curve is).
Scenarios (true mean loss at 1550 / 1560 / 1575):
  below: 3.2790 / 3.27876 / 3.2784  (untied-VE slope, 0.0006 per 25 steps): 1550 is the answer
  edge:  3.2800 / 3.2796 / 3.2790   (1550 exactly at the target: claiming it is a false verdict)
  above: 3.2806 / 3.2800 / 3.2791   (1550 above, 1560 at the target: claiming either is false)
Per design: "right" = reports the true smallest step count below the target (the best
answer there is), "false" = reports a step count whose true mean is at or above the
target, with Monte Carlo standard errors; fixed designs for n runs per step count, and
the sequential sweep decider (--until-decisive, at most 8 runs per step count).

Usage: python bench/bench_sweep.py [--sims N] [--seq-sims N]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis import sweep  # noqa: E402
from harness.records import RunRecord  # noqa: E402

STEPS = np.array([1550, 1560, 1575])
SIGMA, TARGET, ALPHA = 0.0009, 3.28, 0.01
SCEN = {"below": [3.2790, 3.27876, 3.2784], "edge": [3.2800, 3.2796, 3.2790], "above": [3.2806, 3.2800, 3.2791]}


def truth(mu):
    below = [i for i, m in enumerate(mu) if m < TARGET]
    return min(below) if below else None


def fixed(mu, n: int, sims: int, seed: int):
    """Vectorised fixed designs: (sweep claims, separate-arm claims), index of smallest or -1."""
    rng = np.random.default_rng(seed)
    K = len(STEPS)
    y = np.asarray(mu)[None, :, None] + SIGMA * rng.standard_normal((sims, K, n))
    # separate arms: one-sample t per step count
    m, s = y.mean(axis=2), y.std(axis=2, ddof=1)
    p_sep = sps.t.cdf((m - TARGET) / (s / math.sqrt(n)), n - 1)
    # sweep: least squares through all K*n runs, pooled residual sigma, df = K*n - 2
    x = np.repeat(STEPS, n).astype(float)
    x0 = x.mean()
    sxx = ((x - x0) ** 2).sum()
    Y = y.reshape(sims, K * n)
    a = Y.mean(axis=1)
    b = ((x - x0)[None, :] * (Y - a[:, None])).sum(axis=1) / sxx
    res = Y - a[:, None] - b[:, None] * (x - x0)[None, :]
    df = K * n - 2
    sig = np.sqrt((res ** 2).sum(axis=1) / df)
    d = STEPS - x0
    pred = a[:, None] + b[:, None] * d[None, :]
    se = sig[:, None] * np.sqrt(1.0 / (K * n) + d[None, :] ** 2 / sxx)
    p_sw = sps.t.cdf((pred - TARGET) / se, df)

    def smallest(p):
        ok = p < ALPHA
        return np.where(ok.any(axis=1), ok.argmax(axis=1), -1)
    return smallest(p_sw), smallest(p_sep)


def rates(claims, mu):
    t = truth(mu)
    right = float((claims == (t if t is not None else -1)).mean())
    false = float(np.isin(claims, [i for i, m in enumerate(mu) if m >= TARGET]).mean())
    return right, false


def sequential(mu, sims: int, seed: int, max_runs: int = 8):
    rng = np.random.default_rng(seed)
    arms = [(int(s), f"H1@{s}") for s in STEPS]
    dec = sweep.SweepDecider("H0", "H1", arms, TARGET, ALPHA, max_runs)
    runs, claims = [], []
    for _ in range(sims):
        recs = {n: [] for _, n in arms}
        recs["H0"] = []
        while True:
            lk = dec.look(recs)
            if lk.done:
                break
            for i, (s, n) in enumerate(arms):
                if lk.need[n]:
                    k = len(recs[n])
                    recs[n].append(RunRecord(run_id=f"{n}-{k}", hypothesis=n, index=k, seed=k, status="ok",
                                             val_loss=float(mu[i] + SIGMA * rng.standard_normal()),
                                             train_time_s=1.0))
        below = [i for i, (_, n) in enumerate(arms) if lk.decisions[n]["loss"]["decision"] == "below"]
        claims.append(min(below) if below else -1)
        runs.append(sum(len(recs[n]) for _, n in arms))
    return np.array(claims), float(np.mean(runs))


def se(p, n):
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=100_000)
    ap.add_argument("--seq-sims", type=int, default=1000)
    a = ap.parse_args()
    t0 = time.time()
    print(f"== fixed designs: n runs per step count ({len(STEPS)} step counts), {a.sims} sims per row ==")
    print(f"{'scenario':8}{'n':>3}{'runs':>6}{'sweep right':>13}{'false':>9}{'+-se':>8}"
          f"{'separate right':>16}{'false':>9}{'+-se':>8}")
    for j, (name, mu) in enumerate(SCEN.items()):
        for n in (2, 3, 4, 5, 8):
            sw, sep = fixed(mu, n, a.sims, 100 * j + n)
            (r1, f1), (r2, f2) = rates(sw, mu), rates(sep, mu)
            print(f"{name:8}{n:>3}{3 * n:>6}{r1:>13.4f}{f1:>9.4f}{se(f1, a.sims):>8.4f}"
                  f"{r2:>16.4f}{f2:>9.4f}{se(f2, a.sims):>8.4f}")
    print()
    print(f"== sequential sweep (--until-decisive, at most 8 runs per step count), {a.seq_sims} sims per row ==")
    print(f"{'scenario':8}{'sweep runs':>12}{'right':>8}{'false':>8}{'+-se':>8}")
    for j, (name, mu) in enumerate(SCEN.items()):
        claims, runs = sequential(mu, a.seq_sims, 5000 + j)
        r, f = rates(claims, mu)
        print(f"{name:8}{runs:>12.2f}{r:>8.4f}{f:>8.4f}{se(f, a.seq_sims):>8.4f}")
    print(f"\n(total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
