"""Render an analysis as text, markdown, JSON or CSV (one exporter interface).

The community table keeps exactly the columns of ``statistics.md``; everything else
(robust checks, warnings, the gate) comes after it and never changes it.
"""
from __future__ import annotations

import abc
import csv
import io
import json
import math
from dataclasses import dataclass, field

from harness.analysis.gate import Verdict
from harness.caveat import Caveat
from harness.records import PHASE_KEYS, gpu_totals, median_phases
from harness.records import nan_to_none   # JSON has no NaN: null, as result.json
from harness.groups import Dataset, Group
from harness.analysis.stats import Row, Summary

COLUMNS = ("Runs", "Steps", "Time μ", "Time σ", "Time +/-", "Time p",
           "Loss μ", "Loss σ", "Loss +/-", "Loss p")
NAME_WIDTH = 17     # the community table's first column


@dataclass
class Analysis:
    dataset: Dataset
    summary: Summary
    verdict: Verdict
    show_gate: bool = False
    nodes: list = field(default_factory=list)          # nodes.NodeRow, when runs span several hosts
    sequential: object = None                          # sequential.Look replayed on the stored runs
    node_warnings: list[Caveat] = field(default_factory=list)
    sweeps: list = field(default_factory=list)         # sweep.Sweep per step sweep (issue 16)
    blocked: dict = field(default_factory=dict)        # treatment -> blocked.BlockedTest (runs span nodes)
    cuped: dict = field(default_factory=dict)          # treatment -> cuped.Cuped (runs with probe times)

    @property
    def groups(self) -> list[Group]:
        """Groups in table order (control first)."""
        return [self.dataset.group(r.name) for r in self.summary.rows]

    @property
    def warnings(self) -> list[Caveat]:
        return (self.dataset.warnings + self.summary.warnings + self.node_warnings
                + [w for sw in self.sweeps for w in sw.warnings])


# ---------------------------------------------------------------- cells

def _f4(x: float) -> str:
    return f"{x:.4f}"       # nan prints as nan, like the community table


def table_cells(row: Row) -> list[str]:
    return [str(row.runs), "-" if row.steps is None else str(row.steps),
            _f4(row.time_mean), _f4(row.time_std), _f4(row.time_delta), _f4(row.time_p),
            _f4(row.loss_mean), _f4(row.loss_std), _f4(row.loss_delta), _f4(row.loss_p)]


def _fmt_list(xs: list[float]) -> str:
    return "[" + ", ".join(repr(float(x)) for x in xs) + "]"


def raw_block(g: Group) -> str:
    n = f"(n = {len(g.runs)})" if not g.failed else \
        f"(n = {len(g.runs)}; {len(g.failed)} failed not counted)"
    return f"{g.name}:\n  losses = {_fmt_list(g.losses)}\n  times  = {_fmt_list(g.times)}\n  {n}"


def _loss_verdict(word: str, target: float) -> str:
    return {"below": f"< {target:g}", "above": f"> {target:g}", "not below": f"not < {target:g}",
            "not-reached": "not reached"}.get(word, word)


def design_label(plan: dict | None) -> str:
    """The design whose decisions a folder holds, as its output names it (None: fixed)."""
    if plan is None:
        return "fixed-sample"
    if plan.get("design") == "anytime":
        return "anytime-valid (--anytime)"
    if plan.get("design") == "multi-arm":
        return "multi-arm familywise group-sequential (--until-decisive, Holm over the arms)"
    if plan.get("kind") == "sweep":
        return "group-sequential step sweep (--until-decisive)"
    if plan.get("variance"):
        return "group-sequential, borrowed sigma (--until-decisive)"
    return "group-sequential (--until-decisive)"


def verdicts(a: "Analysis") -> dict[str, tuple[str, str]]:
    """Each arm's (time, loss) verdict, as the gate decides it (gate.arm_verdicts)."""
    from harness.analysis.gate import arm_verdicts
    return arm_verdicts(a.summary, a.sequential, a.sweeps, a.blocked)


