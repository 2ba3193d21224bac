"""The README of an exported record folder (``harness export``): what a record README shows.

Pure text from two analyses: ``table``, of the exported logs themselves (so ``harness
analyze RECORD_DIR`` prints the same table, digit for digit), and ``results``, of the
results folder as it ran (its gate, with the design it ran: sequential decisions,
borrowed sigma, blocked test). No file I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.analysis import report


@dataclass
class RecordInfo:
    name: str                    # the experiment's name
    control: str
    treatment: str
    descriptions: dict           # arm -> its description ('' when none)
    script: str                  # the treatment's script, as the folder holds it
    logs: dict                   # arm -> (runs, of which the script's own logs)
    hardware: list[str]          # one line per kind of hardware, with its runs
    software: list[str]          # torch / CUDA versions, with their runs
    ran: str                     # first start to last end of the runs
    source: str                  # the results folder
    exported: str                # the date of the export
    reproduce: str               # the command that prints the table again
    extra_files: list[str] = field(default_factory=list)   # kernel files beside the script
    passed: bool = False         # every gate criterion of the treatment passed


def treatment_passed(results: report.Analysis, treatment: str) -> tuple[bool, list[str]]:
    """Whether the gate passed the record's arm (others of the experiment aside), and what failed."""
    mine = [c for c in results.verdict.criteria if c.hypothesis == treatment]
    failed = [f"{c.hypothesis} {c.name}" for c in mine if not c.passed]
    return bool(mine) and not failed, failed


def method_text(spec: dict, plan: dict | None, results: report.Analysis, info: RecordInfo) -> str:
    """The design in one paragraph: fixed or sequential, borrowed sigma, blocked, and its alphas."""
    s = results.summary
    n = {a: info.logs[a][0] for a in (info.control, info.treatment)}
    design = spec.get("design") if isinstance(spec.get("design"), dict) else {}
    if plan is not None:
        kind = (plan.get("design") or ("step sweep, --until-decisive" if plan.get("kind") == "sweep" else None)
                or design.get("kind") or "group-sequential, --until-decisive")
        head = (f"A sequential design ({kind}): a look after every run, stopping each arm once its "
                f"question was decided ({plan.get('method', '')}); after an early stop the table's "
                f"p-values are descriptive and the decisions under the gate are the test.")
    else:
        head = (f"A fixed-sample design: {spec.get('runs') or max(n.values())} runs per arm planned, "
                f"tested once at the end.")
    order = spec.get("order") or "interleaved"
    lines = [head,
             f"{n[info.control]} runs of {info.control} (the control) and {n[info.treatment]} of "
             f"{info.treatment}, launched {order} ({_ORDERS.get(order, order)}).",
             f"Time: one-sided {'trimmed (Yuen)' if spec.get('time_test') == 'trimmed' else 'Welch'} "
             f"t-test that {info.treatment} is faster, at alpha {s.alpha_time:g}; loss: one-sided "
             f"one-sample t-test that its mean is below {s.target_loss:g}, at alpha {s.alpha_loss:g}."]
    if s.variance_line:
        lines.append(f"Sigma not from these runs alone: {s.variance_line.removeprefix('variance: ')}.")
    if results.blocked:
        lines.append("The runs span nodes: the gate's time test is the stratified Welch t-test of the "
                     "difference within nodes (a blocked design).")
    return " ".join(lines)


_ORDERS = {"interleaved": "H0 H1 H0 H1 ...: drift hits both arms alike",
           "blocked": "all of one arm, then the other", "random": "shuffled within each round"}


def readme(info: RecordInfo, table: report.Analysis, results: report.Analysis,
           spec: dict, plan: dict | None) -> str:
    t = info.treatment
    desc = info.descriptions.get(t) or ""
    out = [f"# {info.name}: {t}" + (f" ({desc})" if desc else ""), ""]
    out += [f"- {a}: {info.descriptions.get(a) or 'no description'}" for a in (info.control, t)]
    out += ["", f"The script as {t} ran it: `{info.script}`"
            + (f" (with {', '.join(f'`{f}`' for f in info.extra_files)})" if info.extra_files else "")
            + ". The logs: " + "; ".join(
                f"`{a}/` ({runs} runs, {own} as the script wrote them"
                + (f", {runs - own} the script's stdout as the harness kept it" if runs - own else "") + ")"
                for a, (runs, own) in info.logs.items()) + ".", ""]
    out += ["## Timing", "", "```"]
    out += report.table_lines(table.summary)
    out += [""] + ["\n\n".join(report.raw_block(g) for g in table.groups)]
    out += ["```", "", f"The table is of these logs alone (`{info.reproduce}` prints it again); the gate "
            f"below is the experiment's, with its design. " + " ".join(report.footer_lines(table.summary)), ""]
    out += ["## Gate", "", "```"] + report.gate_lines(results)
    if results.sequential is not None:
        out += report.sequential_lines(results.sequential)
    out += ["```", ""]
    if not info.passed:
        out += [f"**The gate did not pass {t}: this is not a record.**", ""]
    warnings = results.warnings
    if warnings:
        out += ["Warnings of the analysis:", ""] + [f"- {w.message}" for w in warnings] + [""]
    out += ["## Method", "", method_text(spec, plan, results, info), ""]
    out += ["## Setup", ""]
    out += [f"- hardware: {h}" for h in info.hardware] or ["- hardware: not recorded by the runs"]
    out += [f"- software: {v}" for v in info.software] or ["- software: not recorded by the runs"]
    out += [f"- ran: {info.ran}",
            f"- exported by `harness export` on {info.exported} from `{info.source}`", ""]
    return "\n".join(out)
