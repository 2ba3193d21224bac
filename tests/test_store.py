"""Issue 18: the store is the one writer and the one reader of a results folder, and every
JSON file it writes carries a ``schema_version`` (old files without one still read; a file
from a newer harness is refused, untouched)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from conftest import write_experiment
from harness.cli import main
from harness.errors import UserError
from harness.data import spec as specmod
from harness.data import store as st
from harness.design.sequential import SequentialPlan
from harness.run import runner as runner_mod
from harness.run.backends.memory import FakeRun, MemoryBackend
from harness.run.runner import Options, Runner

ROOT = Path(__file__).resolve().parent.parent
STEPS = 20
MAX_RUNS = 10


def _gen(hyp: str, index: int, attempt: int) -> FakeRun:
    # H1 clearly faster at the same loss, with some spread: the plan decides in a few looks
    time_ms = (97_000.0 if hyp == "H1" else 98_000.0) + 37.0 * ((index * 7) % 5)
    return FakeRun(3.2780 - 0.0004 * ((index * 3) % 4), time_ms, STEPS)


def _experiment(tmp_path: Path, runs: int) -> Path:
    return write_experiment(tmp_path, name="exp", runs=runs, h0_args={"num_iterations": STEPS},
                            h1_args={"num_iterations": STEPS})


def _run(tmp_path: Path, monkeypatch, runs: int, sequential: bool = False):
    """Run (or resume) the experiment in-process on the memory backend."""
    monkeypatch.setattr(runner_mod, "POLL_S", 0.0)
    path = _experiment(tmp_path, runs)
    exp = specmod.load(path)
    decider = SequentialPlan("H0", ["H1"], max_runs=MAX_RUNS) if sequential else None
    if sequential and st.read_plan(tmp_path / "results") is not None:
        decider = SequentialPlan.from_dict(st.read_plan(tmp_path / "results"))
    r = Runner(exp, st.Store(tmp_path / "results"), MemoryBackend(_gen), tmp_path, path.read_text(),
               Options(runs=runs), decider=decider)
    return r.run()


def _json_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json") if p.name in st.SCHEMA_VERSIONS)


def _snapshot(root: Path) -> dict[str, bytes]:
    # .lock holds the pid of the last runner: not data
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _strip_versions(root: Path) -> None:
    """Make the folder look as a harness before schema_version wrote it."""
    for p in _json_files(root):
        data = json.loads(p.read_text())
        del data[st.SCHEMA_KEY]
        p.write_text(json.dumps(data, indent=2) + "\n")


def test_every_json_file_the_store_writes_carries_its_schema_version(tmp_path, monkeypatch):
    slots = _run(tmp_path, monkeypatch, runs=MAX_RUNS, sequential=True)
    root = tmp_path / "results"
    files = _json_files(root)
    assert {p.name for p in files} == set(st.SCHEMA_VERSIONS)   # every kind was written
    for p in files:
        data = json.loads(p.read_text())
        assert next(iter(data)) == st.SCHEMA_KEY, p          # first, where a reader sees it
        assert data[st.SCHEMA_KEY] == st.SCHEMA_VERSIONS[p.name], p
    # what is read back is what was written, without the envelope
    for slot in st.Store(root).slots(["H0", "H1"]).values():
        rec = slot.records[0]
        assert rec == slots[(rec.hypothesis, rec.index)].records[0]
    assert st.SCHEMA_KEY not in st.read_spec(root) and st.SCHEMA_KEY not in st.read_plan(root)
    launch = st.read_launch(next(root.glob("H0/000-1")))
    assert launch["hypothesis"] == "H0" and st.SCHEMA_KEY not in launch


def test_the_schema_versions_are_documented(tmp_path):
    doc = (ROOT / "docs" / "results-folder.md").read_text()
    for name, version in st.SCHEMA_VERSIONS.items():
        assert f"| `{name}` | {version} |" in doc, name


def _calls(tree: ast.AST, names: set[str], of: str | None = None) -> list[int]:
    """Lines calling one of ``names`` (as ``of.name`` only, when ``of`` is given)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", None) if isinstance(f, ast.Attribute) else None
            if name in names and (of is None or owner == of):
                out.append(node.lineno)
    return out