def verdict_source(a: "Analysis") -> str:
    """Where the Time and Loss verdict columns come from, in words, when that is not the
    table's own fixed-sample tests ('' when it is)."""
    if a.sequential is not None:
        return (f"the {design_label(a.dataset.sequential)} decisions below (Time Δ%, the interval "
                f"and MW p are descriptive)")
    parts = []
    if a.blocked:
        parts.append("Time of arms whose runs span nodes from the blocked test below")
    if any(sw.fit is not None for sw in a.sweeps):
        parts.append("Loss of swept arms from the sweep's step-down below")
    return "; ".join(parts)


def beside_columns(s: Summary, words: dict[str, tuple[str, str]] | None = None) -> tuple[list[str], list[list[str]]]:
    """The robust checks, one row per hypothesis; Holm only with several treatments.
    ``words``: each arm's (time, loss) verdict (``verdicts``; default: the table's tests)."""
    holm = len(s.treatments) > 1
    head = ["Time Δ%", "Time +/- 95% CI", "MW p"] + (["Holm p"] if holm else []) + ["Time", "Loss"]
    ctrl_mean = s.row(s.control).time_mean
    rows = []
    for r in s.rows:
        if r.is_control:
            cells = ["", "", ""] + ([""] if holm else [])
        else:
            lo, hi = r.time_delta_ci
            pct = 100 * r.time_delta / ctrl_mean if ctrl_mean else math.nan
            cells = [f"{pct:+.2f}%", f"[{_f4(lo)}, {_f4(hi)}]",
                     _f4(r.time_p_mw)] + ([_f4(r.time_p_holm)] if holm else [])
        t, l = (words or {}).get(r.name, (r.time_verdict, r.loss_verdict))
        rows.append([r.name] + cells + [t, _loss_verdict(l, s.target_loss)])
    return head, rows


def _align(head: list[str], rows: list[list[str]]) -> list[str]:
    """Columns two spaces apart: names left-aligned, the rest right-aligned."""
    all_rows = [head] + rows
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(head))]
    widths[0] = max(widths[0], NAME_WIDTH)
    out = []
    for r in all_rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append(cells[0] + "".join("  " + c for c in cells[1:]))
    return [line.rstrip() for line in out]


def table_lines(s: Summary) -> list[str]:
    return _align([""] + list(COLUMNS), [[r.name] + table_cells(r) for r in s.rows])


def footer_lines(s: Summary, design: str = "") -> list[str]:
    """What each column is, and which test gives each p: records publish other ones too.
    ``design``: the sequential design whose decisions the folder holds ('' for none):
    the p-values are then descriptive, and the footer says so beside them."""
    against = f"the control {s.control}'s"
    loss_vs = (f"; Loss +/- against {s.loss_control}'s mean loss (--loss-control)"
               if s.loss_control != s.control else "")
    out = [f"Time in s; +/- = mean minus {against}{loss_vs}.",
           f"Time p: one-sided Welch t-test that the mean time is below {against} "
           f"(a two-sided Welch p is 2 x min(p, 1 - p)).",
           f"Loss p: one-sided one-sample t-test that the mean loss is below the target {s.target_loss:g}."]
    if design:
        out.append(f"Time p and Loss p are fixed-sample p-values, descriptive here: this folder was collected "
                   f"under a {design} design, whose decisions (below) are the verdicts.")
    return out


def _design(a: "Analysis") -> str:
    return design_label(a.dataset.sequential) if a.sequential is not None else ""


# ---------------------------------------------------------------- exporters

class Exporter(abc.ABC):
    """Turns an Analysis into the text of one format."""

    name = "?"

    @abc.abstractmethod
    def render(self, a: Analysis) -> str:
        """The whole output, ending with a newline."""


