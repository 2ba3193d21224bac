"""``harness status RESULTS``: done / failed / diverged / pending per hypothesis.

On a SLURM experiment it also lists every attempt with its node and job id, SLURM's state
and pending reason for the jobs without a result (``squeue``, asked once), and, on a paired
design, the pairs whose partner is still waiting.
"""
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
    attempts = cluster_attempts(store, slots, active=store.in_use())
    if attempts:
        from harness.run.backends.slurm import ask_states
        waiting = [a["job_id"] for a in attempts if a["status"] in ("running", "unfinished") and a["job_id"]]
        states, why = ask_states(waiting) if waiting else ({}, "")
        for line in cluster_lines(spec, slots, attempts, states, why):
            print(line)
    return 0


def cluster_attempts(store, slots: dict, active: bool) -> list[dict]:
    """Every attempt of a SLURM experiment: hypothesis, index, run id, status, node, job id,
    pinned node and pairing (from result.json, else launch.json); [] for other backends."""
    from harness.data.store import read_launch

    out = []
    for (hyp, index), slot in sorted(slots.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for rec in slot.records:
            # the pinned node and pairing are in launch.json; only cluster attempts need them
            launch = (read_launch(store.attempt_dir(hyp, index, rec.attempt)) or {}) if rec.backend == "slurm" else {}
            out.append({"hypothesis": hyp, "index": index, "run_id": rec.run_id, "attempt": rec.attempt,
                        "status": rec.status, "node": rec.host or "", "job_id": rec.job_id or "",
                        "pinned": launch.get("node") or "", "pairing": launch.get("pairing"),
                        "backend": rec.backend})
        for run_dir in slot.orphans:
            launch = read_launch(run_dir) or {}
            out.append({"hypothesis": hyp, "index": index, "run_id": run_dir.name,
                        "attempt": launch.get("attempt"), "status": "running" if active else "unfinished",
                        "node": "", "job_id": str(launch.get("job_id") or ""), "pinned": launch.get("node") or "",
                        "pairing": launch.get("pairing"), "backend": launch.get("backend")})
    return out if any(a["backend"] == "slurm" for a in out) else []


def _slurm_state(a: dict, states: dict) -> str:
    info = states.get(a["job_id"]) if a["job_id"] else None
    if info is None:
        return ""
    text = info["state"]
    reason = info.get("reason") or ""
    if text == "PENDING" and reason and reason not in ("None", "(null)"):
        text += f" ({reason})"
    return text


def cluster_lines(spec: dict, slots: dict, attempts: list[dict], states: dict, why: str) -> list[str]:
    """The per-attempt node / job table and the pairs still waiting for a partner (text lines)."""
    out = ["attempts (node, SLURM job; SLURM's state for jobs without a result):"]
    if why:
        out.append(f"  (SLURM could not be asked: {why})")
    for a in attempts:
        info = states.get(a["job_id"], {}) if a["job_id"] else {}
        node = a["node"] or (info.get("node") or "") or "-"
        pinned = f", pinned to {a['pinned']}" if a["pinned"] and not a["node"] else ""
        state = _slurm_state(a, states) if a["status"] in ("running", "unfinished") else ""
        job = f"job {a['job_id']}" if a["job_id"] else "no job id saved"
        out.append(f"  {a['hypothesis']:<8} #{a['index']:<3} {a['run_id']:<7} {a['status']:<11} {node:<12} "
                   f"{job}{'  ' + state if state else ''}{pinned}")
    if not any(a["pairing"] == "node" for a in attempts):
        return out
    arms = [h["name"] for h in spec["hypotheses"]]
    latest = {}
    for a in attempts:    # the last attempt of each run
        latest[(a["hypothesis"], a["index"])] = a
    pairs = []
    for i in range(spec["runs"]):
        done = [arm for arm in arms if slots.get((arm, i)) is not None and slots[(arm, i)].done is not None]
        if not done or len(done) == len(arms):
            continue
        parts = []
        for arm in arms:
            if arm in done:
                continue
            a = latest.get((arm, i))
            if a is None or a["status"] not in ("running", "unfinished"):
                parts.append(f"{arm} not submitted yet")
            else:
                state = _slurm_state(a, states) or a["status"]
                pin = f", pinned to {a['pinned']}" if a["pinned"] else ""
                parts.append(f"{arm} job {a['job_id'] or '?'} {state}{pin}")
        done_text = ", ".join(f"{arm} done on {slots[(arm, i)].done.host or '?'}" for arm in done)
        pairs.append(f"  #{i}: {done_text}; waiting: {'; '.join(parts)}")
    if pairs:
        out.append("pairs whose partner is still waiting:")
        out += pairs
    return out