def test_the_store_is_the_one_writer_and_reader_of_results_folders():
    # runner.py wrote launch.json and sequential.json itself, cli/run.py a plan, and
    # sources.py and the runner parsed result.json, launch.json and sequential.json
    writes, reads = [], []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        name = str(path.relative_to(ROOT / "harness"))
        tree = ast.parse(path.read_text())
        if name not in ("data/store.py", "records.py"):       # the store, and the helper it calls
            writes += [f"{name}:{n}" for n in _calls(tree, {"atomic_write_text", "save"})]
        # the commands, the runner and the readers of results folders parse no JSON themselves
        if (name.startswith(("run/", "cli/")) or name == "data/sources.py") and name != "run/probe.py":
            reads += [f"{name}:{n}" for n in _calls(tree, {"loads", "load"}, of="json")]
    assert not writes, "results-folder files written outside the store: " + ", ".join(writes)
    assert not reads, "JSON read outside the store: " + ", ".join(reads)


def test_old_files_without_schema_version_are_read_and_a_resume_leaves_them_as_they_were(
        tmp_path, monkeypatch, capsys):
    _run(tmp_path, monkeypatch, runs=2)
    root = tmp_path / "results"
    _strip_versions(root)
    before = _snapshot(root)
    records = {k: [r.status for r in s.records] for k, s in st.Store(root).slots(["H0", "H1"]).items()}
    assert records == {(h, i): ["ok"] for h in ("H0", "H1") for i in range(2)}
    assert main(["status", str(root)]) == 0
    assert main(["analyze", str(root)]) == 0
    capsys.readouterr()

    _run(tmp_path, monkeypatch, runs=3)                # one more run per arm
    after = _snapshot(root)
    old_records = [k for k in before if k.endswith(("result.json", "launch.json"))]
    assert len(old_records) == 8
    assert all(after[k] == before[k] for k in old_records)     # not rewritten
    new = [root / k for k in after if k not in before and k.endswith(".json")]
    assert len(new) == 4 and all(st.SCHEMA_KEY in json.loads(p.read_text()) for p in new)
    # the spec grew (runs 2 -> 3), so it was written again, with its version
    assert json.loads((root / "spec.json").read_text())[st.SCHEMA_KEY] == st.SCHEMA_VERSIONS["spec.json"]


def test_the_committed_results_folders_read_through_the_store():
    folders = [p.parent for p in sorted((ROOT / "results").glob("*/spec.json"))]
    assert folders
    for root in folders:
        before = _snapshot(root)
        spec = st.read_spec(root)
        slots = st.Store(root).slots([h["name"] for h in spec["hypotheses"]])
        assert any(s.done is not None for s in slots.values()), root
        st.read_plan(root)
        assert _snapshot(root) == before


# which commands read which file (analyze never reads launch.json; status no plan)
READERS = {"spec.json": ("run", "status", "analyze"), "sequential.json": ("run", "analyze"),
           "result.json": ("run", "status", "analyze"), "launch.json": ("run", "status")}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_a_file_from_a_newer_harness_is_refused_in_one_line_and_nothing_changes(
        tmp_path, monkeypatch, capsys, kind):
    _run(tmp_path, monkeypatch, runs=MAX_RUNS, sequential=True)
    root = tmp_path / "results"
    target = next(p for p in _json_files(root) if p.name == kind)
    if kind == "launch.json":      # an attempt cut off: its launch.json is what resume reads
        target = root / "H1" / "000-1" / kind
        (target.parent / "result.json").unlink()
    data = json.loads(target.read_text())
    data[st.SCHEMA_KEY] = st.SCHEMA_VERSIONS[kind] + 1
    target.write_text(json.dumps(data, indent=2) + "\n")
    before = _snapshot(root)
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "exp.toml"
    argv = {"run": ["run", str(exp), "--results", str(root), "--until-decisive", "--max-runs", str(MAX_RUNS)],
            "status": ["status", str(root)], "analyze": ["analyze", str(root)]}
    for command in READERS[kind]:
        assert main(argv[command]) == 2, command
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, (command, err)
        assert str(target) in err and "newer harness" in err and "upgrade the harness" in err, (command, err)
        assert _snapshot(root) == before, command


