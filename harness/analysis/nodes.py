"""Per-node view of an experiment spread over several machines (SLURM).

Interleaving protects the comparison from drift in time; on a cluster the arms must
also share the nodes, or a slow node reads as a slow arm. Pure functions on
(host, time) pairs: rows for the report, warnings as data.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.caveat import Caveat

UNEVEN_SHARE = 0.25  # warn when a node's share of one arm's runs differs by more than this


@dataclass
class NodeRow:
    host: str
    counts: dict[str, int]          # arm -> runs on this host
    means: dict[str, float]         # arm -> mean train time on this host (absent: no runs)


def node_rows(arms: dict[str, list[tuple[str, float]]]) -> list[NodeRow]:
    """``arms``: arm -> [(host, time), ...] for the runs with a result."""
    hosts = sorted({h for runs in arms.values() for h, _ in runs})
    rows = []
    for host in hosts:
        counts, means = {}, {}
        for arm, runs in arms.items():
            times = [t for h, t in runs if h == host]
            counts[arm] = len(times)
            if times:
                means[arm] = sum(times) / len(times)
        rows.append(NodeRow(host, counts, means))
    return rows


def node_warnings(rows: list[NodeRow], control: str) -> list[Caveat]:
    if len(rows) < 2:
        return []
    totals = {arm: sum(r.counts[arm] for r in rows) for arm in rows[0].counts}
    out = []
    for arm, total in totals.items():
        if arm == control or not total or not totals.get(control):
            continue
        for r in rows:
            a, c = r.counts[arm] / total, r.counts[control] / totals[control]
            if abs(a - c) > UNEVEN_SHARE:
                per_node = "; ".join(f"{x.host} {control} {x.counts[control]} / {arm} {x.counts[arm]}"
                                     for x in rows)
                out.append(Caveat("nodes", arm, f"{arm} and {control} are unevenly spread over nodes ({r.host}: "
                           f"{a:.0%} of {arm}'s runs, {c:.0%} of {control}'s; runs per node: {per_node}): "
                           "the gate's time test is blocked by node so a slow node does not read as a slow "
                           "arm, but unbalanced nodes cost runs and power; schedule control and treatment "
                           "in pairs on one node (pairing = \"node\") or pin the experiment to one node"))
                break
    return out
