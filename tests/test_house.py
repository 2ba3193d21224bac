"""One home per fact: thresholds, the p-value format, the sequential plan's file name.

The structural tests parse the package's source (``ast``), so a copy that creeps back
in (a literal ``0.001`` default, a second spelling of ``"sequential.json"``) fails here.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np

from harness import formats, thresholds
from harness.analysis import gate
from harness.design import sequential
from harness.data import store
from harness.records import RunRecord

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# float literals that are not the gate's thresholds although they have their value
NOT_THRESHOLDS = {("analysis/plot.py", 0.01), ("analysis/plot.py", 0.001),      # y-axis margins in loss units
                  ("analysis/stats.py", 0.01)}     # levels of the outlier and drift warnings, not the gate's


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_gate_thresholds_are_written_only_in_thresholds_py():
    found = []
    for name, tree in _modules():
        if name == "thresholds.py":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and type(node.value) is float
                    and node.value in (thresholds.TARGET_LOSS, thresholds.ALPHA_TIME, thresholds.ALPHA_LOSS)
                    and (name, node.value) not in NOT_THRESHOLDS):
                found.append(f"{name}:{node.lineno} {node.value}")
    assert not found, "thresholds copied outside harness/thresholds.py: " + ", ".join(found)


def test_defaults_everywhere_are_the_thresholds_module():
    import inspect

    from harness.design import simulate
    from harness.data import spec
    from harness.analysis import stats
    exp = spec.Experiment(name="x", hypotheses=())
    assert (exp.target_loss, exp.alpha_time, exp.alpha_loss, exp.runs, exp.retries) == (
        thresholds.TARGET_LOSS, thresholds.ALPHA_TIME, thresholds.ALPHA_LOSS, thresholds.RUNS,
        thresholds.RETRIES)
    for fn in (stats.summarise, simulate.simulate, sequential.SequentialPlan.__init__):
        params = inspect.signature(fn).parameters
        for key, value in thresholds.GATE.items():
            assert params[key].default == value, (fn.__qualname__, key)


def test_flag_beats_file_beats_default():
    flags = argparse.Namespace(target_loss=None, alpha_time=0.05, alpha_loss=None)
    stored = {"target_loss": 3.5, "alpha_time": 0.2, "alpha_loss": None}
    assert thresholds.resolve(flags, stored) == {"target_loss": 3.5, "alpha_time": 0.05,
                                                 "alpha_loss": thresholds.ALPHA_LOSS}
    # an object with attributes (a loaded dataset) and no stored values at all
    assert thresholds.resolve(flags, None)["target_loss"] == thresholds.TARGET_LOSS
    # 0 and False are values, not "not given"
    assert thresholds.pick(0.0, 1.0, 2.0) == 0.0 and thresholds.pick(None, False, True) is False


def test_one_p_value_format_in_gate_and_sequential_lines():
    assert gate.fmt_p is formats.fmt_p
    for p, want in ((0.0123, "0.0123"), (0.0002, "0.0002"), (4.74e-05, "4.74e-05"),
                    (float("nan"), "nan"), (None, "nan")):
        assert formats.fmt_p(p) == want
    M = 4
    saved = {"control": "H0", "treatments": ["H1"], "alpha_time": 0.001, "alpha_loss": 0.01,
             "target_loss": 3.28, "min_effect": 0.0, "max_runs": M,
             "boundaries": {"time_pass": [0.000234] * (M - 1), "time_fail": [0.0123] * (M - 1),
                            "loss_pass": [0.00456] * (M - 1), "loss_fail": [0.0789] * (M - 1)}}
    plan = sequential.SequentialPlan.from_dict(saved)
    rng = np.random.default_rng(1)
    recs = {h: [RunRecord(run_id=f"{i:03d}-1", hypothesis=h, index=i, seed=i, status="ok", order=2 * i + k,
                          val_loss=3.28 + 0.001 * rng.standard_normal(),
                          train_time_s=98.0 + 0.1 * rng.standard_normal())
                for i in range(2)] for k, h in enumerate(("H0", "H1"))}
    text = "\n".join(plan.look(recs).lines)
    for b in (0.000234, 0.0123, 0.00456, 0.0789):
        assert f"<= {formats.fmt_p(b)})" in text, text


def test_sequential_plan_file_is_named_only_by_the_store(tmp_path):
    found = []
    for name, tree in _modules():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and node.value.rstrip().endswith("sequential.json") and name != "data/store.py"):
                found.append(f"{name}:{node.lineno}")
    assert not found, "sequential.json spelled outside data/store.py: " + ", ".join(found)
    assert store.sequential_path(tmp_path) == tmp_path / "sequential.json"
    assert store.Store(tmp_path).sequential_path == tmp_path / "sequential.json"


def test_one_warning_type_from_every_stage_reaches_the_json(capsys, tmp_path, monkeypatch):
    # issue 18: StatWarning in stats, plain strings in sources, nodes, blocked, sweep and
    # borrow; the JSON output carried bare strings
    import json
    import sys
    from harness.analysis import blocked, borrow, nodes, stats, sweep
    from harness.caveat import Caveat
    from harness.cli import main
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
    import damaged_logs as D

    skewed = nodes.node_rows({"H0": [("n1", 10.0)] * 4, "H1": [("n2", 9.0)] * 3 + [("n1", 9.0)]})
    apart = {"H1": blocked.stratified([("a", 1.0), ("a", 1.1)], [("b", 0.5), ("b", 0.6)])}
    thin = sweep.analyse("H1", [(100, "H1@100", [3.3], [1.0])], [1.0], 3.28, 0.01)
    refused = stats.summarise([stats.Arm("H0", [3.27, 3.28, 3.29], [9.0, 9.1, 9.2]),
                               stats.Arm("H1", [3.27, 3.29, 3.31], [9.0, 9.1, 9.2])], "H0",
                              variance=borrow.VariancePlan(loss=borrow.Sigma(1e-6, 18.0, 20, "rec")))
    made = {"nodes": nodes.node_warnings(skewed, "H0"), "blocked": blocked.warnings(apart),
            "sweep": thin.warnings, "variance": [w for w in refused.warnings if w.kind == "variance"]}
    for kind, ws in made.items():
        assert ws and all(type(w) is Caveat and w.kind == kind and w.subject and w.message for w in ws), kind
    assert {w.subject for w in made["variance"]} == {"H0", "H1"}   # the arm each note is about

    D.write_all(tmp_path / "damaged")
    monkeypatch.chdir(tmp_path)
    assert main(["analyze", "damaged", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)["warnings"]
    assert out and all(set(w) == {"kind", "subject", "message"} for w in out)
    kinds = {w["kind"] for w in out}
    assert {"several-runs", "no-result", "outlier"} <= kinds
    assert {w["subject"] for w in out if w["kind"] == "several-runs"} == {"damaged/crash_then_ok.txt",
                                                                         "damaged/three_runs.txt"}


def test_spec_json_is_read_and_checked_by_the_store_alone(capsys, tmp_path):
    # issue 18: spec.json was read and validated three ways (store, status, sources); a spec
    # that status refused was a traceback in analyze ('runs' a string) and the reverse
    import json
    import sys
    from harness.cli import main
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
    import analyze_builders as B

    found = []
    for name, tree in _modules():
        docs = _docstrings(tree)
        found += [f"{name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Constant)
                  and n.value == "spec.json" and id(n) not in docs and name != "data/store.py"]
    assert not found, "spec.json named outside data/store.py: " + ", ".join(found)

    root = B.write_results(tmp_path / "e", {"H0": (100, [{"train_time_s": 1.0, "val_loss": 3.2}] * 3),
                                             "H1": (100, [{"train_time_s": 0.9, "val_loss": 3.2}] * 3)}, runs=3)
    good = json.loads((root / "spec.json").read_text())
    for bad in ({**good, "runs": "3"}, {**good, "hypotheses": [{"name": 7}]}, {**good, "hypotheses": []},
                {k: v for k, v in good.items() if k != "name"}, [good]):
        (root / "spec.json").write_text(json.dumps(bad))
        said = []
        for command in ("status", "analyze"):
            assert main([command, str(root)]) == 2, (command, bad)
            err = capsys.readouterr().err
            assert len(err.splitlines()) == 1 and str(root / "spec.json") in err, err
            said.append(err)
        assert said[0] == said[1]          # one check, one message
        assert (root / "spec.json").read_text() == json.dumps(bad)