class TextExporter(Exporter):
    name = "text"

    def render(self, a: Analysis) -> str:
        s = a.summary
        parts = ["\n".join(table_lines(s) + ([s.variance_line] if s.variance_line else []))]
        parts += [raw_block(g) for g in a.groups]
        parts[0] += "\n" + "\n".join(footer_lines(s, _design(a)))    # right under the table
        if s.treatments:
            head, rows = beside_columns(s, verdicts(a))
            lines = _align([f"vs {s.control}"] + head, rows)
            title = (f"robust checks vs control {s.control}: Time Δ% = Time +/- in % of the control's "
                     f"mean time; Time +/- 95% CI = its Welch t 95% interval in s; MW p = one-sided "
                     f"Mann-Whitney p"
                     + (", Holm-adjusted Time p" if len(s.treatments) > 1 else "")
                     + f"; verdicts at alpha_time {s.alpha_time:g} / alpha_loss {s.alpha_loss:g}"
                     + (f" ({verdict_source(a)})" if verdict_source(a) else "")
                     + ", ~ = no significant difference")
            parts.append(title + "\n" + "\n".join(lines))
        if a.sequential is not None:
            parts.append("\n".join(sequential_lines(a.sequential, a.dataset.sequential)))
            if getattr(a.sequential, "family", None):
                parts.append("\n".join(family_lines(a.sequential.family)))
        parts += ["\n".join(_sweep_lines(sw)) for sw in a.sweeps]
        if a.nodes:
            parts.append("\n".join(node_lines(a)))
        if a.blocked:
            from harness.analysis import blocked
            parts.append("\n".join(blocked.lines(a.blocked, _design(a))))
        if a.cuped:
            from harness.analysis import cuped
            parts.append("\n".join(cuped.lines(a.cuped)))
        if a.warnings:
            parts.append("warnings:\n" + "\n".join(f"  {w.message}" for w in a.warnings))
        if a.show_gate:
            parts.append("\n".join(_gate_lines(a)))
        return "\n\n".join(parts) + "\n"


def sequential_lines(look, plan: dict | None = None) -> list[str]:
    """The stored decisions, under the name of the design that made them (``plan``: the
    stored plan); after an early stop the table's p-values are descriptive."""
    return ([f"{sequential_title(plan)}:"] + [f"  {line}" for line in look.lines])


def sequential_title(plan: dict | None) -> str:
    return (f"sequential decisions of the {design_label(plan or {})} design (these, not the table's fixed-sample "
            f"p-values, control the error rates after an early stop)")


def family_lines(fam: dict) -> list[str]:
    """A multi-arm family (``multiarm.family_summary``): one row per arm, its decisions and the
    run at which each was made, the simultaneous interval of its time difference, the ranking
    among the arms below the target and the best arm with the evidence for it."""
    conf = f"{fam['confidence']:.0%}"
    head = ["arm", "runs", "time", "decided at", "loss", "decided at", "verdict", "Time +/-",
            f"simultaneous {conf} CI (s)"]
    rows = []
    for a in fam["arms"]:
        ci = "-" if not math.isfinite(a["lo"]) else f"[{a['lo']:+.4f}, {a['hi']:+.4f}]"
        rows.append([a["arm"], str(a["runs"]), a["time"], a["time_at"], a["loss"], a["loss_at"],
                     a["verdict"], "-" if not math.isfinite(a["diff"]) else f"{a['diff']:+.4f}", ci])
    n = len(fam["arms"])
    out = [f"family of {n} arms vs control {fam['control']} ({fam['control_runs']} runs; decisions familywise, "
           f"intervals Bonferroni over the {n} arms, not adjusted for the early stop)", *_align(head, rows)]
    ranked = fam["ranked"]
    out.append("ranked by time among the arms below the target: " + (", ".join(ranked) if ranked else "none"))
    best = fam["best"]
    if best is None:
        out.append("best: none (no arm passed the loss criterion)")
    else:
        why = ("its time and loss passed" if best["verdict"] == "pass"
               else f"its family verdict is {best['verdict']}")
        tied = best["tied_with"]
        out.append(f"best: {best['arm']} (fastest of the arms below the target; {why})"
                   + (f"; the data cannot tell it apart from {', '.join(tied)} (their {conf} simultaneous "
                      f"interval of the difference to {best['arm']} reaches 0)" if tied else
                      (f"; faster than {', '.join(ranked[1:])} ({conf} simultaneous intervals exclude 0)"
                       if len(ranked) > 1 else "")))
    return out


