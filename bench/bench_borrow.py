#!/usr/bin/env python3
"""Benchmark of borrowed / known sigma in ``--until-decisive`` (harness/design/borrow_seq.py).

The untied-value-embedding scenario (control time sigma 0.0904 s, treatment 0.0533 s,
delta -0.3925 s, treatment loss 3.2784 sigma 0.0009, target 3.28, alpha 0.001 / 0.01,
at most 10 runs per arm), with the control's 10 published runs borrowed (9 df for the
loss sigma and 9 for the time sigma, drawn afresh in every simulated experiment).
"right": the earlier runs' true sigma is the current runs'; "1.5x" / "2x": the current
runs' true sigmas (both arms, time and loss) are that much larger than the borrowed
runs' true sigma, with the consistency check in place. Rows: runs and power under the
alternative; false passes at the null edges (time delta 0; mean loss = target), each
with its Monte Carlo standard error. Seeds differ from every calibration seed.

Usage: python bench/bench_borrow.py [--sims N] [--null-sims N]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis import borrow  # noqa: E402
from harness.design import borrow_seq, sequential as seq

SC, ST, DELTA, LOSS, SL, TARGET = 0.0904, 0.0533, -0.3925, 3.2784, 0.0009, 3.28
A_T, A_L, M, DF = 0.001, 0.01, 10, 9.0


LEVEL = borrow.CHECK_LEVEL


def plan(mode: str):
    if mode == "plain":
        return seq.SequentialPlan("H0", ["H1"], A_T, A_L, TARGET, 0.0, M)
    if mode == "known":
        v = borrow.VariancePlan(loss=borrow.known(SL), time=borrow.known(SC))
    else:
        v = borrow.VariancePlan(loss=borrow.Sigma(SL, DF, 10, "sim"), time=borrow.Sigma(SC, DF, 10, "sim"),
                                level=LEVEL)
    return borrow_seq.BorrowedPlan("H0", ["H1"], A_T, A_L, TARGET, 0.0, M, variance=v)


def run(mode: str, factor: float, delta: float, loss_mean: float, sims: int, seed: int,
        sc: float = SC, st: float = ST) -> dict:
    p = plan(mode)
    rng = np.random.default_rng(seed)
    n = np.arange(2, M + 1)
    acc = dict(tp=0, lp=0, both=0, ft=0, fl=0, nc=0, nt=0)
    done = 0
    while done < sims:
        B = min(50_000, sims - done)
        done += B
        mc, vc = seq._moments(factor * sc * rng.standard_normal((B, M)))
        mt, vt = seq._moments(delta + factor * st * rng.standard_normal((B, M)))
        ml, vl = seq._moments((loss_mean - TARGET) + factor * SL * rng.standard_normal((B, M)))
        if mode == "plain":
            pt, pft, _ = seq.welch_p(mt - mc, vc, vt, n)
            pl, pfl, _ = seq.one_sample_p(ml, vl, n)
        else:
            df = math.inf if mode == "known" else DF
            # the borrowed variances: 10 earlier runs of the true (unscaled) sigma
            cb = np.ones((B, 1)) if mode == "known" else rng.chisquare(DF, (B, 1)) / DF
            lb = np.ones((B, 1)) if mode == "known" else rng.chisquare(DF, (B, 1)) / DF
            pt, pft, _ = borrow_seq.time_p(mt - mc, vc, vt, n, SC ** 2 * cb, df, LEVEL)
            pl, pfl, _ = borrow_seq.loss_p(ml, vl, n, SL ** 2 * lb, df, LEVEL)
        kt, dt = seq.first_crossing(pt, p.time_pass, pft, p.time_fail, M)
        kl, dl = seq.first_crossing(pl, p.loss_pass, pfl, p.loss_fail, M)
        acc["tp"] += int((dt == 1).sum())
        acc["lp"] += int((dl == 1).sum())
        acc["both"] += int(((dt == 1) & (dl == 1)).sum())
        acc["ft"] += int((pt[:, -1] <= A_T).sum())
        acc["fl"] += int((pl[:, -1] <= A_L).sum())
        acc["nc"] += int(kt.sum())
        acc["nt"] += int(np.maximum(kt, kl).sum())
    r = {k: v / sims for k, v in acc.items()}
    r["total"] = r["nc"] + r["nt"]
    r["sims"] = sims
    return r


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def main() -> None:
    global LEVEL, M
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=40_000)
    ap.add_argument("--null-sims", type=int, default=200_000)
    ap.add_argument("--max-runs", type=int, default=10)
    ap.add_argument("--rho", type=float, default=borrow_seq.RHO_PASS, help="pass spending of the borrowed design")
    ap.add_argument("--level", type=float, default=borrow.CHECK_LEVEL, help="consistency check level")
    a = ap.parse_args()
    LEVEL, M = a.level, a.max_runs
    borrow_seq.RHO_PASS = a.rho
    print(f"consistency check level {LEVEL:g}, at most {M} runs per arm, pass spending rho {a.rho:g}")
    t0 = time.time()
    for mode in ("plain", "known", "borrowed"):
        plan(mode)                       # calibrate (cached) before timing anything
    print(f"calibration (or cache) {time.time() - t0:.0f} s")
    print("== untied value embeddings: runs and power (alternative) ==")
    print(f"{'design':10}{'sigma':>7}{'runs':>8}{'ctl':>6}{'trt':>6}{'power':>8}{'+-se':>8}"
          f"{'time pass':>10}{'loss pass':>10}")
    rows = [("plain", 1.0), ("known", 1.0), ("borrowed", 1.0), ("borrowed", 1.5), ("borrowed", 2.0)]
    for i, (mode, f) in enumerate(rows):
        r = run(mode, f, DELTA, LOSS, a.sims, 7001 + i)
        print(f"{mode:10}{f'{f:g}x':>7}{r['total']:>8.2f}{r['nc']:>6.2f}{r['nt']:>6.2f}{r['both']:>8.4f}"
              f"{se(r['both'], a.sims):>8.4f}{r['tp']:>10.4f}{r['lp']:>10.4f}")
    print()
    print("== false passes at the null edge (time delta 0; mean loss = target) ==")
    print(f"{'design':10}{'sigma':>7}{'time sigmas':>13}{'time':>10}{'+-se':>9}{'/alpha':>8}"
          f"{'loss':>9}{'+-se':>8}{'/alpha':>8}{'fixed10 t':>11}{'fixed10 l':>11}")
    nrows = rows + [("borrowed", 1.0, SC, SC), ("borrowed", 1.5, SC, SC), ("borrowed", 2.0, SC, SC)]
    for i, row in enumerate(nrows):
        mode, f = row[0], row[1]
        sc, st = (row[2], row[3]) if len(row) > 2 else (SC, ST)
        r = run(mode, f, 0.0, TARGET, a.null_sims, 9001 + i, sc=sc, st=st)
        print(f"{mode:10}{f'{f:g}x':>7}{f'{sc:g}/{st:g}':>13}{r['tp']:>10.5f}{se(r['tp'], a.null_sims):>9.5f}"
              f"{r['tp'] / A_T:>8.2f}{r['lp']:>9.5f}{se(r['lp'], a.null_sims):>8.5f}{r['lp'] / A_L:>8.2f}"
              f"{r['ft']:>11.5f}{r['fl']:>11.5f}")
    print(f"\n(alternative: {a.sims} simulated experiments per row; null: {a.null_sims}; "
          f"total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
