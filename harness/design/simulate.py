"""``harness simulate``: Monte Carlo of the ``--until-decisive`` procedure.

Each simulated experiment draws normal run times for the control and one treatment
and normal losses for the treatment, then applies exactly the boundaries and
decision rule of ``harness.design.sequential.SequentialPlan`` (vectorised over
experiments): control runs = the pair at which the time criterion was decided,
treatment runs = the later of that pair and the run at which the loss criterion was
decided. Beside it: the fixed design (M runs per arm, one test at the end) and the
naive peeker (a fixed-sample test after every pair, stop at the first p < alpha).
"""
from __future__ import annotations

import json
import math

import numpy as np

from harness.design import sequential as seq
from harness import thresholds as th
from harness.errors import UserError

BLOCK = 50_000


def simulate(time_sigma: float, time_delta: float, loss_mean: float, loss_sigma: float,
             treatment_time_sigma: float | None = None, alpha_time: float = th.ALPHA_TIME,
             alpha_loss: float = th.ALPHA_LOSS, max_runs: int = th.RUNS, min_effect: float = th.MIN_EFFECT,
             target_loss: float = th.TARGET_LOSS, sims: int = 10_000, seed: int = 0,
             futility_alpha: float = seq.FUTILITY_ALPHA) -> dict:
    """Operating characteristics of the sequential procedure (one treatment)."""
    st = time_sigma if treatment_time_sigma is None else treatment_time_sigma
    for name, v in (("--time-sigma", time_sigma), ("--treatment-time-sigma", st), ("--loss-sigma", loss_sigma)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise UserError(f"{name} {v!r}: expected a standard deviation > 0, e.g. 0.09")
    for name, v in (("--time-delta", time_delta), ("--loss-mean", loss_mean), ("--target-loss", target_loss)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise UserError(f"{name} {v!r}: expected a number")
    if not isinstance(sims, int) or sims < 1:
        raise UserError(f"--sims {sims!r}: expected a positive integer, e.g. 10000")
    plan = seq.SequentialPlan("H0", ["H1"], alpha_time, alpha_loss, target_loss, min_effect, max_runs,
                              futility_alpha)
    M = plan.max_runs
    n = np.arange(2, M + 1)
    rng = np.random.default_rng(seed)
    acc = {k: 0 for k in ("tpass", "tfail", "lpass", "lfail", "both", "fixed_t", "fixed_l", "fixed_both",
                          "naive_t", "naive_l", "naive_both", "nc", "nt")}
    totals = []
    time_looks = []
    done = 0
    while done < sims:
        B = min(BLOCK, sims - done)
        done += B
        zc = rng.standard_normal((B, M))
        zt = rng.standard_normal((B, M))
        zl = rng.standard_normal((B, M))
        mc, vc = seq._moments(time_sigma * zc)
        mt, vt = seq._moments(time_delta + st * zt)
        pt, pft, _ = seq.welch_p(mt - mc, vc, vt, n, plan.min_effect)
        kt, dt = seq.first_crossing(pt, plan.time_pass, pft, plan.time_fail, M)
        ml, vl = seq._moments((loss_mean - target_loss) + loss_sigma * zl)
        pl, pfl, _ = seq.one_sample_p(ml, vl, n)
        kl, dl = seq.first_crossing(pl, plan.loss_pass, pfl, plan.loss_fail, M)
        nc = kt
        nt = np.maximum(kt, kl)
        totals.append((nc + nt).astype(np.int16))
        time_looks.append(kt.astype(np.int16))
        acc["tpass"] += int((dt == 1).sum())
        acc["tfail"] += int((dt == -1).sum())
        acc["lpass"] += int((dl == 1).sum())
        acc["lfail"] += int((dl == -1).sum())
        acc["both"] += int(((dt == 1) & (dl == 1)).sum())
        ft, fl = pt[:, -1] <= alpha_time, pl[:, -1] <= alpha_loss
        acc["fixed_t"] += int(ft.sum())
        acc["fixed_l"] += int(fl.sum())
        acc["fixed_both"] += int((ft & fl).sum())
        nvt, nvl = (pt <= alpha_time).any(axis=1), (pl <= alpha_loss).any(axis=1)
        acc["naive_t"] += int(nvt.sum())
        acc["naive_l"] += int(nvl.sum())
        acc["naive_both"] += int((nvt & nvl).sum())
        acc["nc"] += int(nc.sum())
        acc["nt"] += int(nt.sum())
    tot = np.concatenate(totals)
    looks = np.concatenate(time_looks)

    def rate(k):
        return acc[k] / sims

    def se(r):
        return math.sqrt(max(r * (1 - r), 1.0 / sims) / sims)

    out = {
        "method": seq.METHOD,
        "sims": sims, "seed": seed, "max_runs": M,
        "alpha_time": float(alpha_time), "alpha_loss": float(alpha_loss),
        "futility_alpha": float(futility_alpha), "min_effect": float(min_effect),
        "target_loss": float(target_loss),
        "time_sigma": float(time_sigma), "treatment_time_sigma": float(st),
        "time_delta": float(time_delta), "loss_mean": float(loss_mean), "loss_sigma": float(loss_sigma),
        "reject_rate": rate("tpass"), "time_fail_rate": rate("tfail"),
        "loss_pass_rate": rate("lpass"), "loss_fail_rate": rate("lfail"),
        "both_rate": rate("both"),
        "reject_rate_se": se(rate("tpass")), "loss_pass_rate_se": se(rate("lpass")),
        "mean_control_runs": acc["nc"] / sims, "mean_treatment_runs": acc["nt"] / sims,
        "mean_total_runs": float(tot.mean()), "p95_total_runs": float(np.percentile(tot, 95)),
        "max_total_runs": int(tot.max()),
        "time_decided_by_pair": {str(k): float((looks == k).mean()) for k in range(2, M + 1)},
        "fixed_total_runs": 2 * M,
        "fixed_reject_rate": rate("fixed_t"), "fixed_loss_pass_rate": rate("fixed_l"),
        "fixed_both_rate": rate("fixed_both"),
        "naive_reject_rate": rate("naive_t"), "naive_loss_pass_rate": rate("naive_l"),
        "naive_both_rate": rate("naive_both"),
    }
    return out


def format_text(r: dict) -> str:
    M = r["max_runs"]
    lines = [
        f"simulated {r['sims']} experiments (seed {r['seed']}), at most {M} runs per arm",
        f"  time: control sigma {r['time_sigma']:g} s, treatment sigma {r['treatment_time_sigma']:g} s, "
        f"delta {r['time_delta']:+g} s (min effect {r['min_effect']:g} s), alpha {r['alpha_time']:g}",
        f"  loss: treatment {r['loss_mean']:g} +- {r['loss_sigma']:g}, target {r['target_loss']:g}, "
        f"alpha {r['alpha_loss']:g}",
        "",
        f"{'':28}{'sequential':>12}{'fixed':>10}{'naive peek':>12}",
        f"{'time passed (faster)':28}{r['reject_rate']:>12.4f}{r['fixed_reject_rate']:>10.4f}"
        f"{r['naive_reject_rate']:>12.4f}",
        f"{'loss passed (below target)':28}{r['loss_pass_rate']:>12.4f}{r['fixed_loss_pass_rate']:>10.4f}"
        f"{r['naive_loss_pass_rate']:>12.4f}",
        f"{'both passed':28}{r['both_rate']:>12.4f}{r['fixed_both_rate']:>10.4f}{r['naive_both_rate']:>12.4f}",
        "",
        f"runs per experiment: control {r['mean_control_runs']:.2f}, treatment {r['mean_treatment_runs']:.2f}, "
        f"total {r['mean_total_runs']:.2f} (95th percentile {r['p95_total_runs']:g}, most {r['max_total_runs']}) "
        f"vs {r['fixed_total_runs']} for the fixed design",
        f"time failed (futility or last look): {r['time_fail_rate']:.4f}; "
        f"loss failed: {r['loss_fail_rate']:.4f}",
        f"method: {r['method']}",
    ]
    return "\n".join(lines)


def configure(p) -> None:
    p.add_argument("--time-sigma", type=float, required=True, help="control's run-time sigma (s)")
    p.add_argument("--treatment-time-sigma", type=float, help="treatment's run-time sigma (s); default: --time-sigma")
    p.add_argument("--time-delta", type=float, required=True, help="treatment mean time minus control's (s); < 0 is faster")
    p.add_argument("--loss-mean", type=float, required=True, help="treatment's true mean loss")
    p.add_argument("--loss-sigma", type=float, required=True, help="treatment's loss sigma")
    p.add_argument("--target-loss", type=float, default=th.TARGET_LOSS)
    p.add_argument("--alpha-time", type=float, default=th.ALPHA_TIME)
    p.add_argument("--alpha-loss", type=float, default=th.ALPHA_LOSS)
    p.add_argument("--futility-alpha", type=float, default=seq.FUTILITY_ALPHA,
                   help="error of a futility stop at the edge of the null (default 0.1)")
    p.add_argument("--max-runs", type=int, default=th.RUNS, help=f"most runs per arm (default {th.RUNS})")
    p.add_argument("--min-effect", type=float, default=0.0, help="seconds the treatment must gain (futility)")
    p.add_argument("--sims", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")


def main(args) -> int:
    r = simulate(args.time_sigma, args.time_delta, args.loss_mean, args.loss_sigma,
                 treatment_time_sigma=args.treatment_time_sigma, alpha_time=args.alpha_time,
                 alpha_loss=args.alpha_loss, max_runs=args.max_runs, min_effect=args.min_effect,
                 target_loss=args.target_loss, sims=args.sims, seed=args.seed,
                 futility_alpha=args.futility_alpha)
    if args.format == "json":
        print(json.dumps(r, indent=2))
    else:
        print(format_text(r))
    return 0
