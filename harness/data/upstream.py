"""A clone of the speedrun repository: its record folders, and the logs a control is rebuilt from.

Layout (modded-nanogpt)::

    records/track_1_short/<date>-<name>/     one folder per record, dated by its name
        README.md, train_gpt.py, ...          (not every record keeps its script)
        <uuid>.txt ...                        the runs' logs, flat; or one folder per arm:
        baseline/<uuid>.txt, this_pr/<uuid>.txt

``find_record`` picks the latest record of a track by its folder's date (or the one
named); ``choose_logs`` picks the logs of the record's own runs (the PR's, where the
folder also holds the baseline it beat) and one of them whose embedded code can be
rebuilt. Each choice comes with the one line that says why.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.data import sources
from harness.errors import UserError
from harness.groups import Group, Run, hardware_text
from harness.logs.extract import Embedded, parse_embedded

RECORDS = "records"
_TRACK = re.compile(r"track_(\d+)_(.+)")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[-_]|$)")     # 2026-01-26-UntieValueEmbeddings
_OLD_DATE = re.compile(r"(\d{2})(\d{2})(\d{2})_")                # 101024_Muon: MMDDYY, the first records
# subfolder names of the arm a record beat, and of the record's own runs
BASELINE_NAMES = {"baseline", "base", "control", "old", "previous", "prev", "reference", "ref",
                  "before", "h0"}
PR_NAMES = {"this_pr", "this-pr", "pr", "new", "ours", "record", "treatment", "after", "h1"}


@dataclass(frozen=True)
class Record:
    path: Path
    date: dt.date
    track: str          # the track folder's name, e.g. track_1_short


@dataclass
class Choice:
    """The logs of the record's own runs and the one its scripts are rebuilt from."""

    runs: list[Run]
    log: Path
    files: list[Embedded]
    steps: int
    hardware: tuple[str, int] | None
    torch_version: str | None
    variance_from: Path             # the folder whose logs give the borrowed sigma
    why: list[str] = field(default_factory=list)   # one line per choice


def folder_date(name: str) -> dt.date | None:
    """The date a record folder's name starts with, or None."""
    try:
        m = _ISO_DATE.match(name)
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        m = _OLD_DATE.match(name)
        if m:
            return dt.date(2000 + int(m[3]), int(m[1]), int(m[2]))
    except ValueError:      # 2026-13-40: digits, but no date
        return None
    return None


def track_folder(repo: Path, track: str) -> Path:
    """``records/track_<n>_<track>`` of a clone (``track`` may also be the folder's whole name)."""
    root = repo / RECORDS
    if not root.is_dir() and any(_TRACK.fullmatch(d.name) for d in repo.iterdir() if d.is_dir()):
        root = repo          # the records/ folder itself was given
    if not root.is_dir():
        raise UserError(f"{repo}: has no {RECORDS}/ folder; pass a clone of the speedrun repository "
                        f"(git clone https://github.com/KellerJordan/modded-nanogpt)")
    tracks = sorted(d.name for d in root.iterdir() if d.is_dir() and _TRACK.fullmatch(d.name))
    found = [t for t in tracks if t == track or _TRACK.fullmatch(t)[2] == track]
    if len(found) != 1:
        have = ", ".join(_TRACK.fullmatch(t)[2] for t in tracks) or "none"
        raise UserError(f"--track {track}: {root} has {'no such track' if not found else 'several'}; "
                        f"its tracks are {have}")
    return root / found[0]


def find_record(repo: Path, track: str, name: str | None = None) -> tuple[Record, str]:
    """The latest dated record of ``track`` (or the one named) and why it was picked."""
    folder = track_folder(repo, track)
    dated = sorted(((folder_date(d.name), d.name) for d in folder.iterdir()
                    if d.is_dir() and not d.name.startswith(".")), key=lambda x: (x[0] is not None, x))
    dated = [(d, n) for d, n in dated if d is not None]
    if name is not None:
        path = folder / name
        if not path.is_dir() or "/" in name or name in (".", ".."):
            latest = ", ".join(n for _, n in dated[-3:][::-1])
            raise UserError(f"--record {name}: no such folder in {folder}; the latest are {latest}")
        date = folder_date(name) or dt.date.min
        return Record(path, date, folder.name), f"record: {name} (named by --record)"
    if not dated:
        raise UserError(f"{folder}: no record folder named by its date (YYYY-MM-DD-Name); "
                        f"name one with --record")
    date, latest = dated[-1]
    same_day = [n for d, n in dated if d == date]
    if len(same_day) > 1:   # one day, several records: the folder names cannot order them
        raise UserError(f"{folder}: {len(same_day)} records of {date} ({', '.join(same_day)}); "
                        f"name one with --record")
    among = f"the latest of {len(dated)} dated folders" if len(dated) > 1 else "the only dated folder"
    why = f"record: {latest} ({among} in {folder}; --record NAME picks another)"
    return Record(folder / latest, date, folder.name), why


def _arm_name(g: Group, record: Path) -> str:
    """The subfolder a group of the record's logs sits in ('' for the folder's own logs)."""
    return "" if g.name == record.name and not (record / g.name).is_dir() else g.name


