"""Experiment files (TOML): load, check, and resolve into commands.

Every mistake is a ``UserError`` of one line naming the file, the key and the fix,
raised before anything is launched.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from harness import thresholds as th
from harness.errors import UserError
from harness.data.store import FILE_NAMES

ORDERS = ("interleaved", "blocked", "random")
LAUNCHERS = ("torchrun", "python")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")   # used with fullmatch: no trailing newline
MAX_RUNS = 100_000        # per hypothesis; beyond it a typo (10**12) would hang building the order
MAX_RETRIES = 100
# set by the harness for every run (the seed of run i); an env entry would be silently replaced
HARNESS_ENV = ("SEED", "HARNESS_RUN_DIR")

# key -> (types, description of the expected value)
EXPERIMENT_KEYS = {
    "name": ((str,), "a folder-safe name"),
    "description": ((str,), "text"),
    "target_loss": ((int, float), f"a number, e.g. {th.TARGET_LOSS}"),
    "alpha_time": ((int, float), f"a number in (0, 1), e.g. {th.ALPHA_TIME}"),
    "alpha_loss": ((int, float), f"a number in (0, 1), e.g. {th.ALPHA_LOSS}"),
    "runs": ((int,), "a positive integer (runs per hypothesis)"),
    "order": ((str,), "one of " + ", ".join(ORDERS)),
    "seed": ((int,), "an integer"),
    "min_effect": ((int, float), "seconds >= 0 the treatment must gain to be worth it"),
    "time_test": ((str,), "welch (default) or trimmed (Yuen's 20% trimmed t; --until-decisive)"),
    "timeout": ((int, float), "seconds per run"),
    "retries": ((int,), "an integer >= 0"),
    "compile_cache": ((bool,), "true or false"),
    "backend": ((str,), "local or slurm"),
    # borrowed / known variance (harness/analysis/borrow.py)
    "known_loss_sigma": ((int, float), "the loss sigma a track's rules fix, e.g. 0.0013"),
    "variance_from": ((str,), "a folder of earlier runs' logs to borrow sigma from"),
    "pairing": ((str,), "node or none (control and treatment of one index on one node)"),
    "speed_probe": ((bool,), "true or false (time a fixed GPU workload before each run)"),
}
PAIRINGS = ("node", "none")
HYPOTHESIS_KEYS = {
    "name": ((str,), "a folder-safe name such as H0"),
    "control": ((bool,), "true or false"),
    "description": ((str,), "text"),
    "steps": ((int, list), "the expected final step, a positive integer (or a list: a step sweep)"),
    "script": ((str,), "a path to the training script"),
    "nproc_per_node": ((int,), "a positive integer (GPUs per run)"),
    "launcher": ((str,), "one of " + ", ".join(LAUNCHERS)),
    "args": ((dict,), "a table of flags, e.g. { num_iterations = 1600 }"),
    "env": ((dict,), "a table of environment variables"),
    "workers": ((bool,), "true or false (one warm process per arm serves its runs: docs/workers.md)"),
}
DEFAULTS_KEYS = {k: v for k, v in HYPOTHESIS_KEYS.items()
                 if k not in ("name", "control", "description", "steps")}
SLURM_KEYS = {
    "partition": ((str,), "a SLURM partition name"),
    "max_parallel": ((int,), "a positive integer (jobs at once)"),
    "time": ((int,), "minutes per job"),
    "gpus_per_node": ((int,), "GPUs to request per job (default: nproc_per_node)"),
    "extra": ((dict,), "a table of extra sbatch parameters"),
}
SECTIONS = ("experiment", "defaults", "hypothesis", "slurm")


@dataclass(frozen=True)
class Hypothesis:
    name: str
    control: bool
    script: str
    description: str = ""
    steps: int | None = None
    nproc_per_node: int = 1
    launcher: str = "torchrun"
    args: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    script_sha256: str = ""
    workers: bool = False       # warm workers (harness/run/workers.py); how runs start, not what they are

    def flags(self) -> list[str]:
        """``args`` as command-line flags: ve_layout -> --ve-layout VALUE, true -> --flag."""
        out: list[str] = []
        for key, value in self.args.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                out.append(flag)
            elif value is False:
                continue
            else:
                out += [flag, str(value)]
        return out

    def argv(self, script_path: str) -> list[str]:
        if self.launcher == "python":
            return [sys.executable, script_path, *self.flags()]
        return [find_torchrun(), "--standalone", f"--nproc_per_node={self.nproc_per_node}",
                script_path, *self.flags()]


def find_torchrun() -> str:
    """torchrun of this interpreter's environment first (an un-activated venv), else PATH's."""
    here = Path(sys.executable).parent / "torchrun"
    if here.is_file():
        return str(here)
    found = shutil.which("torchrun")
    if found is None:
        raise UserError("torchrun not found next to this Python or on PATH; install torch in this "
                        "environment or set launcher = \"python\" for one-process scripts")
    return found


@dataclass(frozen=True)
class Experiment:
    name: str
    hypotheses: tuple[Hypothesis, ...]
    description: str = ""
    target_loss: float = th.TARGET_LOSS
    alpha_time: float = th.ALPHA_TIME
    alpha_loss: float = th.ALPHA_LOSS
    runs: int = th.RUNS
    order: str = "interleaved"
    seed: int = 0
    min_effect: float = th.MIN_EFFECT
    time_test: str = "welch"          # the sequential time test; "trimmed" resists slow outliers
    timeout: float | None = None
    retries: int = th.RETRIES
    compile_cache: bool = True
    backend: str = "local"
    slurm: dict = field(default_factory=dict)
    known_loss_sigma: float | None = None
    variance_from: str | None = None
    pairing: str | None = None      # None: "node" when the backend may use several nodes
    speed_probe: bool = False

    @property
    def control(self) -> Hypothesis:
        return next(h for h in self.hypotheses if h.control)

    def hypothesis(self, name: str) -> Hypothesis:
        return next(h for h in self.hypotheses if h.name == name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["control"] = self.control.name
        return d

    def design(self, kind: str) -> dict:
        """spec.json's ``design``: how the folder is collected (``kind``: fixed,
        group-sequential, anytime, multi-arm, ...), with borrowed variance, as a sweep."""
        from harness import arms
        return {"kind": kind, "borrowed": self.known_loss_sigma is not None or self.variance_from is not None,
                "sweep": bool(arms.sweeps([h.name for h in self.hypotheses]))}

    def frozen_view(self) -> dict:
        """What must not change between runs stored in one results folder.

        ``runs`` may grow (more data), and the scheduling knobs do not change what a run is.
        """
        d = self.to_dict()
        for key in ("runs", "order", "timeout", "retries", "backend", "slurm", "description",
                    "compile_cache", "known_loss_sigma", "variance_from", "pairing"):   # analysis, not what a run is
            d.pop(key, None)
        if not d.get("speed_probe"):
            d.pop("speed_probe", None)   # folders made before the probe existed stay resumable
        if d.get("time_test") == "welch":
            d.pop("time_test")     # the default: folders made before the key existed still match
        for h in d["hypotheses"]:
            h.pop("description", None)
            h.pop("workers", None)   # a warm worker's run is the same run (docs/workers.md)
        return json.loads(json.dumps(d))  # the shape spec.json gives back (lists, not tuples)

    def launch_order(self, runs: int | None = None, order: str | None = None) -> list[tuple[str, int]]:
        """(hypothesis, index) pairs in the order runs are launched."""
        n = self.runs if runs is None else runs
        order = order or self.order
        names = [self.control.name] + [h.name for h in self.hypotheses if not h.control]
        if order == "blocked":
            return [(h, i) for h in names for i in range(n)]
        slots = [(h, i) for i in range(n) for h in names]
        if order == "random":
            # shuffle within each round so arms stay balanced whenever the experiment stops
            rng = random.Random(self.seed)
            out = []
            for i in range(n):
                block = slots[i * len(names):(i + 1) * len(names)]
                rng.shuffle(block)
                out += block
            return out
        return slots

    def seed_for(self, index: int) -> int:
        # the same seed for every arm at one index: runs are paired by data order and init
        return self.seed + index


def _fail(path: Path, where: str, msg: str) -> UserError:
    return UserError(f"{path}: {where}: {msg}")


def _check_table(path: Path, where: str, table: dict, allowed: dict) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise _fail(path, where, f"unknown key '{key}'; allowed keys: {', '.join(allowed)}")
        types, want = allowed[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise _fail(path, f"{where}.{key}", f"got {type(value).__name__} {value!r}, expected {want}")


def _check_flat(path: Path, where: str, table: dict, kind: str) -> None:
    for key, value in table.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise _fail(path, f"{where}.{key!r}", f"not a valid {kind} name; use letters, digits and '_'")
        if not isinstance(value, (str, int, float, bool)):
            raise _fail(path, f"{where}.{key}",
                        f"got {type(value).__name__}, expected a string, number or boolean")
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(path, f"{where}.{key}", f"got {value}, expected a finite number (or a string)")
        if isinstance(value, str):
            _check_text(path, f"{where}.{key}", value)


def _check_text(path: Path, where: str, value: str) -> None:
    # the kernel takes argv and environ as C strings: a NUL would fail at launch, after
    # the attempt folder exists
    if "\0" in value:
        raise _fail(path, where, "contains a NUL byte (\\0); remove it")


def load(path: str | Path, base_dir: str | Path | None = None) -> Experiment:
    """Load and check an experiment file; scripts resolve against ``base_dir`` (default: cwd)."""
    path = Path(path)
    base = Path(base_dir or Path.cwd()).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such experiment file; see hypotheses/ for examples")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read experiment file ({e})")
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e}); fix the syntax at that position")

    for key in raw:
        if key not in SECTIONS:
            raise _fail(path, key, f"unknown section; allowed: {', '.join(SECTIONS)} "
                                   "(hypotheses are [[hypothesis]])")
    exp = raw.get("experiment")
    if not isinstance(exp, dict):
        raise _fail(path, "[experiment]", "missing section; add [experiment] with name = \"...\"")
    _check_table(path, "experiment", exp, EXPERIMENT_KEYS)
    if "name" not in exp:
        raise _fail(path, "experiment.name", "missing; add name = \"my-experiment\"")
    _check_name(path, "experiment.name", exp["name"])
    if exp.get("order", "interleaved") not in ORDERS:
        raise _fail(path, "experiment.order", f"got {exp['order']!r}, expected one of {', '.join(ORDERS)}")
    if exp.get("backend", "local") not in ("local", "slurm"):
        raise _fail(path, "experiment.backend", f"got {exp['backend']!r}, expected local or slurm")
    if exp.get("pairing", "none") not in PAIRINGS:
        raise _fail(path, "experiment.pairing", f"got {exp['pairing']!r}, expected one of {', '.join(PAIRINGS)}")
    for key in ("alpha_time", "alpha_loss"):
        if key in exp and not 0 < exp[key] < 1:
            raise _fail(path, f"experiment.{key}", f"got {exp[key]}, expected a number in (0, 1)")
    if not 1 <= exp.get("runs", 10) <= MAX_RUNS:
        raise _fail(path, "experiment.runs", f"got {exp['runs']}, expected an integer from 1 to {MAX_RUNS}")
    for key in ("target_loss", "min_effect", "timeout", "alpha_time", "alpha_loss"):
        if key in exp and not math.isfinite(exp[key]):
            raise _fail(path, f"experiment.{key}", f"got {exp[key]}, expected a finite number")
    if "target_loss" in exp and not exp["target_loss"] > 0:
        raise _fail(path, "experiment.target_loss", f"got {exp['target_loss']}, expected a loss > 0, e.g. 3.28")
    if exp.get("min_effect", 0) < 0:
        raise _fail(path, "experiment.min_effect", f"got {exp['min_effect']}, expected seconds >= 0")
    if "timeout" in exp and not exp["timeout"] > 0:
        raise _fail(path, "experiment.timeout", f"got {exp['timeout']}, expected seconds > 0 (or leave it out)")
    if not 0 <= exp.get("retries", 0) <= MAX_RETRIES:
        raise _fail(path, "experiment.retries", f"got {exp['retries']}, expected an integer from 0 to {MAX_RETRIES}")
    if abs(exp.get("seed", 0)) > 2**31:
        raise _fail(path, "experiment.seed", f"got {exp['seed']}, expected an integer of at most 2**31")
    if "variance_from" in exp and not (base / exp["variance_from"]).is_dir():
        raise _fail(path, "experiment.variance_from", f"{exp['variance_from']!r} is not a folder under {base}; "
                                                      f"give the folder of the earlier runs' logs")
    if "known_loss_sigma" in exp and not 0 < exp["known_loss_sigma"] < float("inf"):
        raise _fail(path, "experiment.known_loss_sigma",
                    f"got {exp['known_loss_sigma']}, expected a standard deviation > 0, e.g. 0.0013")

    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail(path, "defaults", "expected a table [defaults]")
    _check_table(path, "defaults", defaults, DEFAULTS_KEYS)
    slurm = raw.get("slurm", {})
    if not isinstance(slurm, dict):
        raise _fail(path, "slurm", "expected a table [slurm]")
    _check_table(path, "slurm", slurm, SLURM_KEYS)
    for key in ("max_parallel", "time", "gpus_per_node"):
        if key in slurm and slurm[key] < 1:
            raise _fail(path, f"slurm.{key}", f"got {slurm[key]}, expected a positive integer")
    for key, value in slurm.get("extra", {}).items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _fail(path, f"slurm.extra.{key}", f"got {type(value).__name__}, expected a string or number")
        _check_text(path, f"slurm.extra.{key}", str(value))

    hyps_raw = raw.get("hypothesis")
    if not isinstance(hyps_raw, list) or not hyps_raw:
        raise _fail(path, "[[hypothesis]]", "none defined; add at least a control and a treatment")
    hyps = [arm for i, h in enumerate(hyps_raw) for arm in _arms(path, i, h, defaults, base)]
    seen: set[str] = set()
    for h in hyps:
        if h.name.lower() in seen:
            raise _fail(path, f"hypothesis {h.name}", "duplicate name; give every hypothesis its own name")
        seen.add(h.name.lower())
    controls = [h.name for h in hyps if h.control]
    if not controls:
        raise _fail(path, "hypothesis.control", "no control; mark exactly one hypothesis with control = true")
    if len(controls) > 1:
        raise _fail(path, "hypothesis.control",
                    f"{len(controls)} controls ({', '.join(controls)}); mark exactly one with control = true")
    if len(hyps) < 2:
        raise _fail(path, "[[hypothesis]]", "only one hypothesis; add a treatment to compare against the control")

    if exp.get("time_test", "welch") not in ("welch", "trimmed"):
        raise _fail(path, "experiment.time_test", f"{exp['time_test']!r}; expected \"welch\" or \"trimmed\"")
    known = {k: v for k, v in exp.items() if k != "name"}
    if "timeout" in known:
        known["timeout"] = float(known["timeout"])
    for key in ("target_loss", "alpha_time", "alpha_loss", "min_effect", "known_loss_sigma"):
        if key in known:
            known[key] = float(known[key])
    return Experiment(name=exp["name"], hypotheses=tuple(hyps), slurm=dict(slurm), **known)


def _check_name(path: Path, where: str, name: str) -> None:
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise _fail(path, where, f"{name!r} is not safe as a folder name; "
                                 "use letters, digits, '.', '_' and '-' (at most 64)")


def _arms(path: Path, i: int, h, defaults: dict, base: Path) -> list[Hypothesis]:
    """One hypothesis, or one arm per step count of a sweep (``steps = [...]``: harness/analysis/sweep.py)."""
    if not (isinstance(h, dict) and isinstance(h.get("steps"), list)):
        return [_hypothesis(path, i, h, defaults, base)]
    from dataclasses import replace

    from harness import arms as sweep_arms
    where = f"hypothesis {h.get('name', f'#{i + 1}')}.steps"
    if h.get("control"):
        raise _fail(path, where, "the control cannot be a sweep; sweep a treatment")
    one = _hypothesis(path, i, {k: v for k, v in h.items() if k != "steps"}, defaults, base)
    try:
        arms = sweep_arms.expand(one.name, h["steps"], one.args)
    except ValueError as e:
        raise _fail(path, where, str(e)) from None
    return [replace(one, name=name, steps=steps, args=args) for name, steps, args in arms]


def _hypothesis(path: Path, i: int, h, defaults: dict, base: Path) -> Hypothesis:
    where = f"hypothesis #{i + 1}"
    if not isinstance(h, dict):
        raise _fail(path, where, "expected a table [[hypothesis]]")
    _check_table(path, where, h, HYPOTHESIS_KEYS)
    if "name" not in h:
        raise _fail(path, f"{where}.name", "missing; add name = \"H0\" (or H1, ...)")
    name = h["name"]
    _check_name(path, f"{where}.name", name)
    if name.lower() in FILE_NAMES:
        raise _fail(path, f"{where}.name", f"{name!r} is a file of the results folder; "
                                           "name the hypothesis H0, H1, ... or anything else")
    where = f"hypothesis {name}"
    merged = {**defaults, **h}
    # env and args merge key by key, so a hypothesis only names what it changes
    env = {**defaults.get("env", {}), **h.get("env", {})}
    args = {**defaults.get("args", {}), **h.get("args", {})}
    _check_flat(path, f"{where}.env", env, "environment variable")
    for key in HARNESS_ENV:
        if key in env:
            raise _fail(path, f"{where}.env.{key}", f"{key} is set by the harness for every run "
                        "(SEED = experiment.seed + run index); remove it, set [experiment] seed instead")
    _check_flat(path, f"{where}.args", args, "flag")
    if "script" not in merged:
        raise _fail(path, f"{where}.script", "missing; set script = \"train/train_gpt.py\" in [defaults] or here")
    _check_text(path, f"{where}.script", merged["script"])
    script = Path(merged["script"])
    full = script if script.is_absolute() else base / script
    if not full.is_file():
        raise _fail(path, f"{where}.script", f"{merged['script']!r} not found under {base}; "
                                             "run from the project root or give the right path")
    launcher = merged.get("launcher", "torchrun")
    if launcher not in LAUNCHERS:
        raise _fail(path, f"{where}.launcher", f"got {launcher!r}, expected one of {', '.join(LAUNCHERS)}")
    nproc = merged.get("nproc_per_node", 1)
    if nproc < 1:
        raise _fail(path, f"{where}.nproc_per_node", f"got {nproc}, expected a positive integer")
    steps = h.get("steps")
    if isinstance(steps, list):
        raise _fail(path, f"{where}.steps", "a list of step counts (a sweep) is for treatments only")
    if steps is not None and steps < 1:
        raise _fail(path, f"{where}.steps", f"got {steps}, expected a positive integer")
    return Hypothesis(
        name=name, control=bool(h.get("control", False)), script=str(merged["script"]),
        description=h.get("description", ""), steps=steps, nproc_per_node=nproc, launcher=launcher,
        args=args, env={k: str(v) if not isinstance(v, bool) else str(int(v)) for k, v in env.items()},
        script_sha256=hashlib.sha256(full.read_bytes()).hexdigest(), workers=bool(merged.get("workers", False)))
