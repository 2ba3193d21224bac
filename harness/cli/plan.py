"""``harness plan``: runs per arm needed, from a pilot (results or logs) or from flags (harness/design/plan.py)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness import thresholds as th
from harness.analysis import stats
from harness.cli import costs
from harness.cli.bar import Bar
from harness.design import cost
from harness.design import progress, sequential as seq
from harness.design.plan import UCB_LEVEL, plan_one, sigma_ucb
from harness.cli.simulate import add_family_flags, family_main, num_or_list
from harness.errors import UserError


def _std(xs: list[float]) -> float:
    """A pilot's sigma; nan where it has none (tied values, or one beyond stats.LARGE)."""
    return stats.std(xs) if stats.usable(xs) and not stats.tied(xs) else math.nan


PLAN_LARGE = 1e50   # |flag| above this: the squares of squares in the power's df overflow a double

_SIGMA_FLAGS = {"time_sigma": ("--time-sigma", "the control's times"),
                "treatment_time_sigma": ("--treatment-time-sigma", "the treatment's times"),
                "loss_sigma": ("--loss-sigma", "the treatment's losses")}


def _check_sigmas(sc: dict, path: str) -> None:
    """One line for a pilot sigma that could not be estimated and no flag replaced."""
    for key, (flag, what) in _SIGMA_FLAGS.items():
        if not math.isfinite(sc[key]):
            raise UserError(f"{path}: {sc['name']} vs {sc['control']}: {what} are all equal or beyond "
                            f"{stats.LARGE:g} (no spread to estimate a sigma from); pass {flag}")
    for key, flag in (("time_delta", "--time-delta"), ("loss_mean", "--loss-mean")):
        if not abs(sc[key]) <= stats.LARGE:
            raise UserError(f"{path}: {sc['name']} vs {sc['control']}: the pilot's {key.replace('_', ' ')} "
                            f"{sc[key]:.4g} comes from a figure beyond {stats.LARGE:g}; read that run's log "
                            f"or pass {flag}")


def scenarios_from_results(path: str, group_by: str = "folder", control: str | None = None,
                           names: list[str] | None = None) -> tuple[list[dict], dict]:
    """One scenario per treatment, estimated from a results folder (or log folders)."""
    from harness.data import sources
    ds = sources.load([path], group_by)
    sources.rename(ds, names)
    if control is not None:
        ds.control = sources.group_named(ds, "--control", control)
    control = ds.control or ds.groups[0].name
    cgroup = ds.group(control)
    if cgroup is None:
        raise UserError(f"{path}: control {control} has no runs; run it first or pass the flags")
    ctimes = [t for t in cgroup.times if math.isfinite(t)]
    if len(ctimes) < 2:
        raise UserError(f"{path}: control {control} has {len(ctimes)} runs with a time; "
                        f"a sigma needs 2 (or pass --time-sigma and --time-delta)")
    out = []
    for g in ds.groups:
        if g.name == control:
            continue
        ttimes = [t for t in g.times if math.isfinite(t)]
        losses = [x for x in g.losses if math.isfinite(x)]
        if len(ttimes) < 2 or len(losses) < 2:
            raise UserError(f"{path}: {g.name} has {len(ttimes)} runs with a time and {len(losses)} with a "
                            f"finite loss; estimates need 2 of each (or pass the flags)")
        out.append({"name": g.name, "control": control, "runs": (len(ctimes), len(ttimes)),
                    "loss_runs": len(losses),
                    "time_sigma": _std(ctimes), "treatment_time_sigma": _std(ttimes),
                    "time_delta": stats.mean(ttimes) - stats.mean(ctimes),
                    "loss_mean": stats.mean(losses), "loss_sigma": _std(losses),
                    "diverged": sum(1 for x in g.losses if not math.isfinite(x))})
    if not out:
        raise UserError(f"{path}: only the control {control} is there; a plan needs a treatment")
    defaults = {"target_loss": ds.target_loss, "alpha_time": ds.alpha_time, "alpha_loss": ds.alpha_loss,
                "min_effect": ds.min_effect, "runs": ds.runs}
    return out, defaults


