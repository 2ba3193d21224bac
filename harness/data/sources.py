"""Find and load the groups of runs that ``harness analyze`` compares.

A SOURCE is one of
- an experiment's results folder (it has ``spec.json``): one group per hypothesis,
  records read from ``<hypothesis>/<run-id>/result.json``;
- ``NAME=PATH``: every log under a folder, or matching a glob, is one group NAME;
- a plain folder (or glob) of logs: one group per subfolder, or per final step
  count with ``group_by="steps"``.
Plain logs become ``RunRecord``s too, so statistics and reports see one record type.
Logs found twice (same bytes) count once, with a warning.
"""
from __future__ import annotations

import errno
import glob as globlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.caveat import Caveat
from harness.logs.classify import classify, counted_attempt
from harness.errors import UserError
from harness.logs.logparse import LogSummary, NotALogFile, parse_file_runs
from harness.records import COMPLETED, RunRecord
from harness.data.store import (PREFLIGHT, RESULT_FILE, SEQUENTIAL_FILE, SEQUENTIAL_KINDS, is_results_folder, kept_runs,
                                read_design, read_plan, read_record, read_spec, spec_path)
from harness.groups import Dataset, Group, Run, hardware_text, label

# Only these are read while walking a folder (each also gzip'ed, + ".gz"): READMEs
# quote log lines, and parsing images or checkpoints would cost time for nothing.
LOG_SUFFIXES = (".txt", ".log", ".out", ".stdout")
PARALLEL_BYTES = 64 << 20     # parse in a process pool above this much log data
MAX_NAME = 64


def is_log_name(name: str) -> bool:
    low = name.lower()
    return low.removesuffix(".gz").endswith(LOG_SUFFIXES)



def _label_problem(name: str) -> str:
    """Why ``name`` cannot label a group ('' when it can)."""
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "starts or ends with a space"
    if not name.isprintable():
        return "holds a control character (tab, newline...)"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if name.startswith('"'):
        return "starts with a quote"
    return ""


def group_named(ds: Dataset, flag: str, name: str) -> str:
    """The group a flag names (as shown, as written unquoted, or by its name before
    ``--name``); UserError if none, saying which ``--group-by`` would make it one."""
    g = ds.group(name) or ds.group(ds.renamed.get(name, ds.renamed.get(label(name), "")))
    if g is None:
        raise UserError(f"{flag} {label(name)}: no such group; the groups are "
                        f"{', '.join(g.name for g in ds.groups)}{regroup_hint(ds, name)}")
    return g.name


def regroup_hint(ds: Dataset, name: str) -> str:
    """'; add --group-by steps ...' when the other grouping of the log folders has ``name``."""
    mode = ds.other_grouping.get(name)
    if mode is None:
        return ""
    would = [k for k, m in ds.other_grouping.items() if m == mode]
    what = "a final step count" if mode == "steps" else "a folder"
    return (f"; {label(name)} is {what} of these logs: use --group-by {mode} (the groups would be "
            f"{', '.join(label(k) for k in would)}), and --name {label(name)}=H0 to name it")


def rename(ds: Dataset, pairs: list[str] | None) -> None:
    """Apply ``--name OLD=NEW`` to groups of logs (a results folder's names are its experiment's)."""
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise UserError(f"--name {pair}: write OLD=NEW, e.g. --name 1600=H0")
        g = ds.group(old)
        if g is None:
            raise UserError(f"--name {pair}: {label(old)} is no group; the groups are "
                            f"{', '.join(x.name for x in ds.groups)}{regroup_hint(ds, old)}")
        if g.kind == "results":
            raise UserError(f"--name {pair}: {g.name} is a hypothesis of the results folder {g.origin}, "
                            f"named by its experiment; --name renames groups of logs")
        why = _label_problem(new)
        if why:
            raise UserError(f"--name {pair}: the new name {why}; give a name such as H0")
        new = label(new)
        other = ds.group(new)
        if other is not None and other is not g:
            raise UserError(f"--name {pair}: {new} already names another group; pick another name")
        ds.renamed[g.name] = new
        if ds.control == g.name:
            ds.control = new
        g.name = new
        for r in g.runs + g.failed:
            r.record.hypothesis = new


def split_hint(g: Group, group_by: str, srcs: list[str], prog: str) -> str:
    """How to split a group of logs that mixes final steps ('' for a results folder's)."""
    if g.kind == "plain" and group_by == "folder":
        return f"to compare them, split by final step: {prog} {shlex.join(srcs)} --group-by steps"
    if g.kind == "named":
        return "to compare them, give each step count's logs their own NAME=PATH"
    return ""