def test_a_schema_version_that_is_no_version_is_refused(tmp_path):
    path = tmp_path / "spec.json"
    for bad in ("2", True, 0, 1.5, None):
        path.write_text(json.dumps({st.SCHEMA_KEY: bad, "name": "e", "hypotheses": [{"name": "H0"}]}))
        with pytest.raises(UserError, match="schema_version .* is not a positive whole number"):
            st.read_spec(tmp_path)


def test_the_runner_itself_refuses_a_newer_plan_before_writing(tmp_path, monkeypatch):
    # not only the command: a Runner given its decider directly reads the folder's plan first
    _run(tmp_path, monkeypatch, runs=MAX_RUNS, sequential=True)
    root = tmp_path / "results"
    plan = root / "sequential.json"
    data = json.loads(plan.read_text())
    data[st.SCHEMA_KEY] += 1
    plan.write_text(json.dumps(data))
    before = _snapshot(root)
    path = _experiment(tmp_path, MAX_RUNS + 2)      # more runs: the spec would be rewritten
    r = Runner(specmod.load(path), st.Store(root), MemoryBackend(_gen), tmp_path, path.read_text(),
               Options(runs=MAX_RUNS + 2), decider=SequentialPlan("H0", ["H1"], max_runs=MAX_RUNS))
    with pytest.raises(UserError, match="newer harness"):
        r.run()
    assert _snapshot(root) == before


def test_continuing_an_anytime_folder_refuses_a_newer_record_before_its_plan_is_rewritten(
        tmp_path, monkeypatch, capsys):
    # --anytime stores its raised budget before the runner reads the folder
    from harness.design.anytime import AnytimePlan
    monkeypatch.setattr(runner_mod, "POLL_S", 0.0)
    path = _experiment(tmp_path, 4)
    exp = specmod.load(path)
    root = tmp_path / "results"
    Runner(exp, st.Store(root), MemoryBackend(_gen), tmp_path, path.read_text(), Options(runs=4),
           decider=AnytimePlan("H0", ["H1"], exp.alpha_time, exp.alpha_loss, exp.target_loss, 4)).run()
    record = root / "H0" / "000-1" / "result.json"
    data = json.loads(record.read_text())
    data[st.SCHEMA_KEY] += 1
    record.write_text(json.dumps(data))
    before = _snapshot(root)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--results", str(root), "--anytime", "--max-runs", "8"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(record) in err and "newer harness" in err, err
    assert _snapshot(root) == before


def test_a_result_of_schema_1_still_reads_without_its_cost(tmp_path, monkeypatch):
    # issue 27: schema 2 adds gpu_s, gpus_used and phases; a record written before has none
    _run(tmp_path, monkeypatch, runs=2)
    path = next((tmp_path / "results").rglob("result.json"))
    data = json.loads(path.read_text())
    assert data[st.SCHEMA_KEY] == 2 and data["gpu_s"] is not None and data["phases"]["train_s"] is not None
    for key in ("gpu_s", "gpus_used", "phases"):
        del data[key]
    for version in (1, None):
        old = dict(data, **{st.SCHEMA_KEY: version}) if version else {k: v for k, v in data.items()
                                                                      if k != st.SCHEMA_KEY}
        path.write_text(json.dumps(old))
        rec = st.read_record(path)
        assert rec.gpu_s is None and rec.phases is None and rec.val_loss == data["val_loss"]