def _pr_group(groups: list[Group], record: Path) -> tuple[Group, str]:
    """The group of the record's own runs, where the folder keeps arms in subfolders."""
    if len(groups) == 1:
        g = groups[0]
        where = f"{g.name}/" if _arm_name(g, record) else "the folder"
        return g, f"{where} holds its only logs"
    names = {g.name: _arm_name(g, record).lower() for g in groups}
    pr = [g for g in groups if names[g.name] in PR_NAMES or names[g.name] == ""]
    if len(pr) != 1:
        pr = [g for g in groups if names[g.name] not in BASELINE_NAMES]
    if len(pr) != 1:
        raise UserError(f"{record}: its logs sit in {', '.join(g.name + '/' for g in groups)} and none is "
                        f"plainly the PR's runs (this_pr/ beside baseline/); pass --log FILE to choose")
    base = ", ".join(g.name + "/" for g in groups if g is not pr[0])
    arm = _arm_name(pr[0], record)
    return pr[0], f"{arm + '/' if arm else 'the folder'} holds the PR's runs ({base}: the baseline it beat)"


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _read_code(path: str) -> list[Embedded] | None:
    """The files a log embeds, or None when it embeds none (or is no text)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        return parse_embedded(text, path)
    except (OSError, UnicodeDecodeError, UserError):
        return None


class _Code(dict):
    """The files each log embeds, parsed when first asked for (a record's logs are ~200 KB each)."""

    def __missing__(self, source: str) -> list[Embedded] | None:
        self[source] = _read_code(source)
        return self[source]


def _main_text(code: _Code, r: Run) -> str | None:
    files = code[r.source]
    return files[0].text if files else None


def _prs_runs(runs: list[Run], record: Path, code: _Code) -> tuple[list[Run], str]:
    """The PR's runs among those of one folder, which may mix both arms; and why."""
    for script in sorted(p for p in record.glob("*.py") if p.is_file()):
        # the record keeps its script: the logs that embed it are its runs, whatever their steps
        text = script.read_bytes().decode("utf-8", "replace")
        mine = [r for r in runs if _main_text(code, r) == text]
        if mine:
            return mine, (f"the {_n(len(mine), 'log')} that embed{'s' if len(mine) == 1 else ''} the "
                          f"folder's {script.name} {'is' if len(mine) == 1 else 'are'} the PR's")
    steps = Counter(r.record.expected_steps for r in runs)
    why = ""
    if len(steps) > 1:
        counts = ", ".join(f"{n} at {s} steps" for s, n in sorted(steps.items(), reverse=True))
        fewest = min(s for s in steps if s is not None)
        runs = [r for r in runs if r.record.expected_steps == fewest]
        why = (f"the folder mixes its arms ({counts}) and keeps no script: the {fewest}-step logs are "
               f"taken as the PR's (a record that saves steps runs fewer; --log FILE picks another)")
    scripts = {_main_text(code, r) for r in runs} - {None}
    if len(scripts) > 1:     # both arms at one step count, and nothing says which is the PR
        raise UserError(f"{record}: its {len(runs)} logs at {runs[0].record.expected_steps} steps embed "
                        f"{len(scripts)} different scripts and the folder keeps none of them; "
                        f"pass --log FILE to choose the PR's")
    return runs, why


def choose_logs(record: Path, log: Path | None = None) -> Choice:
    """The record's own runs, and the first of their logs whose embedded code rebuilds."""
    try:
        ds = sources.load([str(record)], "folder")
    except UserError as e:     # no log at all, or one that cannot be read: say which
        why = str(e).split(": ", 1)[-1].removesuffix("; check the path")
        raise UserError(f"{record}: no usable log ({why}); "
                        f"pick another record with --record") from None
    code = _Code()
    why: list[str] = []
    if log is not None:
        runs = [r for g in ds.groups for r in g.runs if Path(r.source).resolve() == log.resolve()]
        if not runs:
            raise UserError(f"--log {log}: not a finished log of {record}; pass one of its logs")
        group = next(g for g in ds.groups if runs[0] in g.runs)
        why.append(f"logs: {log.name} (named by --log)")
    else:
        usable = [g for g in ds.groups if g.runs]
        if not usable:
            raise UserError(f"{record}: no usable log (none of its logs has a final result); "
                            f"pick another record with --record")
        group, line = _pr_group(usable, record)
        runs, mixed = _prs_runs(group.runs, record, code)
        why.append(f"logs: {_n(len(runs), 'finished run')}; {mixed or line}")
    chosen = None
    for r in sorted(runs, key=lambda r: r.source):
        files = code[r.source]
        if files is not None:
            chosen = (r, files)
            break
    if chosen is None:
        raise UserError(f"{record}: no usable log (none of the {len(runs)} finished logs embeds the script "
                        f"that wrote it); pick another record with --record")
    run, files = chosen
    same = sum(1 for r in runs if _main_text(code, r) == files[0].text)
    why.append(f"script: rebuilt from {Path(run.source).name} ({' + '.join(f.name for f in files)}; "
               f"{same} of the {len(runs)} logs embed this {files[0].name})")
    hardware = Counter(r.hardware for r in runs if r.hardware is not None).most_common(1)
    torch = Counter(r.record.torch_version for r in runs if r.record.torch_version).most_common(1)
    steps = run.record.expected_steps
    in_arm = _arm_name(group, record)
    variance_from = record / in_arm if in_arm else record
    pooled = sum(len(g.runs) for g in ds.groups if not in_arm or g is group)
    why.append(f"control: H0 at {steps} steps on "
               f"{hardware_text(hardware[0][0]) if hardware else 'hardware its logs do not name'}, "
               f"sigma borrowed from the {pooled} finished logs of {variance_from.name}/"
               + ("" if in_arm else " (pooled within each step count)"))
    return Choice(runs=runs, log=Path(run.source), files=files, steps=steps,
                  hardware=hardware[0][0] if hardware else None,
                  torch_version=torch[0][0] if torch else None, variance_from=variance_from, why=why)
