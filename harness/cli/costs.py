"""The cost flags of ``harness plan`` and ``harness simulate`` (one place): per-run costs
from a results folder's phases or the command line, and the designs' GPU-hours
(harness/design/cost.py; docs/gpu-cost.md)."""
from __future__ import annotations

import math
from pathlib import Path

from harness.design import cost
from harness.errors import UserError
from harness.records import COMPLETED, median_phases

EXAMPLE = "--run-cost startup=60,train=98,after=5,teardown=2 --gpus 8"
NONE_GIVEN = f"give --costs-from RESULTS (a folder whose runs recorded their phases) or {EXAMPLE}"


def configure(p) -> None:
    g = p.add_argument_group("GPU-hours (docs/gpu-cost.md)")
    g.add_argument("--costs-from", metavar="RESULTS",
                   help="a results folder: each arm's run cost is the median phases of its finished runs")
    g.add_argument("--run-cost", metavar="PHASE=S,...",
                   help="seconds of each phase of one run: " + ", ".join(cost.FLAG_PHASES)
                        + f" (e.g. {EXAMPLE}); over the medians of --costs-from")
    g.add_argument("--gpus", type=int, help="GPUs per run (default: the folder's runs, else 1)")
    g.add_argument("--gpu-hour-price", type=float, metavar="PRICE", help="price of a GPU-hour: adds the cost")
    g.add_argument("--warm-workers", action="store_true",
                   help="start-up paid once per arm, not per run (warm workers)")


