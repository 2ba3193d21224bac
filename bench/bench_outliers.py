#!/usr/bin/env python3
"""Calibration of the outlier rule of ``harness analyze`` (issue 14).

Prints, per group size n, how often each rule flags at least one run of a CLEAN group
(all runs from one normal distribution: every flag is a false alarm), with Monte Carlo
standard errors, on two independent seeds; then how often it finds one real outlier
(one run shifted by k sd). The old rule (5 scaled MADs from the median) is shown
beside the new one (Bonferroni outlier test at OUTLIER_ALPHA). The rule has no tuned
constant (its alpha is analytic), so both seeds are checks. A slice of groups is
also run through ``harness.analysis.stats.outliers`` itself, which must flag the same groups.

Usage: ``python bench/bench_outliers.py [--groups G]`` (default 200,000 per cell, ~1 min).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis import stats  # noqa: E402


def new_rule(x: np.ndarray, alpha: float = stats.OUTLIER_ALPHA) -> np.ndarray:
    """Bool per group: any run flagged (the same formula as stats.outliers, vectorised)."""
    g, n = x.shape
    m_all = x.mean(axis=1, keepdims=True)
    ss_all = ((x - m_all) ** 2).sum(axis=1, keepdims=True)
    m = (n * m_all - x) / (n - 1)
    ss = np.maximum(0.0, ss_all - (x - m_all) ** 2 * n / (n - 1))
    sd = np.sqrt(ss / (n - 2))
    ok = sd > 1e-6 * np.sqrt(ss_all / (n - 1))
    t = np.where(ok, (x - m) / np.where(ok, sd, 1.0) / np.sqrt(1 + 1 / (n - 1)), 0.0)
    p = np.minimum(1.0, n * 2 * student_t.sf(np.abs(t), n - 2))
    return ((p < alpha) & ok).any(axis=1)


def old_rule(x: np.ndarray, k: float = 5.0) -> np.ndarray:
    med = np.median(x, axis=1, keepdims=True)
    mad = 1.4826 * np.median(np.abs(x - med), axis=1, keepdims=True)
    return ((np.abs(x - med) > k * mad) & (mad > 0)).any(axis=1)


def rate(flags: np.ndarray) -> str:
    p = flags.mean()
    se = np.sqrt(p * (1 - p) / flags.size)
    return f"{100 * p:6.2f}% ± {100 * se:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=200_000)
    a = ap.parse_args()
    t0 = time.time()
    print(f"false alarms on clean normal groups (share of groups with any flag, one figure; "
          f"± Monte Carlo SE; {a.groups} groups per cell)")
    print(f"{'n':>3}  {'seed':>4}  {'old: 5 MADs':>16}  {'new: Bonferroni ' + format(stats.OUTLIER_ALPHA, 'g'):>18}  "
          f"{'new, time or loss':>18}")
    for n in (5, 10, 20):
        for seed in (1, 2):
            rng = np.random.default_rng([14, n, seed])
            x = rng.standard_normal((a.groups, n))
            y = rng.standard_normal((a.groups, n))          # the loss figure, independent
            new_x = new_rule(x)
            print(f"{n:>3}  {seed:>4}  {rate(old_rule(x)):>16}  {rate(new_x):>18}  "
                  f"{rate(new_x | new_rule(y)):>18}")
    print("\nheavier tails (Student t with 5 df, still no outlier), n = 10, seed 3")
    x = np.random.default_rng([14, 10, 3]).standard_t(5, (a.groups, 10))
    print(f"  old {rate(old_rule(x))}   new {rate(new_rule(x))}")
    print("\nfinding one real outlier (one run shifted by k sd), n = 10, seed 4")
    for k in (4, 6, 8):
        x = np.random.default_rng([14, 10, 4, k]).standard_normal((a.groups, 10))
        x[:, 0] += k
        print(f"  k = {k}: old {rate(old_rule(x))}   new {rate(new_rule(x))}")
    # the harness's own function on a slice: the same groups flagged
    x = np.random.default_rng([14, 10, 5]).standard_normal((3000, 10)) * 0.09 + 98.0
    x[::7, 3] += 0.6
    mine = np.array([bool(stats.outliers(list(map(float, row)))) for row in x])
    agree = (mine == new_rule(x)).mean()
    print(f"\nharness.analysis.stats.outliers agrees with the vectorised rule on {100 * agree:.2f}% of 3000 groups "
          f"(flags {mine.sum()})")
    print(f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