# ---------------------------------------------------------------- entry point

def load(sources: list[str], group_by: str = "folder") -> Dataset:
    """Read every SOURCE; raises UserError for anything a user must fix."""
    if group_by not in ("folder", "steps"):
        raise UserError(f"--group-by {group_by}: use folder or steps")
    ds = Dataset(groups=[])
    pending: list[tuple[str, str, int, bool]] = []   # (path, group key, source number, by steps)
    from_results: dict[int, list[Group]] = {}
    log_sources: set[int] = set()
    kinds: dict[int, str] = {}
    for i, src in enumerate(sources):
        kind, name, path = _classify(src)
        if kind != "results":
            log_sources.add(i)
        if kind == "results":
            from_results[i] = _load_results(Path(path), src, ds)
        elif kind == "named":
            pending += [(p, name, i, False) for p in _files(path, src)]
        else:  # plain folder or glob: key by subfolder now, by steps after parsing
            root = path if os.path.isdir(path) else None
            pending += [(p, _folder_key(p, root), i, group_by == "steps") for p in _files(path, src)]
        kinds[i] = kind
    plain = {i for i, k in kinds.items() if k == "plain"}
    from_logs = _load_logs(pending, sources, ds, log_sources, plain) if log_sources else {}
    # groups in the order of the sources that brought them
    for i in range(len(sources)):
        for g in from_results.get(i, []) + from_logs.get(i, []):
            if ds.group(g.name) is not None:
                raise UserError(f"group {g.name} comes from {ds.group(g.name).origin} and from {g.origin}; "
                                f"name them apart with NAME=PATH")
            g.kind = kinds[i]
            ds.groups.append(g)
    for g in ds.groups:    # a name that is a group today needs no hint
        ds.other_grouping.pop(g.name, None)
    ds.warnings += hardware_warnings(ds.groups) + software_warnings(ds.groups)
    if not ds.groups:
        raise UserError(f"no speedrun logs in {' '.join(sources)} (looked for {'/'.join(LOG_SUFFIXES)} "
                        f"files with 'step:k/N' lines, or a results folder with spec.json)")
    return ds



def hardware_warnings(groups: list[Group]) -> list[Caveat]:
    """Runs on different GPUs do not compare: say so even without --gate."""
    out = []
    per_group = {}
    for g in groups:
        counts: dict[tuple[str, int], int] = {}
        for r in g.runs:
            if r.hardware is not None:
                counts[r.hardware] = counts.get(r.hardware, 0) + 1
        per_group[g.name] = counts
        if len(counts) > 1:
            out.append(Caveat("hardware", g.name, f"{g.name} mixes hardware: " + ", ".join(
                f"{hardware_text(h)} ({n} run{'s' if n > 1 else ''})" for h, n in sorted(counts.items()))))
    kinds = {h for c in per_group.values() for h in c}
    if len(kinds) > 1 and not out:
        out.append(Caveat("hardware", "", "hardware differs between groups: " + "; ".join(
            f"{name}: {' / '.join(hardware_text(h) for h in sorted(c))}"
            for name, c in per_group.items() if c)))
    return out


def software_warnings(groups: list[Group]) -> list[Caveat]:
    """Runs under different torch or CUDA versions time different code: say which."""
    out = []
    for field_name, what in (("torch_version", "torch"), ("cuda_version", "CUDA")):
        seen: dict[str, dict[str, int]] = {}
        for g in groups:
            for r in g.runs:
                v = getattr(r.record, field_name)
                if v:
                    seen.setdefault(v, {}).setdefault(g.name, 0)
                    seen[v][g.name] += 1
        if len(seen) > 1:
            out.append(Caveat("software", what, f"runs used {len(seen)} {what} versions: " + "; ".join(
                f"{v} ({', '.join(f'{n} {g}' for g, n in per.items())})" for v, per in sorted(seen.items()))
                + "; compare runs of one software stack"))
    return out


