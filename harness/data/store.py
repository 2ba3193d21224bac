"""The results folder of one experiment: its one writer and its one reader.

Layout::

    results/<experiment>/
        .lock                      flock held by the one runner at work
        spec.json                  the frozen experiment (what later runs must match)
        sequential.json            the --until-decisive plan, fixed at its first run
        experiment.toml            the file as it was first run
        <hypothesis>/<NNN>-<attempt>/
            launch.json            written when the attempt starts (job id, command)
            log.txt                stdout + stderr, streamed (by the backend)
            result.json            written atomically when the attempt ends
            snapshot-<script>      the script that ran

Every file the harness itself puts in the folder is written here (atomically), and
every JSON file in it is read here: the runner, ``status`` and ``analyze`` all come
through this module. What the run's own processes write (``log.txt``, ``probe.json``,
``script-files/``) is theirs. Nothing here is ever deleted: a failed or interrupted
attempt keeps its folder and the next attempt gets a new one.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.logs.classify import counted_attempt
from harness.errors import UserError
from harness.records import TMP_SUFFIX, RunRecord, atomic_write_text, dumps

if TYPE_CHECKING:   # the parser of experiment files asks this module for the folder's file names
    from harness.data.spec import Experiment

SEQUENTIAL_FILE = "sequential.json"
SPEC_FILE = "spec.json"     # the frozen experiment; its presence makes a folder a results folder
LAUNCH_FILE = "launch.json"
RESULT_FILE = "result.json"
SCRIPT_FILES = "script-files"   # the run's scratch cwd: what the script wrote there stays (run/attempt.py)
PROBE_FILE = "probe.json"   # written by the speed probe inside the run (harness/run/probe.py)

# The schema_version of each JSON file the store writes. Raise one when the meaning of a
# field of that file changes (renamed, another unit, another rule); a new field that older
# readers can ignore needs none. A file without schema_version was written before versions
# existed and reads as version 1; a file newer than its entry here is refused, untouched.
# spec.json 2: it records the design the folder is collected under (``design``, below);
# result.json 2: a run's GPU-seconds and phases (``gpu_s``, ``phases``)
SCHEMA_VERSIONS = {SPEC_FILE: 2, SEQUENTIAL_FILE: 1, LAUNCH_FILE: 1, RESULT_FILE: 2}
SCHEMA_KEY = "schema_version"
UPGRADE = "upgrade the harness (git pull, then pip install -e .) to read it"


# How a folder is collected, kept in spec.json so that it survives the loss of any other
# file: {"kind": ..., "borrowed": bool, "sweep": bool}. The kinds are an open set (a
# harness that knows more designs writes more); these two keep their decisions in
# sequential.json, and a folder of one of them without it has no valid verdict.
DESIGN_KEY = "design"
FIXED = "fixed"
SEQUENTIAL_KINDS = ("group-sequential", "anytime", "multi-arm")   # decisions in sequential.json


def sequential_path(root: str | Path) -> Path:
    """Where a results folder keeps its sequential plan (the one spelling of the name)."""
    return Path(root) / SEQUENTIAL_FILE


def spec_path(root: str | Path) -> Path:
    return Path(root) / SPEC_FILE


def _versioned(kind: str, data: dict) -> dict:
    """``data`` as stored: its schema_version first."""
    return {SCHEMA_KEY: SCHEMA_VERSIONS[kind], **{k: v for k, v in data.items() if k != SCHEMA_KEY}}


def _unversioned(path: Path, kind: str, data):
    """``data`` read from ``path`` without its schema_version, once the version is one we read."""
    if not isinstance(data, dict) or SCHEMA_KEY not in data:
        return data          # older than versions (or no object: the caller says what is wrong)
    version = data[SCHEMA_KEY]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{path}: schema_version {version!r} is not a positive whole number; "
                        "restore the file from a copy")
    if version > SCHEMA_VERSIONS[kind]:
        raise UserError(f"{path}: written by a newer harness (schema_version {version}, this one reads "
                        f"up to {SCHEMA_VERSIONS[kind]}); {UPGRADE}")
    return {k: v for k, v in data.items() if k != SCHEMA_KEY}


def _load(path: Path, kind: str, what: str):
    """The parsed JSON of ``path`` (a file of ``kind``), version checked; UserError when unreadable."""
    if path.is_dir():
        raise UserError(f"{path} is a folder, not the {what}; move it aside or restore the file from a copy")
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror or e}); fix its permissions") from None
    except ValueError as e:      # bad JSON or bad UTF-8
        raise UserError(f"{path} is not valid JSON ({e}); restore the {what} from a copy") from None
    except RecursionError:       # nested deeper than the parser's stack: no record is
        raise UserError(f"{path} is not a {what} (JSON nested too deeply to read); restore it from a "
                        f"copy") from None
    return _unversioned(path, kind, data)


def _save(path: Path, kind: str, data: dict, text=dumps) -> None:
    atomic_write_text(path, text(_versioned(kind, data)) + "\n")


def is_results_folder(path: str | Path) -> bool:
    """A folder holding a frozen spec: what ``analyze`` and ``status`` read as one experiment."""
    return spec_path(path).is_file()


def read_spec(root: str | Path) -> dict | None:
    """The frozen spec of a results folder, checked; None when the folder has none.

    The one reader of ``spec.json`` (the runner, ``status`` and ``analyze`` all come
    here). A file that cannot be read or has another shape is a one-line ``UserError``
    naming it; the file is left as it is.
    """
    path = spec_path(root)
    if not path.exists():
        return None
    data = _load(path, SPEC_FILE, "frozen spec")
    problem = _spec_problem(data)
    if problem:
        raise UserError(f"{path}: not a frozen experiment spec ({problem}); restore it from a copy")
    return data


def read_plan(root: str | Path) -> dict | None:
    """The sequential plan of a results folder (``sequential.json``); None when it has none."""
    path = sequential_path(root)
    if not path.exists():
        return None
    data = _load(path, SEQUENTIAL_FILE, "sequential plan")
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a sequential plan (not a JSON object); restore it from a copy")
    return data


def write_plan(root: str | Path, plan: dict) -> None:
    """Store the sequential plan (its decisions are journaled in it as they are made)."""
    # json.dumps as the plans always were: their boundaries are stored as computed
    _save(sequential_path(root), SEQUENTIAL_FILE, plan, text=lambda d: json.dumps(d, indent=2))


def read_record(path: str | Path) -> RunRecord:
    """One attempt's ``result.json``; a one-line ``UserError`` naming it when it is no record."""
    path = Path(path)
    data = _load(path, RESULT_FILE, "run record")
    try:
        return RunRecord.from_dict(data)
    except (TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{path}: not a run record ({e}); restore it from a copy or move its run "
                        "folder aside") from None


