"""``harness simulate``: the Monte Carlo of the sequential procedure, printed (harness/design/simulate.py)."""
from __future__ import annotations

import json
import math
import sys

from harness import thresholds as th
from harness.cli import costs
from harness.cli.bar import Bar
from harness.design import cost
from harness.design import progress, sequential as seq
from harness.design.simulate import simulate, simulate_sweep
from harness.errors import UserError

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
    if "variance_line" in r:                     # borrowed / known sigma
        lines[1:1] = [f"  {r['variance_line']}",
                      f"  current sigmas {r['sigma_off']:g}x the stated ones; borrowed variance "
                      + ("drawn afresh per experiment (df as borrowed)" if r["borrowed_draw"] == "fresh"
                         else "held at the value borrowed")]
        lines.insert(-1, f"both passed {r['both_rate']:.4f} +- {r['both_rate_se']:.4f}; time passed "
                     f"{r['reject_rate']:.4f} +- {r['reject_rate_se']:.4f}; loss passed "
                     f"{r['loss_pass_rate']:.4f} +- {r['loss_pass_rate_se']:.4f} (MC standard errors)")
    return "\n".join(lines)


def configure(p) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar on stderr (it shows only on a terminal, after a second)")
    p.add_argument("--time-sigma", type=float, help="control's run-time sigma (s); default: the borrowed one (not with --sweep-steps)")
    p.add_argument("--treatment-time-sigma", type=num_or_list,
                   help="treatment's run-time sigma (s); default: --time-sigma (with --arms: one or one per arm)")
    p.add_argument("--time-delta", type=num_or_list,
                   help="treatment mean time minus control's (s); < 0 is faster (with --arms: one or one per arm)")
    p.add_argument("--loss-mean", type=num_or_list,
                   help="treatment's true mean loss (with --arms: one or one per arm, comma-separated)")
    p.add_argument("--loss-sigma", type=float, help="treatment's loss sigma; default: the borrowed one")
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
    add_family_flags(p)
    b = p.add_argument_group("borrowed or known sigma (the design of --until-decisive with variance_from)")
    b.add_argument("--variance-from", metavar="LOGS",
                   help="earlier runs to borrow sigma from, loaded as analyze and run load them; the time "
                        "sigma is borrowed when they record one hardware (your runs assumed on it)")
    b.add_argument("--borrowed-loss-sigma", type=float, help="a borrowed loss sigma, given directly")
    b.add_argument("--borrowed-time-sigma", type=float, help="a borrowed time sigma (s), given directly")
    b.add_argument("--borrowed-df", type=float, help="degrees of freedom of the given borrowed sigmas "
                                                     "(runs - groups of the earlier runs)")
    b.add_argument("--known-loss-sigma", type=float, help="the track's fixed loss sigma (z-test)")
    b.add_argument("--sigma-off", type=float, default=1.0, metavar="FACTOR",
                   help="true sigma of the current runs = FACTOR x the stated (default: borrowed) one; "
                        "1.5: the borrowed sigma is 1.5x too small")
    b.add_argument("--borrowed-draw", choices=("fresh", "fixed"), default="fresh",
                   help="fresh (default): each simulated experiment draws its borrowed variance "
                        "(the design's error rates); fixed: the borrowed sigma as given")
    # a step sweep (issue 16): --until-decisive on arms BASE@STEPS (harness/design/sweep_seq.py)
    p.add_argument("--sweep-steps", help="simulate a step sweep at these step counts, e.g. 1550,1560,1575")
    p.add_argument("--sweep-losses", help="the true mean loss at each swept step count, e.g. 3.279,3.2788,3.2784")
    p.add_argument("--sweep-slope", type=float,
                   help="instead of --sweep-losses: loss change per 1000 steps, from --loss-mean at the fewest steps")
    costs.configure(p)


