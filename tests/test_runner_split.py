"""Issue 18: the runner's five jobs (scheduling loop, attempt folders, log tailing, record
building, resume) were one file of 598 lines; each now has its module under harness/run/."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "harness" / "run"


def test_the_runner_keeps_its_public_face():
    from harness.run.runner import Options, Runner, Stopped, run_id
    assert run_id(7, 2) == "007-2"
    assert {"runs", "order", "timeout_s", "retries", "compile_cache"} <= set(Options.__dataclass_fields__)
    assert issubclass(Stopped, Exception)
    params = list(inspect.signature(Runner).parameters)
    assert params == ["exp", "store", "backend", "base_dir", "source_text", "options", "on_event",
                      "decider", "want_steps"]
    assert callable(Runner.run) and callable(Runner.without) and callable(Runner.commands)


def test_the_scheduling_loop_reads_on_one_screen():
    from harness.run.runner import Runner
    lines = inspect.getsource(Runner._run).splitlines()
    assert len(lines) <= 45, f"Runner._run is {len(lines)} lines"


def test_the_runner_module_touches_no_file_itself():
    # folders, snapshots, links and JSON files are the attempt module's and the store's
    tree = ast.parse((RUN / "runner.py").read_text())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not used & {"os", "shutil", "json", "socket", "subprocess", "hashlib", "open"}, used
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not modules & {"os", "shutil", "json", "socket", "subprocess", "hashlib"}, modules
