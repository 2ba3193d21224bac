"""`harness export RESULTS --out RECORD_DIR`, and the README's workflow (control, run, export) run as written.

Runs are real: the runner launches the stand-in record script (it writes
``logs/<uuid>.txt`` as the records' scripts do) or fake_train.py (which writes no log of
its own), one process each, on the CPU."""
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from conftest import write_experiment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import make_record_repo as mrr  # noqa: E402

RESULTS = "results/after-2026-01-26-UntieValueEmbeddings"


def readme_workflow() -> list[str]:
    """The command lines of the README's workflow block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Workflow[^\n]*\n+```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no '## Workflow' section with a bash block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def user_edits(exp: Path, h1_steps: int = 1550) -> None:
    """What the user does between control and run: a change in the copy (fewer steps, as the
    records do), H1 uncommented. And what the CPU stand-in needs: one process, 3 runs."""
    h1 = exp.parent / "train_gpt_h1.py"
    h1.write_text(h1.read_text().replace("num_iterations = 1575\n", f"num_iterations = {h1_steps}\n"))
    head, template = exp.read_text().split("# [[hypothesis]]\n")
    h1_table = "".join(line[2:] + "\n" for line in template.splitlines()).replace("steps = 1575",
                                                                                 f"steps = {h1_steps}")
    exp.write_text((head + "[[hypothesis]]\n" + h1_table).replace('launcher = "torchrun"', 'launcher = "python"')
                   .replace("runs = 10", "runs = 3"))


def table_of(out: str) -> list[str]:
    """The head and the two rows of analyze's table."""
    lines = out.splitlines()[:3]
    assert lines[0].split()[:2] == ["Runs", "Steps"] and lines[1].startswith("H0 "), out
    return lines


