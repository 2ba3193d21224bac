"""``harness run EXPERIMENT.toml``: launch (or resume) an experiment."""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

from harness import spec as specmod
from harness.errors import UserError


def configure(p) -> None:
    p.add_argument("experiment", help="experiment file (TOML)")
    p.add_argument("--runs", type=int, help="runs per hypothesis (default: the file's)")
    p.add_argument("--results", help="results folder (default: results/<experiment name>)")
    p.add_argument("--order", choices=specmod.ORDERS, help="launch order (default: the file's)")
    p.add_argument("--seed", type=int, help="base seed; run i of every arm gets SEED = seed + i")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="wall-clock limit per run")
    p.add_argument("--retries", type=int, help="extra attempts for a failed run (default: the file's, else 2)")
    p.add_argument("--dry-run", action="store_true", help="print the commands in order, run nothing")
    p.add_argument("--backend", choices=("local", "slurm"), help="where runs execute (default: the file's)")
    p.add_argument("--partition", help="slurm: partition")
    p.add_argument("--max-parallel", type=int, help="slurm: jobs at once")
    p.add_argument("--slurm-time", type=int, metavar="MINUTES", help="slurm: time limit per job")
    p.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="slurm: extra sbatch parameter (repeatable)")
    p.add_argument("--until-decisive", action="store_true",
                   help="stop each arm as soon as the sequential test has decided")
    p.add_argument("--max-runs", type=int, help="with --until-decisive or --anytime: most runs per arm")
    p.add_argument("--anytime", action="store_true",
                   help="stop each arm once an anytime-valid e-process decides; may be continued later "
                        "with a larger --max-runs (docs/sequential.md)")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not share one torch.compile cache between the runs")
    p.add_argument("--plain", action="store_true", help="one line per event even on a terminal")


def load_experiment(args):
    path = Path(args.experiment)
    exp = specmod.load(path)
    if args.seed is not None:
        exp = dataclasses.replace(exp, seed=args.seed)
    for name in ("runs", "max_runs", "timeout", "max_parallel"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} {value}: expected a positive number")
    if args.retries is not None and args.retries < 0:
        raise UserError(f"--retries {args.retries}: expected an integer >= 0")
    return exp, path.read_text()


def make_backend(args, exp, results: Path):
    from harness import backends
    name = args.backend or exp.backend
    if name == "local":
        if args.partition or args.max_parallel or args.slurm_time or args.slurm_extra:
            raise UserError("--partition/--max-parallel/--slurm-* need --backend slurm")
        return backends.get("local")
    conf = dict(exp.slurm)
    extra = dict(conf.pop("extra", {}))
    for item in args.slurm_extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--slurm-extra {item!r}: expected KEY=VALUE, e.g. --slurm-extra account=myproj")
        extra[key] = value
    return backends.get("slurm", partition=args.partition or conf.get("partition"),
                        max_parallel=args.max_parallel or conf.get("max_parallel", 1),
                        time_min=args.slurm_time or conf.get("time"),
                        gpus_per_node=conf.get("gpus_per_node"),
                        extra=extra, folder=results / ".slurm")


def make_decider(exp, max_runs: int, order: str, results: Path):
    """The sequential plan, fixed at the experiment's first --until-decisive run.

    It is stored as ``sequential.json`` beside the results, so a resumed experiment
    uses exactly the same boundaries (even after a numpy or scipy upgrade).
    """
    import json

    from harness.sequential import SequentialPlan

    if order == "blocked":
        raise UserError("--until-decisive with order 'blocked' runs every control run before the "
                        "first treatment run and saves nothing; use --order interleaved")
    saved = results / "sequential.json"
    if saved.exists():
        try:
            plan = SequentialPlan.from_dict(json.loads(saved.read_text()))
        except ValueError as e:
            raise UserError(f"{saved}: unreadable ({e}); restore it from a copy")
        if plan.max_runs != max_runs:
            raise UserError(f"{saved}: this experiment's sequential plan was fixed at --max-runs "
                            f"{plan.max_runs}; keep it, or use a new --results folder for {max_runs}")
        return plan
    print("calibrating the sequential boundaries (cached once per machine) ...", file=sys.stderr)
    plan = SequentialPlan(control=exp.control.name,
                          treatments=[h.name for h in exp.hypotheses if not h.control],
                          alpha_time=exp.alpha_time, alpha_loss=exp.alpha_loss,
                          target_loss=exp.target_loss, min_effect=exp.min_effect, max_runs=max_runs,
                          time_test=getattr(exp, "time_test", "welch"))
    return plan  # the runner stores it once it holds the results folder


def main(args) -> int:
    from harness.progress import Progress
    from harness.runner import Options, Runner
    from harness.store import Store

    exp, text = load_experiment(args)
    if args.max_runs is not None and not (args.until_decisive or args.anytime):
        raise UserError("--max-runs only applies with --until-decisive or --anytime; use --runs for a fixed design")
    if args.until_decisive and args.anytime:
        raise UserError("--until-decisive and --anytime are two designs; pick one")
    runs = args.runs
    if args.until_decisive or args.anytime:
        runs = args.max_runs or args.runs or exp.runs
    if runs is not None:
        exp = dataclasses.replace(exp, runs=runs)  # spec.json (and status) count the runs asked for
    results = Path(args.results or Path("results") / exp.name)
    opts = Options(runs=runs, order=args.order, timeout_s=args.timeout, retries=args.retries,
                   compile_cache=False if args.no_compile_cache else None)
    store = Store(results)
    if args.dry_run:
        from harness.backends.local import LocalBackend
        runner = Runner(exp, store, LocalBackend(), Path.cwd(), text, opts)
        for hyp, index, env, argv in runner.commands():
            envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            print(f"# {hyp} #{index}\n{envs} {shlex.join(argv)}")
        return 0
    from harness.sequential import make_anytime, refuse_extension
    refuse_extension(results, args.until_decisive, args.runs, args.max_runs, anytime=args.anytime)
    backend = make_backend(args, exp, results)
    decider = make_decider(exp, runs, args.order or exp.order, results) if args.until_decisive else None
    if args.anytime:
        decider = make_anytime(exp, runs, results)
    progress = Progress(live=False if args.plain else None)
    runner = Runner(exp, store, backend, Path.cwd(), text, opts, on_event=progress,
                    decider=decider, want_steps=progress.live)
    runner.run()
    return 0
