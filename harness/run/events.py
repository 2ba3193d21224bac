"""What the runner tells its watcher: one frozen dataclass per kind of event.

The runner emits these and never prints; ``progress`` renders them. A watcher
dispatches on the type (``handler_for``): an event type with no handler is an
error, not a silent no-op, so a new kind cannot be forgotten by a renderer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Aside:
    """The spec changed: the old attempts were moved to ``folder`` (all of them when no run
    had a result; else those of the ``moved`` arms, while the ``kept`` arms keep their runs)."""
    folder: str
    moved: tuple = ()
    kept: tuple = ()


@dataclass(frozen=True)
class Preflight:
    """The preflight of one command (``arms`` run it): passed, failed or skipped, and why."""
    arms: tuple
    verdict: str
    why: str
    wall_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What this invocation will run."""
    experiment: str
    results: str
    total: int
    done: int
    pending: int
    pairing: str | None = None


@dataclass(frozen=True)
class Start:
    hypothesis: str
    index: int
    attempt: int
    order: int
    total: int
    run_dir: str


@dataclass(frozen=True)
class Reattach:
    """A run an earlier runner launched is still running and is watched again."""
    hypothesis: str
    index: int
    job_id: str


@dataclass(frozen=True)
class Unpaired:
    """A run of a paired design could not share its partner's node."""
    hypothesis: str
    index: int
    why: str


@dataclass(frozen=True)
class Skip:
    """A planned run is not launched (its arm is decided, or it would fail as another did)."""
    hypothesis: str
    index: int
    why: str


@dataclass(frozen=True)
class Tick:
    """The running jobs: (hypothesis, index, last step or None, total steps or None) each."""
    jobs: tuple[tuple[str, int, int | None, int | None], ...]


@dataclass(frozen=True)
class Finish:
    """An attempt ended and its record is stored; ``settled``: no retry of the run follows."""
    record: Any
    total: int
    settled: bool = True


@dataclass(frozen=True)
class Retry:
    record: Any
    failures: int
    retries: int


@dataclass(frozen=True)
class Look:
    """The early-stopping decider's latest look (an object with ``lines``)."""
    look: Any


@dataclass(frozen=True)
class Note:
    """Something the user should know once (e.g. a script without warm-worker support)."""
    text: str


@dataclass(frozen=True)
class Done:
    """The loop ended; ``without``: the last record of every planned run left without a result."""
    slots: dict
    stop_reason: str
    look: Any
    without: list


EVENTS: tuple[type, ...] = (Aside, Preflight, Plan, Start, Reattach, Unpaired, Skip, Tick, Finish, Retry, Look, Note, Done)


def handler_for(handlers: dict[type, Callable], event: object) -> Callable:
    """The handler of ``event``'s type; a TypeError names a type nobody handles."""
    try:
        return handlers[type(event)]
    except KeyError:
        raise TypeError(f"no handler for event {type(event).__name__!r}: "
                        f"handled are {', '.join(sorted(t.__name__ for t in handlers))}") from None
