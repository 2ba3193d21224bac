"""``harness analyze`` / ``python analyze.py``: table, checks and gate from results or logs.

Glue only: sources -> stats -> gate -> report (and plot). Exit codes: 0 done (with
``--gate``: passed), 1 gate failed, 2 bad input (a UserError, one line).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from harness.errors import UserError
from harness.thresholds import GATE as DEFAULTS
from harness.thresholds import pick, resolve


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="results folder of an experiment, NAME=PATH (folder or glob of logs), "
                        "or a folder of logs")
    p.add_argument("--control", metavar="NAME",
                   help="control group (default: the experiment's control, else the first group)")
    p.add_argument("--name", action="append", metavar="OLD=NEW",
                   help="rename a group of logs, e.g. --name 1600=H0 --name 1575=H1 with --group-by steps "
                        "(repeat it; --control may then use either name)")
    p.add_argument("--loss-control", metavar="NAME",
                   help="group that Loss +/- is measured against (default: the control)")
    p.add_argument("--group-by", choices=("folder", "steps"), default="folder",
                   help="plain log folders: one group per subfolder (default) or per final step count")
    p.add_argument("--target-loss", type=float, metavar="LOSS",
                   help=f"loss criterion (default: the experiment's, else {DEFAULTS['target_loss']})")
    p.add_argument("--alpha-time", type=float, metavar="P",
                   help=f"gate threshold of the time test (default: the experiment's, else {DEFAULTS['alpha_time']})")
    p.add_argument("--alpha-loss", type=float, metavar="P",
                   help=f"gate threshold of the loss test (default: the experiment's, else {DEFAULTS['alpha_loss']})")
    p.add_argument("--format", choices=("text", "markdown", "json", "csv"), default="text")
    p.add_argument("--gate", action="store_true",
                   help="print the record gate's verdict; exit 1 when it fails")
    p.add_argument("--plot", metavar="FILE.png", help="also draw times, losses and loss curves")
    p.add_argument("--allow-unknown-hardware", action="store_true",
                   help="gate: accept runs whose logs do not say which GPUs they ran on")
    p.add_argument("--variance-from", metavar="LOGS",
                   help="borrow sigma from earlier runs (a folder of logs or a results folder, e.g. the "
                        "record's published logs): loss always, time when the hardware matches")
    p.add_argument("--known-loss-sigma", type=float, metavar="SIGMA",
                   help="loss sigma fixed by the track's rules: the loss test becomes a z-test")


def main(args: argparse.Namespace) -> int:
    from harness.analysis import report
    analysis = build(args)
    sys.stdout.write(report.render(args.format, analysis))
    if args.plot:
        from harness.analysis import plot  # matplotlib only when asked for
        plot.plot(analysis, args.plot)
    if args.format == "csv":
        # CSV holds runs only: the warnings go where a person reads them
        for w in analysis.warnings:
            sys.stderr.write(f"warning: {w.message}\n")
    return (0 if analysis.verdict.passed else 1) if args.gate else 0


def parse(argv: list[str]) -> argparse.Namespace:
    """``analyze``'s flags for another command that analyses (``export``), defaults included."""
    p = argparse.ArgumentParser(prog="harness analyze")
    configure(p)
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    """The ``report.Analysis`` of the sources and flags (what ``main`` renders)."""
    from harness.analysis import blocked, cuped, gate, nodes, report, stats
    from harness.data import sources
    from harness.groups import as_float

    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        raise UserError(f"--plot {args.plot}: its folder does not exist")
    ds = sources.load(args.sources, args.group_by)
    sources.rename(ds, args.name)
    names = [g.name for g in ds.groups]
    control = sources.group_named(ds, "--control", args.control) if args.control else \
        (ds.control if ds.control in names else None) or names[0]
    loss_control = sources.group_named(ds, "--loss-control", args.loss_control or control)
    if not any(g.runs for g in ds.groups):
        for w in ds.warnings:
            sys.stderr.write(f"{w.message}\n")
        n = sum(len(g.failed) for g in ds.groups)
        if not n:
            raise UserError(f"no run in {' '.join(args.sources)} has a result yet (run the experiment first)")
        raise UserError(f"none of the {n} runs has a final result (each is listed above)")
    settings = resolve(args, ds)
    if not 0 < settings["alpha_time"] < 1 or not 0 < settings["alpha_loss"] < 1:
        raise UserError("--alpha-time and --alpha-loss must lie between 0 and 1")
    # 'not > 0' also refuses nan, which every comparison would pass over; inf passes any loss
    if not (settings["target_loss"] > 0 and math.isfinite(settings["target_loss"])):
        raise UserError(f"--target-loss {settings['target_loss']}: expected a finite loss > 0, e.g. "
                        f"{DEFAULTS['target_loss']}")

    arms = [stats.Arm(name=g.name, losses=g.losses, times=g.times, steps=g.steps,
                      order=g.order, expected_steps=g.expected_steps) for g in ds.groups]
    prog = "python analyze.py" if os.path.basename(sys.argv[0]) == "analyze.py" else "harness analyze"
    for arm, g in zip(arms, ds.groups):   # what the checks beside the table need to say
        arm.sources = [r.source for r in g.runs]
        arm.loss_control = g.name == loss_control
        arm.split_hint = sources.split_hint(g, args.group_by, args.sources, prog)
    variance = variance_plan(args, ds)
    summary = stats.summarise(arms, control, variance=variance, **settings)
    by_host = {g.name: [(r.record.host or "?", as_float(r.record.train_time_s)) for r in g.runs]
               for g in ds.groups}
    tests = blocked.blocked_tests(by_host, control)   # empty unless the runs span nodes
    probed = cuped.adjust_all({g.name: [(r.record.probe_s, as_float(r.record.train_time_s)) for r in g.runs]
                               for g in ds.groups}, control)   # empty unless runs carry probe times
    rows = nodes.node_rows(by_host)
    multi = len(rows) > 1
    look, seq_notes = None, []
    if ds.sequential is not None:
        from harness.design.sequential import replay_stored   # numpy only for sequential experiments
        look, seq_notes = replay_stored(ds.sequential, {g.name: [r.record for r in g.runs] for g in ds.groups})
    sweeps = sweep_analyses(ds, control, settings, variance)
    verdict = gate.evaluate(summary, ds.groups, tests, sequential=look, sequential_notes=seq_notes,
                            allow_unknown_hardware=args.allow_unknown_hardware,
                            decisions_missing=ds.decisions_missing, sweeps=sweeps,
                            design=report.design_label(ds.sequential) if look is not None else "")
    analysis = report.Analysis(ds, summary, verdict, show_gate=args.gate, nodes=rows if multi else [],
                               node_warnings=(nodes.node_warnings(rows, control) + blocked.warnings(tests))
                               if multi else [],
                               sequential=look, blocked=tests, cuped=probed,
                               sweeps=sweeps)
    return analysis


def sweep_analyses(ds, control: str, settings: dict, variance) -> list:
    """One loss model per step sweep (arms named BASE@STEPS: harness/analysis/sweep.py)."""
    from harness import arms as sweep_arms
    from harness.analysis import sweep
    by_name = {g.name: g for g in ds.groups}
    ctrl = by_name[control].times
    sigma = variance.loss if variance is not None else None
    level = variance.level if variance is not None else None
    return [sweep.analyse(base, [(s, n, by_name[n].losses, by_name[n].times) for s, n in arms], ctrl,
                          settings["target_loss"], settings["alpha_loss"], sigma, level)
            for base, arms in sweep_arms.sweeps([g.name for g in ds.groups if g.name != control]).items()]


def variance_plan(args, ds):
    """The borrowed/known sigma plan from the flags, else the experiment's keys; None: none."""
    from harness.cli.variance import load_plan
    known = pick(getattr(args, "known_loss_sigma", None), getattr(ds, "known_loss_sigma", None), None)
    src = pick(getattr(args, "variance_from", None), getattr(ds, "variance_from", None), None)
    return load_plan(known, src, [r.hardware for g in ds.groups for r in g.runs],
                     {r.source for g in ds.groups for r in g.runs})