def read_launch(run_dir: str | Path) -> dict | None:
    """An attempt's ``launch.json``; None when it has none or it cannot be read.

    An unreadable one is an attempt resume cannot follow (it is redone); one written by
    a newer harness is refused, as every file of the folder is.
    """
    path = Path(run_dir) / LAUNCH_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    data = _unversioned(path, LAUNCH_FILE, data)
    return data if isinstance(data, dict) else None


def read_probe(run_dir: str | Path) -> float | None:
    """The speed probe's time, when it ran and succeeded (harness/run/probe.py wrote probe.json)."""
    try:
        value = json.loads((Path(run_dir) / PROBE_FILE).read_text()).get("probe_s")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


WORKERS_DIR = ".workers"   # under the results folder: one folder per live warm worker (docs/workers.md)


def write_worker_request(folder: str | Path, n: int, request: dict) -> None:
    """``run-<n>.json`` of the warm-worker protocol, atomic: a worker never sees half of one."""
    atomic_write_text(Path(folder) / f"run-{n}.json", json.dumps(request) + "\n")


def read_worker_done(folder: str | Path, n: int) -> dict | None:
    """The worker's ``done-<n>.json`` (None: not yet). It is renamed into place, so a file
    that does not parse is a broken worker: its exit code reads as None, with why."""
    path = Path(folder) / f"done-{n}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return {"exit_code": None, "error": f"{path}: {e}"}
    return data if isinstance(data, dict) else {"exit_code": None, "error": f"{path}: not a JSON object"}


