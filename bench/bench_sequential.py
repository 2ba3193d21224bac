#!/usr/bin/env python3
"""Benchmark of the sequential procedure (``harness run --until-decisive``).

Prints: error rates under monitoring at alpha 0.001 (and 0.01/0.05) beside the
naive peeker's, the cost of the four reference scenarios against the fixed
10 + 10 design, the resampling check on the record's raw runs, and the speed of
the simulator. Usage: ``python bench/bench_sequential.py [--sims N] [--quick]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.design import sequential as seq  # noqa: E402
from harness.records import RunRecord  # noqa: E402
from harness.design.simulate import simulate  # noqa: E402

H0L = [3.2776, 3.2785, 3.277, 3.2772, 3.2788, 3.2764, 3.2763, 3.2784, 3.2788, 3.2791]
H0T = [98.081, 98.053, 97.895, 98.193, 98.136, 98.093, 98.11, 98.124, 98.156, 98.225]
H1L = [3.2784, 3.2778, 3.2792, 3.2799, 3.2776, 3.2782, 3.2771, 3.2786, 3.2775, 3.2794]
H1T = [97.715, 97.704, 97.725, 97.666, 97.725, 97.632, 97.755, 97.831, 97.697, 97.691]
UVE = dict(time_sigma=0.0904, treatment_time_sigma=0.0533, time_delta=-0.3925)


def se(p, n):
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def error_rates(sims: int) -> None:
    print("== false verdicts under monitoring (a look after every run, 10 runs per arm at most) ==")
    print(f"{'criterion':10}{'alpha':>7}{'sigma ctl/trt':>16}{'sequential':>12}{'+- se':>9}"
          f"{'fixed':>9}{'naive peek':>12}")
    configs = [(0.03, 0.03), (0.09, 0.09), (0.2, 0.2), (0.09, 0.045), (0.09, 0.18),
               (0.09, 0.09 * math.sqrt(0.985 / 0.015)), (0.01, 0.2)]
    for alpha in (0.001, 0.01, 0.05):
        n = sims if alpha == 0.001 else sims // 4
        for i, (sc, st) in enumerate(configs if alpha == 0.001 else configs[:5]):
            r = simulate(sc, 0.0, 3.2784, 0.0009, treatment_time_sigma=st, alpha_time=alpha,
                         sims=n, seed=1000 + i)
            flag = "" if r["reject_rate"] <= alpha + 3 * se(alpha, n) else "  ABOVE"
            print(f"{'time':10}{alpha:>7g}{f'{sc:g}/{st:.3g}':>16}{r['reject_rate']:>12.5f}"
                  f"{se(r['reject_rate'], n):>9.5f}{r['fixed_reject_rate']:>9.5f}{r['naive_reject_rate']:>12.5f}{flag}")
        for j, sl in enumerate((0.0005, 0.001, 0.002)):
            r = simulate(0.09, -0.4, 3.28, sl, alpha_loss=alpha, sims=n, seed=2000 + j)
            flag = "" if r["loss_pass_rate"] <= alpha + 3 * se(alpha, n) else "  ABOVE"
            print(f"{'loss':10}{alpha:>7g}{f'loss {sl:g}':>16}{r['loss_pass_rate']:>12.5f}"
                  f"{se(r['loss_pass_rate'], n):>9.5f}{r['fixed_loss_pass_rate']:>9.5f}"
                  f"{r['naive_loss_pass_rate']:>12.5f}{flag}")
    cal = seq.calibration("welch", 0.001, 10, seq.RHO_PASS)
    print("calibrated error of the time boundaries (alpha 0.001, M 10) by variance ratio "
          "w = s_t^2/(s_c^2+s_t^2):")
    print("  " + ", ".join(f"w {w}: {e:.5f}" for w, e in cal["error_by_w"].items()))
    print()


SCENARIOS = [
    ("untied value embeddings (loss 3.2784 +- 0.0009)", dict(**UVE, loss_mean=3.2784, loss_sigma=0.0009), 15),
    ("same speedup, loss 3.2778 +- 0.0010", dict(**UVE, loss_mean=3.2778, loss_sigma=0.0010), 14),
    ("no speedup (delta 0)", dict(time_sigma=0.0904, treatment_time_sigma=0.0533, time_delta=0.0,
                                  loss_mean=3.2784, loss_sigma=0.0009), 20),
    ("loss clearly failing (3.2815 +- 0.001)", dict(**UVE, loss_mean=3.2815, loss_sigma=0.001), 12),
]


def costs(sims: int) -> None:
    print(f"== cost against the fixed 10 + 10 design ({sims} simulated experiments each) ==")
    print(f"{'scenario':50}{'ctl':>6}{'trt':>6}{'total':>7}{'p95':>5}{'limit':>6}"
          f"{'P time':>8}{'P loss':>8}{'P both':>8}{'fixed both':>11}")
    for i, (name, kw, limit) in enumerate(SCENARIOS):
        r = simulate(**kw, sims=sims, seed=3000 + i)
        ok = "" if r["mean_total_runs"] <= limit else "  OVER"
        print(f"{name:50}{r['mean_control_runs']:>6.2f}{r['mean_treatment_runs']:>6.2f}"
              f"{r['mean_total_runs']:>7.2f}{r['p95_total_runs']:>5.0f}{limit:>6}{r['reject_rate']:>8.4f}"
              f"{r['loss_pass_rate']:>8.4f}{r['both_rate']:>8.4f}{r['fixed_both_rate']:>11.4f}{ok}")
    print()


def rec(h, i, loss, t, order):
    return RunRecord(run_id=f"{i:03d}-1", hypothesis=h, index=i, seed=i, status="ok", order=order,
                     val_loss=loss, train_time_s=t)


def drive(plan, data, verbose=False):
    recs = {h: [] for h in data}
    order = 0
    look = plan.look(recs)
    for i in range(plan.max_runs):
        for h in data:
            if look.done:
                return look, recs
            if not look.need[h]:
                continue
            recs[h].append(rec(h, i, *data[h][i], order))
            order += 1
            look = plan.look(recs)
            if verbose:
                print(f"  after {h} run {i + 1}:")
                for line in look.lines:
                    print("    " + line)
    return look, recs


def resampling(reps: int) -> None:
    plan = seq.SequentialPlan("H0", ["H1"], max_runs=10)
    print("== resampling check on the record's raw runs (statistics.md) ==")
    print("the 20 runs in their published order (H0, H1 alternating):")
    look, recs = drive(seq.SequentialPlan.from_dict(plan.to_dict()), {"H0": list(zip(H0L, H0T)),
                                                                      "H1": list(zip(H1L, H1T))}, verbose=False)
    d = look.decisions["H1"]
    print(f"  -> stopped after {len(recs['H0'])} control + {len(recs['H1'])} treatment runs "
          f"= {len(recs['H0']) + len(recs['H1'])} of 20; time {d['time']['decision']}, loss {d['loss']['decision']}")
    rng = np.random.default_rng(7)
    totals, ctl, trt, verdicts = [], [], [], {"pass": 0, "fail": 0, "open": 0}
    tdec, ldec = {}, {}
    for _ in range(reps):
        i0, i1 = rng.integers(0, 10, 10), rng.integers(0, 10, 10)
        fresh = seq.SequentialPlan.from_dict({**plan.to_dict(), "decisions": []})   # decisions are per experiment
        look, recs = drive(fresh, {"H0": [(H0L[i], H0T[i]) for i in i0], "H1": [(H1L[i], H1T[i]) for i in i1]})
        ctl.append(len(recs["H0"]))
        trt.append(len(recs["H1"]))
        totals.append(ctl[-1] + trt[-1])
        verdicts[seq.verdict(look, "H1")] += 1
        tdec[look.decisions["H1"]["time"]["decision"]] = tdec.get(look.decisions["H1"]["time"]["decision"], 0) + 1
        ldec[look.decisions["H1"]["loss"]["decision"]] = ldec.get(look.decisions["H1"]["loss"]["decision"], 0) + 1
    t = np.array(totals)
    print(f"{reps} bootstrap experiments (runs drawn with replacement from each arm's 10):")
    print(f"  runs: control {np.mean(ctl):.2f}, treatment {np.mean(trt):.2f}, total {t.mean():.2f} "
          f"(median {np.median(t):g}, 95th percentile {np.percentile(t, 95):g}, most {t.max()}) vs 20")
    print(f"  verdict: {verdicts}; time {tdec}; loss {ldec}")
    print()


def speed() -> None:
    simulate(**UVE, loss_mean=3.2784, loss_sigma=0.0009, sims=1000, seed=0)   # warm the caches
    t0 = time.perf_counter()
    simulate(**UVE, loss_mean=3.2784, loss_sigma=0.0009, sims=100_000, seed=0)
    dt = time.perf_counter() - t0
    print(f"== speed: 100000 simulated experiments in {dt:.2f} s ==")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=400_000, help="experiments per error-rate check at alpha 0.001")
    ap.add_argument("--quick", action="store_true", help="fewer simulations")
    a = ap.parse_args()
    sims = 40_000 if a.quick else a.sims
    t0 = time.perf_counter()
    print(f"method: {seq.METHOD}\n")
    error_rates(sims)
    costs(max(20_000, sims // 8))
    resampling(400 if a.quick else 2000)
    speed()
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
