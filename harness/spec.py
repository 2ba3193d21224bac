"""Experiment files (TOML): load, check, and resolve into commands.

Every mistake is a ``UserError`` of one line naming the file, the key and the fix,
raised before anything is launched.
"""
from __future__ import annotations

import hashlib
import json
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

from harness.errors import UserError

ORDERS = ("interleaved", "blocked", "random")
LAUNCHERS = ("torchrun", "python")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# key -> (types, description of the expected value)
EXPERIMENT_KEYS = {
    "name": ((str,), "a folder-safe name"),
    "description": ((str,), "text"),
    "target_loss": ((int, float), "a number, e.g. 3.28"),
    "alpha_time": ((int, float), "a number in (0, 1), e.g. 0.001"),
    "alpha_loss": ((int, float), "a number in (0, 1), e.g. 0.01"),
    "runs": ((int,), "a positive integer (runs per hypothesis)"),
    "order": ((str,), "one of " + ", ".join(ORDERS)),
    "seed": ((int,), "an integer"),
    "min_effect": ((int, float), "seconds >= 0 the treatment must gain to be worth it"),
    "time_test": ((str,), "welch (default) or trimmed (Yuen's 20% trimmed t; --until-decisive)"),
    "timeout": ((int, float), "seconds per run"),
    "retries": ((int,), "an integer >= 0"),
    "compile_cache": ((bool,), "true or false"),
    "backend": ((str,), "local or slurm"),
}
HYPOTHESIS_KEYS = {
    "name": ((str,), "a folder-safe name such as H0"),
    "control": ((bool,), "true or false"),
    "description": ((str,), "text"),
    "steps": ((int,), "the expected final step, a positive integer"),
    "script": ((str,), "a path to the training script"),
    "nproc_per_node": ((int,), "a positive integer (GPUs per run)"),
    "launcher": ((str,), "one of " + ", ".join(LAUNCHERS)),
    "args": ((dict,), "a table of flags, e.g. { num_iterations = 1600 }"),
    "env": ((dict,), "a table of environment variables"),
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
    target_loss: float = 3.28
    alpha_time: float = 0.001
    alpha_loss: float = 0.01
    runs: int = 10
    order: str = "interleaved"
    seed: int = 0
    min_effect: float = 0.0
    time_test: str = "welch"          # the sequential time test; "trimmed" resists slow outliers
    timeout: float | None = None
    retries: int = 2
    compile_cache: bool = True
    backend: str = "local"
    slurm: dict = field(default_factory=dict)

    @property
    def control(self) -> Hypothesis:
        return next(h for h in self.hypotheses if h.control)

    def hypothesis(self, name: str) -> Hypothesis:
        return next(h for h in self.hypotheses if h.name == name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["control"] = self.control.name
        return d

    def frozen_view(self) -> dict:
        """What must not change between runs stored in one results folder.

        ``runs`` may grow (more data), and the scheduling knobs do not change what a run is.
        """
        d = self.to_dict()
        for key in ("runs", "order", "timeout", "retries", "backend", "slurm", "description",
                    "compile_cache"):
            d.pop(key, None)
        if d.get("time_test") == "welch":
            d.pop("time_test")     # the default: folders made before the key existed still match
        for h in d["hypotheses"]:
            h.pop("description", None)
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
            raise _fail(path, f"{where}.{key}", f"not a valid {kind} name")
        if not isinstance(value, (str, int, float, bool)):
            raise _fail(path, f"{where}.{key}",
                        f"got {type(value).__name__}, expected a string, number or boolean")


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
    for key in ("alpha_time", "alpha_loss"):
        if key in exp and not 0 < exp[key] < 1:
            raise _fail(path, f"experiment.{key}", f"got {exp[key]}, expected a number in (0, 1)")
    if exp.get("runs", 10) < 1:
        raise _fail(path, "experiment.runs", f"got {exp['runs']}, expected a positive integer")
    if "timeout" in exp and not exp["timeout"] > 0:
        raise _fail(path, "experiment.timeout", f"got {exp['timeout']}, expected seconds > 0 (or leave it out)")
    if exp.get("retries", 0) < 0:
        raise _fail(path, "experiment.retries", f"got {exp['retries']}, expected an integer >= 0")

    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail(path, "defaults", "expected a table [defaults]")
    _check_table(path, "defaults", defaults, DEFAULTS_KEYS)
    slurm = raw.get("slurm", {})
    if not isinstance(slurm, dict):
        raise _fail(path, "slurm", "expected a table [slurm]")
    _check_table(path, "slurm", slurm, SLURM_KEYS)

    hyps_raw = raw.get("hypothesis")
    if not isinstance(hyps_raw, list) or not hyps_raw:
        raise _fail(path, "[[hypothesis]]", "none defined; add at least a control and a treatment")
    hyps = [_hypothesis(path, i, h, defaults, base) for i, h in enumerate(hyps_raw)]
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
    for key in ("target_loss", "alpha_time", "alpha_loss", "min_effect"):
        if key in known:
            known[key] = float(known[key])
    return Experiment(name=exp["name"], hypotheses=tuple(hyps), slurm=dict(slurm), **known)


def _check_name(path: Path, where: str, name: str) -> None:
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise _fail(path, where, f"{name!r} is not safe as a folder name; "
                                 "use letters, digits, '.', '_' and '-' (at most 64)")


def _hypothesis(path: Path, i: int, h, defaults: dict, base: Path) -> Hypothesis:
    where = f"hypothesis #{i + 1}"
    if not isinstance(h, dict):
        raise _fail(path, where, "expected a table [[hypothesis]]")
    _check_table(path, where, h, HYPOTHESIS_KEYS)
    if "name" not in h:
        raise _fail(path, f"{where}.name", "missing; add name = \"H0\" (or H1, ...)")
    name = h["name"]
    _check_name(path, f"{where}.name", name)
    where = f"hypothesis {name}"
    merged = {**defaults, **h}
    # env and args merge key by key, so a hypothesis only names what it changes
    env = {**defaults.get("env", {}), **h.get("env", {})}
    args = {**defaults.get("args", {}), **h.get("args", {})}
    _check_flat(path, f"{where}.env", env, "environment variable")
    _check_flat(path, f"{where}.args", args, "flag")
    if "script" not in merged:
        raise _fail(path, f"{where}.script", "missing; set script = \"train/train_gpt.py\" in [defaults] or here")
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
    if steps is not None and steps < 1:
        raise _fail(path, f"{where}.steps", f"got {steps}, expected a positive integer")
    return Hypothesis(
        name=name, control=bool(h.get("control", False)), script=str(merged["script"]),
        description=h.get("description", ""), steps=steps, nproc_per_node=nproc, launcher=launcher,
        args=args, env={k: str(v) if not isinstance(v, bool) else str(int(v)) for k, v in env.items()},
        script_sha256=hashlib.sha256(full.read_bytes()).hexdigest())
