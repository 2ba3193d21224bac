"""A results folder's runs as a record folder of the speedrun repository (``harness export``).

The upstream layout: one folder per arm holding its runs' logs, the treatment's script
beside them, a README. A run's log is the one its script wrote
(``<run>/script-files/logs/<uuid>.txt``) when that log carries the run's figures, else
the harness's ``log.txt`` (the script's stdout) under the run's id. Everything is written
into a hidden folder beside the target first and renamed into place at the end, so a
failed export leaves no half-written record folder, and an existing one is never touched.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.data.sources import is_log_name
from harness.errors import UserError
from harness.groups import Group, Run
from harness.logs.extract import Embedded, parse_embedded
from harness.logs.logparse import NotALogFile, parse_file_runs
from harness.data.store import SCRIPT_FILES
from harness.records import umask


@dataclass(frozen=True)
class ExportedLog:
    source: Path        # where it is in the results folder
    name: str           # its name in the arm's folder
    own: bool           # the script's own log (else the harness's log.txt)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _carries(path: Path, run: Run) -> bool:
    """Whether the log at ``path`` ends with the run's own final figures."""
    try:
        s = parse_file_runs(path)[-1]
    except (OSError, NotALogFile):
        return False
    rec = run.record
    return (s.finished and s.final_step == rec.final_step and _same(s.val_loss, rec.val_loss)
            and _same(s.train_time_s, rec.train_time_s))


def run_log(run: Run) -> ExportedLog:
    """The log to publish for one run (see the module docstring)."""
    run_dir = Path(run.source).parent
    logs = run_dir / SCRIPT_FILES / "logs"
    own = []
    if logs.is_dir() and not logs.is_symlink():
        own = [p for p in sorted(logs.rglob("*")) if p.is_file() and not p.is_symlink()
               and is_log_name(p.name) and _carries(p, run)]
    if len(own) == 1:
        return ExportedLog(own[0], own[0].name, True)
    return ExportedLog(Path(run.source), f"{run.record.run_id}.txt", False)


def arm_logs(g: Group) -> list[ExportedLog]:
    """The logs of a group's counted runs, each under a name unique in the arm's folder."""
    out, names = [], set()
    for run in g.runs:
        log = run_log(run)
        if log.name in names:       # two scripts' logs of one name: keep both, the run's id first
            log = ExportedLog(log.source, f"{run.record.run_id}-{log.name}", log.own)
        names.add(log.name)
        out.append(log)
    return out


def snapshot(g: Group) -> tuple[str, bytes]:
    """The script an arm ran, from its runs' snapshots: (file name, content)."""
    for run in g.runs:
        snaps = sorted(Path(run.source).parent.glob("snapshot-*"))
        if snaps:
            return snaps[0].name.removeprefix("snapshot-"), snaps[0].read_bytes()
    raise UserError(f"{g.origin}: no run of {g.name} keeps a snapshot of its script "
                    f"(snapshot-<script> in its run folders); export needs the script as it ran")


def embedded_beside(logs: list[ExportedLog], main: bytes) -> list[Embedded]:
    """The files a treatment's log appends to its script (kernels), when that script is ``main``."""
    for log in logs:
        try:
            files = parse_embedded(log.source.read_bytes().decode("utf-8"), str(log.source))
        except (OSError, UnicodeDecodeError, UserError):
            continue
        if files[0].data == main:
            return files[1:]
    return []


def refuse_existing(out: Path) -> None:
    if os.path.lexists(out):
        raise UserError(f"--out {out}: already exists; export never overwrites a folder, "
                        f"pass a new one")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: its folder {out.parent} does not exist")


def stage(out: Path) -> Path:
    """A hidden folder beside ``out`` to write into (``publish`` renames it to ``out``)."""
    refuse_existing(out)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".export", dir=out.parent))


def write_arm(stage_dir: Path, arm: str, logs: list[ExportedLog]) -> None:
    folder = stage_dir / arm
    folder.mkdir()
    for log in logs:
        shutil.copyfile(log.source, folder / log.name)   # a plain copy: ordinary permissions


def write_file(stage_dir: Path, name: str, data: bytes) -> None:
    path = stage_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def publish(stage_dir: Path, out: Path) -> None:
    os.chmod(stage_dir, 0o777 & ~umask())   # mkdtemp's 0700 would hide it from the team
    try:
        os.rename(stage_dir, out)            # fails, rather than merges, if out appeared meanwhile
    except OSError as e:
        shutil.rmtree(stage_dir, ignore_errors=True)
        raise UserError(f"--out {out}: cannot be created ({e.strerror}); nothing was written") from None


def discard(stage_dir: Path) -> None:
    shutil.rmtree(stage_dir, ignore_errors=True)