def _sweep_lines(sw) -> list[str]:
    from harness.analysis import sweep
    return sweep.lines(sw)


def node_lines(a: Analysis) -> list[str]:
    """Per node: runs and mean train time of each arm."""
    arms = [r.name for r in a.summary.rows]
    head = ["node"] + [f"{arm} n" for arm in arms] + [f"{arm} time μ" for arm in arms]
    rows = [[n.host] + [str(n.counts.get(arm, 0)) for arm in arms]
            + [_f4(n.means[arm]) if arm in n.means else "-" for arm in arms] for n in a.nodes]
    return ["runs per node (mean train time in s per arm)"] + _align(head, rows)


def _gate_head(a: Analysis) -> str:
    s = a.summary
    arms = ", ".join(r.name for r in s.treatments) or "(none)"
    return (f"{arms} vs control {s.control} (alpha_time {s.alpha_time:g}, "
            f"alpha_loss {s.alpha_loss:g}, target loss {s.target_loss:g})")


def gate_tail(v: Verdict) -> str:
    if v.passed:
        return "gate: PASS"
    failed, unknown = v.counts
    said = ([f"{failed} criteri{'a' if failed > 1 else 'on'} failed"] if failed else []) + \
        ([f"{unknown} unknown"] if unknown else [])
    return f"gate: FAIL ({', '.join(said)})"


def gate_lines(a: Analysis) -> list[str]:
    """The gate's verdict as ``--gate`` prints it: head, one line per criterion, tail."""
    return _gate_lines(a)


def _gate_lines(a: Analysis) -> list[str]:
    v = a.verdict
    borrowed = [a.summary.variance_line] if a.summary.variance_line else []   # what the p-values used
    return [f"gate: {_gate_head(a)}"] + borrowed + [c.line for c in v.criteria] + v.notes + [gate_tail(v)]