def test_readme_workflow_control_run_export(tmp_path, cli, record_repo):
    clone = tmp_path / "modded-nanogpt"
    shutil.copytree(record_repo, clone)
    lines = readme_workflow()
    assert [l.split()[:2] for l in lines] == [["harness", "control"], ["cp", "exp/train_gpt.py"],
                                              ["harness", "run"], ["harness", "export"]]
    for line in lines:
        argv = shlex.split(line.replace("~/modded-nanogpt", str(clone)))
        if argv[0] == "cp":
            shutil.copy(tmp_path / argv[1], tmp_path / argv[2])
            user_edits(tmp_path / "exp" / "experiment.toml")
            continue
        r = cli(*argv[1:], cwd=tmp_path)
        assert r.returncode == 0, (line, r.stdout, r.stderr)
    rec = clone / "records/track_1_short/2026-12-08-MyChange"
    # the layout upstream keeps: one folder per arm with the names the script gave its logs
    for arm in ("H0", "H1"):
        wrote = sorted(p.name for p in (tmp_path / RESULTS / arm).glob("*/script-files/logs/*.txt"))
        assert sorted(p.name for p in (rec / arm).iterdir()) == wrote and len(wrote) == 3
    assert (rec / "train_gpt_h1.py").read_text() == mrr.script_text(1550)
    assert (rec / "triton_kernels.py").read_bytes() == mrr.KERNELS.read_bytes()
    readme = (rec / "README.md").read_text()
    # analyze on the exported folder prints the README's table digit for digit
    r = cli("analyze", rec.name, cwd=rec.parent)
    assert r.returncode == 0, r.stderr
    table = table_of(r.stdout)
    assert len(table) == 3 and "\n".join(table) in readme
    raw = r.stdout.split("\n\n")[1:3]
    assert all(block in readme for block in raw) and "losses = [" in raw[0]
    assert "The table is of these logs alone (`harness analyze 2026-12-08-MyChange` prints it again)" in readme
    for expected in ("## Gate", "gate: PASS", "PASS  H1  time", "## Method", "A fixed-sample design",
                     "at alpha 0.001", "at alpha 0.01", "borrowed from",
                     "hardware: 8x NVIDIA H100 80GB HBM3 (3 runs of H0, 3 runs of H1)",
                     "torch 2.10.0, CUDA 12.6", "- ran: 20", "exported by `harness export` on 20"):
        assert expected in readme, expected
    # never overwrites: the same command again is one line, and the folder is as it was
    before = {p: p.read_bytes() for p in rec.rglob("*") if p.is_file()}
    again = cli("export", RESULTS, "--out", rec, cwd=tmp_path)
    assert again.returncode == 2 and len(again.stderr.splitlines()) == 1 and "never overwrites" in again.stderr
    assert {p: p.read_bytes() for p in rec.rglob("*") if p.is_file()} == before
    assert not [p for p in rec.parent.iterdir() if p.name.startswith(".")]   # no staging folder left
    # round trip: the exported folder is now the latest record, and control reads it back
    r = cli("control", clone, "--out", "next", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "record: 2026-12-08-MyChange" in r.stderr
    assert "the 3 logs that embed the folder's train_gpt_h1.py are the PR's" in r.stderr
    assert (tmp_path / "next/train_gpt.py").read_text() == mrr.script_text(1550)


def test_harness_log_when_the_script_writes_none_and_a_failed_gate_warns(tmp_path, cli):
    # fake_train.py prints its log to stdout only: the harness's log.txt is the run's log;
    # H1 is slower, so the gate fails, and the export says so
    exp = write_experiment(tmp_path, runs=3, h1_args={"base_time": 10.5})
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    r = cli("export", "results/exp", "--out", "rec", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("warning: the gate did not pass H1 (") and "it is not a record" in r.stderr
    names = sorted(p.name for p in (tmp_path / "rec" / "H0").iterdir())
    assert names == ["000-1.txt", "001-1.txt", "002-1.txt"]
    assert (tmp_path / "rec/H0/000-1.txt").read_bytes() == (tmp_path / "results/exp/H0/000-1/log.txt").read_bytes()
    assert (tmp_path / "rec/fake_train.py").is_file()
    readme = (tmp_path / "rec/README.md").read_text()
    assert "gate: FAIL" in readme and "The gate did not pass H1: this is not a record." in readme
    a = cli("analyze", "rec", cwd=tmp_path)
    assert "\n".join(table_of(a.stdout)) in readme
    assert "(3 runs, 0 as the script wrote them, 3 the script's stdout as the harness kept it)" in readme


def test_the_table_flags_are_in_the_command_that_reproduces_it(tmp_path, cli):
    exp = write_experiment(tmp_path, runs=2, extra_exp="target_loss = 3.5")
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    r = cli("export", "results/exp", "--out", "rec", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    readme = (tmp_path / "rec/README.md").read_text()
    assert "`harness analyze rec --target-loss 3.5`" in readme
    a = cli("analyze", "rec", "--target-loss", "3.5", cwd=tmp_path)
    assert "\n".join(table_of(a.stdout)) in readme
    # a log that no longer gives its record's figures: refused, nothing written, nothing left
    log = tmp_path / "results/exp/H0/000-1/log.txt"
    log.write_text(log.read_text().replace("train_time:10005ms", "train_time:10105ms"))
    r = cli("export", "results/exp", "--out", "rec2", cwd=tmp_path)
    assert r.returncode == 2 and "do not give the runs' recorded losses and times" in r.stderr
    assert not (tmp_path / "rec2").exists() and not list(tmp_path.glob(".rec2*"))


@pytest.mark.parametrize("case", ["not-results", "exists", "two-treatments"])
def test_refusals_are_one_line(tmp_path, cli, case):
    import analyze_builders as B
    recs = [{"val_loss": 3.27, "train_time_s": 98.0 + i / 10} for i in range(3)]
    hyps = {"H0": (1600, recs), "H1": (1575, recs)}
    if case == "two-treatments":
        hyps["H2"] = (1550, recs)
    root = B.write_results(tmp_path / "exp", hyps)
    (tmp_path / "rec").mkdir()
    args = {"not-results": [tmp_path, "--out", tmp_path / "new"],
            "exists": [root, "--out", tmp_path / "rec"],
            "two-treatments": [root, "--out", tmp_path / "new"]}[case]
    r = cli("export", *args, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert {"not-results": "not a results folder", "exists": "never overwrites",
            "two-treatments": "name the record's with --treatment"}[case] in r.stderr
    assert not (tmp_path / "new").exists()


def test_reproduce_names_the_control_when_a_plain_folder_would_pick_another():
    from harness.cli.export import _reproduce
    gate = {"target_loss": 3.28, "alpha_time": 0.001, "alpha_loss": 0.01}
    assert _reproduce(Path("x/rec"), "H0", ["H0", "H1"], gate) == ("harness analyze rec", [])
    # 'base' sorts after 'alt': the folder's first group would be the treatment
    cmd, flags = _reproduce(Path("rec"), "base", ["base", "alt"], {**gate, "alpha_time": 0.005})
    assert cmd == "harness analyze rec --control base --alpha-time 0.005"


def test_the_method_paragraph_names_the_design_and_its_alphas(tmp_path, cli):
    import analyze_builders as B
    from harness.analysis.record_readme import RecordInfo, method_text
    from harness.cli import analyze

    def recs(base, hosts):
        return [{"val_loss": 3.27 + i / 1e4, "train_time_s": base + i / 10, "host": h}
                for i, h in enumerate(hosts)]
    one = ["n1"] * 4
    two = ["n1", "n2", "n1", "n2"]
    info = RecordInfo(name="e", control="H0", treatment="H1", descriptions={}, script="s.py",
                      logs={"H0": (4, 4), "H1": (4, 4)}, hardware=[], software=[], ran="", source="",
                      exported="", reproduce="")
    spec = {"runs": 4, "order": "interleaved"}
    fixed = B.write_results(tmp_path / "fixed", {"H0": (1600, recs(98, one)), "H1": (1575, recs(97, one))})
    a = analyze.build(analyze.parse([str(fixed)]))
    text = method_text(spec, None, a, info)
    assert text.startswith("A fixed-sample design: 4 runs per arm planned")
    assert "Welch t-test that H1 is faster, at alpha 0.001" in text and "below 3.28, at alpha 0.01" in text
    assert "borrowed" not in text and "nodes" not in text
    seq = method_text(spec, {"method": "group-sequential t-tests"}, a, info)
    assert seq.startswith("A sequential design (group-sequential, --until-decisive)") and "descriptive" in seq
    assert "(anytime)" in method_text(spec, {"design": "anytime", "method": "e-processes"}, a, info)
    spread = B.write_results(tmp_path / "nodes", {"H0": (1600, recs(98, two)), "H1": (1575, recs(97, two))})
    b = analyze.build(analyze.parse([str(spread), "--known-loss-sigma", "0.0013"]))
    text = method_text(spec, None, b, info)
    assert "stratified Welch t-test of the difference within nodes" in text
    assert "Sigma not from these runs alone: loss sigma 0.0013 known" in text


def test_several_treatments_the_record_is_the_one_named(tmp_path, cli):
    from conftest import STAND_INS, scripted
    from harness.run.backends.memory import FakeRun
    exp = tmp_path / "three.toml"
    exp.write_text(f"""[experiment]
name = "three"
runs = 4

[defaults]
script = "{STAND_INS / 'fake_train.py'}"
launcher = "python"

[[hypothesis]]
name = "H0"
control = true
steps = 20

[[hypothesis]]
name = "H1"
steps = 18

[[hypothesis]]
name = "H2"
description = "slower"
steps = 20
""")
    cli.backend = cli.memory(scripted(steps={"H1": 18, "H2": 20},
                                      H2=lambda i, a: FakeRun(val_loss=3.05, train_time_ms=10_500 + 10 * i)))
    assert cli("run", exp, cwd=tmp_path).returncode == 0
    refused = cli("export", "results/three", "--out", "rec", cwd=tmp_path)
    assert refused.returncode == 2 and "2 treatments (H1, H2)" in refused.stderr
    r = cli("export", "results/three", "--out", "rec", "--treatment", "H1", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr      # H2's failed gate is not H1's
    assert sorted(p.name for p in (tmp_path / "rec").iterdir() if p.is_dir()) == ["H0", "H1"]
    readme = (tmp_path / "rec/README.md").read_text()
    assert "not a record" not in readme and "FAIL  H2  time" in readme     # the experiment's whole gate
    a = cli("analyze", "rec", cwd=tmp_path)
    assert "\n".join(table_of(a.stdout)) in readme
    bad = cli("export", "results/three", "--out", "rec2", "--treatment", "H9", cwd=tmp_path)
    assert bad.returncode == 2 and "its treatments are H1, H2" in bad.stderr