def configure(p) -> None:
    p.add_argument("results", nargs="?", metavar="RESULTS",
                   help="results folder of a pilot (spec.json and */*/result.json); or use the flags")
    p.add_argument("--time-sigma", type=float, help="control's run-time sigma (s)")
    p.add_argument("--treatment-time-sigma", type=num_or_list,
                   help="treatment's run-time sigma (default: --time-sigma; with --arms: one or one per arm)")
    p.add_argument("--time-delta", type=num_or_list,
                   help="hoped-for treatment minus control time (s), < 0 is faster (with --arms: one or one per arm)")
    p.add_argument("--loss-mean", type=num_or_list,
                   help="treatment's expected mean loss (with --arms: one or one per arm, comma-separated)")
    p.add_argument("--loss-sigma", type=float, help="treatment's loss sigma")
    p.add_argument("--target-loss", type=float, help=f"default {th.TARGET_LOSS} (or the experiment's)")
    p.add_argument("--alpha-time", type=float, help=f"default {th.ALPHA_TIME} (or the experiment's)")
    p.add_argument("--alpha-loss", type=float, help=f"default {th.ALPHA_LOSS} (or the experiment's)")
    p.add_argument("--group-by", choices=("folder", "steps"), default="folder",
                   help="a plain folder of logs: groups by subfolder or by final step count")
    p.add_argument("--control", help="the control group (default: the experiment's, else the first)")
    p.add_argument("--name", action="append", metavar="OLD=NEW",
                   help="rename a group of logs, e.g. --name 1600=H0 --name 1575=H1 (repeat it)")
    p.add_argument("--power", type=float, default=0.9, help="wanted power of each criterion (default 0.9)")
    p.add_argument("--min-effect", type=float, help="seconds the treatment must gain (sequential futility)")
    p.add_argument("--max-runs", type=int, help="most runs per arm of the sequential design (default: the fixed n)")
    p.add_argument("--sims", type=int, default=10_000, help="simulated experiments (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("text", "json"), default="text")
    costs.configure(p)
    add_family_flags(p)
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar on stderr (it shows only on a terminal, after a second)")



def family_plan(args) -> int:
    """``plan --arms K``: the multi-arm family's expected runs, power and familywise errors."""
    defaults: dict = {}
    if args.results:
        if not Path(args.results).exists():
            raise UserError(f"{args.results}: no such results folder; give a folder with spec.json or use the flags")
        scenarios, defaults = scenarios_from_results(args.results, args.group_by, args.control)
        if len(scenarios) != args.arms:
            raise UserError(f"--arms {args.arms}: {args.results} has {len(scenarios)} treatments; "
                            f"give --arms {len(scenarios)} or the flags")
        for key, per in (("time_delta", True), ("loss_mean", True), ("treatment_time_sigma", True)):
            if getattr(args, key) is None:
                setattr(args, key, [sc[key] for sc in scenarios])
        if args.time_sigma is None:
            args.time_sigma = scenarios[0]["time_sigma"]
        if args.loss_sigma is None:
            args.loss_sigma = max(sc["loss_sigma"] for sc in scenarios)
    got = th.resolve(args, defaults, {**th.GATE, "min_effect": th.MIN_EFFECT})
    for k, v in got.items():
        setattr(args, k, v)
    if args.max_runs is None:
        args.max_runs = defaults.get("runs") or th.RUNS
    return family_main(args, None)


def _flag_scenario(args) -> dict:
    need = {"--time-sigma": args.time_sigma, "--time-delta": args.time_delta,
            "--loss-mean": args.loss_mean, "--loss-sigma": args.loss_sigma}
    missing = [k for k, v in need.items() if v is None]
    if missing:
        raise UserError(f"plan needs a RESULTS folder or all of --time-sigma, --time-delta, --loss-mean, "
                        f"--loss-sigma (missing {', '.join(missing)})")
    for k in ("--time-sigma", "--loss-sigma"):
        if not need[k] > 0:
            raise UserError(f"{k} {need[k]}: expected a standard deviation > 0")
    for k, v in [*need.items(), ("--treatment-time-sigma", args.treatment_time_sigma)]:
        if v is not None and not abs(v) <= PLAN_LARGE:
            raise UserError(f"{k} {v:g}: beyond {PLAN_LARGE:g}, where the power's squares overflow; "
                            f"give it in seconds (or loss units) of a real run")
    if args.treatment_time_sigma is not None and not args.treatment_time_sigma > 0:
        raise UserError(f"--treatment-time-sigma {args.treatment_time_sigma}: expected a standard deviation > 0")
    return {"name": "treatment", "control": "control", "runs": None, "time_sigma": args.time_sigma,
            "treatment_time_sigma": args.treatment_time_sigma, "time_delta": args.time_delta,
            "loss_mean": args.loss_mean, "loss_sigma": args.loss_sigma, "diverged": 0}


def _fmt_n(n: int | None, why: str) -> str:
    return f"{n}" if n is not None else f"never ({why})"


def format_text(res: dict) -> str:
    a = res
    out = [f"plan at power {a['power']:g}: alpha time {a['alpha_time']:g}, alpha loss {a['alpha_loss']:g}, "
           f"target {a['target_loss']:g} (source: {a['source']})"]
    for r in a["treatments"]:
        s = r["sequential"]
        src = f" from {r['runs'][0]} + {r['runs'][1]} runs" if r.get("runs") else ""
        out += [
            "",
            f"{r['name']} vs {r['control']}{src}:",
            *([f"  sigmas: {r['sigma_source']}: time {r['pilot_time_sigma']:.4f} -> {r['time_sigma']:.4f} / "
               f"{r['pilot_treatment_time_sigma']:.4f} -> {r['treatment_time_sigma']:.4f} s, loss "
               f"{r['pilot_loss_sigma']:.5f} -> {r['loss_sigma']:.5f}"] if r.get("sigma_source") else []),
            f"  time: sigma {r['time_sigma']:.4f} / {r['treatment_time_sigma']:.4f} s, delta {r['time_delta']:+.4f} s"
            f" -> {_fmt_n(r['runs_time'], 'not faster')} runs per arm",
            f"  loss: mean {r['loss_mean']:.5f} +- {r['loss_sigma']:.5f} vs {a['target_loss']:g}"
            f" -> {_fmt_n(r['runs_loss'], 'not below the target')} runs",
        ]
        if r.get("diverged"):
            out.append(f"  warning: {r['diverged']} diverged runs left out of the loss estimate "
                       f"(a diverged run fails the loss criterion)")
        if r["runs_fixed"]:
            out.append(f"  fixed design: {r['runs_fixed']} runs per arm ({2 * r['runs_fixed']} in all), "
                       f"power time {r['fixed_power_time']:.3f}, loss {r['fixed_power_loss']:.3f}")
        else:
            out.append("  fixed design: no number of runs reaches the power (the treatment cannot pass)")
        out.append(f"  sequential (--until-decisive --max-runs {s['max_runs']}: {s['max_runs_note']}; "
                   f"{s['sims']} simulations): "
                   f"expected runs control {s['mean_control_runs']:.1f}, treatment {s['mean_treatment_runs']:.1f}, "
                   f"total {s['mean_total_runs']:.1f} (95th percentile {s['p95_total_runs']:g}); "
                   f"power time {s['power_time']:.3f}, loss {s['power_loss']:.3f}, both {s['power_both']:.3f}")
        for x in r["sensitivity"]:
            fixed = f"fixed design both {x['fixed_power_both']:.3f}; " if x["fixed_power_both"] is not None else ""
            out.append(f"  if the sigmas are {x['sigma_factor']:g}x these: {fixed}sequential both "
                       f"{x['power_both']:.3f} (time {x['power_time']:.3f}, loss {x['power_loss']:.3f}), "
                       f"{x['mean_total_runs']:.1f} runs")
        out += r.get("gpu_hours_lines", [])
    out.append("")
    out.append(f"method: {seq.METHOD}")
    return "\n".join(out)


def main(args) -> int:
    if args.arms is not None:
        return family_plan(args)
    for flag in ("time_delta", "loss_mean", "treatment_time_sigma"):
        if isinstance(getattr(args, flag), list):
            raise UserError(f"--{flag.replace('_', '-')}: several values need --arms K (one per arm)")
    if args.compare or args.fixed_runs is not None:
        raise UserError("--compare and --fixed-runs go with --arms K")
    if not (0 < args.power < 1):
        raise UserError(f"--power {args.power}: expected a number in (0, 1), e.g. 0.9")
    if args.max_runs is not None and not (2 <= args.max_runs <= seq.MAX_LOOKS):
        raise UserError(f"--max-runs {args.max_runs}: expected 2 to {seq.MAX_LOOKS}")
    defaults: dict = {}
    if args.results:
        if not Path(args.results).exists():
            raise UserError(f"{args.results}: no such results folder; give a folder with spec.json or use the flags")
        scenarios, defaults = scenarios_from_results(args.results, args.group_by, args.control, args.name)
        for sc in scenarios:  # flags override the estimates; estimated sigmas become their UCB
            nc, nt = sc["runs"]
            for key, n in (("time_sigma", nc), ("treatment_time_sigma", nt), ("loss_sigma", sc["loss_runs"])):
                sc["pilot_" + key] = sc[key]
                sc[key] = sigma_ucb(sc[key], n)
            sc["sigma_source"] = (f"pilot sigmas raised to their one-sided {UCB_LEVEL:.0%} upper confidence "
                                  f"bounds (chi-square, {nc}/{nt}/{sc['loss_runs']} runs)")
            for key in ("time_sigma", "treatment_time_sigma", "time_delta", "loss_mean", "loss_sigma"):
                if getattr(args, key) is not None:
                    sc[key] = getattr(args, key)
            _check_sigmas(sc, args.results)
        source = args.results
    else:
        scenarios, source = [_flag_scenario(args)], "flags"

    got = th.resolve(args, defaults, {**th.GATE, "min_effect": th.MIN_EFFECT})
    alpha_time, alpha_loss = got["alpha_time"], got["alpha_loss"]
    target, min_effect = got["target_loss"], got["min_effect"]
    bar = Bar(quiet=args.quiet)
    try:
        with progress.reporting(bar):
            plans = [plan_one(sc, alpha_time, alpha_loss, target, args.power, min_effect,
                              args.max_runs, args.sims, args.seed) for sc in scenarios]
    finally:
        bar.close()
    res = {"source": source, "power": args.power, "alpha_time": alpha_time, "alpha_loss": alpha_loss,
           "target_loss": target, "min_effect": min_effect, "method": seq.METHOD, "treatments": plans}

    roles = {a: role for sc in scenarios for a, role in ((sc["control"], "control"), (sc["name"], "treatment"))}
    run_costs = costs.run_costs(args, roles, args.results)
    if run_costs is None:
        res["treatments"][-1]["gpu_hours_lines"] = [f"  GPU-hours: n/a (no run cost: {costs.NONE_GIVEN})"]
    for r in res["treatments"] if run_costs is not None else []:
        gh = costs.hours(cost.plan_designs(r, r["control"], r["name"]), run_costs, args)
        r["gpu_hours"] = costs.to_json(gh, {a: run_costs[a] for a in (r["control"], r["name"])})
        r["gpu_hours_lines"] = costs.text_lines(gh, {a: run_costs[a] for a in (r["control"], r["name"])})
    if args.format == "json":
        print(json.dumps({**res, "treatments": [{k: v for k, v in r.items() if k != "gpu_hours_lines"}
                                                for r in res["treatments"]]}, indent=2))
    else:
        print(format_text(res))
    return 0
