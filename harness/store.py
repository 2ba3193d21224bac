"""The results folder of one experiment: lock, frozen spec, run folders.

Layout::

    results/<experiment>/
        .lock                      flock held by the one runner at work
        spec.json                  the frozen experiment (what later runs must match)
        sequential.json            the --until-decisive plan, fixed at its first run
        experiment.toml            the file as it was first run
        <hypothesis>/<NNN>-<attempt>/
            launch.json            written when the attempt starts (job id, command)
            log.txt                stdout + stderr, streamed
            result.json            written atomically when the attempt ends
            script.py              snapshot of the script that ran

Nothing here is ever deleted: a failed or interrupted attempt keeps its folder and
the next attempt gets a new one.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from harness.classify import counted_attempt
from harness.errors import UserError
from harness.records import RunRecord, atomic_write_text
from harness.spec import Experiment

SEQUENTIAL_FILE = "sequential.json"


def sequential_path(root: str | Path) -> Path:
    """Where a results folder keeps its sequential plan (the one spelling of the name)."""
    return Path(root) / SEQUENTIAL_FILE


@dataclass
class Slot:
    """Every attempt at one (hypothesis, index) run."""

    hypothesis: str
    index: int
    records: list[RunRecord] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)  # started, no result.json

    @property
    def done(self) -> RunRecord | None:
        return counted_attempt(self.records)   # the one rule, shared with the analysis

    @property
    def failures(self) -> int:
        return sum(r.status in ("failed", "timeout") for r in self.records)

    @property
    def next_attempt(self) -> int:
        return 1 + len(self.records) + len(self.orphans)


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self._lock_fd: int | None = None

    # -- lock: one runner per results folder -------------------------------------------
    def lock(self) -> None:
        path = self.root / ".lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"{self.root}: cannot use as a results folder ({e.strerror or e}); "
                            "give a folder you can write to with --results") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{self.root}: in use by another runner ({holder}); "
                            "wait for it to finish or give another --results folder")
        # flock dies with the process, so a SIGKILLed runner never leaves a stale lock
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- frozen spec -----------------------------------------------------------------
    def freeze(self, exp: Experiment, source_text: str) -> None:
        """Store the spec on first use; refuse a changed spec afterwards."""
        spec_path = self.root / "spec.json"
        if spec_path.exists():
            try:
                stored = json.loads(spec_path.read_text())
            except (OSError, ValueError) as e:
                raise UserError(f"{spec_path}: unreadable frozen spec ({e}); restore it from a copy")
            if not isinstance(stored, dict):
                raise UserError(f"{spec_path}: not a frozen spec (a JSON object); restore it from a copy")
            changes = diff_frozen(stored.get("frozen", {}), exp.frozen_view())
            if changes:
                shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
                raise UserError(f"{self.root} holds experiment '{stored.get('name')}' with another spec "
                                f"({shown}); give the experiment a new name or use --results NEWDIR")
            if stored.get("runs", 0) >= exp.runs:
                return
        data = exp.to_dict()
        data["frozen"] = exp.frozen_view()
        atomic_write_text(spec_path, json.dumps(data, indent=2) + "\n")
        toml_path = self.root / "experiment.toml"
        if not toml_path.exists():
            atomic_write_text(toml_path, source_text)

    @property
    def sequential_path(self) -> Path:
        return sequential_path(self.root)

    def read_spec(self) -> dict | None:
        path = self.root / "spec.json"
        return json.loads(path.read_text()) if path.exists() else None

    # -- run folders -------------------------------------------------------------------
    def attempt_dir(self, hypothesis: str, index: int, attempt: int) -> Path:
        return self.root / hypothesis / f"{index:03d}-{attempt}"

    def slots(self, hypotheses: list[str]) -> dict[tuple[str, int], Slot]:
        """Every attempt on disk, grouped by slot."""
        out: dict[tuple[str, int], Slot] = {}
        for hyp in hypotheses:
            folder = self.root / hyp
            if not folder.is_dir():
                continue
            for d in sorted(folder.iterdir(), key=_attempt_order):
                index = _index_of(d)
                if index is None:
                    continue
                slot = out.setdefault((hyp, index), Slot(hyp, index))
                result = d / "result.json"
                if result.exists():
                    try:
                        slot.records.append(RunRecord.load(result))
                    except (OSError, ValueError, TypeError, AttributeError) as e:
                        raise UserError(f"{result}: not a readable run record ({e}); restore it "
                                        "from a copy or move its run folder aside") from None
                elif (d / "launch.json").exists():
                    slot.orphans.append(d)
        return out


def _attempt_order(d: Path) -> tuple:
    # 000-10 after 000-9: attempts in the order they ran, not as strings sort
    head, _, attempt = d.name.partition("-")
    return (head, int(attempt) if attempt.isdigit() else -1, d.name)


def _index_of(d: Path) -> int | None:
    head, sep, attempt = d.name.partition("-")
    if not (d.is_dir() and sep and head.isdigit() and attempt.isdigit()):
        return None
    return int(head)


def diff_frozen(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two frozen specs ('key: old -> new')."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_frozen(a, b, name + ".")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
                isinstance(x, dict) for x in a + b):
            for x, y in zip(a, b):
                out += diff_frozen(x, y, f"{name}[{x.get('name', '?')}].")
        elif a != b:
            if key == "script_sha256":
                out.append(f"{name}: script content changed")
            else:
                out.append(f"{name}: {a!r} -> {b!r}")
    return out