def _spec_problem(data) -> str:
    """What makes ``data`` no frozen spec ("" when it is one)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("name"), str):
        return "no experiment 'name'"
    runs = data.get("runs")
    # None: a folder assembled by hand without a planned number of runs; analysis reads it
    if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 0):
        return "'runs' is not a number of runs"
    hyps = data.get("hypotheses")
    if not isinstance(hyps, list) or not hyps:
        return "no 'hypotheses' list"
    if not all(isinstance(h, dict) and isinstance(h.get("name"), str) and h["name"] for h in hyps):
        return "a hypothesis without a 'name'"
    if not isinstance(data.get("frozen", {}), dict):
        return "'frozen' is not a JSON object"
    bad = [h["name"] for h in hyps if not _safe_folder_name(h["name"])]
    if bad:   # a name is a folder of the results folder: '../x' would read outside it
        return f"hypothesis name {bad[0]!r} is not a folder name inside the results folder"
    design = data.get(DESIGN_KEY)
    if design is not None and not (isinstance(design, dict) and isinstance(design.get("kind"), str)
                                   and design["kind"] and all(isinstance(design.get(k, False), bool)
                                                              for k in ("borrowed", "sweep"))):
        return "'design' is not {\"kind\": ..., \"borrowed\": true|false, \"sweep\": true|false}"
    return ""


def _safe_folder_name(name: str) -> bool:
    return (name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
            and name not in RESERVED and name not in FILE_NAMES and not name.startswith("."))


def read_design(root: str | Path) -> dict | None:
    """How the folder is collected: spec.json's ``design``; for a folder written before it
    was recorded, inferred from sequential.json where there is one; else None (fixed, or
    not known)."""
    spec = read_spec(root)
    if spec is not None and isinstance(spec.get(DESIGN_KEY), dict):
        return spec[DESIGN_KEY]
    plan = read_plan(root)
    if plan is None:
        return None
    kind = plan.get("design") if plan.get("design") in ("anytime", "multi-arm") else "group-sequential"
    return {"kind": kind,
            "borrowed": bool(plan.get("variance")), "sweep": plan.get("kind") == "sweep"}


SUPERSEDED = "superseded"   # attempts of a spec replaced: all (no run completed) or the changed arms'
KEPT_KEY = "kept"           # spec.json: the changes that kept the finished runs of the untouched arms
PREFLIGHT = "preflight"     # one start of each distinct command, stopped at its first step line
# names a hypothesis folder must not take: they are files of the results folder itself
FILE_NAMES = (SPEC_FILE, "experiment.toml", SEQUENTIAL_FILE, SUPERSEDED, PREFLIGHT)
RESERVED = (".lock", ".cache", ".slurm", WORKERS_DIR, SUPERSEDED, PREFLIGHT)


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
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as e:
            os.close(fd)
            # a failed write() names no file: name the one that could not be written
            raise OSError(e.errno, e.strerror, str(path)) from e
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def in_use(self) -> bool:
        """Whether a runner holds this folder now (its attempts without a result are running)."""
        try:
            fd = os.open(self.root / ".lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def check_usable(self) -> None:
        """What ``lock`` would refuse, without creating or locking anything (for --dry-run)."""
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise UserError(f"{self.root}: cannot use as a results folder ({probe} is not a folder you "
                            "can write to); give a folder you can write to with --results")
        if self.in_use():
            raise UserError(f"{self.root}: in use by another runner; "
                            "wait for it to finish or give another --results folder")

    # -- frozen spec -----------------------------------------------------------------
    def freeze(self, exp: Experiment, source_text: str, check_only: bool = False,
               design: dict | None = None) -> Path | None:
        """Store the spec on first use; refuse a changed spec afterwards.

        A changed spec is taken when no run of the folder has a result yet (the usual
        case: a typo fixed after every attempt failed): the old spec and its attempts are
        moved, untouched, to ``superseded/<k>/``, whose path is returned. When runs have
        results and the change touches only some arms (their script content, args, env,
        launcher, steps; not a key of the experiment), the untouched arms keep their runs
        and only the changed arms' attempts move; ``kept`` in spec.json says so for the
        analysis (those runs were not interleaved with the new ones). ``check_only``
        raises what the real call would raise and writes nothing. ``design``: how this
        run collects the folder (``Experiment.design``; default fixed); a folder collected
        under another kind of design with finished runs is refused.
        """
        path = spec_path(self.root)
        aside = None
        design = design or exp.design(FIXED)
        stored = read_spec(self.root)
        kept = list(stored.get(KEPT_KEY) or []) if stored is not None else []
        if stored is not None:
            self._check_design(stored, exp, design)
            was = stored.get(DESIGN_KEY)
            if isinstance(was, dict) and was.get("kind") == design["kind"] and design["kind"] in SEQUENTIAL_KINDS:
                design = was     # fixed at the first run, as its plan in sequential.json is
            changes = diff_frozen(stored.get("frozen", {}), exp.frozen_view())
            if changes:
                shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
                if stored.get("name") != exp.name:
                    raise UserError(f"{self.root} holds another experiment, '{stored.get('name')}'; "
                                    f"give --results NEWDIR for '{exp.name}'")
                done = self._completed(stored, exp)
                changed = changed_arms(stored.get("frozen", {}), exp.frozen_view())
                every = _arm_names(stored, exp)
                partial = bool(done) and bool(changed) and not every <= changed
                if done and (not partial or read_plan(self.root) is not None):
                    why = ("it holds a sequential plan fitted to those runs" if partial else
                           "the change touches every arm")
                    raise UserError(f"{self.root} holds {done} finished runs of experiment "
                                    f"'{stored.get('name')}' with another spec ({shown}); {why}: give the "
                                    "experiment a new name or use --results NEWDIR")
                if check_only:
                    return None
                if partial:
                    # the arms whose own command is unchanged keep their finished runs; only
                    # the changed arms' attempts (and the old spec) go aside
                    counts = self._done_per_arm(sorted(every - changed))
                    aside = self._set_aside(stored, exp, only=changed)
                    kept.append({"superseded": str(aside.relative_to(self.root)), "changed": sorted(changed),
                                 "kept": {a: n for a, n in counts.items() if n}})
                else:
                    aside = self._set_aside(stored, exp)
                    kept = []       # every arm starts again: nothing of before stays here
            elif stored.get("runs", 0) >= exp.runs and stored.get(DESIGN_KEY) == design:
                return None
        if check_only:
            return None
        data = exp.to_dict()
        data["frozen"] = exp.frozen_view()
        if kept:
            data[KEPT_KEY] = kept
        data[DESIGN_KEY] = design
        toml_path = self.root / "experiment.toml"
        # experiment.toml first: spec.json is the mark of a frozen folder, so a kill in
        # between leaves no frozen spec, and the next run writes both
        if aside is not None or not toml_path.exists() or not path.exists():
            atomic_write_text(toml_path, source_text)
        _save(path, SPEC_FILE, data)
        return aside

    def _check_design(self, stored: dict, exp: Experiment, design: dict) -> None:
        """Refuse a run of another kind of design on a folder that holds finished runs: the
        error rates of a sequential or anytime design hold only under its own stopping rule
        (whether or not sequential.json is still there)."""
        was = read_design(self.root)
        if was is None or was.get("kind") == design["kind"]:
            return
        done = self._completed(stored, exp)
        if not done:
            return      # nothing collected yet: the design may still be chosen
        lost = (f"; its {SEQUENTIAL_FILE} is missing (restore it from a copy to go on)"
                if was["kind"] in SEQUENTIAL_KINDS and not sequential_path(self.root).exists() else "")
        raise UserError(f"{self.root} holds {done} finished runs collected under a {was['kind']} design "
                        f"(spec.json){lost}: a {design['kind']} run would void its error rates; start a "
                        f"new experiment (another name or --results folder)")

    def _completed(self, stored: dict, exp: Experiment) -> int:
        names = {h.name for h in exp.hypotheses}
        names |= {h.get("name") for h in stored.get("hypotheses", []) if isinstance(h, dict)
                  and isinstance(h.get("name"), str)}
        n = 0
        for slot in self.slots(sorted(n for n in names if n)).values():
            n += slot.done is not None
        return n

    def _done_per_arm(self, arms: list[str]) -> dict[str, int]:
        counts = dict.fromkeys(arms, 0)
        for slot in self.slots(arms).values():
            counts[slot.hypothesis] += slot.done is not None
        return counts

    def _set_aside(self, stored: dict, exp: Experiment, only: set[str] | None = None) -> Path:
        base = self.root / SUPERSEDED
        k = 1
        # a folder without spec.json is an earlier set-aside cut short: finish that one
        while (base / str(k)).exists() and spec_path(base / str(k)).exists():
            k += 1
        dest = base / str(k)
        dest.mkdir(parents=True, exist_ok=True)
        names = _arm_names(stored, exp) if only is None else set(only)
        files = [SEQUENTIAL_FILE] if only is None else []
        for name in sorted(n for n in names if n) + files + ["experiment.toml", SPEC_FILE]:
            src = self.root / name
            if name in RESERVED or not (src.exists() or src.is_symlink()):
                continue
            os.replace(src, dest / name)  # spec.json last: the mark that this set-aside is complete
        return dest

    @property
    def sequential_path(self) -> Path:
        return sequential_path(self.root)

    def read_spec(self) -> dict | None:
        return read_spec(self.root)

    def read_plan(self) -> dict | None:
        return read_plan(self.root)

    def write_plan(self, plan: dict) -> None:
        write_plan(self.root, plan)

    # -- cleaning --------------------------------------------------------------------
    def clean(self) -> list[Path]:
        """Remove what a killed runner can leave: atomic-write temp files and attempt folders
        that never got a launch.json (nothing was started in them). Returns what went."""
        gone: list[Path] = []
        for folder in [self.root] + [d for d in self.root.iterdir() if d.is_dir() and not d.is_symlink()
                                     and d.name not in RESERVED]:
            for entry in list(folder.iterdir()):
                if entry.is_dir() and not entry.is_symlink() and _index_of(entry) is not None:
                    for f in entry.iterdir():
                        if _is_tmp(f):
                            f.unlink()
                            gone.append(f)
                    if _never_started(entry):
                        _remove_unstarted(entry)
                        gone.append(entry)
                elif _is_tmp(entry):
                    entry.unlink()
                    gone.append(entry)
        return gone

    # -- run folders -------------------------------------------------------------------
    def attempt_dir(self, hypothesis: str, index: int, attempt: int) -> Path:
        return self.root / hypothesis / f"{index:03d}-{attempt}"

    def open_attempt(self, hypothesis: str, index: int, attempt: int, script: Path) -> Path:
        """A new attempt folder holding a snapshot of ``script`` (a folder that exists is refused)."""
        run_dir = self.attempt_dir(hypothesis, index, attempt)
        run_dir.mkdir(parents=True)
        shutil.copy2(script, run_dir / ("snapshot-" + script.name))
        return run_dir

    def open_preflight(self, hypothesis: str, script: Path) -> Path:
        """``preflight/<hypothesis>/`` (``<hypothesis>.2``, ... after an earlier one), with a snapshot."""
        base = self.root / PREFLIGHT
        run_dir, k = base / hypothesis, 1
        while run_dir.exists() or run_dir.is_symlink():
            k += 1
            run_dir = base / f"{hypothesis}.{k}"
        run_dir.mkdir(parents=True)
        shutil.copy2(script, run_dir / ("snapshot-" + script.name))
        return run_dir

    def write_launch(self, run_dir: Path, launch: dict) -> None:
        """``launch.json``: written before the attempt starts, again once the backend answered."""
        _save(Path(run_dir) / LAUNCH_FILE, LAUNCH_FILE, launch)

    def write_record(self, run_dir: Path, rec: RunRecord) -> None:
        """``result.json``: written once, when the attempt has ended."""
        _save(Path(run_dir) / RESULT_FILE, RESULT_FILE, dataclasses.asdict(rec))

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
                result = d / RESULT_FILE
                if result.exists():
                    slot.records.append(read_record(result))
                elif (d / LAUNCH_FILE).exists():
                    read_launch(d)    # one a newer harness wrote is refused before anything is written
                    slot.orphans.append(d)
        return out


def _is_tmp(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file() and not p.is_symlink()


_STARTED = (LAUNCH_FILE, RESULT_FILE, "log.txt")


def _never_started(d: Path) -> bool:
    """An attempt folder the runner made but never launched: no launch.json, result or log,
    and nothing but the scratch folder's mirror links and the script snapshot inside."""
    if any((d / n).exists() for n in _STARTED):
        return False
    for entry in d.iterdir():
        if entry.name.startswith("snapshot-") and entry.is_file():
            continue
        if entry.is_dir() and not entry.is_symlink() and all(e.is_symlink() for e in entry.iterdir()):
            continue  # the scratch folder: links to the project root only
        return False
    return True


