"""Paired scheduling (harness/run/pairing.py): the runs of one index on one node, alternating which goes first."""
import itertools
import json

import pytest

from harness.run import pairing
from harness.data import spec as specmod
from harness.run.backends.local import LocalBackend
from harness.errors import UserError
from harness.records import RunRecord
from harness.run.runner import Options, Runner
from harness.data.store import Slot, Store

from conftest import harness, write_experiment


def test_alternate_rotates_the_first_arm_per_block():
    order = [("H0", 0), ("H1", 0), ("H0", 1), ("H1", 1), ("H0", 2), ("H1", 2)]
    assert pairing.alternate(order) == [("H0", 0), ("H1", 0), ("H1", 1), ("H0", 1), ("H0", 2), ("H1", 2)]
    three = [(h, i) for i in range(3) for h in ("A", "B", "C")]
    assert [k[0] for k in pairing.alternate(three)] == list("ABC" "BCA" "CAB")


def test_mode_defaults_to_pairs_only_when_runs_may_span_nodes():
    assert pairing.mode(None, True) == "node" and pairing.mode(None, False) == "none"
    assert pairing.mode("none", True) == "none" and pairing.mode("node", False) == "node"
    with pytest.raises(UserError, match="order 'blocked'"):
        pairing.check_order("blocked", "node")


def _done(hyp, index, host, order=0):
    s = Slot(hyp, index)
    s.records.append(RunRecord(run_id=f"{index:03d}-1", hypothesis=hyp, index=index, seed=index, status="ok",
                               order=order, host=host))
    return s


def test_pick_waits_for_a_running_partner_and_pins_to_a_finished_one():
    p = pairing.Pairing(["H0", "H1"])
    queue = [("H1", 0), ("H1", 1), ("H0", 1)]
    # H0 #0 is running: its partner waits; H1 #1 opens block 1 on any node
    got = p.pick(queue, {}, {("H0", 0)})
    assert (got.key, got.node) == (("H1", 1), None)
    assert p.pick([("H1", 0)], {}, {("H0", 0)}) is None
    got = p.pick(queue, {("H0", 0): _done("H0", 0, "gpu-7")}, set())
    assert (got.key, got.node, got.broken) == (("H1", 0), "gpu-7", "")
    # the partner's node went down: the retry goes anywhere and says the pair is broken
    down = pairing.Pairing(["H0", "H1"], node_usable=lambda n: n != "gpu-7")
    got = down.pick([("H1", 0)], {("H0", 0): _done("H0", 0, "gpu-7")}, set())
    assert got.node is None and "gpu-7 is down or drained" in got.broken


class FakeCluster(LocalBackend):
    """Local processes that report a node: the pinned one, else the next of three."""

    name = "local"
    max_parallel = 4
    may_span_nodes = True

    def __init__(self):
        self.free = itertools.cycle(["n1", "n2", "n3"])
        self.starts = []   # (hypothesis folder, run, node) in start order

    def start(self, spec):
        node = spec.node or next(self.free)
        self.starts.append((spec.run_dir.parent.name, spec.run_dir.name, node))
        h = super().start(spec)
        h.extra["node"] = node
        return h

    def poll(self, handle):
        o = super().poll(handle)
        if o is None:
            return None
        from dataclasses import replace
        return replace(o, host=handle.extra["node"])


def test_runner_keeps_pairs_on_one_node_and_retries_a_failed_half_there(tmp_path, cli):
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    exp_path = write_experiment(tmp_path, runs=4, h1_args={"mode": "flaky"}, extra_exp='pairing = "node"',
                                extra_defaults=f'env = {{ FLAKY_DIR = "{flaky}" }}')
    exp = specmod.load(exp_path, tmp_path)
    backend = FakeCluster()
    store = Store(tmp_path / "res")
    # no preflight: it would take the flaky trainer's one failure (tests/test_deaths.py has it)
    runner = Runner(exp, store, backend, tmp_path, exp_path.read_text(), Options(preflight=False))
    slots = runner.run()
    done = {k: s.done for k, s in slots.items()}
    assert all(done[(h, i)] is not None for h in ("H0", "H1") for i in range(4)), slots
    for i in range(4):
        assert done[("H0", i)].host == done[("H1", i)].host       # each pair on one node
    # which arm opened each block alternates: H0, H1, H0, H1
    first = {}
    for hyp, run, node in backend.starts:
        first.setdefault(int(run.split("-")[0]), hyp)
    assert [first[i] for i in range(4)] == ["H0", "H1", "H0", "H1"]
    # block 0: H0 ran first, H1 crashed on H0's node and was retried there
    launch = json.loads((store.root / "H1" / "000-2" / "launch.json").read_text())
    crashed = json.loads((store.root / "H1" / "000-1" / "result.json").read_text())
    assert crashed["status"] == "failed" and launch["node"] == done[("H0", 0)].host == crashed["host"]
    assert launch["pairing"] == "node"
    # block 1: H1 opened it (no partner yet, any node); H0 then followed H1's successful attempt
    assert json.loads((store.root / "H1" / "001-1" / "launch.json").read_text())["node"] is None
    assert json.loads((store.root / "H0" / "001-1" / "launch.json").read_text())["node"] == done[("H1", 1)].host
    # one run of a block at a time: the second starts after the first has finished
    for i in range(4):
        a, b = sorted((done[("H0", i)], done[("H1", i)]), key=lambda r: r.started_at)
        assert a.finished_at <= b.started_at
    # the stored runs span nodes: the analysis blocks by node and the gate says so
    out = cli("analyze", store.root, "--gate", cwd=tmp_path)
    assert "time blocked by node: stratified Welch" in out.stdout, out.stdout + out.stderr
    nodes = len({done[("H0", i)].host for i in range(4)})
    assert f"blocked by node, stratified Welch by node ({nodes} nodes)" in out.stdout


def test_pairing_key_is_checked(tmp_path):
    bad = write_experiment(tmp_path, extra_exp='pairing = "rack"')
    with pytest.raises(UserError, match="experiment.pairing: got 'rack', expected one of node, none"):
        specmod.load(bad, tmp_path)


def test_pairs_are_the_default_exactly_when_the_backend_may_span_nodes(tmp_path):
    exp_path = write_experiment(tmp_path, runs=2)
    exp = specmod.load(exp_path, tmp_path)
    on = Runner(exp, Store(tmp_path / "a"), FakeCluster(), tmp_path, exp_path.read_text())
    off = Runner(exp, Store(tmp_path / "b"), LocalBackend(), tmp_path, exp_path.read_text())
    assert on.pairing_mode == "node" and on.order == [("H0", 0), ("H1", 0), ("H1", 1), ("H0", 1)]
    assert off.pairing_mode == "none" and off.order == [("H0", 0), ("H1", 0), ("H0", 1), ("H1", 1)]
