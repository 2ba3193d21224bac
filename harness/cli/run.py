"""``harness run EXPERIMENT.toml``: launch (or resume) an experiment."""
from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import signal
import sys
from pathlib import Path

from harness.data import spec as specmod
from harness.data.store import read_plan, sequential_path, write_plan
from harness.errors import UserError
from harness.thresholds import RETRIES

EXIT_CODES = """exit codes:
  0    every run has a result (ok or diverged), or the sequential plan decided
  1    with --gate: the record gate failed
  2    bad input (experiment file, flags, results folder) or a folder that cannot be
       written (disk full, permission, read-only); nothing stored is lost: fix it and
       run the same command again to resume
  3    runs ended without a result (failed, timed out); the last line says how many
       and the first reason, `harness status RESULTS` lists them all
  130  stopped by Ctrl-C (143: by SIGTERM, 129: by SIGHUP); the same command resumes"""
EXIT_NO_RESULT = 3


def configure(p) -> None:
    p.add_argument("experiment", help="experiment file (TOML)")
    p.add_argument("--runs", type=int, help="runs per hypothesis (default: the file's)")
    p.add_argument("--results", help="results folder (default: results/<experiment name>)")
    p.add_argument("--order", choices=specmod.ORDERS, help="launch order (default: the file's)")
    p.add_argument("--seed", type=int, help="base seed; run i of every arm gets SEED = seed + i")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="wall-clock limit per run")
    p.add_argument("--retries", type=int, help=f"extra attempts for a failed run (default: the file's, else {RETRIES})")
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
    p.add_argument("--preflight", action=argparse.BooleanOptionalAction, default=None,
                   help="before the runs, launch each arm's command once and stop it at its first step "
                        "line, so a flag or layout error costs one start-up (default: on for a new "
                        "results folder; --no-preflight: off)")
    p.add_argument("--plain", action="store_true", help="one line per event even on a terminal")
    p.add_argument("--gate", action="store_true", help="end with the record gate's verdict (exit 1 when it fails)")
    p.add_argument("--allow-unknown-hardware", action="store_true",
                   help="with --gate: accept runs whose logs do not say which GPUs they ran on (as analyze)")
    p.epilog = EXIT_CODES
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def load_experiment(args):
    path = Path(args.experiment)
    exp = specmod.load(path)
    if args.seed is not None:
        exp = dataclasses.replace(exp, seed=args.seed)
    for name in ("runs", "max_runs", "timeout", "max_parallel", "slurm_time"):
        value = getattr(args, name, None)
        # 'not value > 0' also refuses nan, which would kill every run at once
        if value is not None and (not value > 0 or not math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} {value}: expected a positive number")
    for name in ("runs", "max_runs"):
        value = getattr(args, name, None)
        if value is not None and value > specmod.MAX_RUNS:
            raise UserError(f"--{name.replace('_', '-')} {value}: at most {specmod.MAX_RUNS} runs per hypothesis")
    if args.retries is not None and not 0 <= args.retries <= specmod.MAX_RETRIES:
        raise UserError(f"--retries {args.retries}: expected an integer from 0 to {specmod.MAX_RETRIES}")
    if args.seed is not None and abs(args.seed) > 2**31:
        raise UserError(f"--seed {args.seed}: expected an integer of at most 2**31")
    return exp, path.read_text()


def make_backend(args, exp, results: Path):
    from harness.run import backends
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


def make_decider(exp, max_runs: int, order: str, results: Path, quiet: bool = False):
    """The sequential plan, fixed at the experiment's first --until-decisive run.

    It is stored beside the results (``store.sequential_path``), so a resumed experiment
    uses exactly the same boundaries (even after a numpy or scipy upgrade).
    """
    from harness.design.sequential import SequentialPlan

    if order == "blocked":
        raise UserError("--until-decisive with order 'blocked' runs every control run before the "
                        "first treatment run and saves nothing; use --order interleaved")
    saved = sequential_path(results)
    stored = read_plan(results)
    if stored is not None:
        try:
            from harness.design.borrow_seq import plan_from_dict
            plan = plan_from_dict(stored)
        except ValueError as e:
            raise UserError(f"{saved}: unreadable ({e}); restore it from a copy")
        if plan.max_runs != max_runs:
            raise UserError(f"{saved}: this experiment's sequential plan was fixed at --max-runs "
                            f"{plan.max_runs}; keep it, or use a new --results folder for {max_runs}")
        return plan
    from harness import arms
    if arms.sweeps([h.name for h in exp.hypotheses]):      # a step sweep (issue 16)
        return sweep_decider(exp, max_runs, quiet)
    if quiet:
        return None
    print("calibrating the sequential boundaries (cached once per machine) ...", file=sys.stderr)
    if exp.known_loss_sigma is not None or exp.variance_from is not None:
        return borrowed_plan(exp, max_runs)     # borrowed / known sigma
    treatments = [h.name for h in exp.hypotheses if not h.control]
    if is_family(exp):                          # several treatments: decided as a family (issue 28)
        return multiarm_plan(exp, treatments, max_runs)
    plan = SequentialPlan(control=exp.control.name,
                          treatments=[h.name for h in exp.hypotheses if not h.control],
                          alpha_time=exp.alpha_time, alpha_loss=exp.alpha_loss,
                          target_loss=exp.target_loss, min_effect=exp.min_effect, max_runs=max_runs,
                          time_test=getattr(exp, "time_test", "welch"))
    return plan  # the runner stores it once it holds the results folder


