"""`harness extract`: the files a speedrun log embeds, rebuilt byte for byte.

The logs here are written the way the records write them: a small script that reads
itself and the kernel file beside it, logs that text, a rule, then its run output."""
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import harness
from harness.errors import UserError
from harness.logs.extract import parse_embedded

# The records' logging prologue (print0 style), with run output after the rule.
PRINT_SCRIPT = '''import os
import sys

with open(sys.argv[0], 'r') as f:
    code = f.read()
with open(os.path.join(os.path.dirname(sys.argv[0]), 'triton_kernels.py'), 'r') as f:
    code += f"\\n\\n{'-'*40}\\n# triton_kernels.py\\n{'-'*40}\\n\\n"
    code += f.read()
DOC = """a docstring holding a rule of its own:
====================================================================================================
and a fake separator-free dash line ----------------------------------------
"""
logfile = sys.argv[1]
def print0(s):
    with open(logfile, "a") as f:
        print(s, file=f)
print0(code)
print0("="*100)
print0(f"Running Python {sys.version}")
print0("="*100)
print0("step:0/10 val_loss:10.8000 train_time:0ms step_avg:0.00ms")
print0("step:10/10 val_loss:4.0000 train_time:1000ms step_avg:100.00ms")'''

# The older shape: the script alone, written with f.write (no newline added).
WRITE_SCRIPT = '''import sys
with open(sys.argv[0]) as f:
    code = f.read()
with open(sys.argv[1], "w") as f:
    f.write(code)
    f.write("=" * 100 + "\\n")
    f.write("Running python 3\\n")
    f.write("step:10/10 val_loss:4.0000 train_time:1000ms step_avg:100.00ms\\n")
'''

KERNELS = "import torch\n\n\ndef k(x):\n    return x * 2  # ----------------------------------------"


def make_log(tmp_path, script: str, kernels: str | None, name="run.txt") -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "train_gpt.py").write_text(script)
    if kernels is not None:
        (src / "triton_kernels.py").write_text(kernels)
    log = tmp_path / name
    subprocess.run([sys.executable, str(src / "train_gpt.py"), str(log)], check=True)
    return src, log


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("tail", ["", "\n", "\n\n"])
def test_rebuilds_script_and_kernels_byte_for_byte(tmp_path, tail, cli):
    src, log = make_log(tmp_path, PRINT_SCRIPT + tail, KERNELS + tail)
    out = tmp_path / "out"
    r = cli("extract", log, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["train_gpt.py", "triton_kernels.py"]
    for name in ("train_gpt.py", "triton_kernels.py"):
        assert (out / name).read_bytes() == (src / name).read_bytes(), (name, tail)
        assert sha(out / name) in r.stdout
    # the rebuilt script runs and logs the same code again
    log2 = tmp_path / "again.txt"
    subprocess.run([sys.executable, str(out / "train_gpt.py"), str(log2)], check=True)
    assert log2.read_text().split("=" * 100 + "\nRunning")[0] == log.read_text().split("=" * 100 + "\nRunning")[0]


def test_write_style_log_keeps_the_scripts_own_trailing_newline(tmp_path, cli):
    src, log = make_log(tmp_path, WRITE_SCRIPT, None)
    out = tmp_path / "out"
    r = cli("extract", log, "--out", out, "--main-name", "record.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in out.iterdir()] == ["record.py"]
    assert (out / "record.py").read_bytes() == (src / "train_gpt.py").read_bytes()


def test_same_files_again_is_a_no_op_and_different_files_are_refused(tmp_path, cli):
    _, log = make_log(tmp_path, PRINT_SCRIPT, KERNELS)
    out = tmp_path / "out"
    assert cli("extract", log, "--out", out, cwd=tmp_path).returncode == 0
    assert cli("extract", log, "--out", out, cwd=tmp_path).returncode == 0
    (out / "triton_kernels.py").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("extract", log, "--out", out, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "triton_kernels.py" in r.stderr and "other content" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing changed


def test_a_log_that_embeds_nothing_is_one_line_exit_2(tmp_path, cli):
    # the project's trainer's log shape: a config line, environment, rule, steps
    log = tmp_path / "trainer.txt"
    log.write_text('config: {"preset": "tiny"}\nRunning Python 3.12\n' + "=" * 100
                   + "\nstep:0/30 val_loss:5.5\n")
    r = cli("extract", log, "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "embeds no script" in r.stderr and str(log) in r.stderr
    assert not (tmp_path / "out").exists()
    log.write_text("step:0/30 val_loss:5.5\nstep:30/30 val_loss:4.0\n")  # no rule at all
    r = cli("extract", log, "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2 and "embeds no source" in r.stderr
    r = cli("extract", tmp_path / "missing.txt", "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2 and "missing.txt" in r.stderr and "Traceback" not in r.stderr


def test_appended_file_names_cannot_leave_the_folder():
    text = ("x = 1\n\n" + "-" * 40 + "\n# ../evil.py\n" + "-" * 40 + "\n\nprint(1)\n"
            + "=" * 100 + "\nRunning Python\n")
    with pytest.raises(UserError, match="not a plain relative path"):
        parse_embedded(text)


def test_several_appended_files_in_order():
    sep = lambda n: "\n\n" + "-" * 40 + f"\n# {n}\n" + "-" * 40 + "\n\n"
    code = "print0(code)\n" + sep("a.py") + "A = 1\n" + sep("b.py") + "B = 2"
    files = parse_embedded(code + "\n" + "=" * 100 + "\nRunning Python 3\n")
    assert [(f.name, f.text) for f in files] == [
        ("train_gpt.py", "print0(code)\n"), ("a.py", "A = 1\n"), ("b.py", "B = 2")]


def test_extracted_files_have_ordinary_permissions(tmp_path, cli):
    # mkstemp's 0600 made a rebuilt script unreadable to the group (issue 25)
    _, log = make_log(tmp_path, PRINT_SCRIPT, KERNELS)
    old = os.umask(0o022)
    try:
        r = cli("extract", log, "--out", tmp_path / "out", cwd=tmp_path)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes == {"train_gpt.py": 0o644, "triton_kernels.py": 0o644}