def num_or_list(text: str):
    """A number, or comma-separated numbers (one per arm of --arms)."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number or numbers separated by commas") from None
    return vals[0] if len(vals) == 1 else vals


def add_family_flags(p) -> None:
    """--arms / --compare / --fixed-runs: the multi-arm family (harness/design/multiarm_sim.py)."""
    f = p.add_argument_group("several treatments against one control (--until-decisive with K >= 2 arms)")
    f.add_argument("--arms", type=int, metavar="K",
                   help="K treatments decided as one family (familywise error at each alpha)")
    f.add_argument("--compare", action="store_true",
                   help="with --arms: also K separate two-arm experiments and a fixed N per arm with Holm")
    f.add_argument("--fixed-runs", type=int, metavar="N",
                   help="with --compare: runs per arm of the fixed design (default --max-runs)")


def family_main(args, variance) -> int:
    """``simulate``/``plan`` with --arms: the family's Monte Carlo, printed."""
    from harness.design.multiarm_sim import simulate_family
    time_sigma = args.time_sigma
    loss_sigma = args.loss_sigma
    if variance is not None:                       # --variance-from: the control's sigmas
        if time_sigma is None and variance.time is not None:
            time_sigma = variance.time.value
        if loss_sigma is None and variance.loss is not None:
            loss_sigma = variance.loss.value
    for flag, v in (("--time-sigma", time_sigma), ("--time-delta", args.time_delta),
                    ("--loss-mean", args.loss_mean), ("--loss-sigma", loss_sigma)):
        if v is None:
            raise UserError(f"--arms needs {flag} (a sigma may come from --variance-from LOGS)")
    if args.fixed_runs is not None and args.fixed_runs < 2:
        raise UserError(f"--fixed-runs {args.fixed_runs}: expected at least 2 runs per arm")
    bar = Bar(quiet=getattr(args, "quiet", False))   # a calibration at an uncommitted M reports to it
    try:
        with progress.reporting(bar):
            r = simulate_family(time_sigma, args.time_delta, args.loss_mean, loss_sigma,
                                treatment_time_sigma=args.treatment_time_sigma, alpha_time=args.alpha_time,
                                alpha_loss=args.alpha_loss, max_runs=args.max_runs, min_effect=args.min_effect,
                                target_loss=args.target_loss, arms=args.arms, sims=args.sims, seed=args.seed,
                                futility_alpha=getattr(args, "futility_alpha", seq.FUTILITY_ALPHA),
                                diverge_prob=getattr(args, "diverge_prob", 0.0), compare=args.compare,
                                fixed_runs=args.fixed_runs)
    finally:
        bar.close()
    lines = family_gpu_hours(args, r)
    print(json.dumps(r, indent=2) if args.format == "json" else "\n".join([format_family(r), *lines]))
    return 0


def family_designs(r: dict) -> tuple[dict, dict]:
    """design -> {arm: expected runs} of a family's simulation, and arm -> the arm whose run
    cost it pays: the family, and under --compare the K separate experiments (each with a
    control of its own, ``H0 for H1``) and the fixed N per arm with Holm."""
    names = r["names"][1:]
    designs = {"family": dict(r["expected_runs"])}
    priced_as = {a: a for a in r["expected_runs"]}
    if "separate" in r:
        sep = {}
        for h, x in r["separate"]["expected_runs_by_arm"].items():
            sep[f"H0 for {h}"], sep[h] = x["control"], x["treatment"]
            priced_as[f"H0 for {h}"] = "H0"
        designs[f"{len(names)} separate experiments"] = sep
        n = float(r["fixed_holm"]["runs_per_arm"])
        designs["fixed + Holm"] = {a: n for a in r["expected_runs"]}
    return designs, priced_as


def family_gpu_hours(args, r: dict) -> list[str]:
    """The family's GPU-hours beside its runs (docs/gpu-cost.md); adds ``gpu_hours`` to ``r``."""
    designs, priced_as = family_designs(r)
    roles = {a: "control" if a == "H0" else "treatment" for a in r["expected_runs"]}
    run_costs = costs.run_costs(args, roles)
    if run_costs is None:
        return [f"GPU-hours: n/a (no run cost: {costs.NONE_GIVEN})"]
    every = {a: run_costs[priced_as[a]] for a in priced_as}
    gh = costs.hours(designs, every, args)
    r["gpu_hours"] = costs.to_json(gh, run_costs)
    return costs.text_lines(gh, run_costs, indent="")