def is_family(exp) -> bool:
    """``--until-decisive`` decides this experiment's treatments as one family (docs/multi-arm.md):
    two or more of them, no step sweep, no borrowed variance (those test each arm alone)."""
    from harness import arms
    treatments = [h.name for h in exp.hypotheses if not h.control]
    return (len(treatments) >= 2 and not arms.sweeps([h.name for h in exp.hypotheses])
            and exp.known_loss_sigma is None and exp.variance_from is None)


def multiarm_plan(exp, treatments: list[str], max_runs: int):
    """The familywise ``--until-decisive`` plan of K >= 2 treatments (docs/multi-arm.md)."""
    from harness.design.multiarm import MultiArmPlan
    if getattr(exp, "time_test", "welch") != "welch":
        raise UserError(f"time_test = {exp.time_test!r} with {len(treatments)} treatments: the multi-arm "
                        f"design of --until-decisive uses Welch's test; remove time_test or run one "
                        f"treatment per experiment")
    return MultiArmPlan(exp.control.name, treatments, alpha_time=exp.alpha_time, alpha_loss=exp.alpha_loss,
                        target_loss=exp.target_loss, min_effect=exp.min_effect, max_runs=max_runs)


def sweep_decider(exp, max_runs: int, quiet: bool = False):
    """The ``--until-decisive`` rule of an experiment with one step sweep beside the control."""
    from harness import arms as sweep_arms
    from harness.cli import variance as variance_source
    from harness.design import sweep_seq
    from harness.run.record import host_gpus
    found = sweep_arms.sweeps([h.name for h in exp.hypotheses if not h.control])
    others = [h.name for h in exp.hypotheses
              if not h.control and not any(h.name == n for v in found.values() for _, n in v)]
    if len(found) != 1 or others:
        raise UserError("--until-decisive with a step sweep: give the control and one swept "
                        "hypothesis only (run other treatments as their own experiment)")
    (base, arms), = found.items()
    sigma = level = None
    if exp.known_loss_sigma is not None or exp.variance_from is not None:
        here = variance_source.host_hardware(host_gpus())
        v = variance_source.load_plan(exp.known_loss_sigma, exp.variance_from, [here],
                                      flag="experiment.variance_from")
        sigma, level = v.loss, v.level
    if not quiet and not sweep_seq.stored([s for s, _ in arms], exp.alpha_loss, max_runs, sigma, level):
        print("calibrating the sweep's sequential boundaries (once per machine, about a minute) ...",
              file=sys.stderr)
    return sweep_seq.SweepPlan(exp.control.name, base, arms, exp.target_loss, exp.alpha_loss, max_runs,
                               sigma, level)


def borrowed_plan(exp, max_runs: int):
    """The plan of an experiment with ``known_loss_sigma`` / ``variance_from``, fixed at its start.

    The runs have not happened yet, so the hardware compared with the earlier runs' is
    this host's (nvidia-smi): the time sigma is borrowed only when they match.
    """
    from harness.cli import variance as variance_source
    from harness.design import borrow_seq
    from harness.run.record import host_gpus
    here = variance_source.host_hardware(host_gpus())
    variance = variance_source.load_plan(exp.known_loss_sigma, exp.variance_from, [here],
                                         flag="experiment.variance_from")
    return borrow_seq.BorrowedPlan(control=exp.control.name,
                        treatments=[h.name for h in exp.hypotheses if not h.control],
                        alpha_time=exp.alpha_time, alpha_loss=exp.alpha_loss, target_loss=exp.target_loss,
                        min_effect=exp.min_effect, max_runs=max_runs, variance=variance)


