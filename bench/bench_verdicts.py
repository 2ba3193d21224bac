#!/usr/bin/env python3
"""Honest verdicts (issue 12): false-verdict rates, power and runs of ``--until-decisive``.

Every figure is a seeded simulation through ``harness.design.simulate`` (the runner's own
scheduling and the vectorised ``look()``), on seeds (90_000 +) that the calibration
(``CAL_SEED``) never saw, with its Monte Carlo standard error. Prints markdown
tables for docs/sequential.md.

Usage: ``python bench/bench_verdicts.py [--scale 1.0]`` (scale multiplies the
simulation counts; 1.0 takes about 3 minutes of one core).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.design.simulate import simulate  # noqa: E402

REC = dict(time_sigma=0.0904, treatment_time_sigma=0.0533, time_delta=-0.3925, loss_mean=3.2784,
           loss_sigma=0.0009)
RATIOS = (1, 2, 4, 8, 16)
SIMS = {0.001: 1_000_000, 0.01: 300_000, 0.05: 100_000}
SEED = 90_000


def t3(rng, shape):
    return rng.standard_t(3, shape) / math.sqrt(3.0)      # unit variance, heavy tails


def se(p, n):
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def cell(p, n, alpha=None):
    mark = "" if alpha is None or p <= alpha else " **>alpha**"
    return f"{p:.5f} ± {se(p, n):.5f}{mark}"


def nulls(scale: float) -> None:
    print("### False verdicts under monitoring (M = 10, a look after every run)\n")
    print("| criterion | alpha | scenario | sims | sequential | fixed 10 + 10 |")
    print("| --- | --- | --- | --- | --- | --- |")
    seed = SEED
    for alpha, n in SIMS.items():
        n = max(10_000, int(n * scale))
        for r in RATIOS:
            seed += 1
            x = simulate(0.02, 0.0, 3.27, 0.001, treatment_time_sigma=0.02 * r, alpha_time=alpha,
                         sims=n, seed=seed)
            print(f"| time | {alpha:g} | sigma ratio {r}:1 | {n} | {cell(x['reject_rate'], n, alpha)} | "
                  f"{cell(x['fixed_reject_rate'], n)} |", flush=True)
        for r in (1, 8):                   # the trimmed (Yuen) option, its own calibration
            seed += 1
            m = max(10_000, n // 4)
            x = simulate(0.02, 0.0, 3.27, 0.001, treatment_time_sigma=0.02 * r, alpha_time=alpha,
                         sims=m, seed=seed, time_test="trimmed")
            print(f"| time, trimmed | {alpha:g} | sigma ratio {r}:1 | {m} | {cell(x['reject_rate'], m, alpha)} | "
                  f"{cell(x['fixed_reject_rate'], m)} |", flush=True)
        seed += 1
        x = simulate(0.09, -1.0, 3.28, 0.001, alpha_loss=alpha, sims=n, seed=seed)
        print(f"| loss | {alpha:g} | mean exactly 3.28 | {n} | {cell(x['loss_pass_rate'], n, alpha)} | "
              f"{cell(x['fixed_loss_pass_rate'], n)} |", flush=True)
    n = max(10_000, int(300_000 * scale))
    for name, kw in (("t(3) tails", dict(noise=t3)),
                     ("linear drift +0.02 s per run", dict(time_drift=0.02)),
                     # faster with each run: the treatment, launched after its control, gains
                     ("linear drift -0.02 s per run", dict(time_drift=-0.02)),
                     ("one slow run in 20 (+1 s)", dict(outlier_prob=0.05, outlier_s=1.0))):
        for alpha in (0.001, 0.01):
            # each criterion at its null while the other surely passes (a failing other
            # criterion would stop the experiment and hide the error)
            x = simulate(0.0904, 0.0, 3.27, 0.0009, treatment_time_sigma=0.0533, alpha_time=alpha,
                         sims=n, seed=seed + 1, **kw)
            print(f"| time | {alpha:g} | {name}, sigmas 0.0904/0.0533 | {n} | "
                  f"{cell(x['reject_rate'], n, alpha)} | {cell(x['fixed_reject_rate'], n)} |", flush=True)
            seed += 2
            if "noise" in kw:                    # drift and slow runs touch times only
                x = simulate(0.0904, -1.0, 3.28, 0.0009, treatment_time_sigma=0.0533, alpha_loss=alpha,
                             sims=n, seed=seed, noise=kw["noise"])
                print(f"| loss | {alpha:g} | {name}, mean 3.28 | {n} | {cell(x['loss_pass_rate'], n, alpha)} | "
                      f"{cell(x['fixed_loss_pass_rate'], n)} |", flush=True)


def power(scale: float) -> None:
    n = max(5_000, int(100_000 * scale))
    print("\n### Power and runs at the record's figures (alpha_time 0.001, alpha_loss 0.01, M = 10)\n")
    print("| scenario | sims | power time | power loss | power both | control | treatment | total runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    seed = SEED + 500
    for name, kw in (("record (normal)", {}), ("record, max_parallel 4", dict(max_parallel=4)),
                     ("record, 5% failed attempts, 2 retries", dict(fail_prob=0.05)),
                     ("record, t(3) tails", dict(noise=t3)),
                     ("record, one slow run in 20 (+1 s)", dict(outlier_prob=0.05, outlier_s=1.0)),
                     ("record, one slow run in 20, time_test trimmed",
                      dict(outlier_prob=0.05, outlier_s=1.0, time_test="trimmed")),
                     ("record, time_test trimmed (normal)", dict(time_test="trimmed")),
                     ("record, loss 3.2815 (clearly failing)", dict(loss_mean=3.2815, loss_sigma=0.001))):
        seed += 1
        args = {**REC, **{k: v for k, v in kw.items() if k in ("loss_mean", "loss_sigma")}}
        extra = {k: v for k, v in kw.items() if k not in ("loss_mean", "loss_sigma")}
        x = simulate(args["time_sigma"], args["time_delta"], args["loss_mean"], args["loss_sigma"],
                     treatment_time_sigma=args["treatment_time_sigma"], sims=n, seed=seed, **extra)
        tot = x["mean_total_runs"]
        print(f"| {name} | {n} | {x['reject_rate']:.4f} | {x['loss_pass_rate']:.4f} | {x['both_rate']:.4f} "
              f"± {se(x['both_rate'], n):.4f} | {x['mean_control_runs']:.2f} | {x['mean_treatment_runs']:.2f} | "
              f"**{tot:.2f}** |", flush=True)


def _anytime_run(rng, n, M, alpha_time, alpha_loss, delta, sc, st, loss_mean, loss_sigma):
    """--anytime on n experiments: (runs control, runs treatment, time decision, loss decision)."""
    from harness.design import anytime as at
    from harness.design import sequential as seq
    from harness.design import simulate as sim
    d = sim.draw(rng, n, M, sc, st, delta, loss_mean, loss_sigma)
    kt = at.first_pass(at.log_e_values(d["ttime"] - d["ctime"]), alpha_time)
    kl = at.first_pass(at.log_e_values(d["tloss"] - 3.28), alpha_loss)
    plan = seq.SequentialPlan("H0", ["H1"], max_runs=M)   # only its max_runs is used by schedule
    never = M + 1                                         # no pass: open to the end, no futility
    ones = np.ones((n, M), dtype=bool)
    att = np.ones((n, M), dtype=np.int64)
    nc, nt, _, td, ld = sim.schedule(plan, np.where(kt > 0, kt, never), (kt > 0).astype(int),
                                     np.where(kl > 0, kl, never), (kl > 0).astype(int), ones, ones, att, att)
    return nc, nt, td, ld


def anytime(scale: float) -> None:
    from harness.design import anytime as at
    print("\n### --anytime: false passes under continuation (a look after every run, up to 60)\n")
    print("| criterion | alpha | sims | anytime (60 looks) | anytime (10 looks) |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(SEED + 900)
    for alpha, n in ((0.001, 200_000), (0.01, 100_000), (0.05, 50_000)):
        n = max(5_000, int(n * scale))
        for crit in ("time (paired differences)", "loss (mean 3.28)"):
            y = rng.standard_normal((n, at.MAX_RUNS))
            k = at.first_pass(at.log_e_values(y), alpha)
            r60, r10 = float((k > 0).mean()), float(((k > 0) & (k <= 10)).mean())
            print(f"| {crit} | {alpha:g} | {n} | {cell(r60, n, alpha)} | {cell(r10, n, alpha)} |", flush=True)
    print("\n### --anytime against --until-decisive at the record's figures (max_parallel 1)\n")
    print("| design | M | sims | power time | power loss | power both | total runs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    n = max(5_000, int(50_000 * scale))
    for M in (10, 20):
        nc, nt, td, ld = _anytime_run(rng, n, M, 0.001, 0.01, REC["time_delta"], REC["time_sigma"],
                                      REC["treatment_time_sigma"], REC["loss_mean"], REC["loss_sigma"])
        both = float(((td == 1) & (ld == 1)).mean())
        print(f"| anytime | {M} | {n} | {(td == 1).mean():.4f} | {(ld == 1).mean():.4f} | {both:.4f} ± "
              f"{se(both, n):.4f} | {(nc + nt).mean():.2f} |", flush=True)
        x = simulate(REC["time_sigma"], REC["time_delta"], REC["loss_mean"], REC["loss_sigma"],
                     treatment_time_sigma=REC["treatment_time_sigma"], max_runs=M, sims=n, seed=SEED + 950 + M)
        print(f"| group-sequential | {M} | {n} | {x['reject_rate']:.4f} | {x['loss_pass_rate']:.4f} | "
              f"{x['both_rate']:.4f} ± {se(x['both_rate'], n):.4f} | {x['mean_total_runs']:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--only", choices=("nulls", "power", "anytime"))
    a = ap.parse_args()
    t0 = time.time()
    for name, fn in (("nulls", nulls), ("power", power), ("anytime", anytime)):
        if a.only in (None, name):
            fn(a.scale)
    print(f"\n({time.time() - t0:.0f} s, numpy {np.__version__})")


if __name__ == "__main__":
    main()
