"""The record gate: the summary and the runs' hygiene in, a verdict out.

Each treatment is judged against the control on six criteria, each one verdict line
(PASS/FAIL, the figure, the threshold): time and loss (``statistics.md``), then the
hygiene that keeps those numbers honest: enough runs, no diverged run, the same GPU
model and count in both arms (where logs or records tell), every run at its expected
final step. Failed attempts are listed as notes. The gate passes when every criterion
of every treatment passes.

For a results folder collected with ``--until-decisive`` (it holds sequential.json)
time and loss come from the sequential decisions, whose error rates are the ones
calibrated for looking after every run; the table's fixed-sample p-values are then
descriptive (a fixed-sample test applied after sequential stopping exceeds its alpha).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.formats import fmt_p
from harness.groups import Group, as_float, hardware_text
from harness.analysis.stats import Row, Summary

MIN_RUNS = 3              # a fixed-sample t-test on 2 runs rests on one df: too fragile to gate


@dataclass
class Criterion:
    hypothesis: str
    name: str          # time | loss | runs | diverged | hardware | steps
    passed: bool
    figure: str
    threshold: str
    label: str = ""    # shown instead of PASS/FAIL when the answer is neither (UNKNOWN)

    @property
    def line(self) -> str:
        word = self.label or ("PASS" if self.passed else "FAIL")
        return f"{word}  {self.hypothesis}  {self.name:<8}  {self.figure}  (needs {self.threshold})"


@dataclass
class Verdict:
    passed: bool
    criteria: list[Criterion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """One line per criterion that did not pass (failed or unknown)."""
        return [c.line for c in self.criteria if not c.passed]

    @property
    def counts(self) -> tuple[int, int]:
        """(failed, unknown): criteria that did not pass, an UNKNOWN counted apart."""
        unknown = sum(1 for c in self.criteria if not c.passed and c.label == "UNKNOWN")
        return len(self.reasons) - unknown, unknown


def evaluate(summary: Summary, groups: list[Group], blocked: dict | None = None, sequential=None,
             allow_unknown_hardware: bool = False, sequential_notes: list[str] | None = None,
             decisions_missing: str = "", sweeps: list | None = None, design: str = "") -> Verdict:
    """The verdict. ``blocked``: treatment -> ``blocked.BlockedTest`` when the runs span nodes
    (the time criterion then uses it instead of the pooled Welch test, and says so).
    ``sequential``: the ``sequential.Look`` of a --until-decisive folder (its decisions
    replace the fixed-sample time and loss tests). ``decisions_missing``: the kind of a
    sequential design whose stored decisions are gone (no verdict can pass then).
    ``sweeps``: the ``sweep.Sweep`` of each step sweep: a swept arm's loss criterion is the
    sweep's step-down verdict (the one its table shows), not the arm's own test.
    ``design``: the name of the sequential design, as the notes give it."""
    blocked = blocked or {}
    points = sweep_points(sweeps)
    by_name = {g.name: g for g in groups}
    control = by_name[summary.control]
    v = Verdict(passed=False)
    if not summary.treatments:
        v.criteria.append(Criterion(summary.control, "runs", False, "only the control was given",
                                    "a treatment to compare with the control"))
    for row in summary.treatments:
        if decisions_missing:
            v.criteria.append(Criterion(row.name, "design", False,
                                        f"collected under a {decisions_missing} design whose decisions "
                                        f"(sequential.json) are missing",
                                        "the design's stored decisions"))
        v.criteria += _judge(row, summary, by_name[row.name], control, blocked.get(row.name), sequential,
                             allow_unknown_hardware, points.get(row.name))
        if sequential is None and not math.isnan(row.time_p_holm) and row.time_p < summary.alpha_time <= row.time_p_holm:
            v.notes.append(f"note: {row.name} time p after Holm adjustment for "
                           f"{len(summary.treatments)} treatments is {fmt_p(row.time_p_holm)} "
                           f"(not < {summary.alpha_time:g})")
    for g in (by_name[r.name] for r in summary.rows):
        for run in g.failed:
            rec = run.record
            why = rec.message or f"exit code {rec.exit_code}"
            where = why if run.source in why else f"{run.source}: {why}"
            v.notes.append(f"failed run: {g.name} ({rec.status}): {where}")
    if sequential is not None:
        v.notes.append(f"note: time and loss follow the decisions of the {design or 'sequential'} design "
                       f"(sequential.json); the table's fixed-sample p-values are descriptive")
        v.notes += list(sequential_notes or [])
    v.passed = all(c.passed for c in v.criteria)
    return v


def sweep_points(sweeps) -> dict:
    """arm name -> its ``sweep.Point``, for the arms of sweeps that have a loss model."""
    return {p.name: p for sw in sweeps or [] if sw.fit is not None for p in sw.points}


def arm_verdicts(s: Summary, look=None, sweeps=None, blocked=None) -> dict[str, tuple[str, str]]:
    """Each arm's (time, loss) verdict from what decides it, so that every table says the
    same as the gate: the sequential decisions when the folder has them (faster / not
    faster / open; below / not below / open), the blocked time test when runs span
    nodes, a swept arm's loss from its sweep's step-down, else the table's fixed-sample tests."""
    points = sweep_points(sweeps)
    out = {}
    for r in s.rows:
        t, l = r.time_verdict, r.loss_verdict
        bt = (blocked or {}).get(r.name)
        if bt is not None and not r.is_control:
            t = "faster" if bt.p < s.alpha_time and bt.delta < 0 else "~"
        if look is not None and not r.is_control:
            dec = (look.decisions or {}).get(r.name) or {}
            word = {c: (dec.get(c) or {}).get("decision", "open") for c in ("time", "loss")}
            t = {"pass": "faster", "fail": "not faster"}.get(word["time"], "open")
            l = {"pass": "below", "fail": "not below"}.get(word["loss"], "open")
        elif r.name in points and l != "diverged":
            l = points[r.name].verdict
        out[r.name] = (t, l)
    return out


