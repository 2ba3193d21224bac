"""Runs spread over several nodes: per-node means, and a warning when arms do not share nodes."""
import json

from harness.analysis import nodes
from harness.records import RunRecord

from conftest import harness


def test_node_rows_and_uneven_spread():
    arms = {"H0": [("n1", 10.0), ("n1", 10.2), ("n2", 11.0), ("n2", 11.2)],
            "H1": [("n1", 9.0), ("n2", 10.0), ("n1", 9.2), ("n2", 10.2)]}
    rows = nodes.node_rows(arms)
    assert [(r.host, r.counts, round(r.means["H0"], 4)) for r in rows] == [
        ("n1", {"H0": 2, "H1": 2}, 10.1), ("n2", {"H0": 2, "H1": 2}, 11.1)]
    assert nodes.node_warnings(rows, "H0") == []
    skewed = nodes.node_rows({"H0": [("n1", 10.0)] * 4, "H1": [("n2", 9.0)] * 3 + [("n1", 9.0)]})
    (w,) = [c.message for c in nodes.node_warnings(skewed, "H0")]
    assert "unevenly spread" in w and "n1: 25% of H1's runs, 100% of H0's" in w
    assert nodes.node_warnings(nodes.node_rows({"H0": [("n1", 1.0)], "H1": [("n1", 1.0)]}), "H0") == []


def _results(folder, hosts):
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({
        "name": "e", "target_loss": 3.28, "alpha_time": 0.001, "alpha_loss": 0.01, "runs": 3,
        "order": "interleaved", "control": "H0",
        "hypotheses": [{"name": "H0", "control": True, "steps": 100}, {"name": "H1", "control": False, "steps": 99}]}))
    order = 0
    for i in range(3):
        for hyp, t in (("H0", 10.0), ("H1", 9.0)):
            d = folder / hyp / f"{i:03d}-1"
            d.mkdir(parents=True)
            steps = 100 if hyp == "H0" else 99
            RunRecord(run_id=d.name, hypothesis=hyp, index=i, seed=i, status="ok", order=order,
                      final_step=steps, expected_steps=steps, val_loss=3.27 + 0.001 * i,
                      train_time_s=t + 0.01 * i, host=hosts[hyp][i],
                      gpus={"names": ["NVIDIA H100 80GB HBM3"] * 8, "count": 8}).save(d / "result.json")
            order += 1


def test_analyze_prints_the_node_table_only_for_several_hosts(tmp_path, cli):
    one = tmp_path / "one"
    _results(one, {"H0": ["a"] * 3, "H1": ["a"] * 3})
    out = cli("analyze", one, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "runs per node" not in out.stdout
    two = tmp_path / "two"
    _results(two, {"H0": ["a", "a", "a"], "H1": ["b", "b", "a"]})
    out = cli("analyze", two, cwd=tmp_path)
    assert "runs per node" in out.stdout and "unevenly spread" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.startswith("b "))
    assert line.split() == ["b", "0", "2", "-", "9.0050"]
    js = json.loads(cli("analyze", two, "--format", "json", cwd=tmp_path).stdout)
    assert {n["host"]: n["runs"] for n in js["nodes"]} == {"a": {"H0": 3, "H1": 1}, "b": {"H0": 0, "H1": 2}}


def test_mixed_torch_versions_are_a_warning(tmp_path, cli):
    res = tmp_path / "res"
    _results(res, {"H0": ["a"] * 3, "H1": ["a"] * 3})
    for i, p in enumerate(sorted(res.glob("H1/*/result.json"))):
        rec = RunRecord.load(p)
        rec.torch_version = "2.9.0" if i == 0 else "2.10.0"
        rec.save(p)
    out = cli("analyze", res, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "runs used 2 torch versions: 2.10.0 (2 H1); 2.9.0 (1 H1)" in out.stdout


def test_markdown_carries_the_node_table(tmp_path, cli):
    two = tmp_path / "two"
    _results(two, {"H0": ["a", "a", "b"], "H1": ["b", "a", "b"]})
    md = cli("analyze", two, "--format", "markdown", cwd=tmp_path).stdout
    assert "**runs per node (mean train time in s per arm)**" in md and "\nb " in md
