import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAND_INS = Path(__file__).resolve().parent / "stand_ins"
_SESSION_CACHE: list[str] = []


def pytest_configure(config):
    """A sealed, empty calibration cache per test run.

    Tests never read or write the user's ``~/.cache``: the sequential calibrations they
    need are committed with the code (``harness/design/calibrations/``), and any other is
    computed into this run's own folder. Spawned CLIs inherit it through ``HARNESS_CACHE``.
    """
    folder = Path(tempfile.mkdtemp(prefix="harness-test-cache-"))
    _SESSION_CACHE.append(str(folder))
    os.environ["HARNESS_CACHE"] = str(folder)


def pytest_unconfigure(config):
    for folder in _SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    # every test on the real one-node cluster is a SLURM test, wherever it is written
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)


def harness(*args, cwd, timeout=300, env=None):
    """Run the CLI as a user would; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def write_experiment(folder: Path, name="exp", runs=2, h0_args=None, h1_args=None,
                     launcher="python", script=None, extra_exp="", extra_defaults="") -> Path:
    script = script or STAND_INS / "fake_train.py"
    h0 = {"num_iterations": 20, **(h0_args or {})}
    h1 = {"num_iterations": 18, "base_time": 9.5, **(h1_args or {})}

    def table(d):
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + " }"

    text = f"""
[experiment]
name = "{name}"
runs = {runs}
retries = 1
{extra_exp}

[defaults]
script = "{script}"
launcher = "{launcher}"
nproc_per_node = 1
{extra_defaults}

[[hypothesis]]
name = "H0"
control = true
steps = {h0['num_iterations']}
args = {table(h0)}

[[hypothesis]]
name = "H1"
steps = {h1['num_iterations']}
args = {table(h1)}
"""
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def results_of(folder: Path):
    out = []
    for p in sorted(folder.glob("*/*/result.json")):
        out.append(json.loads(p.read_text()))
    return out


@pytest.fixture
def exp_dir(tmp_path):
    return tmp_path