def format_family(r: dict) -> str:
    names = r["names"][1:]
    se = r["expected_runs_se"]
    lines = [f"simulated {r['sims']} experiments (seed {r['seed']}): {r['arms']} treatments against one control, "
             f"--until-decisive at most {r['max_runs']} runs per arm, familywise",
             f"  control time sigma {r['time_sigma']:g} s, loss sigma {r['loss_sigma']:g}, target {r['target_loss']:g},"
             f" alpha time {r['alpha_time']:g}, loss {r['alpha_loss']:g}, min effect {r['min_effect']:g} s", "",
             f"{'arm':8}{'delta s':>9}{'loss':>9}{'runs':>14}{'time pass':>11}{'loss pass':>11}{'power':>9}"]
    for j, h in enumerate(names):
        lines.append(f"{h:8}{r['time_delta'][j]:>+9.3f}{r['loss_mean'][j]:>9.4f}"
                     f"{r['expected_runs'][h]:>8.2f} +-{se[h]:.2f}{r['time_pass_rate'][h]:>11.4f}"
                     f"{r['loss_pass_rate'][h]:>11.4f}{r['power'][h]:>9.4f}")
    lines += [f"{'H0':8}{'':>18}{r['expected_runs']['H0']:>8.2f}", "",
              f"runs in all: {r['runs_total']:.2f} +- {r['runs_total_se']:.2f} (95th percentile "
              f"{r['p95_runs_total']:g}, most {r['max_runs_total']})",
              f"familywise error, faster claims: {r['familywise_error_time']:.4f} +- "
              f"{r['familywise_error_time_se']:.4f} (alpha {r['alpha_time']:g})",
              f"familywise error, below-target claims: {r['familywise_error_loss']:.4f} +- "
              f"{r['familywise_error_loss_se']:.4f} (alpha {r['alpha_loss']:g})"]
    if r["truly_best"] is not None:
        lines.append(f"picks the truly best arm ({r['truly_best']}): {r['pick_best_rate']:.4f} +- "
                     f"{r['pick_best_rate_se']:.4f}; picks none: {r['pick_none_rate']:.4f}")
    else:
        lines.append(f"no arm is truly faster and below the target; picks none: {r['pick_none_rate']:.4f}")
    if "separate" in r:
        s, f = r["separate"], r["fixed_holm"]
        pw = lambda d: ", ".join(f"{h} {d[h]:.3f}" for h in names)   # noqa: E731
        lines += ["", f"{'design':34}{'runs in all':>12}{'FWER time':>11}{'FWER loss':>11}",
                  f"{'family (this design)':34}{r['runs_total']:>12.2f}{r['familywise_error_time']:>11.4f}"
                  f"{r['familywise_error_loss']:>11.4f}",
                  f"{f'{len(names)} separate two-arm experiments':34}{s['runs_total']:>12.2f}"
                  f"{s['familywise_error_time']:>11.4f}{s['familywise_error_loss']:>11.4f}",
                  f"{'fixed ' + str(f['runs_per_arm']) + ' per arm, Holm':34}{f['runs_total']:>12}"
                  f"{f['familywise_error_time']:>11.4f}{f['familywise_error_loss']:>11.4f}",
                  f"power: family {pw(r['power'])}", f"       separate {pw(s['power'])}",
                  f"       fixed+Holm {pw(f['power'])}"]
    lines.append(f"method: {r['method']}")
    return "\n".join(lines)


def _floats(flag: str, text: str, kind=float) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected numbers separated by commas, e.g. 1550,1560,1575") from None