# a folder with a sequential plan cannot be extended: what to do instead (never a command
# that this folder refuses too)
WAYS_OUT = ("start a new experiment (another name or --results folder; run that one with --anytime "
            "if it may need continuing)")


def refuse_extension(results: Path, until_decisive: bool, runs_flag: int | None,
                     max_runs: int | None, anytime: bool = False) -> None:
    """Refuse, before anything launches, a run that would continue a sequential design
    past its plan (its error rates hold only for the plan fixed before the first run).

    Refused: a fixed-sample run or ``--runs`` on a folder with sequential.json; a
    ``--max-runs`` other than the stored one; ``--until-decisive`` on a folder that
    already holds runs but no plan (deleted, or a fixed-sample experiment): its
    boundaries would be chosen after seeing data.
    """
    results = Path(results)
    saved = sequential_path(results)
    stored = read_plan(results)
    if stored is not None:
        stored_max = stored.get("max_runs")
        if stored.get("design") == "anytime":
            # an e-process may be continued at will; only another design on top is refused
            if not anytime:
                raise UserError(f"{results} holds an anytime-valid experiment: continue it with --anytime "
                                f"(and a larger --max-runs), or start a new experiment")
            if max_runs is not None and max_runs < stored_max:
                raise UserError(f"--max-runs {max_runs}: this anytime experiment already allows {stored_max}")
            return
        if anytime:
            raise UserError(f"{results} holds a group-sequential experiment (--until-decisive): --anytime "
                            f"cannot take it over; start a new experiment with --anytime")
        if not until_decisive:
            raise UserError(f"{results} holds a sequential experiment (sequential.json): more runs without "
                            f"--until-decisive would void its error rates; {WAYS_OUT}")
        if runs_flag is not None and max_runs is None:
            raise UserError(f"{results} holds a sequential experiment fixed at --max-runs {stored_max}: "
                            f"--runs cannot extend it; {WAYS_OUT}")
        if max_runs is not None and max_runs != stored_max:
            raise UserError(f"{saved}: this experiment's sequential plan was fixed at --max-runs "
                            f"{stored_max}; keep it, or {WAYS_OUT} for {max_runs}")
        return
    if (until_decisive or anytime) and results.is_dir():
        n = sum(1 for _ in results.glob("*/*/result.json"))
        if n:
            raise UserError(f"{results} already holds {n} runs but no sequential.json (deleted, or a "
                            f"fixed-sample experiment): a sequential plan made now would be fitted to "
                            f"seen data; {WAYS_OUT}")


def make_anytime(exp, max_runs: int, results: Path):
    """The --anytime plan: the stored one (its decisions kept, its budget raised) or a new one."""
    from harness.design.anytime import AnytimePlan
    treatments = [h.name for h in exp.hypotheses if not h.control]
    old = read_plan(results)
    if old is not None:
        plan = AnytimePlan.from_dict({**old, "max_runs": max(max_runs, int(old.get("max_runs", 0)))})
        write_plan(results, plan.to_dict())
        return plan
    return AnytimePlan(exp.control.name, treatments, exp.alpha_time, exp.alpha_loss, exp.target_loss, max_runs)



# the signals that stop a run (kept, resumable) and the exit code of each: 128 + N
STOP_SIGNALS = {signal.SIGINT: ("Ctrl-C", 130), signal.SIGTERM: ("SIGTERM", 143),
                signal.SIGHUP: ("SIGHUP", 129)}


class _Stops:
    """The first stop signal becomes a KeyboardInterrupt naming it; later ones, while the
    runner ends its runs, change nothing (a second SIGTERM must not cut the clean-up short)."""

    def __init__(self) -> None:
        self.first: int | None = None

    def __call__(self, signum, frame):
        if self.first is not None:
            return
        self.first = signum
        raise KeyboardInterrupt(STOP_SIGNALS[signum][0])


def _resume_command(args) -> str:
    return "harness " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["run"] else f"harness run {args.experiment}"


def _exit_code_of(why: str) -> int:
    return next((code for name, code in STOP_SIGNALS.values() if name == why), 130)


