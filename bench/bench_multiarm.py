#!/usr/bin/env python3
"""Benchmark of the multi-arm ``--until-decisive`` family (harness/design/multiarm.py).

Prints (the tables of docs/multi-arm.md):
1. familywise error of the "faster" and the "below target" claims, with Monte Carlo SEs,
   at the global null and at partial nulls (1, 2, 4 true effects among 5 arms), at
   equal and at the record's unequal time sigmas;
2. the cost on the record's figures: expected runs per arm and in all, power of the true
   effect, the chance of picking it, beside five separate two-arm ``--until-decisive``
   experiments and a fixed 10 runs per arm with Holm.

Seeds are fresh (28_000_000 + scenario), independent of the calibration's (CAL_SEED) and
of any used while building the design. Vectorised numpy, one core:
``python bench/bench_multiarm.py [--sims N] [--cost-sims N] [--quick]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.design.multiarm_sim import simulate_family  # noqa: E402

SEED = 28_000_000
SIGMA_C, SIGMA_REC, LOSS_SIGMA = 0.0904, 0.0533, 0.001    # the record's control / untied arm; loss
TRUE = (-0.3925, 3.2784)           # the record's gain and mean loss
NULL = (0.0, 3.28)                 # at the edge of both nulls: the least favourable
WORSE = (0.2, 3.281)


def fwer(sims: int) -> None:
    print("== familywise error, 5 arms, at most 10 runs per arm (alpha time 0.001, loss 0.01) ==")
    print(f"{'true effects':14}{'time sigmas':>14}{'FWER time':>11}{'+- se':>9}{'<= a+2se':>9}"
          f"{'FWER loss':>11}{'+- se':>9}{'<= a+2se':>9}{'runs':>8}")
    k = 0
    for n_true in (0, 1, 2, 4):
        for unequal in (False, True):
            arms = [TRUE] * n_true + [NULL] * (5 - n_true)
            tsig = [SIGMA_REC if unequal else SIGMA_C] * 5
            r = simulate_family(SIGMA_C, [a[0] for a in arms], [a[1] for a in arms], LOSS_SIGMA,
                                treatment_time_sigma=tsig, arms=5, sims=sims, seed=SEED + k)
            k += 1
            ft, fts = r["familywise_error_time"], r["familywise_error_time_se"]
            fl, fls = r["familywise_error_loss"], r["familywise_error_loss_se"]
            print(f"{n_true:<14}{'0.090/' + ('0.053' if unequal else '0.090'):>14}{ft:>11.5f}{fts:>9.5f}"
                  f"{'yes' if ft <= 0.001 + 2 * fts else 'NO':>9}{fl:>11.5f}{fls:>9.5f}"
                  f"{'yes' if fl <= 0.01 + 2 * fls else 'NO':>9}{r['runs_total']:>8.2f}", flush=True)
    print()


def cost(sims: int, maxes: tuple[int, ...]) -> None:
    print("== the record's figures: one arm at -0.39 s / 3.2784, two null (0 s / 3.28), two worse "
          "(+0.2 s / 3.281) ==")
    arms = [TRUE, NULL, NULL, WORSE, WORSE]
    deltas, losses = [a[0] for a in arms], [a[1] for a in arms]
    tsig = [SIGMA_REC, SIGMA_C, SIGMA_C, SIGMA_C, SIGMA_C]
    k = 100
    for me in (0.0, 0.1):
        print(f"-- min_effect {me:g} s (the time futility's 'not faster by') --")
        print(f"{'design':36}{'runs in all':>12}{'+- se':>8}{'power H1':>10}{'pick H1':>9}"
              f"{'FWER t':>9}{'FWER l':>9}  runs per arm (H0, H1..H5)")
        base = None
        for M in maxes:
            r = simulate_family(SIGMA_C, deltas, losses, LOSS_SIGMA, treatment_time_sigma=tsig, arms=5,
                                max_runs=M, min_effect=me, sims=sims, seed=SEED + k, compare=(M == 10),
                                fixed_runs=10)
            k += 1
            per = ", ".join(f"{v:.1f}" for v in r["expected_runs"].values())
            if M == 10:
                base = r
            print(f"{f'family, at most {M} per arm':36}{r['runs_total']:>12.2f}{r['runs_total_se']:>8.2f}"
                  f"{r['power']['H1']:>10.4f}{r['pick_best_rate']:>9.4f}{r['familywise_error_time']:>9.4f}"
                  f"{r['familywise_error_loss']:>9.4f}  {per}", flush=True)
        s, f = base["separate"], base["fixed_holm"]
        per = ", ".join(f"{v:.1f}" for v in s["expected_runs"].values())
        print(f"{'5 separate two-arm, at most 10':36}{s['runs_total']:>12.2f}{'':>8}{s['power']['H1']:>10.4f}"
              f"{'':>9}{s['familywise_error_time']:>9.4f}{s['familywise_error_loss']:>9.4f}  (per experiment) {per}")
        print(f"{'fixed 10 per arm, Holm':36}{f['runs_total']:>12}{'':>8}{f['power']['H1']:>10.4f}"
              f"{f['pick_best_rate']:>9.4f}{f['familywise_error_time']:>9.4f}{f['familywise_error_loss']:>9.4f}")
        print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=100_000, help="experiments per error-rate scenario")
    ap.add_argument("--cost-sims", type=int, default=20_000, help="experiments per cost row")
    ap.add_argument("--max-runs", default="10,16,20", help="the family's most runs per arm, compared")
    ap.add_argument("--quick", action="store_true", help="10x fewer simulations (a smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.sims //= 10
        a.cost_sims //= 10
    t0 = time.time()
    fwer(a.sims)
    cost(a.cost_sims, tuple(int(x) for x in a.max_runs.split(",")))
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
