"""Issue 25: one verdict per output, and advice that never points to a flag or a command
that is refused. Each test fails on the code before the fix."""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import sys
from pathlib import Path

from conftest import write_experiment
from harness import cli as climod
from harness.design import sequential as seq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import analyze_builders as B  # noqa: E402
from make_record_logs import H0_LOSSES, H0_TIMES, H1_LOSSES, H1_TIMES  # noqa: E402


analyze, _ok = B.analyze, B.ok


def _record_folder(tmp_path, name="seq", **kw):
    h0 = [_ok(l, t, 2 * i, **{k: v(i) for k, v in kw.items()}) for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    h1 = [_ok(l, t, 2 * i + 1, **{k: v(i) for k, v in kw.items()}) for i, (l, t) in enumerate(zip(H1_LOSSES, H1_TIMES))]
    return B.write_results(tmp_path / name, {"H0": (1600, h0), "H1": (1575, h1)}, runs=10)


def _beside_row(out: str, name: str) -> str:
    head = out.index("robust checks vs control")
    return next(line for line in out[head:].splitlines() if line.startswith(name + " "))


def test_a_sequential_folder_shows_its_decisions_in_every_table(capsys, tmp_path):
    root = _record_folder(tmp_path, host=lambda i: f"node{i % 2}")     # runs span two nodes
    code, out, _ = analyze(capsys, root)
    assert "faster" in _beside_row(out, "H1").split()       # the fixed-sample verdict, without a plan
    assert "the gate's time criterion uses it" in out         # the blocked test, without a plan
    # the stored journal says time FAIL (decided at look 3): that is this folder's verdict
    plan = seq.SequentialPlan("H0", ["H1"], max_runs=10)
    recs = {g: [B.RunRecord(run_id=f"{i}", hypothesis=g, index=i, seed=i, status="ok", order=2 * i + (g == "H1"),
                            val_loss=l, train_time_s=t) for i, (l, t) in enumerate(zip(ls, ts))]
            for g, ls, ts in (("H0", H0_LOSSES, H0_TIMES), ("H1", H1_LOSSES, H1_TIMES))}
    plan.look(recs)
    d = plan.to_dict()
    e = next(e for e in d["decisions"] if e["criterion"] == "time")
    e.update(decision="fail", look=3, why="not faster at pair 3")
    e["result"].update(decision="fail", look=3, why="not faster at pair 3")
    (root / "sequential.json").write_text(json.dumps(d))
    code, out, _ = analyze(capsys, root, "--gate")
    assert "FAIL  H1  time      sequential FAIL" in out
    row = _beside_row(out, "H1")
    assert "not faster" in row, row              # not the fixed-sample test's "faster"
    assert "descriptive" in out[:out.index("robust checks")]   # beside the table's p-values
    assert "decisions of the group-sequential (--until-decisive) design" in out
    assert "the gate's time criterion uses it" not in out     # the blocked table: descriptive now
    assert "descriptive here: the gate follows the decisions of the group-sequential" in out
    md = analyze(capsys, root, "--format", "markdown")[1]
    assert "| not faster |" in md and "group-sequential" in md
    js = json.loads(analyze(capsys, root, "--format", "json")[1])
    h1 = next(h for h in js["hypotheses"] if h["name"] == "H1")
    assert h1["time_verdict"] == "not faster" and "sequential" in js["verdicts_from"]
    assert js["sequential"]["design"].startswith("group-sequential")


def test_an_anytime_folder_is_labelled_anytime(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, name="any", runs=4, extra_exp="target_loss = 3.0566")
    assert cli("run", exp, "--anytime", "--plain", cwd=tmp_path).returncode == 0
    out = cli("analyze", tmp_path / "results" / "any", cwd=tmp_path).stdout
    assert "decisions of the anytime-valid (--anytime) design" in out
    assert "--until-decisive" not in out, out
    status = cli("status", tmp_path / "results" / "any", cwd=tmp_path).stdout
    assert status.startswith("any: at most 4 runs per hypothesis (anytime design)"), status


def _sweep_folder(tmp_path):
    # 2 runs per step count: each arm's own t-test (1 df) shows nothing; the sweep's line
    # through all 6 runs (4 df) puts every step count below the target
    arms = {"H0": (1600, [_ok(3.2780 + d, 98.0 + d, 4 * i) for i, d in enumerate((-0.0003, 0.0003))])}
    order = 1
    for s, base in ((1550, 3.2787), (1560, 3.2786), (1575, 3.2785)):
        recs = []
        for d in (-0.0003, 0.0003):
            recs.append(_ok(base + d, 97.0, order))
            order += 1
        arms[f"H1@{s}"] = (s, recs)
    return B.write_results(tmp_path / "sw", arms, runs=2)


def test_the_sweep_table_and_the_main_tables_agree(capsys, tmp_path):
    root = _sweep_folder(tmp_path)
    code, out, _ = analyze(capsys, root, "--gate")
    js = json.loads(analyze(capsys, root, "--format", "json")[1])
    (sw,) = js["sweeps"]
    by_arm = {h["name"]: h for h in js["hypotheses"]}
    assert {p["verdict"] for p in sw["points"]} == {"below"}        # the sweep passes them all
    for p in sw["points"]:
        assert by_arm[p["name"]]["loss_p"] > 0.01                   # each arm alone: not shown
        assert by_arm[p["name"]]["loss_verdict"] == p["verdict"], p["name"]
        assert "< 3.28" in _beside_row(out, p["name"])
        assert f"PASS  {p['name']}  loss      sweep fit" in out


def test_an_unknown_criterion_is_counted_as_unknown(capsys, tmp_path):
    h0 = [_ok(l, t, 2 * i) for i, (l, t) in enumerate(zip(H0_LOSSES, H0_TIMES))]
    h1 = [_ok(l, t, 2 * i + 1, gpus={"names": [], "count": 0}) for i, (l, t) in
          enumerate(zip([3.2990] * 10, H1_TIMES))]
    h1[0]["val_loss"] = 3.2991
    root = B.write_results(tmp_path / "unk", {"H0": (1600, h0), "H1": (1575, h1)}, runs=10)
    code, out, _ = analyze(capsys, root, "--gate")
    assert code == 1 and "UNKNOWN  H1  hardware" in out and "FAIL  H1  loss" in out
    assert out.rstrip().endswith("gate: FAIL (1 criterion failed, 1 unknown)"), out[-200:]
    md = analyze(capsys, root, "--gate", "--format", "markdown")[1]
    assert "- **UNKNOWN** H1 hardware" in md and "gate: FAIL (1 criterion failed, 1 unknown)" in md
    js = json.loads(analyze(capsys, root, "--gate", "--format", "json")[1])
    assert [c.get("label") for c in js["gate"]["criteria"] if c["criterion"] == "hardware"] == ["UNKNOWN"]


def test_run_gate_takes_the_flag_its_advice_names(tmp_path, cli):
    from harness.run.backends.memory import FakeRun
    from conftest import scripted
    cli.backend = cli.memory(scripted(H1=lambda i, a: FakeRun(val_loss=3.05 + 0.001 * (i % 3),
                                                               train_time_ms=9500.0 + 10 * i, gpus=0)))
    exp = write_experiment(tmp_path, name="hw", runs=3)
    r = cli("run", exp, "--gate", "--plain", cwd=tmp_path)
    advice = re.findall(r"pass (--[a-z-]+) to accept", r.stdout)
    assert advice, r.stdout
    again = cli("run", exp, "--gate", *advice, "--plain", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "allowed by --allow-unknown-hardware" in again.stdout


# ------------------------------------------------------------------ advice names real flags
ADVICE = re.compile(r"\b(?:pass|use|give|add|try|keep|set)\s+(--[a-z][a-z0-9-]+)")
# (module, flag): advice a command shows only on a path that is its own (the closure of
# imports over-counts the commands that can print it)
ONE_COMMAND = {
    ("harness/data/store.py", "--results"): "written or locked by `harness run` only",
    ("harness/design/simulate.py", "--max-parallel"): "the emulation's own check: `harness simulate`",
    # export's README holds the gate of `harness analyze RECORD_DIR`: the advice is that command's
    ("harness/analysis/gate.py", "--allow-unknown-hardware"): "shown by run and analyze; in export's README, analyze's",
    # the hint follows a --control or --name that names no group: analyze's and plan's flags
    ("harness/data/sources.py", "--group-by"): "only after --control/--name of analyze or plan",
    # status asks SLURM through ask_states only; the backend's construction checks are run's
    ("harness/run/backends/slurm.py", "--partition"): "SlurmBackend() is built by `harness run` only",
    ("harness/run/backends/slurm.py", "--backend"): "SlurmBackend() is built by `harness run` only",
}


def _flags(command: str) -> set[str]:
    p = argparse.ArgumentParser()
    importlib.import_module(climod.COMMANDS[command][0]).configure(p)
    return {o for a in p._actions for o in a.option_strings}


def _module_file(mod: str) -> Path | None:
    base = ROOT.joinpath(*mod.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _closure(mod: str) -> set[Path]:
    seen: set[Path] = set()
    todo = [mod]
    while todo:
        f = _module_file(todo.pop())
        if f is None or f in seen:
            continue
        seen.add(f)
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Import):
                todo += [a.name for a in n.names if a.name.startswith("harness")]
            elif isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("harness"):
                todo += [n.module] + [f"{n.module}.{a.name}" for a in n.names]
    return seen


def _messages(path: Path):
    """(line, text) of every string an f-string or constant makes, docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for n in ast.walk(tree):
        if isinstance(n, ast.JoinedStr):
            yield n.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in n.values)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield n.lineno, n.value


def test_every_flag_a_message_advises_exists_on_each_command_that_shows_it():
    flags = {c: _flags(c) for c in climod.COMMANDS}
    shown_by: dict[Path, list[str]] = {}
    for c, (mod, _) in climod.COMMANDS.items():
        for f in _closure(mod):
            shown_by.setdefault(f, []).append(c)
    bad = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        cmds = shown_by.get(path, [])
        for line, text in _messages(path):
            for flag in ADVICE.findall(text):
                if (rel, flag) in ONE_COMMAND:
                    cmds_here = [c for c in cmds if flag in flags[c]][:1]
                    assert cmds_here, f"{rel}:{line}: {flag} is on no command"
                    continue
                missing = [c for c in cmds if flag not in flags[c]]
                if missing or not cmds:
                    bad.append(f"{rel}:{line}: advises {flag}, which `harness {'/'.join(missing) or '?'}` "
                               f"does not take: {text[:70]!r}")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------ the smaller defects
def _one_line(code, err, *needles):
    lines = err.strip().splitlines()
    return (code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
            and all(n in lines[0] for n in needles))


def test_a_target_loss_that_is_no_number_is_refused(capsys, tmp_path):
    root = _record_folder(tmp_path)
    for bad in ("inf", "nan", "-inf", "0"):
        code, out, err = analyze(capsys, root, "--gate", f"--target-loss={bad}")
        assert _one_line(code, err, "--target-loss"), (bad, code, out[-100:], err)
        assert "PASS" not in out


def test_a_hypothesis_name_that_leaves_the_folder_is_refused(capsys, tmp_path, cli):
    root = _record_folder(tmp_path, "inside")
    outside = B.write_results(tmp_path / "outside-x", {"H0": (1600, [_ok(3.27, 98.0, 0)])}, runs=1)
    assert (outside / "H0").is_dir()
    spec = json.loads((root / "spec.json").read_text())
    spec["hypotheses"][1]["name"] = "../outside-x/H0"
    (root / "spec.json").write_text(json.dumps(spec))
    for command in ("analyze", "status"):
        r = cli(command, root, cwd=tmp_path)
        assert _one_line(r.returncode, r.stderr, "spec.json", "../outside-x/H0"), (command, r.stdout, r.stderr)


def _run_folder(tmp_path, cli):
    """A results folder as `harness run` leaves it (the in-memory backend)."""
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, name="ran", runs=3)
    assert cli("run", exp, "--plain", cwd=tmp_path).returncode == 0
    return tmp_path / "results" / "ran"


def test_deeply_nested_json_is_one_line(capsys, tmp_path, cli):
    root = _run_folder(tmp_path, cli)
    victim = next(root.glob("H1/*/result.json"))
    victim.write_text("[" * 100_000 + "]" * 100_000)
    for command in ("analyze", "status"):
        r = cli(command, root, cwd=tmp_path)
        assert _one_line(r.returncode, r.stderr, str(victim), "nested"), (command, r.stderr[-300:])


def test_a_nan_loss_in_an_ok_record_is_no_ok_run(capsys, tmp_path, cli):
    root = _run_folder(tmp_path, cli)
    victim = next(root.glob("H1/*/result.json"))
    data = json.loads(victim.read_text())
    data["val_loss"] = float("nan")
    victim.write_text(json.dumps(data))      # Python writes the literal NaN
    assert "NaN" in victim.read_text()
    for command in ("analyze", "status"):
        r = cli(command, root, cwd=tmp_path)
        assert _one_line(r.returncode, r.stderr, str(victim), "val_loss", "diverged"), (command, r.stderr)


def test_a_result_json_that_is_a_folder_is_named_alike_by_analyze_and_status(capsys, tmp_path, cli):
    root = _run_folder(tmp_path, cli)
    victim = next(root.glob("H1/*/result.json"))
    victim.unlink()
    victim.mkdir()
    errs = []
    for command in ("analyze", "status"):
        r = cli(command, root, cwd=tmp_path)
        assert _one_line(r.returncode, r.stderr, str(victim), "is a folder"), (command, r.stdout, r.stderr)
        errs.append(r.stderr)
    assert errs[0] == errs[1]


def test_a_negative_train_time_is_no_finished_run(capsys, tmp_path):
    from harness.logs.classify import classify
    from harness.logs.logparse import parse_file_runs
    log = B.write_log(tmp_path / "logs" / "neg.txt", steps=1600, time_s=98.0)
    text = log.read_text()
    final = next(line for line in text.splitlines() if line.startswith("step:1600/1600 val_loss"))
    log.write_text(text.replace(final, re.sub(r"train_time:\d+ms", "train_time:-600ms", final)))
    (s,) = parse_file_runs(str(log))
    c = classify(s)
    assert c.record_status == "failed" and "train_time:-600ms" in c.message, c.message


def test_harness_version(tmp_path, cli):
    import tomllib
    from harness import __version__
    r = cli("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"harness {__version__}"
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__


def test_the_gate_names_the_design_whose_decisions_it_follows(tmp_path, cli):
    cli.backend = cli.memory()
    exp = write_experiment(tmp_path, name="anyg", runs=4, extra_exp="target_loss = 3.0566")
    r = cli("run", exp, "--anytime", "--gate", "--plain", cwd=tmp_path)
    assert "follow the decisions of the anytime-valid (--anytime) design" in r.stdout, r.stdout
