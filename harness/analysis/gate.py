"""The record gate: the summary and the runs' hygiene in, a verdict out.

Each treatment is judged against the control on six criteria, each one verdict line
(PASS/FAIL, the figure, the threshold): time and loss (``statistics.md``), then the
hygiene that keeps those numbers honest: enough runs, no diverged run, the same GPU
model and count in both arms (where logs or records tell), every run at its expected
final step. Failed attempts are listed as notes. The gate passes when every criterion
of every treatment passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.formats import fmt_p
from harness.data.sources import Group, as_float, hardware_text
from harness.analysis.stats import Row, Summary

MIN_RUNS = 2


@dataclass
class Criterion:
    hypothesis: str
    name: str          # time | loss | runs | diverged | hardware | steps
    passed: bool
    figure: str
    threshold: str

    @property
    def line(self) -> str:
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.hypothesis}  {self.name:<8}  "
                f"{self.figure}  (needs {self.threshold})")


@dataclass
class Verdict:
    passed: bool
    criteria: list[Criterion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """One line per failed criterion."""
        return [c.line for c in self.criteria if not c.passed]


def evaluate(summary: Summary, groups: list[Group], blocked: dict | None = None) -> Verdict:
    """``blocked``: treatment -> ``blocked.BlockedTest`` when the runs span nodes; the time
    criterion then uses it instead of the pooled Welch test, and says so."""
    blocked = blocked or {}
    by_name = {g.name: g for g in groups}
    control = by_name[summary.control]
    v = Verdict(passed=False)
    if not summary.treatments:
        v.criteria.append(Criterion(summary.control, "runs", False, "only the control was given",
                                    "a treatment to compare with the control"))
    for row in summary.treatments:
        v.criteria += _judge(row, summary, by_name[row.name], control, blocked.get(row.name))
        if not math.isnan(row.time_p_holm) and row.time_p < summary.alpha_time <= row.time_p_holm:
            v.notes.append(f"note: {row.name} time p after Holm adjustment for "
                           f"{len(summary.treatments)} treatments is {fmt_p(row.time_p_holm)} "
                           f"(not < {summary.alpha_time:g})")
    for g in (by_name[r.name] for r in summary.rows):
        for run in g.failed:
            rec = run.record
            why = rec.message or f"exit code {rec.exit_code}"
            where = why if run.source in why else f"{run.source}: {why}"
            v.notes.append(f"failed run: {g.name} ({rec.status}): {where}")
    v.passed = all(c.passed for c in v.criteria)
    return v


def _judge(row: Row, s: Summary, g: Group, control: Group, bt=None) -> list[Criterion]:
    name, ctrl = row.name, s.row(s.control)
    out = []
    if bt is None:
        ok = row.time_p < s.alpha_time and row.time_delta < 0   # nan compares False: fails
        fig = f"Time p = {fmt_p(row.time_p)}, Time +/- = {row.time_delta:+.4f} s"
    else:   # runs span nodes: node speed must not pass for a speedup
        ok = bt.p < s.alpha_time and bt.delta < 0
        fig = (f"blocked by node, {bt.label}: p = {fmt_p(bt.p)}, +/- = {bt.delta:+.4f} s"
               + (f" ({bt.problem})" if bt.problem else ""))
    out.append(Criterion(name, "time", ok, fig, f"p < {s.alpha_time:g} and +/- < 0"))
    ok = row.loss_p < s.alpha_loss
    out.append(Criterion(name, "loss", ok,
                         f"Loss p = {fmt_p(row.loss_p)}, Loss μ = {row.loss_mean:.4f}",
                         f"p < {s.alpha_loss:g}: mean below {s.target_loss:g}"))
    ok = row.runs >= MIN_RUNS and ctrl.runs >= MIN_RUNS
    out.append(Criterion(name, "runs", ok,
                         f"{_runs(row.runs)}, control {ctrl.runs}" + ("" if ok else ": insufficient data"),
                         f">= {MIN_RUNS} in each arm"))
    div = [r for gr in (g, control) for r in gr.runs
           if r.record.status == "diverged" or not math.isfinite(as_float(r.record.val_loss))]
    out.append(Criterion(name, "diverged", not div,
                         f"{len(div)} diverged" + "".join(f"; {r.source}" for r in div[:3])
                         + ("; ..." if len(div) > 3 else ""),
                         "0 in either arm"))
    out.append(_hardware(name, g, control))
    out.append(_steps(name, g, control))
    return out


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def _hardware(name: str, g: Group, control: Group) -> Criterion:
    seen = {gr.name: sorted({r.hardware for r in gr.runs if r.hardware is not None})
            for gr in (g, control)}
    unknown = sum(1 for gr in (g, control) for r in gr.runs if r.hardware is None)
    every = sorted(set(seen[g.name]) | set(seen[control.name]))
    threshold = "one GPU model and count in both arms"
    if not every:
        return Criterion(name, "hardware", True, "not recorded in the logs", threshold)
    if len(every) == 1:
        fig = f"{hardware_text(every[0])} in both arms"
        if unknown:
            fig += f" ({unknown} runs without hardware info)"
        return Criterion(name, "hardware", True, fig, threshold)
    fig = "; ".join(f"{gn}: " + " / ".join(hardware_text(h) for h in hws) for gn, hws in seen.items())
    return Criterion(name, "hardware", False, fig, threshold)


def _steps(name: str, g: Group, control: Group) -> Criterion:
    short = []
    total = 0
    for gr in (g, control):
        for r in gr.runs:
            total += 1
            rec = r.record
            if rec.expected_steps is not None and rec.final_step != rec.expected_steps:
                short.append(f"{r.source} ended at {rec.final_step}/{rec.expected_steps}")
        for r in gr.unfinished:
            total += 1
            rec = r.record
            short.append(f"{r.source} stopped at {rec.final_step}/{rec.expected_steps}"
                         if rec.final_step is not None else f"{r.source} has no result")
    fig = f"{total - len(short)} of {total} runs at their expected final step"
    if short:
        fig += ": " + "; ".join(short[:3]) + ("; ..." if len(short) > 3 else "")
    return Criterion(name, "steps", not short, fig, "every run")
