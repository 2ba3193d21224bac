"""Tokens/s per batch phase from a results folder's logs (record parity, bench/record_parity.sh).

    python bench/phase_throughput.py RESULTS --scheduled 60 [--tokens 131072,262144,393216]
        [--control record] [--markdown]

Both scripts print `step:n/N train_time:Tms` after each step, timed on the host without a
sync (the GPU may trail by the queued work; over a phase of many steps that evens out).
A step k (0-based, logged as n = k + 1) is in phase int(3k / scheduled) of the batch
schedule, or in the extension once k >= scheduled. Per run and phase: the median of the
per-step differences, leaving out the first two steps of each phase (a new batch size's
first steps carry allocator and queue effects). Tokens per step are the record's:
(8, 16, 24) x 2048 x 8, the extension at 24 x 2048 x 8.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

STEP = re.compile(r"^step:(\d+)/(\d+) train_time:(\d+)ms")
PHASES = ("1st third", "2nd third", "3rd third", "extension")


def step_times(log: Path) -> dict[int, float]:
    """{n: cumulative train_time ms} from one log's step lines (the last of duplicates wins)."""
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        m = STEP.match(line)
        if m:
            out[int(m.group(1))] = float(m.group(3))
    return out


def phase_of(k: int, scheduled: int) -> int:
    return 3 if k >= scheduled else min(3 * k // scheduled, 2)


def phase_ms(times: dict[int, float], scheduled: int, skip: int = 2) -> dict[int, float]:
    per: dict[int, list[float]] = {}
    seen: dict[int, int] = {}
    for n in sorted(times):
        if n - 1 not in times and n != 1:
            continue
        k = n - 1
        p = phase_of(k, scheduled)
        seen[p] = seen.get(p, 0) + 1
        if seen[p] <= skip:
            continue
        per.setdefault(p, []).append(times[n] - times.get(n - 1, 0.0))
    return {p: statistics.median(v) for p, v in per.items() if v}


def collect(results: Path, scheduled: int) -> dict[str, list[dict[int, float]]]:
    arms: dict[str, list[dict[int, float]]] = {}
    for result in sorted(results.glob("*/*/result.json")):
        run = result.parent
        if json.loads(result.read_text()).get("status") not in ("ok", "finished"):
            continue
        arms.setdefault(run.parent.name, []).append(phase_ms(step_times(run / "log.txt"), scheduled))
    return arms


def table(arms, tokens, control, markdown=False) -> list[str]:
    rows = [("arm", "phase", "tokens/step", "runs", "ms/step (median of run medians)", "tokens/s", f"x {control}")]
    ctrl = {}
    for arm in [control] + [a for a in sorted(arms) if a != control]:
        for p in range(4):
            vals = [r[p] for r in arms.get(arm, []) if p in r]
            if not vals:
                continue
            ms = statistics.median(vals)
            tps = tokens[p] / (ms / 1000)
            if arm == control:
                ctrl[p] = tps
            ratio = f"{tps / ctrl[p]:.3f}" if p in ctrl else "-"
            rows.append((arm, PHASES[p], str(tokens[p]), str(len(vals)), f"{ms:.1f}", f"{tps / 1000:.1f}k", ratio))
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
        return lines + ["| " + " | ".join(r) + " |" for r in rows[1:]]
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--scheduled", type=int, required=True, help="scheduled steps (total - extension)")
    ap.add_argument("--tokens", default="131072,262144,393216", help="tokens per step of the three thirds")
    ap.add_argument("--control", default="record")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args(argv)
    try:
        t = [int(x) for x in a.tokens.split(",")]
        assert len(t) == 3
    except (ValueError, AssertionError):
        sys.stderr.write("error: --tokens takes three integers, e.g. 131072,262144,393216\n")
        return 2
    if not a.results.is_dir():
        sys.stderr.write(f"error: {a.results} is not a results folder\n")
        return 2
    arms = collect(a.results, a.scheduled)
    if not arms:
        sys.stderr.write(f"error: {a.results} has no finished runs yet\n")
        return 2
    print("\n".join(table(arms, t + [t[2]], a.control, a.markdown)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
