"""Attempt folders: what one try of one run gets on disk, before it starts and after it ends.

``<hypothesis>/<NNN>-<attempt>/`` holds the script's snapshot, a scratch working
directory (``script-files/``) that mirrors the project root, and what the run wrote.
This module makes the folder and the attempt's launch spec, and tidies the folder once
the attempt has ended; the folder's JSON files are the store's (``launch.json``,
``result.json``).
"""
from __future__ import annotations

import errno
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.data.spec import Experiment, Hypothesis
from harness.data.store import PROBE_FILE, SCRIPT_FILES, Store
from harness.run.backends.base import Handle, LaunchSpec
from harness.run.tail import Tail

RUN_MARKER = "HARNESS_RUN_DIR"  # in every run's environment: finds its processes, even detached ones


@dataclass
class Job:
    """An attempt in flight: started here, or found again by resume."""

    hyp: Hypothesis
    index: int
    attempt: int
    order: int
    run_dir: Path
    handle: Handle
    tail: Tail
    t0: float | None = None      # time.monotonic() at its launch here; None: launched by an earlier runner


def run_id(index: int, attempt: int) -> str:
    return f"{index:03d}-{attempt}"


def prepare(store: Store, exp: Experiment, hyp: Hypothesis, index: int, attempt: int, base: Path,
            env: dict[str, str], timeout: float | None, node: str | None) -> LaunchSpec:
    """Make the attempt's folder (snapshot, scratch cwd) and the spec the backend starts."""
    script = Path(hyp.script)
    src = script if script.is_absolute() else base / script
    run_dir = store.open_attempt(hyp.name, index, attempt, src)
    workdir = _workdir(run_dir, base)
    # the scratch cwd mirrors the root's entries only: a path out of the root ('../x.py')
    # would resolve inside the run folder, so it is given absolute
    argv = _probed(exp, hyp.argv(str(src) if ".." in script.parts else hyp.script), hyp, run_dir)
    env = dict(env)
    env[RUN_MARKER] = str(run_dir)
    return LaunchSpec(run_dir=run_dir, workdir=workdir, argv=argv, env=env,
                      log_path=run_dir / "log.txt", timeout_s=timeout, nproc=hyp.nproc_per_node,
                      node=node, worker=hyp.name if hyp.workers else None)


def prepare_preflight(store: Store, hyp: Hypothesis, base: Path, env: dict[str, str],
                      timeout: float | None) -> LaunchSpec:
    """The folder and spec of a preflight (harness/run/preflight.py): the run's command, no probe."""
    script = Path(hyp.script)
    src = script if script.is_absolute() else base / script
    run_dir = store.open_preflight(hyp.name, src)
    workdir = _workdir(run_dir, base)
    argv = hyp.argv(str(src) if ".." in script.parts else hyp.script)
    env = dict(env)
    env[RUN_MARKER] = str(run_dir)
    return LaunchSpec(run_dir=run_dir, workdir=workdir, argv=argv, env=env,
                      log_path=run_dir / "log.txt", timeout_s=timeout, nproc=hyp.nproc_per_node)


def launch_info(backend: str, hyp_name: str, index: int, attempt: int, order: int, spec: LaunchSpec,
                pairing: str, node: str | None) -> dict:
    """What ``launch.json`` holds before the backend answered (see docs/results-folder.md)."""
    return {"backend": backend, "job_id": None, "hypothesis": hyp_name, "index": index,
            "attempt": attempt, "order": order, "argv": spec.argv, "env": spec.env,
            "workdir": str(spec.workdir), "pairing": pairing, "node": node,
            "host": socket.gethostname()}


def _probed(exp: Experiment, argv: list[str], hyp: Hypothesis, run_dir: Path) -> list[str]:
    """With ``speed_probe``: the fixed workload runs first, on the run's node, then execs the run."""
    if not exp.speed_probe:
        return argv
    probe = Path(__file__).resolve().parent / "probe.py"
    return [sys.executable, str(probe), "--out", str(run_dir / PROBE_FILE),
            "--nproc", str(hyp.nproc_per_node), "--", *argv]


def _workdir(run_dir: Path, base: Path) -> Path:
    """A scratch cwd that mirrors the project root except ``logs/``.

    Relative paths (data/, sibling modules) resolve as from the root, while a
    script that writes ``logs/<uuid>.txt`` writes into this run's own folder.
    """
    work = run_dir / SCRIPT_FILES
    work.mkdir()
    for entry in os.listdir(base):
        if entry != "logs":
            os.symlink(base / entry, work / entry)
    return work


def tidy(run_dir: Path, base: Path) -> list[str]:
    """Keep what the script wrote; return the logs in the folder (``log.txt`` first).

    The scratch folder's mirror links are removed; every other entry (the script's
    ``logs/``, checkpoints, ...) stays where the script put it, under ``script-files/``,
    so nothing is renamed, overwritten or followed out of the run folder.
    """
    work = run_dir / SCRIPT_FILES
    if work.is_dir() and not work.is_symlink():
        for entry in os.listdir(work):
            p = work / entry
            if p.is_symlink() and os.readlink(p) == str(base / entry):
                _remove(p, p.unlink)  # ours: a mirror of the project root
        if not os.listdir(work):
            _remove(work, work.rmdir)
    return ["log.txt"] + [str(p.relative_to(run_dir)) for p in _script_logs(work / "logs")]


def _remove(path: Path, remove) -> None:
    """Tidying is cosmetic: an entry held busy (EBUSY: a mount point, a file in use) stays
    where it is, and the attempt's record is still written; any other error is raised."""
    try:
        remove()
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise


def _script_logs(folder: Path) -> list[Path]:
    """Regular files under the script's logs/ folder, never through a link."""
    if folder.is_symlink() or not folder.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk does not follow links
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not p.is_symlink() and p.is_file():
                out.append(p)
    return sorted(out)