class MarkdownExporter(Exporter):
    """Ready to paste into a pull-request description."""

    name = "markdown"

    def render(self, a: Analysis) -> str:
        s = a.summary
        out = [_md_table([""] + list(COLUMNS), [[r.name] + table_cells(r) for r in s.rows]), ""]
        if s.variance_line:
            out += [_md_escape(s.variance_line), ""]
        out += ["```"] + ["\n\n".join(raw_block(g) for g in a.groups)] + ["```", ""]
        out[1:1] = ["", _md_escape(" ".join(footer_lines(s, _design(a))))]    # right under the table
        if s.treatments:
            head, rows = beside_columns(s, verdicts(a))
            out += [f"Beside the table, against the control {s.control}: Time Δ% = Time +/- in % of "
                    f"the control's mean time, Time +/- 95% CI = its Welch t 95% interval in s, "
                    f"MW p = one-sided Mann-Whitney p"
                    + (", Holm-adjusted Time p" if len(s.treatments) > 1 else "")
                    + (f"; verdicts: {_md_escape(verdict_source(a))}" if verdict_source(a) else "")
                    + "; `~` = no significant difference.", "",
                    _md_table([""] + head, rows), ""]
        if a.sequential is not None:
            out += [f"**Decisions of the {_md_escape(design_label(a.dataset.sequential))} design**", ""]
            out += [f"- {_md_escape(line)}" for line in a.sequential.lines] + [""]
            if getattr(a.sequential, "family", None):
                lines = family_lines(a.sequential.family)
                out += [f"**{_md_escape(lines[0])}**", "", "```"] + lines[1:] + ["```", ""]
        for sw in a.sweeps:
            lines = _sweep_lines(sw)
            out += [f"**{_md_escape(lines[0])}**", "", "```"] + lines[1:] + ["```", ""]
        if a.nodes:
            lines = node_lines(a)
            out += [f"**{lines[0]}**", "", "```"] + lines[1:] + ["```", ""]
        if a.blocked:
            from harness.analysis import blocked
            lines = blocked.lines(a.blocked, _design(a))
            out += [f"**{_md_escape(lines[0])}**", "", "```"] + lines[1:] + ["```", ""]
        if a.cuped:
            from harness.analysis import cuped
            lines = cuped.lines(a.cuped)
            out += [f"**{_md_escape(lines[0])}**", "", "```"] + lines[1:] + ["```", ""]
        if a.warnings:
            out += ["**Warnings**", ""] + [f"- {_md_escape(w.message)}" for w in a.warnings] + [""]
        if a.show_gate:
            v = a.verdict
            out += [f"**{gate_tail(v)}** &mdash; {_md_escape(_gate_head(a))}", ""]
            out += [f"- **{c.label or ('PASS' if c.passed else 'FAIL')}** {c.hypothesis} {c.name}: "
                    f"{_md_escape(c.figure)} (needs {_md_escape(c.threshold)})" for c in v.criteria]
            out += [f"- {_md_escape(n)}" for n in v.notes] + [""]
        return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")   # a bar would split a table cell


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_dict(a: Analysis) -> dict:
    s, v = a.summary, a.verdict
    words = verdicts(a)
    hyps = []
    for r, g in zip(s.rows, a.groups):
        hyps.append({
            "name": r.name, "runs": r.runs, "steps": r.steps,
            "time_mean": r.time_mean, "time_std": r.time_std, "time_delta": r.time_delta,
            "time_p": r.time_p,
            "loss_mean": r.loss_mean, "loss_std": r.loss_std, "loss_delta": r.loss_delta,
            "loss_p": r.loss_p,
            "losses": g.losses, "times": g.times,
            "failed": len(g.failed),
            "sources": [run.source for run in g.runs],     # one per entry of losses/times
            "control": r.is_control,
            "time_p_mann_whitney": r.time_p_mw,
            "time_delta_ci95": list(r.time_delta_ci),
            "time_p_holm": r.time_p_holm,
            "time_verdict": words[r.name][0], "loss_verdict": words[r.name][1],
            "drift": {"spearman_rho": r.drift_rho, "p": r.drift_p, "slope_s_per_run": r.drift_slope},
            "failed_runs": [{"source": run.source, "status": run.record.status,
                             "message": run.record.message} for run in g.failed],
            "cost": _cost_dict([run.record for run in g.runs + g.failed]),
        })
    extra = {"variance": s.variance_line} if s.variance_line else {}   # only when borrowed or known
    if verdict_source(a):     # only when the verdicts are not the table's fixed-sample tests
        extra["verdicts_from"] = verdict_source(a)
    if a.dataset.design is not None:   # a results folder's spec.json design (or the one inferred)
        extra["design"] = a.dataset.design
    if a.sweeps:
        from harness.analysis import sweep
        extra["sweeps"] = [sweep.to_dict(sw) for sw in a.sweeps]
    if a.blocked:    # only when the runs span nodes
        extra["blocked"] = {name: _blocked_dict(bt) for name, bt in a.blocked.items()}
    if a.cuped:      # only when the runs carry speed-probe times
        extra["speed_probe"] = {name: _cuped_dict(r) for name, r in a.cuped.items()}
    return nan_to_none({
        "control": s.control, "target_loss": s.target_loss, **extra,
        "alpha_time": s.alpha_time, "alpha_loss": s.alpha_loss,
        "hypotheses": hyps,
        "loss_control": s.loss_control,
        "units": {"time": "s", "time_delta_ci95": "s", "drift.slope_s_per_run": "s per run"},
        "tests": {"time_p": "Welch t-test, one-sided: mean time below the control's",
                  "loss_p": "one-sample t-test, one-sided: mean loss below target_loss",
                  "time_p_mann_whitney": "Mann-Whitney U, one-sided: times below the control's",
                  "drift.p": "Spearman rank correlation of time with run order, two-sided"},
        "warnings": [w.to_dict() for w in a.warnings],
        "sequential": None if a.sequential is None else {
            "design": design_label(a.dataset.sequential),
            "done": a.sequential.done, "decisions": a.sequential.decisions, "reason": a.sequential.reason},
        **({"family": a.sequential.family} if getattr(a.sequential, "family", None) else {}),
        "nodes": [{"host": n.host, "runs": n.counts, "time_mean": n.means} for n in a.nodes],
        "gate": {"passed": v.passed, "reasons": v.reasons, "notes": v.notes,
                 "criteria": [{"hypothesis": c.hypothesis, "criterion": c.name, "passed": c.passed,
                               **({"label": c.label} if c.label else {}),
                               "figure": c.figure, "threshold": c.threshold} for c in v.criteria]},
    })


