#!/usr/bin/env python3
"""Benchmark of borrowed / known sigma in ``--until-decisive`` (harness/design/borrow_seq.py).

The untied-value-embedding scenario (control time sigma 0.0904 s, treatment 0.0533 s,
delta -0.3925 s, treatment loss 3.2784 sigma 0.0009, target 3.28, alpha 0.001 / 0.01,
at most 10 runs per arm), with the control's 10 published runs borrowed (9 df for the
loss sigma and 9 for the time sigma, drawn afresh in every simulated experiment).
"1x": the earlier runs' true sigma is the current runs'; "1.5x" / "2x": the current
runs' true sigmas (both arms, time and loss) are that much larger than the borrowed
runs' true sigma, with the consistency check in place.

Every row is ``harness simulate``'s Monte Carlo (harness/design/simulate.py): the
runner's own scheduling counts the runs (tests/test_one_accounting.py checks it against
the real Runner). Null rows measure each criterion alone at the edge of its null (time
delta 0 with a loss that passes; mean loss = target with a time that passes), so a stop
for the other criterion never hides a false pass. Seeds differ from every calibration
seed and from those of the session that tuned the design (7001.., 9001..).

Usage: python bench/bench_borrow.py [--sims N] [--null-sims N]
       python bench/bench_borrow.py --frontier [--sims N] [--null-sims N]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.analysis import borrow  # noqa: E402
from harness.design import borrow_seq, sequential as seq  # noqa: E402
from harness.design.simulate import simulate  # noqa: E402

SC, ST, DELTA, LOSS, SL, TARGET = 0.0904, 0.0533, -0.3925, 3.2784, 0.0009, 3.28
A_T, A_L, M, DF = 0.001, 0.01, 10, 9.0
SEED_ALT, SEED_NULL = 27001, 29001


def variance(mode: str):
    if mode == "plain":
        return None
    if mode == "known":
        return borrow.VariancePlan(loss=borrow.known(SL), time=borrow.known(SC))
    return borrow.VariancePlan(loss=borrow.Sigma(SL, DF, 10, "sim"), time=borrow.Sigma(SC, DF, 10, "sim"))


def run(mode: str, factor: float, delta: float, loss_mean: float, sims: int, seed: int,
        st: float = ST, parallel: int = 1) -> dict:
    return simulate(SC, delta, loss_mean, SL, treatment_time_sigma=st, alpha_time=A_T, alpha_loss=A_L,
                    max_runs=M, min_effect=0.0, target_loss=TARGET, sims=sims, seed=seed,
                    max_parallel=parallel, variance=variance(mode), sigma_off=factor)


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def table(sims: int, null_sims: int, seed_shift: int = 0, rows_alt=None) -> None:
    print("== untied value embeddings: runs and power (alternative) ==")
    print(f"{'design':10}{'sigma':>7}{'jobs':>5}{'runs':>8}{'ctl':>6}{'trt':>6}{'power':>8}{'+-se':>8}"
          f"{'time pass':>10}{'loss pass':>10}")
    rows = rows_alt or [("plain", 1.0, 1), ("known", 1.0, 1), ("borrowed", 1.0, 1), ("borrowed", 1.5, 1),
                        ("borrowed", 2.0, 1), ("borrowed", 1.0, 4)]
    for i, (mode, f, jobs) in enumerate(rows):
        r = run(mode, f, DELTA, LOSS, sims, SEED_ALT + seed_shift + i, parallel=jobs)
        print(f"{mode:10}{f'{f:g}x':>7}{jobs:>5}{r['mean_total_runs']:>8.2f}{r['mean_control_runs']:>6.2f}"
              f"{r['mean_treatment_runs']:>6.2f}{r['both_rate']:>8.4f}{se(r['both_rate'], sims):>8.4f}"
              f"{r['reject_rate']:>10.4f}{r['loss_pass_rate']:>10.4f}")
    print()
    print("== false passes at the null edge of each criterion (time delta 0; mean loss = target) ==")
    print(f"{'design':10}{'sigma':>7}{'jobs':>5}{'trt time s':>11}{'time':>10}{'+-se':>9}{'/alpha':>8}"
          f"{'loss':>9}{'+-se':>8}{'/alpha':>8}{'fixed10 t':>11}{'fixed10 l':>11}")
    nrows = [("plain", 1.0, ST, 1), ("known", 1.0, ST, 1), ("borrowed", 1.0, ST, 1), ("borrowed", 1.5, ST, 1),
             ("borrowed", 2.0, ST, 1), ("borrowed", 1.0, SC, 1), ("borrowed", 1.5, SC, 1),
             ("borrowed", 2.0, SC, 1), ("borrowed", 1.0, SC, 4)]
    for i, (mode, f, st, jobs) in enumerate(nrows):
        seed = SEED_NULL + seed_shift + 2 * i
        # alpha_time is 10x smaller than alpha_loss: at 1.5x, where the limit is near, 4x the runs
        nt = 4 * null_sims if (mode, f) == ("borrowed", 1.5) else null_sims
        rt = run(mode, f, 0.0, TARGET - 4 * SL, nt, seed, st=st, parallel=jobs)
        rl = run(mode, f, DELTA, TARGET, null_sims, seed + 1, st=st, parallel=jobs)
        t, lo = rt["reject_rate"], rl["loss_pass_rate"]
        print(f"{mode:10}{f'{f:g}x':>7}{jobs:>5}{st:>11g}{t:>10.5f}{se(t, nt):>9.5f}{t / A_T:>8.2f}"
              f"{lo:>9.5f}{se(lo, null_sims):>8.5f}{lo / A_L:>8.2f}"
              f"{rt['fixed_reject_rate']:>11.5f}{rl['fixed_loss_pass_rate']:>11.5f}")


def frontier(sims: int, null_sims: int) -> None:
    """Runs and power against the false-pass rate at 1.5x, for robustness targets from the
    design's to none (ROBUST_INFLATION; calibrations on 2^19 paths to keep it short)."""
    base = seq.calibration_paths
    seq.calibration_paths = lambda a: min(base(a), 1 << 19)
    keep = borrow_seq.ROBUST_INFLATION
    print("== frontier: robustness to a 1.5x-too-small sigma against runs (calibrated on 2^19 paths) ==")
    print(f"{'1.5x aim':>9}{'runs':>8}{'ctl':>6}{'trt':>6}{'power':>8}{'1x t/a':>8}{'1x l/a':>8}"
          f"{'1.5x t/a':>9}{'+-se':>6}{'1.5x l/a':>9}{'+-se':>6}")
    for k, infl in enumerate((1.35, 1.5, 2.0, 3.0, math.inf)):
        borrow_seq.ROBUST_INFLATION = 1e9 if math.isinf(infl) else infl
        borrow_seq.boundaries.cache_clear()
        s = 100 * (k + 1)
        a = run("borrowed", 1.0, DELTA, LOSS, sims, SEED_ALT + s)
        e = {}
        for f in (1.0, 1.5):
            e[f] = (run("borrowed", f, 0.0, TARGET - 4 * SL, null_sims, SEED_NULL + s + int(10 * f), st=SC)
                    ["reject_rate"] / A_T,
                    run("borrowed", f, DELTA, TARGET, null_sims, SEED_NULL + s + 50 + int(10 * f))
                    ["loss_pass_rate"] / A_L)
        st_, sl_ = se(e[1.5][0] * A_T, null_sims) / A_T, se(e[1.5][1] * A_L, null_sims) / A_L
        print(f"{'none' if math.isinf(infl) else f'{infl:g}a':>9}{a['mean_total_runs']:>8.2f}"
              f"{a['mean_control_runs']:>6.2f}{a['mean_treatment_runs']:>6.2f}{a['both_rate']:>8.4f}"
              f"{e[1.0][0]:>8.2f}{e[1.0][1]:>8.2f}{e[1.5][0]:>9.2f}{st_:>6.2f}{e[1.5][1]:>9.2f}{sl_:>6.2f}",
              flush=True)
    borrow_seq.ROBUST_INFLATION = keep
    seq.calibration_paths = base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=20_000)
    ap.add_argument("--null-sims", type=int, default=100_000)
    ap.add_argument("--frontier", action="store_true", help="runs against the 1.5x-off error instead")
    a = ap.parse_args()
    t0 = time.time()
    print(f"consistency check level {borrow.CHECK_LEVEL:g}, at most {M} runs per arm, pass spending rho "
          f"{borrow_seq.RHO_PASS_TIME:g} (time) / {borrow_seq.RHO_PASS:g} (loss), robust: at most "
          f"{borrow_seq.ROBUST_INFLATION:g} alpha at {borrow_seq.ROBUST_RATIO:g}x")
    if a.frontier:
        frontier(a.sims, a.null_sims)
    else:
        for mode in ("plain", "known", "borrowed"):
            run(mode, 1.0, DELTA, LOSS, 10, 1)          # calibrate (or read the committed files) first
        print(f"calibration (or committed files) {time.time() - t0:.0f} s")
        table(a.sims, a.null_sims)
    more = "" if a.frontier else f" ({4 * a.null_sims} for the time at 1.5x)"
    print(f"\n(alternative: {a.sims} simulated experiments per row; null: {a.null_sims}{more}; "
          f"total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
