"""``--plot FILE.png``: which arm is faster, and do the losses clear the target?

Three panels: final train time per run, final validation loss per run (both with the
mean and its 95% t interval), and the validation-loss curves over steps; the target
loss is a dashed line on the loss panels. Drawn with matplotlib's Agg backend (no
display); matplotlib is imported only here, so the table alone never pays for it.
"""
from __future__ import annotations

import math

from harness.errors import UserError
from harness.analysis.gate import fmt_p
from harness.analysis.report import Analysis, gate_tail, verdicts
from harness.analysis.stats import mean, mean_ci

COLORS = ["#4d4d4d", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def _jitter(i: int, n: int) -> float:
    """Deterministic spread of n points around 0 (no random: the same data, the same PNG)."""
    return 0.0 if n < 2 else -0.18 + 0.36 * i / (n - 1)


def plot(a: Analysis, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = a.summary
    groups = a.groups
    fig, (ax_t, ax_l, ax_c) = plt.subplots(1, 3, figsize=(16, 5.2),
                                           gridspec_kw={"width_ratios": [1, 1, 1.5]})
    names = [g.name for g in groups]
    inset = ax_c.inset_axes([0.5, 0.42, 0.47, 0.53])   # the last steps, where the target is met
    for k, g in enumerate(groups):
        color = COLORS[k % len(COLORS)]
        for ax, values in ((ax_t, g.times), (ax_l, g.losses)):
            finite = [v for v in values if math.isfinite(v)]
            xs = [k + _jitter(i, len(finite)) for i in range(len(finite))]
            ax.scatter(xs, finite, s=22, color=color, alpha=0.75, zorder=3)
            lo, hi = mean_ci(finite)
            m = mean(finite)
            if not math.isnan(m):
                ax.hlines(m, k - 0.3, k + 0.3, color=color, lw=2.2, zorder=4)
            if not math.isnan(lo):
                ax.errorbar([k + 0.34], [m], yerr=[[m - lo], [hi - m]], fmt="none",
                            ecolor=color, elinewidth=2, capsize=5, zorder=4)
            bad = len(values) - len(finite)
            if bad:   # diverged runs have no point to draw: say so where it shows
                ax.annotate(f"{bad} diverged", (k, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(0, -14), textcoords="offset points", ha="center",
                            color="#d62728", fontsize=9, fontweight="bold")
        for run in g.runs + g.failed:
            curve = run.record.val_curve or []
            if curve:
                style = dict(color=color, lw=0.9, alpha=0.55 if run in g.runs else 0.9,
                             ls="-" if run in g.runs else ":")
                steps, losses = [p[0] for p in curve], [p[1] for p in curve]
                ax_c.plot(steps, losses, **style)
                inset.plot(steps, losses, **style)
        ax_c.plot([], [], color=color, lw=2, label=f"{g.name} ({len(g.runs)} run{'' if len(g.runs) == 1 else 's'}"
                  + (f", {len(g.failed)} failed" if g.failed else "") + ")")

    for ax, title, unit in ((ax_t, "final train time", "train time (s)"),
                            (ax_l, "final validation loss", "validation loss")):
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{n}\n(control)" if n == s.control else n for n in names])
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(title + " per run: mean and 95% interval")
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
    for ax in (ax_l, ax_c, inset):
        ax.axhline(s.target_loss, color="#d62728", ls="--", lw=1.2,
                   label=f"target {s.target_loss:g}")
    ax_l.legend(loc="upper right", fontsize=9)
    finals = [x for g in groups for x in g.losses if math.isfinite(x)] + [s.target_loss]
    lo, hi = min(finals), max(finals)
    pad = max(hi - lo, 1e-3) * 0.25
    ax_l.set_ylim(lo - pad, hi + pad)          # the target line always in view

    # The curves fall from ~11: show their end, and the last 15% of steps enlarged.
    ax_c.set_ylim(lo - 0.03, s.target_loss + 0.6)
    ax_c.set_xlabel("step")
    ax_c.set_ylabel("validation loss")
    ax_c.set_title("validation loss over steps")
    ax_c.grid(alpha=0.3)
    ax_c.legend(loc="lower left", fontsize=9)
    last = max((p[0] for g in groups for r in g.runs + g.failed for p in (r.record.val_curve or [])),
               default=0)
    if last:
        inset.set_xlim(0.85 * last, last * 1.01)
        inset.set_ylim(lo - pad, max(hi, s.target_loss) + 4 * pad + 0.01)
        inset.grid(alpha=0.3)
        inset.tick_params(labelsize=8)
        inset.text(0.03, 0.04, "last 15% of steps", transform=inset.transAxes, fontsize=8)
    else:
        inset.set_visible(False)

    lines = []
    words = verdicts(a)      # the verdicts every table of the output shows
    for r in s.treatments:
        way = "faster" if r.time_delta < 0 else "slower"
        lines.append(f"{r.name} vs {s.control}: {abs(r.time_delta):.4f} s {way} "
                     f"(Time p {fmt_p(r.time_p)}, verdict {words[r.name][0]}); "
                     f"loss {r.loss_mean:.4f}, Loss p {fmt_p(r.loss_p)} against {s.target_loss:g}")
    lines.append(gate_tail(a.verdict))
    fig.suptitle("\n".join(lines), fontsize=11)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as e:   # unwritable, or an extension matplotlib cannot write
        raise UserError(f"--plot {path}: {e}") from None
    finally:
        plt.close(fig)
