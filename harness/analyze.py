"""``harness analyze`` / ``python analyze.py``: table, checks and gate from results or logs.

Glue only: sources -> stats -> gate -> report (and plot). Exit codes: 0 done (with
``--gate``: passed), 1 gate failed, 2 bad input (a UserError, one line).
"""
from __future__ import annotations

import argparse
import os
import sys

from harness.errors import UserError

DEFAULTS = {"target_loss": 3.28, "alpha_time": 0.001, "alpha_loss": 0.01}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="results folder of an experiment, NAME=PATH (folder or glob of logs), "
                        "or a folder of logs")
    p.add_argument("--control", metavar="NAME",
                   help="control group (default: the experiment's control, else the first group)")
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


def main(args: argparse.Namespace) -> int:
    from harness import gate, nodes, report, sources, stats
    from harness.sources import as_float

    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        raise UserError(f"--plot {args.plot}: its folder does not exist")
    ds = sources.load(args.sources, args.group_by)
    names = [g.name for g in ds.groups]
    control = args.control or (ds.control if ds.control in names else None) or names[0]
    if control not in names:
        raise UserError(f"--control {control}: no such group; the groups are {', '.join(names)}")
    if not any(g.runs for g in ds.groups):
        for w in ds.warnings:
            sys.stderr.write(f"{w}\n")
        n = sum(len(g.failed) for g in ds.groups)
        if not n:
            raise UserError(f"no run in {' '.join(args.sources)} has a result yet (run the experiment first)")
        raise UserError(f"none of the {n} runs has a final result (each is listed above)")
    settings = {k: _pick(getattr(args, k), getattr(ds, k), DEFAULTS[k]) for k in DEFAULTS}
    if not 0 < settings["alpha_time"] < 1 or not 0 < settings["alpha_loss"] < 1:
        raise UserError("--alpha-time and --alpha-loss must lie between 0 and 1")

    arms = [stats.Arm(name=g.name, losses=g.losses, times=g.times, steps=g.steps,
                      order=g.order, expected_steps=g.expected_steps) for g in ds.groups]
    summary = stats.summarise(arms, control, **settings)
    rows = nodes.node_rows({g.name: [(r.record.host or "?", as_float(r.record.train_time_s)) for r in g.runs]
                            for g in ds.groups})
    multi = len(rows) > 1
    look, seq_notes = None, []
    if ds.sequential is not None:
        from harness.sequential import replay_stored   # numpy only for sequential experiments
        look, seq_notes = replay_stored(ds.sequential, {g.name: [r.record for r in g.runs] for g in ds.groups})
    verdict = gate.evaluate(summary, ds.groups, sequential=look, sequential_notes=seq_notes,
                            allow_unknown_hardware=getattr(args, "allow_unknown_hardware", False))
    analysis = report.Analysis(ds, summary, verdict, show_gate=args.gate, nodes=rows if multi else [],
                               node_warnings=nodes.node_warnings(rows, control) if multi else [],
                               sequential=look)
    sys.stdout.write(report.render(args.format, analysis))
    if args.plot:
        from harness import plot      # matplotlib only when asked for
        plot.plot(analysis, args.plot)
    return (0 if verdict.passed else 1) if args.gate else 0


def _pick(flag, spec, default):
    return flag if flag is not None else spec if spec is not None else default