def _remove_unstarted(d: Path) -> None:
    for entry in d.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            for link in entry.iterdir():
                link.unlink()  # the links only, never what they point to
            entry.rmdir()
        else:
            entry.unlink()
    d.rmdir()


def _attempt_order(d: Path) -> tuple:
    # 000-10 after 000-9: attempts in the order they ran, not as strings sort
    head, _, attempt = d.name.partition("-")
    return (head, int(attempt) if attempt.isdigit() else -1, d.name)


def _index_of(d: Path) -> int | None:
    head, sep, attempt = d.name.partition("-")
    if not (d.is_dir() and sep and head.isdigit() and attempt.isdigit()):
        return None
    return int(head)


def _arm_names(stored: dict, exp: Experiment) -> set[str]:
    """The arms of the stored spec and of the new one."""
    names = {h.name for h in exp.hypotheses}
    names |= {h.get("name") for h in stored.get("hypotheses", []) if isinstance(h, dict)
              and isinstance(h.get("name"), str) and h.get("name")}
    return names


def changed_arms(old: dict, new: dict) -> set[str] | None:
    """The arms whose own frozen entry differs between two frozen specs (changed, added or
    removed); None when something outside the hypotheses changed, which touches every arm."""
    if {k: v for k, v in old.items() if k != "hypotheses"} != {k: v for k, v in new.items() if k != "hypotheses"}:
        return None
    before = {h.get("name"): h for h in old.get("hypotheses", []) if isinstance(h, dict)}
    after = {h.get("name"): h for h in new.get("hypotheses", []) if isinstance(h, dict)}
    return {n for n in set(before) | set(after) if isinstance(n, str) and before.get(n) != after.get(n)}


def kept_runs(spec: dict) -> list[dict]:
    """The spec changes a folder went through that kept some arms' runs (``kept`` in spec.json):
    each ``{"superseded": "superseded/<k>", "changed": [arm...], "kept": {arm: finished runs}}``."""
    out = []
    for entry in spec.get(KEPT_KEY) or []:
        if (isinstance(entry, dict) and isinstance(entry.get("kept"), dict)
                and isinstance(entry.get("changed"), list)):
            out.append(entry)
    return out


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