def _classify(src: str) -> tuple[str, str, str]:
    """('results'|'named'|'plain', group name, path)."""
    if "=" in src and not os.path.exists(src):
        name, path = src.split("=", 1)
        why = _label_problem(name)
        if why:
            raise UserError(f"{src}: the group name before '=' {why}; give a name such as "
                            f"H1 or \"lr 0.02\" (NAME=PATH)")
        name = label(name)
        if not path:
            raise UserError(f"{src}: no path after '=' (write NAME=PATH)")
        if not os.path.exists(path) and not globlib.has_magic(path):
            raise UserError(f"{src}: {path}: no such file or folder")
        return "named", name, path
    if os.path.isdir(src):
        if is_results_folder(src):
            return "results", "", src
        inner = sorted(d for d in os.listdir(src) if is_results_folder(os.path.join(src, d)))
        if inner:
            raise UserError(f"{src} holds experiments ({', '.join(inner[:3])}{', ...' if len(inner) > 3 else ''}): "
                            f"pass one of them, e.g. {os.path.join(src, inner[0])}")
        return "plain", "", src
    if os.path.isfile(src) or globlib.has_magic(src):
        return "plain", "", src
    if os.path.lexists(src):
        raise UserError(f"{src}: not a log file or folder (a FIFO, a device or a broken link); "
                        f"give a results folder, NAME=PATH, or a folder of logs")
    raise UserError(f"{src}: no such file or folder (SOURCE is a results folder, "
                    f"NAME=PATH, or a folder of logs)")


def _files(path: str, src: str) -> list[str]:
    """Log candidates under a folder, a glob or a single file, in a stable order."""
    if os.path.isdir(path):
        return _walk(path)
    if os.path.isfile(path):
        return [path]      # named explicitly: read whatever its name
    found: list[str] = []
    for p in sorted(globlib.glob(path)):
        if os.path.isdir(p):
            found += _walk(p)
        elif os.path.isfile(p) or os.path.lexists(p):
            found.append(p)    # a FIFO or a broken link: skipped later, with a warning
    if not found:
        raise UserError(f"{src}: the pattern matches no file")
    return found


def _walk(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames)
                if not f.startswith(".") and is_log_name(f)]
    return sorted(out)


def _folder_key(path: str, root: str | None) -> str:
    """Group of a plain log: its first subfolder under root, else root's own name."""
    base = root if root is not None else os.path.dirname(path)
    rel = os.path.relpath(path, base)
    parts = Path(rel).parts
    if len(parts) > 1:
        return parts[0]
    return os.path.basename(os.path.normpath(os.path.abspath(base))) or "logs"


# ---------------------------------------------------------------- plain logs

@dataclass
class _Skip:
    """A path passed over with a warning (a FIFO, a device, a dangling or looping link)."""

    why: str