def parse_run_cost(text: str) -> dict:
    """'startup=60,train=98' -> {'to_first_step_s': 60.0, 'train_s': 98.0}; UserError if malformed."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, eq, value = part.partition("=")
        if not eq or name.strip() not in cost.FLAG_PHASES:
            raise UserError(f"--run-cost {text!r}: {part!r} is not PHASE=SECONDS with PHASE one of "
                            f"{', '.join(cost.FLAG_PHASES)} (e.g. {EXAMPLE})")
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds >= 0):
            raise UserError(f"--run-cost {text!r}: {name}={value} is not a number of seconds >= 0")
        out[cost.FLAG_PHASES[name.strip()]] = seconds
    return out


def _folder_records(results: str) -> tuple[dict, str | None, dict]:
    """Finished records per hypothesis, the control, and nproc_per_node per hypothesis."""
    from harness.data.store import Store
    store = Store(results)
    spec = store.read_spec() if Path(results).is_dir() else None
    if spec is None:
        raise UserError(f"--costs-from {results}: not a results folder (no spec.json); phases are "
                        f"recorded by harness run: give its results folder, or {EXAMPLE}")
    names = [h["name"] for h in spec["hypotheses"]]
    slots = store.slots(names)
    recs = {n: [s.done for (h, _), s in slots.items() if h == n and s.done is not None
                and s.done.status in COMPLETED] for n in names}
    nproc = {h["name"]: h.get("nproc_per_node") or 1 for h in spec["hypotheses"]}
    return recs, spec.get("control"), nproc


def _cost_of(records: list, gpus: int | None, nproc: int, where: str, given: dict) -> cost.RunCost:
    used = sorted(r.gpus_used for r in records if r.gpus_used)
    n = gpus or (used[len(used) // 2] if used else nproc)
    medians = median_phases(records) or {}
    runs = sum(1 for r in records if r.phases)
    try:
        return cost.from_phases(medians, n, f"medians of {runs} finished runs of {where}", given)
    except ValueError as e:
        raise UserError(f"--costs-from {where}: {e} (records of schema 1 or runs found after their "
                        f"runner died have no phases); give them: {EXAMPLE}") from None


def run_costs(args, roles: dict, default_results: str | None = None) -> dict | None:
    """arm -> RunCost for the design's arms (``roles``: arm -> 'control' or 'treatment'),
    from ``--costs-from`` (else ``default_results`` when its runs have phases) and
    ``--run-cost``; None when neither tells a cost."""
    given = parse_run_cost(args.run_cost) if args.run_cost else {}
    if args.gpus is not None and args.gpus < 1:
        raise UserError(f"--gpus {args.gpus}: expected the GPUs of one run, a whole number >= 1")
    price = args.gpu_hour_price
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise UserError(f"--gpu-hour-price {price}: expected a price >= 0")
    results = args.costs_from
    if results is None and not given and default_results is not None and Path(default_results).is_dir():
        from harness.data.store import is_results_folder
        if is_results_folder(default_results):
            recs, _, _ = _folder_records(default_results)
            if any(r.phases for rs in recs.values() for r in rs):
                results = default_results          # a pilot that recorded its phases prices itself
    if results is None:
        if not given:
            if args.gpus is not None or price is not None or args.warm_workers:
                raise UserError(f"--gpus, --gpu-hour-price and --warm-workers need a run cost: "
                                f"--costs-from RESULTS or {EXAMPLE}")
            return None
        missing = [f for f, k in cost.FLAG_PHASES.items() if k in ("to_first_step_s", "train_s") and k not in given]
        if missing:
            raise UserError(f"--run-cost {args.run_cost!r}: needs {' and '.join(m + '=' for m in missing)} "
                            f"(e.g. {EXAMPLE}), or --costs-from RESULTS")
        c = cost.from_phases({}, args.gpus or 1, "the flags", given)
        return {arm: c for arm in roles}
    recs, control, nproc = _folder_records(results)
    treatments = [n for n in recs if n != control]
    out = {}
    for arm, role in roles.items():
        if arm in recs:
            out[arm] = _cost_of(recs[arm], args.gpus, nproc[arm], f"{arm} in {results}", given)
        elif role == "control" and control in recs:
            out[arm] = _cost_of(recs[control], args.gpus, nproc[control], f"{control} in {results}", given)
        else:     # a treatment not in the folder: what its treatments cost, pooled
            pooled = [r for n in treatments for r in recs[n]]
            nproc_t = max((nproc[n] for n in treatments), default=1)
            out[arm] = _cost_of(pooled, args.gpus, nproc_t, f"the treatments in {results}", given)
    return out


def hours(designs: dict, costs: dict, args) -> dict:
    """design -> GpuHours of ``designs`` (design -> {arm: expected runs})."""
    return cost.compare(designs, costs, args.warm_workers, args.gpu_hour_price)


def to_json(gh: dict, costs: dict) -> dict:
    """The JSON of a comparison: each design's hours, and the per-run costs used."""
    return {"designs": {name: h.to_dict() for name, h in gh.items()},
            "run_cost": {arm: c.to_dict() for arm, c in costs.items()}}


def text_lines(gh: dict, costs: dict, indent: str = "  ") -> list[str]:
    """The comparison for people: one line per design, then where the run costs came from."""
    designs = list(gh.items())
    base = designs[-1][1].hours if designs else 0.0
    out = []
    for name, h in designs:
        rel = f" ({h.hours / base:.2f}x {designs[-1][0]})" if base > 0 and h is not designs[-1][1] else ""
        out.append(f"{indent}GPU-hours per decision, {name}: {h.text()}{rel}")
    seen = {}
    for arm, c in costs.items():
        seen.setdefault((c.to_dict()["wall_s"], c.gpus, c.source), []).append(arm)
    for (wall, gpus, source), arms in seen.items():
        c = costs[arms[0]]
        out.append(f"{indent}  run cost of {', '.join(arms)}: {gpus} GPUs x {wall:.1f} s (start-up "
                   f"{c.to_first_step_s:.1f}, training {c.train_s:.1f}, after {c.after_last_step_s:.1f}; "
                   f"overhead {100 * c.overhead_share:.0f}%) from {source}"
                   + ("; warm workers: start-up once per arm" if designs and designs[0][1].warm else ""))
    return out