def sweep_main(args) -> int:
    if args.loss_sigma is None:
        raise UserError("--sweep-steps needs --loss-sigma: the true sigma of a run's final loss")
    steps = _floats("--sweep-steps", args.sweep_steps, int)
    if (args.sweep_losses is None) == (args.sweep_slope is None):
        raise UserError("--sweep-steps needs --sweep-losses (one true mean loss per step count) or "
                        "--sweep-slope with --loss-mean (the loss at the fewest steps)")
    if args.sweep_losses is not None:
        losses = _floats("--sweep-losses", args.sweep_losses)
    else:
        if args.loss_mean is None:
            raise UserError("--sweep-slope needs --loss-mean: the true mean loss at the fewest steps")
        lo = min(steps)
        losses = [args.loss_mean + args.sweep_slope * (s - lo) / 1000.0 for s in steps]
    from harness.design import sweep_seq
    if len(set(steps)) >= 2 and not sweep_seq.stored(steps, args.alpha_loss, args.max_runs):
        print("calibrating the sweep's sequential boundaries (once per machine, about a minute) ...",
              file=sys.stderr)
    bar = Bar(quiet=args.quiet)
    try:
        with progress.reporting(bar):
            r = simulate_sweep(steps, losses, args.loss_sigma, target_loss=args.target_loss,
                               alpha_loss=args.alpha_loss, max_runs=args.max_runs, sims=args.sims,
                               seed=args.seed, max_parallel=args.max_parallel)
    finally:
        bar.close()
    _print(r, args, format_sweep, control="H0", treatment="H1")

    return 0


def _print(r: dict, args, text, control: str = "control", treatment: str = "treatment") -> None:
    """The result, with the designs' GPU-hours when a run cost is given (docs/gpu-cost.md)."""
    designs = cost.simulation_designs(r, control, treatment)
    roles = {a: "control" if a == control else "treatment" for d in designs.values() for a in d}
    run_costs = costs.run_costs(args, roles)
    lines = []
    if run_costs is not None:
        gh = costs.hours(designs, run_costs, args)
        r = {**r, "gpu_hours": costs.to_json(gh, run_costs)}
        lines = costs.text_lines(gh, run_costs, indent="")
    print(json.dumps(r, indent=2) if args.format == "json" else "\n".join([text(r), *lines]))


def format_sweep(r: dict) -> str:
    se = r["false_rate_se"]
    lines = [f"simulated {r['sims']} step sweeps (seed {r['seed']}), --until-decisive with at most "
             f"{r['max_runs']} runs per arm",
             f"  loss sigma {r['loss_sigma']:g}, target {r['target_loss']:g}, alpha_loss {r['alpha_loss']:g}; "
             f"true smallest step count below the target: {r['true_smallest'] or 'none'}",
             "",
             f"{'steps':>8}{'true loss':>11}{'runs':>8}{'named':>8}"]
    for s, m in zip(r["steps"], r["losses"]):
        lines.append(f"{s:>8}{m:>11.5f}{r['mean_runs_per_step'][str(s)]:>8.2f}{r['claimed'][str(s)]:>8.4f}")
    lines += [f"{'none':>8}{'':>11}{'':>8}{r['claimed']['none']:>8.4f}", "",
              f"right (the true smallest named): {r['right_rate']:.4f} +- {r['right_rate_se']:.4f}",
              f"false (a step count at or above the target decided below): {r['false_rate']:.4f} +- {se:.4f} "
              f"(alpha_loss {r['alpha_loss']:g})",
              f"runs per experiment: sweep {r['mean_sweep_runs']:.2f}, control {r['mean_control_runs']:.2f}, "
              f"total {r['mean_total_runs']:.2f} (95th percentile {r['p95_total_runs']:g}, most "
              f"{r['max_total_runs']}) vs {r['fixed_total_runs']} for {r['max_runs']} runs per arm",
              f"method: {r['method']}"]
    return "\n".join(lines)