def _parse_all(paths: list[str]) -> list[list[LogSummary] | _Skip | OSError]:
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    if total > PARALLEL_BYTES and len(paths) > 1 and (os.cpu_count() or 1) > 1:
        import multiprocessing   # only for big trees: a pool costs ~50 ms to start
        with multiprocessing.get_context("fork").Pool(min(os.cpu_count() or 1, 8)) as pool:
            return pool.map(_parse_or_error, paths, chunksize=max(1, len(paths) // 64))
    return [_parse_or_error(p) for p in paths]


def _parse_or_error(path: str) -> list[LogSummary] | _Skip | OSError:
    try:
        return parse_file_runs(path)
    except NotALogFile as e:
        return _Skip(str(e).removeprefix(f"{path}: "))
    except OSError as e:
        if e.errno == errno.ELOOP:
            return _Skip("a loop of symbolic links")
        if e.errno == errno.ENOENT:
            return _Skip("a symbolic link to nothing" if os.path.islink(path) else "gone while reading")
        return e


def record_from_log(s: LogSummary, hypothesis: str, index: int) -> RunRecord:
    """A RunRecord for a plain log: the same figures the runner would have stored."""
    c = classify(s)        # the one classifier, as the runner's
    status, why = c.record_status, c.message
    failed = status == "failed"
    stem = Path(s.path).stem
    return RunRecord(
        run_id=stem if s.parts <= 1 else f"{stem}#{s.part + 1}", hypothesis=hypothesis, index=index,
        seed=-1,  # seed unknown
        status=status, final_step=s.last_step if failed else s.final_step,
        expected_steps=s.total_steps,
        val_loss=None if failed else s.val_loss,
        train_time_s=None if failed else s.train_time_s,
        step_avg_ms=s.step_avg_ms, peak_mem_mib=s.peak_mem_mib,
        gpus={"names": list(s.gpu_names), "count": s.gpu_count},
        torch_version=s.torch_version, cuda_version=s.cuda_version,
        message=f"{s.label}: {why}" if why else "",
        val_curve=[[step, loss] for step, loss in s.val_curve],
    )


def _died_early(s: LogSummary) -> bool:
    """A log with no step line but the script's error: a run that died before training."""
    return bool(s.error_line or s.launcher_error_line)


def _load_logs(pending: list[tuple[str, str, int, bool]], sources: list[str],
               ds: Dataset, log_sources: set[int], plain: set[int] = frozenset()) -> dict[int, list[Group]]:
    """Parse the logs and group them; returns the groups by the source that first named them.

    ``log_sources``: the sources that name logs; one that gives none is an error naming it.
    ``plain``: the sources that are plain folders, whose groups the other --group-by would
    name otherwise (``ds.other_grouping``).
    """
    parsed = _parse_all([p for p, _, _, _ in pending])
    seen: dict[tuple[str, int], str] = {}     # (sha256, run in file) -> first path
    groups: dict[str, Group] = {}
    first_src: dict[str, int] = {}
    step_keys: set[str] = set()
    no_result: list[tuple[str, str]] = []     # (log, why it has no result)
    found: set[int] = set()                   # sources that gave at least one log
    for (path, key, src, by_steps), runs in zip(pending, parsed):
        if isinstance(runs, _Skip):
            ds.warnings.append(Caveat("skipped", str(path), f"skipped {path}: {runs.why}"))
            continue
        if isinstance(runs, OSError):
            raise UserError(f"cannot read {path}: {runs.strerror or runs} (fix its permissions or leave it out)")
        if runs[-1].size == 0:
            ds.warnings.append(Caveat("skipped", str(path), f"skipped {path}: an empty file"))
            continue
        if not runs[-1].is_log and runs[-1].read_problem:
            ds.warnings.append(Caveat("skipped", str(path), f"skipped {path}: {runs[-1].read_problem}"))
            continue
        if not runs[-1].is_log and not _died_early(runs[-1]):
            continue                   # a README, a statistics page, another program's output
        found.add(src)
        if len(runs) > 1:
            ds.warnings.append(Caveat("several-runs", str(path),
                                      f"{path} holds {len(runs)} runs, one after another (a new one at each "
                                      f"'step:0/N val_loss' line): read as {len(runs)} separate runs"))
        for s in runs:
            if not s.is_log and not _died_early(s):
                continue
            if not s.is_log and by_steps:
                # no step count to group it by: listed, counted in no group
                no_result.append((path, record_from_log(s, "", 0).message))
                continue
            if (s.sha256, s.part) in seen:
                if s.part == 0:
                    ds.warnings.append(Caveat("duplicate", str(path), f"duplicate log: {path} is identical to "
                                                                 f"{seen[s.sha256, 0]}; counted once"))
                continue
            seen[s.sha256, s.part] = path
            if src in plain and (by_steps or s.total_steps is not None):
                alt = key if by_steps else str(s.total_steps)
                ds.other_grouping.setdefault(alt, "folder" if by_steps else "steps")
            k = key
            if by_steps:
                k = str(s.total_steps)
                step_keys.add(k)
            g = groups.get(k)
            if g is None:
                g = groups[k] = Group(name=k, origin=sources[src], expected_steps=s.total_steps)
                first_src[k] = src
            rec = record_from_log(s, k, len(g.runs) + len(g.failed))
            run = Run(rec, s.label)
            if rec.status in COMPLETED:
                g.runs.append(run)
            else:
                g.failed.append(run)
                g.unfinished.append(run)   # a log is one run: no later attempt replaces it
                no_result.append((path, rec.message))
    for i in sorted(log_sources - found):
        raise UserError(f"{sources[i]}: no speedrun logs there (looked for "
                        f"{'/'.join(LOG_SUFFIXES)} files, gzip'ed too, with 'step:k/N' lines); "
                        f"check the path")
    if no_result:
        ds.warnings += [Caveat("no-result", str(p), f"no final result: {m}") for p, m in no_result]
        ds.warnings.append(Caveat("no-result", "", f"{len(no_result)} log{'s' if len(no_result) > 1 else ''} "
                                                   f"without a final result counted as failed runs"))
    out: dict[int, list[Group]] = {}
    # step-count groups: the longest first (the control is usually the current record,
    # and a treatment that saves steps has fewer); other groups keep their order
    def order(k: str):
        return (first_src[k], (0, -int(k)) if k in step_keys else (1, 0))

    for key in sorted(groups, key=order):
        out.setdefault(first_src[key], []).append(groups[key])
    return out


# ---------------------------------------------------------------- results folders

def _load_results(root: Path, src: str, ds: Dataset) -> list[Group]:
    spec = read_spec(root)   # checked by the store, its one reader
    if spec is None:
        raise UserError(f"{spec_path(root)}: gone while reading {root}; run analyze again")
    hyps = spec["hypotheses"]
    if ds.control is None:    # the first results folder gives the defaults
        ds.control = spec.get("control") or next((h.get("name") for h in hyps if h.get("control")), None)
        ds.target_loss = spec.get("target_loss")
        ds.alpha_time = spec.get("alpha_time")
        ds.alpha_loss = spec.get("alpha_loss")
        ds.min_effect = spec.get("min_effect")
        ds.runs = spec.get("runs")
        ds.known_loss_sigma = spec.get("known_loss_sigma")
        ds.variance_from = spec.get("variance_from")
    design = read_design(root)
    if ds.design is None:
        ds.design = design
    planned = spec.get("runs")
    plan = read_plan(root) if ds.sequential is None else None
    if plan is not None:
        ds.sequential = plan
        planned = None  # stopping before the planned runs is the point: not a warning
    kind = (design or {}).get("kind")
    if kind in SEQUENTIAL_KINDS and plan is None and ds.sequential is None:
        ds.decisions_missing = kind
        planned = None
        ds.warnings.append(Caveat("design", str(root), f"{root}: spec.json records a {kind} design but its "
                                  f"{SEQUENTIAL_FILE} is missing: its decisions are lost and the table's "
                                  f"fixed-sample p-values do not hold after its early stops (restore "
                                  f"{SEQUENTIAL_FILE} from a copy)"))
    groups = []
    for h in hyps:
        g = Group(name=str(h.get("name")), expected_steps=h.get("steps"), origin=src)
        _load_hypothesis(root / g.name, g, ds, planned)
        groups.append(g)
    for entry in kept_runs(spec):
        for arm, n in sorted(entry["kept"].items()):
            ds.warnings.append(Caveat(
                "not-interleaved", str(arm),
                f"{arm}: {n} finished run{'s' if n != 1 else ''} kept from before the spec change of "
                f"{', '.join(map(str, entry['changed']))} (old attempts in {root / str(entry.get('superseded'))}) "
                f"were not interleaved with the runs made after it: a change of the machine in between "
                f"reads as a difference between the arms; compare the hosts and start times (the drift "
                f"check covers each arm's runs in order), or rerun {arm} beside them"))
    known = {g.name for g in groups}
    extra = sorted(d.name for d in root.iterdir()
                   if d.is_dir() and not d.name.startswith(".") and d.name not in known
                   and d.name != PREFLIGHT)     # the preflight's starts are no runs (harness run)
    if extra:
        ds.warnings.append(Caveat("not-in-spec", str(root), f"{root}: folders not in spec.json passed over: "
                                                            f"{', '.join(extra)}"))
    return groups


def _load_hypothesis(hdir: Path, g: Group, ds: Dataset, planned: int | None) -> None:
    slots: dict[int, list[Run]] = {}
    no_record = 0
    if hdir.is_dir():
        for run_dir in sorted(d for d in hdir.iterdir() if d.is_dir()):
            rj = run_dir / RESULT_FILE
            if not (rj.exists() or rj.is_symlink()):
                no_record += 1
                continue
            rec = read_record(rj)
            if rec.expected_steps is None:
                rec.expected_steps = g.expected_steps
            slots.setdefault(rec.index, []).append(Run(rec, str(run_dir / "log.txt")))
    data: list[Run] = []
    for index in sorted(slots):
        attempts = sorted(slots[index], key=lambda r: r.record.attempt)
        counted = counted_attempt([r.record for r in attempts])
        bad = [r for r in attempts if r.record.status in ("failed", "timeout")]
        g.failed += bad                      # listed, whatever came after
        if counted is not None:              # a slot is one run: the rule the runner uses
            data.append(next(r for r in attempts if r.record is counted))
        elif bad:
            g.unfinished.append(bad[-1])
        # interrupted attempts are ignored: the runner redoes them
    data.sort(key=lambda r: (r.record.order is None, r.record.order or 0, r.record.index))
    g.runs = data
    if no_record:
        ds.warnings.append(Caveat("no-record", g.name, f"{hdir}: {no_record} run folder{'s' if no_record > 1 else ''} "
                                                      f"without result.json (running or interrupted) passed over"))
    if planned and len(slots) < planned:
        ds.warnings.append(Caveat("not-run", g.name, f"{g.name}: {planned - len(slots)} of {planned} planned runs "
                                                    f"have not run yet"))
