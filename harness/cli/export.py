"""``harness export RESULTS --out RECORD_DIR``: a results folder as a record folder of the speedrun repository.

Writes ``RECORD_DIR/<arm>/`` with each counted run's log (the script's own, its upstream
name kept, else the harness's ``log.txt`` under the run's id), the treatment's script as
it ran (its snapshot, with the files its log appends to it), and ``README.md``
(harness/analysis/record_readme.py). The README's table is the analysis of the exported
logs, so ``harness analyze RECORD_DIR`` prints it again. Never overwrites; warns when the
gate did not pass.
"""
from __future__ import annotations

import datetime as dt
import shlex
import sys
from collections import Counter
from pathlib import Path

from harness import thresholds as th
from harness.analysis import record_readme
from harness.data import export as ex
from harness.data.store import is_results_folder, read_spec
from harness.errors import UserError
from harness.groups import hardware_text


def configure(p) -> None:
    p.add_argument("results", type=Path, metavar="RESULTS", help="the results folder of an experiment")
    p.add_argument("--out", type=Path, required=True, metavar="RECORD_DIR",
                   help="the record folder to create (e.g. records/track_1_short/2026-12-08-MyChange); "
                        "it must not exist")
    p.add_argument("--treatment", metavar="NAME",
                   help="the arm that is the record (default: the experiment's only treatment)")


def _with_runs(what: str, arms: list[str]) -> str:
    return f"{what} ({', '.join(f'{n} runs of {a}' for a, n in sorted(Counter(arms).items()))})"


def _setup_lines(groups) -> tuple[list[str], list[str], str]:
    """Hardware and software, each kind with the runs it holds, and when the runs ran."""
    hw: dict[str, list[str]] = {}
    sw: dict[str, list[str]] = {}
    times = []
    for g in groups:
        for r in g.runs:
            rec = r.record
            hw.setdefault(hardware_text(r.hardware) if r.hardware else "not recorded", []).append(g.name)
            sw.setdefault(f"torch {rec.torch_version or '?'}, CUDA {rec.cuda_version or '?'}", []).append(g.name)
            times += [t for t in (rec.started_at, rec.finished_at) if t]
    ran = f"{min(times)[:10]} to {max(times)[:10]}" if times else "dates not recorded"
    return [_with_runs(k, v) for k, v in hw.items()], [_with_runs(k, v) for k, v in sw.items()], ran


def _reproduce(out: Path, control: str, names: list[str], settings: dict) -> tuple[str, list[str]]:
    """The analyze command that prints the README's table again, and its flags."""
    flags = []
    if sorted(names)[0] != control:     # a plain folder's first group is the default control
        flags += ["--control", control]
    for key, flag in (("target_loss", "--target-loss"), ("alpha_time", "--alpha-time"),
                      ("alpha_loss", "--alpha-loss")):
        if settings[key] != th.GATE[key]:
            flags += [flag, repr(float(settings[key]))]
    return shlex.join(["harness", "analyze", out.name, *flags]), flags


def _treatment(args, treatments: list[str]) -> str:
    """The arm that is the record: the one named, else the only treatment."""
    if args.treatment is not None:
        if args.treatment not in treatments:
            raise UserError(f"--treatment {args.treatment}: not a treatment of {args.results}; "
                            f"its treatments are {', '.join(treatments)}")
        return args.treatment
    if len(treatments) != 1:
        raise UserError(f"{args.results}: {len(treatments)} treatments ({', '.join(treatments)}); "
                        f"name the record's with --treatment")
    return treatments[0]


def _figures(groups) -> dict:
    """Each arm's (loss, time) pairs, as a multiset (run order aside; NaN compares as text)."""
    return {g.name: Counter(zip(map(repr, g.losses), map(repr, g.times))) for g in groups}


def _info(args, spec: dict, results, treatment: str, logs: dict, script_name: str, beside: list,
          reproduce: str) -> record_readme.RecordInfo:
    control = results.summary.control
    groups = [results.dataset.group(control), results.dataset.group(treatment)]
    hardware, software, ran = _setup_lines(groups)
    hyps = {h.get("name"): h for h in spec.get("hypotheses", [])}
    return record_readme.RecordInfo(
        name=spec.get("name") or args.results.name, control=control, treatment=treatment,
        descriptions={a: (hyps.get(a) or {}).get("description", "") for a in (control, treatment)},
        script=script_name, extra_files=[f.name for f in beside],
        logs={a: (len(v), sum(1 for x in v if x.own)) for a, v in logs.items()},
        hardware=hardware, software=software, ran=ran, source=str(args.results),
        exported=dt.date.today().isoformat(), reproduce=reproduce,
        passed=record_readme.treatment_passed(results, treatment)[0])


def main(args) -> int:
    from harness.cli import analyze

    if not is_results_folder(args.results):
        raise UserError(f"{args.results}: not a results folder (no spec.json); pass results/<experiment>")
    ex.refuse_existing(args.out)
    spec = read_spec(args.results) or {}
    results = analyze.build(analyze.parse([str(args.results)]))
    s = results.summary
    treatment = _treatment(args, [r.name for r in s.treatments])
    groups = [results.dataset.group(s.control), results.dataset.group(treatment)]
    for g in groups:
        if len(g.runs) < 2:
            raise UserError(f"{args.results}: {g.name} has {len(g.runs)} finished runs; a record "
                            f"folder needs 2 or more per arm (run the experiment first)")
    logs = {g.name: ex.arm_logs(g) for g in groups}
    script_name, script = ex.snapshot(groups[1])
    beside = ex.embedded_beside(logs[treatment], script)
    settings = {"target_loss": s.target_loss, "alpha_time": s.alpha_time, "alpha_loss": s.alpha_loss}
    reproduce, flags = _reproduce(args.out, s.control, [s.control, treatment], settings)

    stage = ex.stage(args.out)
    try:
        for arm, arm_logs in logs.items():
            ex.write_arm(stage, arm, arm_logs)
        ex.write_file(stage, script_name, script)
        for f in beside:
            ex.write_file(stage, f.name, f.data)
        table = analyze.build(analyze.parse([str(stage), *flags]))
        if _figures(table.groups) != _figures(groups):   # the table would not be the runs'
            raise UserError(f"{args.results}: the exported logs do not give the runs' recorded losses and "
                            f"times (a script's own log that disagrees with its stdout?); nothing was written")
        info = _info(args, spec, results, treatment, logs, script_name, beside, reproduce)
        text = record_readme.readme(info, table, results, spec, results.dataset.sequential)
        ex.write_file(stage, "README.md", text.encode("utf-8"))
    except BaseException:
        ex.discard(stage)
        raise
    ex.publish(stage, args.out)
    print(args.out)
    passed, failed = record_readme.treatment_passed(results, treatment)
    if not passed:
        reasons = (", ".join(failed) + " failed") if failed else "see its README"
        sys.stderr.write(f"warning: the gate did not pass {treatment} ({reasons}); {args.out} is written, "
                         f"but it is not a record\n")
    return 0
