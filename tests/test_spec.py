"""Experiment files: every mistake is one line naming file and key, exit 2, nothing launched."""
import pytest

from conftest import STAND_INS, harness
from harness.data import spec

SCRIPT = STAND_INS / "fake_train.py"

GOOD = f"""
[experiment]
name = "e"
runs = 3
[defaults]
script = "{SCRIPT}"
nproc_per_node = 8
env = {{ DATA_PATH = "data/fineweb10B" }}
args = {{ compile = true }}
[[hypothesis]]
name = "H0"
control = true
steps = 1600
args = {{ ve_layout = ".12...012", num_iterations = 1600 }}
[[hypothesis]]
name = "H1"
steps = 1575
args = {{ ve_layout = ".01...345", num_iterations = 1575, compile = false }}
env = {{ EXTRA = 1 }}
"""


def test_good_file_resolves_flags_env_and_order(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text(GOOD)
    exp = spec.load(p, tmp_path)
    h0, h1 = exp.hypotheses
    assert exp.control is h0 and exp.alpha_time == 0.001 and exp.target_loss == 3.28
    assert h0.flags() == ["--compile", "--ve-layout", ".12...012", "--num-iterations", "1600"]
    assert h1.flags() == ["--ve-layout", ".01...345", "--num-iterations", "1575"]  # false: no flag
    assert h1.env == {"DATA_PATH": "data/fineweb10B", "EXTRA": "1"}
    assert h0.argv("s.py")[1:3] == ["--standalone", "--nproc_per_node=8"]
    assert exp.launch_order() == [("H0", 0), ("H1", 0), ("H0", 1), ("H1", 1), ("H0", 2), ("H1", 2)]
    assert exp.launch_order(order="blocked")[:3] == [("H0", 0), ("H0", 1), ("H0", 2)]
    rnd = exp.launch_order(order="random")
    assert sorted(rnd) == sorted(exp.launch_order()) and rnd == exp.launch_order(order="random")
    # every round holds each arm once, so stopping early never leaves arms unbalanced
    assert all({h for h, _ in rnd[i:i + 2]} == {"H0", "H1"} for i in range(0, 6, 2))


BAD = [
    ("no control", GOOD.replace("control = true\n", ""), "no control"),
    ("two controls", GOOD.replace('name = "H1"\n', 'name = "H1"\ncontrol = true\n'), "2 controls"),
    ("unknown key", GOOD.replace("runs = 3", "runz = 3"), "unknown key 'runz'"),
    ("bad type", GOOD.replace("runs = 3", 'runs = "3"'), "experiment.runs"),
    ("bad bool", GOOD.replace("control = true", 'control = "yes"'), "control"),
    ("duplicate", GOOD.replace('name = "H1"', 'name = "h0"'), "duplicate name"),
    ("unsafe name", GOOD.replace('name = "H1"', 'name = "../x"'), "not safe as a folder name"),
    ("missing script", GOOD.replace(str(SCRIPT), "nope/train_gpt.py"), "not found"),
    ("bad order", GOOD.replace("runs = 3", 'order = "zigzag"'), "experiment.order"),
    ("bad alpha", GOOD.replace("runs = 3", "alpha_time = 2"), "experiment.alpha_time"),
    ("bad args value", GOOD.replace("compile = true", "compile = [1, 2]"), "args.compile"),
    ("toml syntax", GOOD.replace("runs = 3", "runs = "), "not valid TOML"),
    ("unknown section", GOOD + "\n[extra]\nx = 1\n", "unknown section"),
    ("one hypothesis", GOOD.split("[[hypothesis]]\nname = \"H1\"")[0], "only one hypothesis"),
]


@pytest.mark.parametrize("label,text,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_one_line_exit_2_and_nothing_launched(tmp_path, label, text, needle, cli):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    out = cli("run", p, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert needle in lines[0] and str(p) in lines[0]
    assert not (tmp_path / "results").exists()


def test_missing_file_and_bad_flags(tmp_path):
    out = harness("run", tmp_path / "nope.toml", cwd=tmp_path)
    assert out.returncode == 2 and "no such experiment file" in out.stderr
    p = tmp_path / "e.toml"
    p.write_text(GOOD)
    for args in (["--runs", "0"], ["--retries", "-1"], ["--order", "zigzag"], ["--max-runs", "3"]):
        out = harness("run", p, *args, cwd=tmp_path)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)


def test_descriptions_and_compile_cache_are_not_part_of_the_frozen_spec(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text(GOOD)
    a = spec.load(p, tmp_path).frozen_view()
    p.write_text(GOOD.replace('name = "H1"', 'name = "H1"\ndescription = "reworded"')
                 .replace("runs = 3", "runs = 3\ncompile_cache = false"))
    assert spec.load(p, tmp_path).frozen_view() == a
    p.write_text(GOOD.replace("num_iterations = 1575", "num_iterations = 1550"))
    assert spec.load(p, tmp_path).frozen_view() != a