def main(args) -> int:
    # from the first moment: a stop before the runner starts still says how to resume
    stops = _Stops()
    previous = {sig: signal.signal(sig, stops) for sig in STOP_SIGNALS}
    try:
        return _main(args)
    except KeyboardInterrupt as e:     # outside the runner's loop: no run was running
        why = str(e) or "Ctrl-C"
        sys.stderr.write(f"stopped by {why}; resume with: {_resume_command(args)}\n")
        return _exit_code_of(why)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(args) -> int:
    from harness.run.progress import Progress
    from harness.run.runner import Options, Runner, Stopped, run_label
    from harness.data.store import Store

    if args.results is not None and not args.results.strip():
        raise UserError("--results '': give a folder (e.g. --results results/NAME), or leave the flag "
                        "out for results/<experiment name>")
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
    # the design spec.json records (its kind: the flags' design), for the dry run and the runner alike
    kind = ("anytime" if args.anytime else
            ("multi-arm" if is_family(exp) else "group-sequential") if args.until_decisive else "fixed")
    design = exp.design(kind)
    opts = Options(runs=runs, order=args.order, timeout_s=args.timeout, retries=args.retries,
                   compile_cache=False if args.no_compile_cache else None, preflight=args.preflight,
                   design=kind)
    store = Store(results)
    if args.dry_run:
        # refuse exactly what the real run would, and write nothing
        store.check_usable()
        refuse_extension(results, args.until_decisive, args.runs, args.max_runs, anytime=args.anytime)
        if store.root.is_dir():
            store.slots([h.name for h in exp.hypotheses])
            store.freeze(exp, text, check_only=True, design=design)
        if args.until_decisive:
            make_decider(exp, runs, args.order or exp.order, results, quiet=True)
        if (args.backend or exp.backend) == "local":
            make_backend(args, exp, results)
        from harness.run.backends.local import LocalBackend
        runner = Runner(exp, store, LocalBackend(), Path.cwd(), text, opts)
        for hyp, index, env, argv in runner.commands():
            envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            print(f"# {hyp} #{index}\n{envs} {shlex.join(argv)}")
        return 0
    refuse_extension(results, args.until_decisive, args.runs, args.max_runs, anytime=args.anytime)
    backend = make_backend(args, exp, results)
    decider = make_decider(exp, runs, args.order or exp.order, results) if args.until_decisive else None
    if args.anytime:
        if store.root.is_dir():
            # the raised budget is stored before the runner reads the folder: what it would
            # refuse (a corrupt record, a file of a newer harness, another spec) comes first
            store.slots([h.name for h in exp.hypotheses])
            store.freeze(exp, text, check_only=True, design=design)
        decider = make_anytime(exp, runs, results)
    progress = Progress(live=False if args.plain else None)
    runner = Runner(exp, store, backend, Path.cwd(), text, opts, on_event=progress,
                    decider=decider, want_steps=progress.live)
    try:
        slots = runner.run()
    except Stopped as e:
        progress.end_line()     # the live status line is not the start of this one
        names = ", ".join(f"{h} #{i}" + (f" (attempt {a})" if a > 1 else "") for h, i, a in e.runs)
        stopped = f"; stopped {names} (kept as interrupted)" if e.runs else ""
        # the runner stopped inside run(): its slots never came back, so the folder is read
        _cost_line(store.slots([h.name for h in exp.hypotheses]))
        sys.stderr.write(f"stopped by {e.why}{stopped}; resume with: {_resume_command(args)}\n")
        return _exit_code_of(e.why)
    _cost_line(slots)
    code = 0
    if any(s.done is not None for s in slots.values()):
        try:
            code = _print_table(results, args.gate, args.allow_unknown_hardware)
        except UserError as e:  # the runs are stored; only the table could not be made
            sys.stderr.write(f"no table: {e}\n")
    without = runner.without(slots)
    if without:
        # the failure that stopped the arms first: its own error line is the one to fix
        first = runner.broken() or next((r for r in without if r is not None), None)
        reason = f"first: {run_label(first)}: {first.status}: {first.message}" if first else ""
        sys.stderr.write(f"{len(without)} of {len(runner.order)} runs ended without a result; {reason}\n"
                         if reason else f"{len(without)} of {len(runner.order)} runs ended without a result\n")
        return EXIT_NO_RESULT
    return code


def _cost_line(slots: dict) -> None:
    """What the experiment's attempts cost so far (every status), on stderr (docs/gpu-cost.md)."""
    from harness.records import gpu_totals
    sys.stderr.write(gpu_totals(r for s in slots.values() for r in s.records).line() + "\n")


def _print_table(results: Path, gate: bool, allow_unknown_hardware: bool = False) -> int:
    """The table on stdout, as ``harness analyze RESULTS [--gate] [--allow-unknown-hardware]`` prints it."""
    import argparse

    from harness.cli import analyze
    p = argparse.ArgumentParser()
    analyze.configure(p)
    sys.stdout.flush()
    return analyze.main(p.parse_args([str(results)] + (["--gate"] if gate else [])
                                     + (["--allow-unknown-hardware"] if allow_unknown_hardware else [])))