def variance_plan(args):
    """The VariancePlan of the borrowed-sigma flags (None: none given)."""
    from harness.analysis import borrow
    from harness.cli import variance as variance_source
    given = (args.borrowed_loss_sigma, args.borrowed_time_sigma)
    if args.variance_from is not None and any(x is not None for x in (*given, args.borrowed_df)):
        raise UserError("--variance-from with --borrowed-loss-sigma/--borrowed-time-sigma/--borrowed-df: "
                        "give the earlier runs or their sigmas, not both")
    if args.variance_from is not None:
        return variance_source.load_plan(args.known_loss_sigma, args.variance_from, None, same_hardware=True)
    if all(x is None for x in given):
        if args.borrowed_df is not None:
            raise UserError("--borrowed-df without --borrowed-loss-sigma or --borrowed-time-sigma")
        return None if args.known_loss_sigma is None else variance_source.load_plan(args.known_loss_sigma, None, [])
    df = args.borrowed_df
    if df is None or not (math.isfinite(df) and df >= 1):
        raise UserError(f"--borrowed-df {df}: expected the borrowed sigma's degrees of freedom >= 1 "
                        f"(e.g. 9 for 10 earlier runs in one group)")
    for flag, v in (("--borrowed-loss-sigma", given[0]), ("--borrowed-time-sigma", given[1]),
                    ("--known-loss-sigma", args.known_loss_sigma)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{flag} {v}: expected a standard deviation > 0")
    if args.known_loss_sigma is not None and given[0] is not None:
        raise UserError("--known-loss-sigma with --borrowed-loss-sigma: a loss sigma is known or borrowed, "
                        "not both")

    def sigma(v):
        return None if v is None else borrow.Sigma(float(v), float(df), int(round(df)) + 1, "the flags")
    loss = borrow.known(args.known_loss_sigma) if args.known_loss_sigma is not None else sigma(given[0])
    return borrow.VariancePlan(loss=loss, time=sigma(given[1]),
                               time_note="" if given[1] is not None else "no --borrowed-time-sigma given")


def main(args) -> int:
    if getattr(args, "sweep_steps", None):
        return sweep_main(args)
    variance = variance_plan(args)
    if args.arms is not None:
        return family_main(args, variance)
    for flag in ("time_delta", "loss_mean", "treatment_time_sigma"):
        if isinstance(getattr(args, flag), list):
            raise UserError(f"--{flag.replace('_', '-')}: several values need --arms K (one per arm)")
    if args.compare or args.fixed_runs is not None:
        raise UserError("--compare and --fixed-runs go with --arms K")
    if args.time_sigma is None:
        if variance is None or variance.time is None:
            raise UserError("simulate needs --time-sigma: required (the control's run-time sigma in s), unless "
                            "a time sigma is borrowed (--variance-from, --borrowed-time-sigma), or "
                            "--sweep-steps for a step sweep")
        args.time_sigma = variance.time.value
    for flag, v in (("--time-delta", args.time_delta), ("--loss-mean", args.loss_mean)):
        if v is None:
            raise UserError(f"simulate needs {flag} (or --sweep-steps for a step sweep)")
    if args.loss_sigma is None:
        if variance is None or variance.loss is None:
            raise UserError("--loss-sigma: required (the treatment's loss sigma), unless a loss sigma is "
                            "borrowed or known (--variance-from, --borrowed-loss-sigma, --known-loss-sigma)")
        args.loss_sigma = variance.loss.value
    if variance is None and args.sigma_off != 1.0:
        raise UserError("--sigma-off: needs a borrowed sigma (--variance-from, --borrowed-loss-sigma, "
                        "--borrowed-time-sigma) to be off")
    bar = Bar(quiet=args.quiet)
    try:
        with progress.reporting(bar):
            r = simulate(args.time_sigma, args.time_delta, args.loss_mean, args.loss_sigma,
                         treatment_time_sigma=args.treatment_time_sigma, alpha_time=args.alpha_time,
                         alpha_loss=args.alpha_loss, max_runs=args.max_runs, min_effect=args.min_effect,
                         target_loss=args.target_loss, sims=args.sims, seed=args.seed,
                         futility_alpha=args.futility_alpha, max_parallel=args.max_parallel,
                         fail_prob=args.fail_prob, diverge_prob=args.diverge_prob, retries=args.retries,
                         time_test=args.time_test, variance=variance, sigma_off=args.sigma_off,
                         borrowed_draw=args.borrowed_draw)
    finally:
        bar.close()
    _print(r, args, format_text)

    return 0
