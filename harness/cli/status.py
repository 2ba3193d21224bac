"""``harness status RESULTS``: done / failed / diverged / pending per hypothesis."""
from __future__ import annotations

from pathlib import Path

from harness.errors import UserError


def configure(p) -> None:
    p.add_argument("results", help="results folder of an experiment (holds spec.json)")


COLUMNS = ["ok", "diverged", "failed", "timeout", "interrupted", "running", "unfinished", "pending",
           "attempts"]


def count(spec: dict, slots: dict, active: bool = False) -> list[dict]:
    """One row per hypothesis. A slot counts once: by its completed attempt, else its last.

    ``active``: a runner holds the folder, so attempts without a result are running, not
    left behind by a runner that died (those are 'unfinished' until the next run).
    """
    rows = []
    for h in spec["hypotheses"]:
        row = {"hypothesis": h["name"], **{c: 0 for c in COLUMNS}}
        for i in range(spec["runs"]):
            slot = slots.get((h["name"], i))
            if slot is None or (not slot.records and not slot.orphans):
                row["pending"] += 1
                continue
            row["attempts"] += len(slot.records) + len(slot.orphans)
            done = slot.done
            if done is not None:
                row[done.status] += 1
            elif slot.orphans:
                row["running" if active else "unfinished"] += 1
            else:
                row[slot.records[-1].status] += 1
        rows.append(row)
    return rows


def cost_lines(rows: list[dict], slots: dict) -> list[str]:
    """Per hypothesis: GPU-seconds of every attempt, of which timed training, the overhead share."""
    from harness.records import gpu_totals
    head = ("GPU-seconds", "training", "overhead", "attempts")
    out = ["cost (every attempt, failed and interrupted included; docs/gpu-cost.md):",
           f"{'hypothesis':<12}" + "".join(f"{c:>12}" for c in head)]
    for row in rows:
        t = gpu_totals(r for (h, _), s in slots.items() if h == row["hypothesis"] for r in s.records)
        if not t.attempts:
            cells = ["n/a", "n/a", "n/a", str(t.unknown)]
        else:
            share = t.overhead_share
            cells = [f"{t.gpu_s:.1f}", f"{t.train_gpu_s:.1f}", "n/a" if share is None else f"{100 * share:.0f}%",
                     str(t.attempts) + (f" (+{t.unknown} n/a)" if t.unknown else "")]
        out.append(f"{row['hypothesis']:<12}" + "".join(f"{c:>12}" for c in cells))
    return out


def main(args) -> int:
    from harness.data.store import Store, read_design

    store = Store(args.results)
    spec = store.read_spec()    # checked there: the one reader of spec.json
    if spec is None:
        raise UserError(f"{args.results}: no spec.json, so not a results folder; "
                        "give the folder that 'harness run' printed")
    slots = store.slots([h["name"] for h in spec["hypotheses"]])
    if spec.get("runs") is None:    # no planned number (a folder put together by hand): the runs found
        spec = dict(spec, runs=1 + max((i for _, i in slots), default=-1))
    rows = count(spec, slots, active=store.in_use())
    cols = COLUMNS
    kind = (read_design(store.root) or {}).get("kind")
    if kind in (None, "fixed"):
        print(f"{spec['name']}: {spec['runs']} runs per hypothesis in {Path(args.results)}")
    else:   # a design that stops early: its pending runs may never be needed
        print(f"{spec['name']}: at most {spec['runs']} runs per hypothesis ({kind} design) in "
              f"{Path(args.results)}")
    print(f"{'hypothesis':<12}" + "".join(f"{c:>12}" for c in cols))
    for row in rows:
        print(f"{row['hypothesis']:<12}" + "".join(f"{row[c]:>12}" for c in cols))
    for line in cost_lines(rows, slots):
        print(line)
    problems = [r for s in slots.values() for r in s.records if r.status in ("failed", "timeout")]
    for r in problems:
        print(f"  {r.hypothesis} {r.run_id}: {r.status}: {r.message}")
    return 0
