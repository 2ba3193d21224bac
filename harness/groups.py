"""Groups of runs: what the readers (``data/sources``) produce and the analysis consumes.

Plain data, no I/O: a ``Run`` is a record and the log its figures came from; a
``Group`` is the runs of one hypothesis (or one folder of logs); a ``Dataset`` is every
group of one analysis with the settings its results folder stored.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from harness.caveat import Caveat
from harness.records import RunRecord

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")   # shown as is; any other name is quoted


def label(name: str) -> str:
    """A group name as shown: plain names as they are, others (spaces...) in double quotes."""
    return name if _PLAIN_NAME.match(name) else json.dumps(name, ensure_ascii=False)


def as_float(x) -> float:
    """None (a missing figure) as nan."""
    return math.nan if x is None else float(x)


def hardware_text(hw: tuple[str, int]) -> str:
    return f"{hw[1]}x {hw[0]}"


@dataclass
class Run:
    record: RunRecord
    source: str               # the log the figures came from

    @property
    def hardware(self) -> tuple[str, int] | None:
        """(GPU model, GPU count) when the log or record tells, else None."""
        gpus = self.record.gpus or {}
        names = list(gpus.get("names") or []) if isinstance(gpus, dict) else list(gpus)
        count = (gpus.get("count") if isinstance(gpus, dict) else None) or len(names)
        if not names and not count:
            return None
        return (" + ".join(sorted(set(names))) or "unknown model", int(count))


@dataclass
class Group:
    name: str
    runs: list[Run] = field(default_factory=list)        # data: status ok or diverged
    failed: list[Run] = field(default_factory=list)      # failed/timeout attempts, listed
    unfinished: list[Run] = field(default_factory=list)  # runs with no result in the end
    expected_steps: int | None = None
    origin: str = ""                                     # the SOURCE it came from
    kind: str = ""                                       # results | named | plain (its SOURCE's)

    @property
    def losses(self) -> list[float]:
        return [as_float(r.record.val_loss) for r in self.runs]

    @property
    def times(self) -> list[float]:
        return [as_float(r.record.train_time_s) for r in self.runs]

    @property
    def steps(self) -> list[int]:
        return [r.record.final_step for r in self.runs if r.record.final_step is not None]

    @property
    def order(self) -> list[float] | None:
        orders = [r.record.order for r in self.runs]
        return None if not orders or None in orders else [float(o) for o in orders]


@dataclass
class Dataset:
    groups: list[Group]
    warnings: list[Caveat] = field(default_factory=list)
    control: str | None = None          # from an experiment spec
    target_loss: float | None = None
    alpha_time: float | None = None
    alpha_loss: float | None = None
    sequential: dict | None = None      # the saved --until-decisive plan of a results folder
    min_effect: float | None = None     # more of the experiment spec, for `harness plan`
    runs: int | None = None
    known_loss_sigma: float | None = None   # borrowed / known variance keys of the spec
    variance_from: str | None = None
    # names a group would have under the other --group-by of plain log folders: name -> that
    # grouping ("folder" or "steps"), so a flag that names none of today's groups can say so
    other_grouping: dict = field(default_factory=dict)
    renamed: dict = field(default_factory=dict)     # --name OLD=NEW: old name -> new
    design: dict | None = None          # spec.json's design (how the folder is collected)
    decisions_missing: str = ""         # a sequential design kind whose sequential.json is gone

    def group(self, name: str) -> Group | None:
        """By the name as shown, or as written on the command line (unquoted)."""
        return next((g for g in self.groups if g.name == name or g.name == label(name)), None)
