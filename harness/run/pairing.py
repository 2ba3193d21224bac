"""Paired scheduling: the runs of one index (one per arm) run on one node, one after another.

Why a pinned follow-up job rather than one job holding the pair: every attempt
stays one job with its own folder, log, record, retry and reattach (the backend
contract is unchanged), a pair never holds a node idle while a half waits, and a
failed half is redone alone. How: the first run of a block (the runs of every arm
at one index) is submitted to any node; each other run of the block starts once a
partner has finished, pinned to that partner's node (SLURM ``--nodelist``). The
arm that goes first alternates from block to block (H0 H1 | H1 H0 | ...), so that
neither arm always runs on a node just freed or just warmed.

Failures: a failed half is retried on its partner's node when a partner has
finished there; when that node is down or drained, the retry goes to any node and
the pair is broken (the blocked analysis then names those runs).

The policy is pure: ``pick`` reads the queue, the slots and the running jobs and
says which run starts next and where.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UserError

NODE = "node"
NONE = "none"


def mode(pairing: str | None, may_span_nodes: bool) -> str:
    """The pairing in force: the experiment's, else "node" exactly when runs may land on several nodes."""
    if pairing is not None:
        return pairing
    return NODE if may_span_nodes else NONE


def alternate(order: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Rotate the arms within each index's block by the index: H0 H1 | H1 H0 | H0 H1 ..."""
    blocks: dict[int, list[tuple[str, int]]] = {}
    for key in order:
        blocks.setdefault(key[1], []).append(key)
    out = []
    for pos, index in enumerate(blocks):   # dicts keep first appearance: launch order of blocks
        block = blocks[index]
        k = pos % len(block)
        out += block[k:] + block[:k]
    return out


@dataclass
class Pick:
    key: tuple[str, int]
    node: str | None        # pin to this node; None: any node
    broken: str = ""        # why a pin was wanted but not possible (partner's node unusable)


class Pairing:
    """Which queued run may start now, and on which node."""

    def __init__(self, arms: list[str], node_usable=lambda node: True) -> None:
        self.arms = list(arms)
        self.node_usable = node_usable

    def pick(self, queue, slots: dict, running: set[tuple[str, int]]) -> Pick | None:
        """The first queued run whose block partners are not running; None: wait for one to end."""
        for key in queue:
            partners = [(arm, key[1]) for arm in self.arms if arm != key[0]]
            if any(p in running for p in partners):
                continue   # one node, one run of the block at a time: wait for the partner
            done = [slots[p].done for p in partners if p in slots and slots[p].done is not None]
            hosts = [r.host for r in sorted(done, key=lambda r: r.order if r.order is not None else 0) if r.host]
            if not hosts:
                return Pick(key, None)
            if self.node_usable(hosts[0]):
                return Pick(key, hosts[0])
            return Pick(key, None, broken=f"the partner's node {hosts[0]} is down or drained")
        return None


def check_order(order: str, pairing: str) -> None:
    if pairing == NODE and order == "blocked":
        raise UserError("pairing = \"node\" with order 'blocked' would run every control run before the "
                        "first treatment run; use --order interleaved (pairs alternate which arm goes first)")
