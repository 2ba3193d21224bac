"""The cost model: what a run of an arm costs in GPU-seconds, phase by phase, and what a
design costs in GPU-hours from its expected runs per arm (docs/gpu-cost.md).

A run holds ``gpus`` GPUs for its whole wall time: start-up, compile and warm-up up to
its first step (``to_first_step_s``), the timed training (``train_s``), the untimed time
between the steps (validation during training, ``between_steps_s``), what follows the
last step (final validation, saving, exit: ``after_last_step_s``) and the harness's
record (``teardown_s``), the phases ``result.json`` stores (``harness.run.phases``).

With warm workers (one process group per arm kept alive across that arm's runs) the
start-up is paid once per arm instead of once per run; every other phase per run. The
same model serves every design: give it the expected runs per arm (a dict arm -> runs;
the sequential design stops the control early, so its arms differ).

No file is read here: the per-run costs come in as arguments (``harness.cli.costs``
builds them from a results folder or the flags).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# the command-line names of the phases (--run-cost startup=60,train=98,...) -> RunCost fields
FLAG_PHASES = {"startup": "to_first_step_s", "train": "train_s", "between": "between_steps_s",
               "after": "after_last_step_s", "teardown": "teardown_s"}


@dataclass(frozen=True)
class RunCost:
    """One run of one arm: the GPUs it holds and the seconds of each phase."""

    gpus: int
    to_first_step_s: float
    train_s: float
    between_steps_s: float = 0.0
    after_last_step_s: float = 0.0
    teardown_s: float = 0.0
    source: str = "the flags"       # where the figures came from (shown beside the hours)

    def __post_init__(self) -> None:
        if not (isinstance(self.gpus, int) and self.gpus >= 1):
            raise ValueError(f"gpus {self.gpus!r}: expected a whole number >= 1")
        for name in FLAG_PHASES.values():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} {v!r}: expected seconds >= 0")

    @property
    def wall_s(self) -> float:
        return (self.to_first_step_s + self.between_steps_s + self.train_s + self.after_last_step_s
                + self.teardown_s)

    def gpu_s(self, runs: float, warm: bool = False) -> float:
        """GPU-seconds of ``runs`` runs; ``warm``: one start-up for all of them (warm workers)."""
        if runs <= 0:
            return 0.0
        if not warm:
            return self.gpus * self.wall_s * runs
        return self.gpus * (self.to_first_step_s + (self.wall_s - self.to_first_step_s) * runs)

    @property
    def overhead_share(self) -> float:
        """The share of a run's GPU-seconds that is not timed training."""
        return 0.0 if self.wall_s <= 0 else 1.0 - self.train_s / self.wall_s

    def to_dict(self) -> dict:
        return {"gpus": self.gpus, **{k: round(getattr(self, k), 3) for k in FLAG_PHASES.values()},
                "wall_s": round(self.wall_s, 3), "gpu_s": round(self.gpu_s(1), 3),
                "overhead_share": round(self.overhead_share, 4), "source": self.source}


def from_phases(medians: dict, gpus: int, source: str, given: dict | None = None) -> RunCost:
    """A RunCost from median phases (``records.median_phases``), the ``given`` fields over them.

    A phase no run measured counts 0 s unless given; the start-up and the training are
    needed (ValueError naming them)."""
    fields = {k: medians.get(k) for k in FLAG_PHASES.values()}
    fields.update(given or {})
    missing = [flag for flag, k in FLAG_PHASES.items() if fields[k] is None and k in ("to_first_step_s", "train_s")]
    if missing:
        raise ValueError(f"no run measured {' and '.join(missing)}")
    return RunCost(gpus=gpus, source=source, **{k: float(v or 0.0) for k, v in fields.items()})


@dataclass(frozen=True)
class GpuHours:
    """The expected GPU-hours of a design: per arm and in all, and their price."""

    runs_by_arm: dict
    hours_by_arm: dict
    warm: bool
    price: float | None = None      # per GPU-hour; None: not asked for

    @property
    def hours(self) -> float:
        return sum(self.hours_by_arm.values())

    @property
    def runs(self) -> float:
        return sum(self.runs_by_arm.values())

    @property
    def cost(self) -> float | None:
        return None if self.price is None else self.hours * self.price

    def to_dict(self) -> dict:
        return {"runs_by_arm": {a: round(n, 4) for a, n in self.runs_by_arm.items()},
                "gpu_hours_by_arm": {a: round(h, 5) for a, h in self.hours_by_arm.items()},
                "gpu_hours": round(self.hours, 5), "warm_workers": self.warm,
                "cost": None if self.cost is None else round(self.cost, 4)}

    def text(self) -> str:
        """'1.23 GPU-hours (H0 0.61 for 10.0 runs, H1 0.62 for 10.0 runs), cost 2.46'."""
        arms = ", ".join(f"{a} {h:.3g} for {self.runs_by_arm[a]:.1f} runs" for a, h in self.hours_by_arm.items())
        price = "" if self.cost is None else f", cost {self.cost:.2f}"
        return f"{self.hours:.3g} GPU-hours ({arms}){price}"


def gpu_hours(expected_runs_by_arm: dict, costs, warm: bool = False, price: float | None = None) -> GpuHours:
    """GPU-hours of a design with ``expected_runs_by_arm`` (arm -> expected runs).

    ``costs``: one RunCost for every arm, or a dict arm -> RunCost (an arm it lacks is a
    KeyError). ``warm``: warm workers, the start-up once per arm that runs at all."""
    hours = {}
    for arm, runs in expected_runs_by_arm.items():
        c = costs[arm] if isinstance(costs, dict) else costs
        hours[arm] = c.gpu_s(runs, warm) / 3600.0
    return GpuHours(dict(expected_runs_by_arm), hours, warm, price)


def compare(designs: dict, costs, warm: bool = False, price: float | None = None) -> dict:
    """design name -> its GpuHours, for designs given as name -> expected runs by arm."""
    return {name: gpu_hours(runs, costs, warm, price) for name, runs in designs.items()}


# -- the expected runs per arm of each design, as plan and simulate report them -------------

def plan_designs(r: dict, control: str, treatment: str) -> dict:
    """design -> {arm: expected runs} of one treatment of ``harness plan`` (``plan.plan_one``)."""
    s = r["sequential"]
    out = {}
    if r.get("runs_fixed"):
        out["fixed"] = {control: float(r["runs_fixed"]), treatment: float(r["runs_fixed"])}
    out["sequential"] = {control: s["mean_control_runs"], treatment: s["mean_treatment_runs"]}
    return out


def simulation_designs(r: dict, control: str = "control", treatment: str = "treatment") -> dict:
    """design -> {arm: expected runs} of ``harness simulate``'s result (``simulate.simulate``
    or ``simulate_sweep``): the simulated design beside the fixed one of as many runs per arm."""
    M = float(r["max_runs"])
    if r.get("mode") == "sweep":
        arms = {f"{treatment}@{s}": n for s, n in r["mean_runs_per_step"].items()}
        return {"sweep": {control: r["mean_control_runs"], **arms},
                "fixed": {control: M, **{a: M for a in arms}}}
    name = "borrowed" if "variance_line" in r else "sequential"
    return {name: {control: r["mean_control_runs"], treatment: r["mean_treatment_runs"]},
            "fixed": {control: M, treatment: M}}