def _cost_dict(records) -> dict | None:
    """GPU-seconds of a group's attempts and its finished runs' median phases; None (n/a) when
    no record has a cost (plain logs, records of schema 1): docs/gpu-cost.md."""
    t = gpu_totals(records)
    if not t.attempts:
        return None
    return {**t.to_dict(), "phases_median": median_phases(r for r in records if r.status in ("ok", "diverged"))}


def _blocked_dict(bt) -> dict:
    from harness.analysis import blocked
    return blocked.to_dict(bt)


def _cuped_dict(r) -> dict:
    from harness.analysis import cuped
    return cuped.to_dict(r)


class JsonExporter(Exporter):
    name = "json"

    def render(self, a: Analysis) -> str:
        return json.dumps(to_dict(a), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


CSV_FIELDS = ("group", "control", "run", "status", "final_step", "expected_steps",
              "val_loss", "train_time_s", "order", "gpu_model", "gpu_count", "source",
              "gpu_s", *PHASE_KEYS)
NOT_RECORDED = "n/a"   # the cost columns of a record that has none (a plain log, schema 1)


class CsvExporter(Exporter):
    """One row per run (data first, then failed attempts) with its group."""

    name = "csv"

    def render(self, a: Analysis) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for g in a.groups:
            is_ctrl = g.name == a.summary.control
            for run in g.runs + g.failed:
                rec, hw = run.record, run.hardware
                w.writerow([g.name, int(is_ctrl), rec.run_id, rec.status,
                            _cell(rec.final_step), _cell(rec.expected_steps),
                            _cell(rec.val_loss), _cell(rec.train_time_s), _cell(rec.order),
                            hw[0] if hw else "", hw[1] if hw else "", run.source, *_cost_cells(rec)])
        return buf.getvalue()


def _cost_cells(rec) -> list[str]:
    if rec.gpu_s is None and not rec.phases:
        return [NOT_RECORDED] * (1 + len(PHASE_KEYS))
    phases = rec.phases or {}
    return [_cell(rec.gpu_s)] + [_cell(phases.get(k)) for k in PHASE_KEYS]


def _cell(x) -> str:
    return "" if x is None else repr(x) if isinstance(x, float) else str(x)


EXPORTERS: dict[str, Exporter] = {e.name: e for e in
                                  (TextExporter(), MarkdownExporter(), JsonExporter(), CsvExporter())}


def render(fmt: str, a: Analysis) -> str:
    return EXPORTERS[fmt].render(a)