def _judge(row: Row, s: Summary, g: Group, control: Group, bt=None, seq=None,
           allow_unknown_hardware: bool = False, point=None) -> list[Criterion]:
    name, ctrl = row.name, s.row(s.control)
    out = []
    if seq is not None:
        out += _sequential(name, seq, s)
    else:
        if bt is None:
            ok = row.time_p < s.alpha_time and row.time_delta < 0   # nan compares False: fails
            fig = f"Time p = {fmt_p(row.time_p)}, Time +/- = {row.time_delta:+.4f} s"
            tied = [r.name for r in (row, ctrl) if r.time_std == 0]   # std is exactly 0 for tied times
            if tied:
                fig += f": no spread in {' and '.join(tied)}'s times, no test"
        else:   # runs span nodes: node speed must not pass for a speedup
            ok = bt.p < s.alpha_time and bt.delta < 0
            fig = (f"blocked by node, {bt.label}: p = {fmt_p(bt.p)}, +/- = {bt.delta:+.4f} s"
                   + (f" ({bt.problem})" if bt.problem else ""))
        out.append(Criterion(name, "time", ok, fig, f"p < {s.alpha_time:g} and +/- < 0"))
        if point is not None:    # a swept arm: the sweep's loss model, counted down from the most steps
            ok = point.verdict == "below"
            fig = (f"sweep fit: Loss p = {fmt_p(point.p)}, predicted {point.predicted:.5f}"
                   + ("" if ok or point.verdict != "not-reached" else
                      ": not reached by the step-down from the most steps"))
        else:
            ok = row.loss_p < s.alpha_loss
            fig = f"Loss p = {fmt_p(row.loss_p)}, Loss μ = {row.loss_mean:.4f}"
            if row.loss_std == 0:
                fig += f": no spread (all {row.runs} losses equal), no test"
        out.append(Criterion(name, "loss", ok, fig, f"p < {s.alpha_loss:g}: mean below {s.target_loss:g}"))
    need = 2 if seq is not None else MIN_RUNS   # the sequential test sets its own minimum
    ok = row.runs >= need and ctrl.runs >= need
    out.append(Criterion(name, "runs", ok,
                         f"{_runs(row.runs)}, control {ctrl.runs}" + ("" if ok else ": insufficient data"),
                         f">= {need} in each arm"))
    div = [r for gr in (g, control) for r in gr.runs
           if r.record.status == "diverged" or not math.isfinite(as_float(r.record.val_loss))]
    out.append(Criterion(name, "diverged", not div,
                         f"{len(div)} diverged" + "".join(f"; {r.source}" for r in div[:3])
                         + ("; ..." if len(div) > 3 else ""),
                         "0 in either arm"))
    out.append(_hardware(name, g, control, allow_unknown_hardware))
    out.append(_steps(name, g, control))
    return out


def _sequential(name: str, look, s: Summary) -> list[Criterion]:
    out = []
    dec = (look.decisions or {}).get(name)
    for crit, alpha in (("time", s.alpha_time), ("loss", s.alpha_loss)):
        d = (dec or {}).get(crit) or {"decision": "open", "why": "no sequential decision for this arm"}
        word = d["decision"]
        fig = f"sequential {word.upper()}: {d.get('why', '')}"
        if word == "open":
            fig = f"sequential test undecided: {d.get('why', '')}"
        out.append(Criterion(name, crit, word == "pass", fig, f"a sequential PASS at alpha {alpha:g}"))
    return out


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def _hardware(name: str, g: Group, control: Group, allow_unknown: bool = False) -> Criterion:
    seen = {gr.name: sorted({r.hardware for r in gr.runs if r.hardware is not None})
            for gr in (g, control)}
    unknown = {gr.name: sum(1 for r in gr.runs if r.hardware is None) for gr in (g, control)}
    every = sorted(set(seen[g.name]) | set(seen[control.name]))
    threshold = "one GPU model and count in both arms"
    if len(every) > 1:
        fig = "; ".join(f"{gn}: " + " / ".join(hardware_text(h) for h in hws) for gn, hws in seen.items())
        return Criterion(name, "hardware", False, fig, threshold)
    missing = {gn: n for gn, n in unknown.items() if n}
    if missing:
        # runs without GPU information could have run on anything: not a PASS
        fig = ("not recorded in the logs" if not every else
               f"{hardware_text(every[0])} where recorded, unknown for "
               + ", ".join(f"{n} {gn} run{'' if n == 1 else 's'}" for gn, n in missing.items()))
        fig += ("; allowed by --allow-unknown-hardware" if allow_unknown else
                "; pass --allow-unknown-hardware to accept")
        return Criterion(name, "hardware", allow_unknown, fig, threshold, label="UNKNOWN")
    return Criterion(name, "hardware", True, f"{hardware_text(every[0])} in both arms", threshold)


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
