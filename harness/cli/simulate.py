"""``harness simulate``: the Monte Carlo of the sequential procedure, printed (harness/design/simulate.py)."""
from __future__ import annotations

import json

from harness import thresholds as th
from harness.design import sequential as seq
from harness.design.simulate import simulate

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
        f"vs {r['fixed_total_runs']} for the fixed design; {r['mean_attempts']:.2f} attempts launched "
        f"(max_parallel {r['max_parallel']})",
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
    p.add_argument("--max-parallel", type=int, default=1, help="jobs at once, as the backend runs them (default 1)")
    p.add_argument("--fail-prob", type=float, default=0.0, help="chance an attempt fails (retried; --max-parallel 1)")
    p.add_argument("--diverge-prob", type=float, default=0.0, help="chance a treatment run diverges (NaN loss)")
    p.add_argument("--retries", type=int, default=2, help="extra attempts after a failed one (default 2)")
    p.add_argument("--time-test", choices=seq.TIME_TESTS, default="welch",
                   help="the experiment's time_test: welch (default) or trimmed (Yuen, robust to outliers)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def main(args) -> int:
    r = simulate(args.time_sigma, args.time_delta, args.loss_mean, args.loss_sigma,
                 treatment_time_sigma=args.treatment_time_sigma, alpha_time=args.alpha_time,
                 alpha_loss=args.alpha_loss, max_runs=args.max_runs, min_effect=args.min_effect,
                 target_loss=args.target_loss, sims=args.sims, seed=args.seed,
                 futility_alpha=args.futility_alpha, max_parallel=args.max_parallel,
                 fail_prob=args.fail_prob, diverge_prob=args.diverge_prob, retries=args.retries,
                 time_test=args.time_test)
    if args.format == "json":
        print(json.dumps(r, indent=2))
    else:
        print(format_text(r))
    return 0
