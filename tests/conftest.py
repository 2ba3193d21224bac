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


    if os.environ.get("HARNESS_TEST_FSYNC") != "1":
        _skip_fsync()


class _OsWithoutFsync:
    """``os`` for harness.records in this process, but ``fsync`` returns at once.

    What fsync buys (the data on the platter at a power cut) no test can observe, and on a
    disk shared with other jobs each call costs milliseconds: thousands of record writes
    made the suite's time depend on the machine's neighbours. The write path is otherwise
    unchanged (temp file, flush, rename), tests still patch ``records.os.fsync`` to fail a
    write, and spawned CLIs keep the real one. ``HARNESS_TEST_FSYNC=1`` keeps it here too.
    """

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        os.fstat(fd)      # a closed or bad descriptor still fails, as fsync would


def _skip_fsync():
    from harness import records
    records.os = _OsWithoutFsync()


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


# -- in process: the runner on the in-memory backend, the CLI without a spawn ---------------

def scripted(steps=None, **per_arm):
    """A MemoryBackend generator: ``per_arm[hypothesis]`` is a FakeRun, a list of them (one
    per attempt; the last repeats) or a callable ``(index, attempt) -> FakeRun``; arms not
    named run like fake_train.py's ``ok`` mode (H1 a little faster). Each run gets its
    arm's step count (``steps``; default write_experiment's: H0 20, H1 18)."""
    import dataclasses

    from harness.run.backends.memory import FakeRun
    steps = {"H0": 20, "H1": 18, **(steps or {})}

    def gen(hyp, index, attempt):
        what = per_arm.get(hyp)
        if what is None:   # fake_train.py's numbers at SEED = index (base_time 10 s; H1 9.5 s)
            n = steps.get(hyp, 20)
            run = FakeRun(val_loss=round(3.0 + 1 / n + 0.001 * (index % 3), 4),
                          train_time_ms=(10.0 if hyp == "H0" else 9.5) * 1000 + 10.0 * index + 5.0)
        elif callable(what):
            run = what(index, attempt)
        elif isinstance(what, (list, tuple)):
            run = what[min(attempt, len(what)) - 1]
        else:
            run = what
        return dataclasses.replace(run, steps=steps[hyp]) if hyp in steps else run
    return gen


@pytest.fixture
def memory(monkeypatch):
    """Build a MemoryBackend; the runner does not sleep between its polls (time is polls)."""
    from harness.run import runner  # noqa: F401  (imports the modules of its loop)
    from harness.run.backends.memory import MemoryBackend
    # the loop's pause between polls, in whichever module of harness.run holds it
    for name, mod in list(sys.modules.items()):
        if name.startswith("harness.run") and hasattr(mod, "POLL_S") and "backends" not in name:
            monkeypatch.setattr(mod, "POLL_S", 0.0)

    def make(gen=None, **kw):
        return MemoryBackend(gen or scripted(), **kw)
    return make


def memory_runner(folder: Path, exp_path: Path, backend, events=None, **options):
    """A Runner of ``exp_path`` (results in ``folder/results/<name>``) on ``backend``."""
    from harness.data import spec as specmod
    from harness.data.store import Store
    from harness.run.runner import Options, Runner
    exp = specmod.load(exp_path)
    sink = events.append if events is not None else (lambda e: None)
    return Runner(exp, Store(folder / "results" / exp.name), backend, folder, exp_path.read_text(),
                  Options(**options), on_event=sink)


class CliResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(monkeypatch, capsys, memory):
    """``cli(*args, cwd=...)`` runs ``harness ARGS`` in this process, as ``harness()`` does in a
    new one; ``harness run`` launches on ``cli.backend`` (a MemoryBackend) when it is set."""
    from harness import cli as climod
    from harness.cli import run as runmod

    class Cli:
        backend = None

        def __call__(self, *args, cwd, env=None, timeout=None):   # timeout: nothing is spawned
            args = [str(a) for a in args]
            monkeypatch.chdir(cwd)
            for k, v in (env or {}).items():
                monkeypatch.setenv(k, v)
            monkeypatch.setattr(sys, "argv", ["harness", *args])
            if self.backend is not None:
                monkeypatch.setattr(runmod, "make_backend", lambda *a, **k: self.backend)
            capsys.readouterr()
            try:
                code = climod.main(args)
            except SystemExit as e:          # argparse's own errors
                code = e.code if isinstance(e.code, int) else 2
            out, err = capsys.readouterr()
            return CliResult(code, out, err)
    c = Cli()
    c.memory = memory
    return c


@pytest.fixture(scope="session")
def record_repo(tmp_path_factory):
    """A fake clone of the speedrun repository (tests/fixtures/make_record_repo.py), made once;
    tests copy what they change."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
    import make_record_repo
    return make_record_repo.build(tmp_path_factory.mktemp("speedrun-clone"))
