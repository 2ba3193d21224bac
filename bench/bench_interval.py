#!/usr/bin/env python3
"""Coverage of the 95% interval of the time difference (the table's Time +/- 95% CI).

Compares the percentile bootstrap the table used to print (4000 resamples of each arm)
with the Welch t interval it prints now (harness.analysis.stats.welch_diff_ci), at
n + n runs with the untied-value-embedding record's sigmas (H0 0.0904 s, H1 0.0533 s),
under normal noise, heavy tails (Student t with 3 df, scaled to the same sigma) and
right skew (lognormal, sigma_log 0.5, scaled likewise). Coverage = share of simulated
experiments whose interval holds the true difference; +- is its Monte Carlo SE.
Seeds 7001.. are fresh (nothing was tuned).

Usage: ``python bench/bench_interval.py [--sims N] [--boot-sims N]``.
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

from harness.analysis import stats as S  # noqa: E402

SC, ST = 0.0904, 0.0533
RESAMPLES = 4000


def noise(rng, shape, kind):
    if kind == "normal":
        return rng.normal(0.0, 1.0, shape)
    if kind == "t3":
        return rng.standard_t(3, shape) / math.sqrt(3.0)
    z = rng.lognormal(0.0, 0.5, shape)
    return (z - math.exp(0.125)) / math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))


def welch_cover(c, t):
    n = c.shape[1]
    vc, vt = c.var(axis=1, ddof=1) / n, t.var(axis=1, ddof=1) / n
    df = (vc + vt) ** 2 / (vc * vc / (n - 1) + vt * vt / (n - 1))
    half = special.stdtrit(df, 0.975) * np.sqrt(vc + vt)
    d = t.mean(axis=1) - c.mean(axis=1)
    return np.abs(d) <= half            # the true difference is 0


def boot_cover(rng, c, t):
    sims, n = c.shape
    out = np.empty(sims, bool)
    for i in range(sims):
        ic = rng.integers(0, n, (RESAMPLES, n))
        it = rng.integers(0, n, (RESAMPLES, n))
        diffs = t[i][it].mean(axis=1) - c[i][ic].mean(axis=1)
        lo, hi = np.quantile(diffs, [0.025, 0.975])
        out[i] = lo <= 0.0 <= hi
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=200_000, help="experiments per cell (Welch)")
    ap.add_argument("--boot-sims", type=int, default=4000, help="experiments per cell (bootstrap)")
    args = ap.parse_args()
    t0 = time.time()
    # the vectorised interval is the module's
    rng = np.random.default_rng(7000)
    c, t = rng.normal(98, SC, (50, 7)), rng.normal(97.7, ST, (50, 7))
    for i in range(50):
        lo, hi = S.welch_diff_ci(list(t[i]), list(c[i]))
        d = t[i].mean() - c[i].mean()
        n = 7
        vc, vt = c[i].var(ddof=1) / n, t[i].var(ddof=1) / n
        df = (vc + vt) ** 2 / (vc * vc / (n - 1) + vt * vt / (n - 1))
        assert abs(hi - d - special.stdtrit(df, 0.975) * math.sqrt(vc + vt)) < 1e-9
    print(f"coverage of the 95% interval of the time difference; sigmas H0 {SC} / H1 {ST} s; "
          f"Welch {args.sims} and bootstrap {args.boot_sims} experiments per cell")
    print(f"{'noise':8}{'runs':>6}{'Welch t':>10}{'+- se':>8}{'bootstrap':>11}{'+- se':>8}")
    seed = 7001
    for kind in ("normal", "t3", "lognormal"):
        for n in (3, 5, 10, 20):
            rng = np.random.default_rng(seed)
            seed += 1
            c = SC * noise(rng, (args.sims, n), kind)
            t = ST * noise(rng, (args.sims, n), kind)
            w = welch_cover(c, t).mean()
            b = boot_cover(rng, c[:args.boot_sims], t[:args.boot_sims]).mean()
            print(f"{kind:8}{n:>6}{w:>10.4f}{math.sqrt(w * (1 - w) / args.sims):>8.4f}"
                  f"{b:>11.4f}{math.sqrt(b * (1 - b) / args.boot_sims):>8.4f}")
    print(f"elapsed {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
