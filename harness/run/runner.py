"""Run an experiment: the scheduling loop that launches attempts through a backend.

The runner decides *what* runs next (order, retries, resume, early stopping). It never
computes p-values (a ``decider`` does, for ``--until-decisive``) and never prints: it
emits the events of ``harness.run.events`` (one dataclass per kind) that ``progress``
renders. Each other job has its own module beside it:

- ``attempt``: an attempt's folder, scratch working directory and launch spec;
- ``tail``: the lines a running attempt's log has so far (live progress);
- ``record``: an ended attempt (its outcome and logs) as a ``RunRecord``;
- ``resume``: the attempts an earlier runner started and never recorded;
- the results folder's files are written and read by the store (``harness.data.store``).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from harness.run import attempt as attempts
from harness.run import events as ev
from harness.run import pairing, preflight
from harness.run import workers
from harness.run.attempt import Job, run_id  # noqa: F401  (run_id: part of this module's face)
from harness.run.backends.base import Backend
from harness.run.backends.local import now_iso
from harness.run.record import Recorder
from harness.run.resume import Resume
from harness.run.tail import Tail
from harness.records import COMPLETED, RunRecord
from harness.data.spec import Experiment, Hypothesis
from harness.data.store import Slot, Store, kept_runs
from harness.thresholds import RETRIES, pick

POLL_S = 0.05


def run_label(rec: RunRecord) -> str:
    """'H1 #3', or "H1's preflight" for the preflight's record (never stored, never a run)."""
    return f"{rec.hypothesis}'s preflight" if rec.run_id == "preflight" else f"{rec.hypothesis} #{rec.index}"


class Stopped(Exception):
    """The runner was stopped (Ctrl-C, SIGTERM); ``runs`` were running and are marked interrupted."""

    def __init__(self, why: str, runs: list[tuple[str, int, int]]) -> None:
        super().__init__(why)
        self.why = why
        self.runs = runs


class Decider(Protocol):
    """Early stopping: after every completed run, which arms still need runs."""

    def look(self, records: dict[str, list[RunRecord]]):  # -> object with .need, .done, .lines
        ...


@dataclass
class Options:
    runs: int | None = None          # per hypothesis; None: the experiment's
    order: str | None = None
    timeout_s: float | None = None
    retries: int | None = None
    compile_cache: bool | None = None
    preflight: bool | None = None    # None: for a new folder, where the backend can stop a run early
    design: str | None = None        # spec.json's design kind; None: from the decider (design_kind)


@dataclass
class _Queue:
    """What the scheduling loop still has to launch, and what it passes over."""

    keys: deque                     # (hypothesis, index) to launch, in order
    order_of: dict                  # (hypothesis, index) -> its position in the launch order
    stop_reason: str = ""           # "decided": the sequential plan needs no more runs
    deferred: list = field(default_factory=list)   # arms not needed now, for a decider that may revisit
    # a hypothesis with a run that failed in a way a retry cannot fix (usage error, missing
    # file, CUDA OOM before the first step...): its other runs would fail the same way
    blocked: dict = field(default_factory=dict)


def design_kind(decider) -> str:
    """The design a decider runs (spec.json's design kind): none is a fixed-sample design."""
    if decider is None:
        return "fixed"
    return getattr(decider, "design", None) or "group-sequential"


class Runner:
    def __init__(self, exp: Experiment, store: Store, backend: Backend, base_dir: Path,
                 source_text: str, options: Options | None = None,
                 on_event: Callable[[object], None] = lambda e: None,
                 decider: Decider | None = None, want_steps: bool = False) -> None:
        self.exp = exp
        self.store = store
        self.base = Path(base_dir).resolve()
        self.source_text = source_text
        self.opt = options or Options()
        self.emit = on_event
        # arms with workers = true: their runs go to one warm process per arm (run/workers.py)
        self.backend = workers.wrap(backend, exp, store.root, self.base,
                                    lambda text: self.emit(ev.Note(text=text)))
        self.decider = decider
        self.want_steps = want_steps
        self.runs = self.opt.runs or exp.runs
        self.retries = pick(self.opt.retries, exp.retries, RETRIES)
        self.timeout = pick(self.opt.timeout_s, exp.timeout, None)
        cache = pick(self.opt.compile_cache, exp.compile_cache, True)
        self.cache_dir = (store.root / ".cache").resolve() if cache else None
        self.order = exp.launch_order(self.runs, self.opt.order)
        # paired design on clusters: the runs of one index share a node (harness/run/pairing.py)
        self.pairing_mode = pairing.mode(exp.pairing, backend.may_span_nodes)
        self.pairing = None
        if self.pairing_mode == pairing.NODE:
            order_name = self.opt.order or exp.order
            pairing.check_order(order_name, self.pairing_mode)
            if order_name == "interleaved":
                self.order = pairing.alternate(self.order)
            self.pairing = pairing.Pairing([h.name for h in exp.hypotheses], backend.node_usable)
        self.recorder = Recorder(exp, backend.name, self.base)
        self.resume = Resume(exp, store, self.backend, self.recorder, self.timeout)
        self.design = exp.design(self.opt.design or design_kind(decider))
        self.look = None
        self.look_done = False
        self.ran_here: set[str] = set()      # run folders of attempts launched by this invocation
        self.skipped: dict[tuple[str, int], RunRecord] = {}
        self._blocked: dict[str, RunRecord] = {}   # arm -> its failure a retry cannot fix

    # -- commands ------------------------------------------------------------------------
    def commands(self) -> list[tuple[str, int, dict, list[str]]]:
        """(hypothesis, index, env, argv) for every run, in launch order (for --dry-run)."""
        out = []
        for hyp_name, index in self.order:
            hyp = self.exp.hypothesis(hyp_name)
            out.append((hyp_name, index, self._env(hyp, index), hyp.argv(hyp.script)))
        return out

    def _env(self, hyp: Hypothesis, index: int) -> dict[str, str]:
        env = dict(hyp.env)
        env["SEED"] = str(self.exp.seed_for(index))
        env["PYTHONUNBUFFERED"] = "1"  # lines reach log.txt as they are printed
        if self.cache_dir is not None:
            # one compile cache for all runs of the experiment: run 2..N skip most compilation
            env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.cache_dir / "inductor"))
            env.setdefault("TRITON_CACHE_DIR", str(self.cache_dir / "triton"))
        return env

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> dict[tuple[str, int], Slot]:
        self.store.lock()
        try:
            # read every stored record first: a corrupt one stops us before anything is written
            slots = self.store.slots([h.name for h in self.exp.hypotheses])
            self.store.read_plan()      # one from a newer harness is refused here too
            self.store.freeze(self.exp, self.source_text, check_only=True,  # refused: nothing touched
                              design=self.design)
            # trees an earlier runner left running end first: before their folders are set
            # aside, their logs read, or their GPUs given to a new attempt
            for slot in slots.values():
                for run_dir in slot.orphans:
                    self.resume.end_leftovers(run_dir)
            aside = self.store.freeze(self.exp, self.source_text, design=self.design)
            if aside:
                entry = next((e for e in kept_runs(self.store.read_spec() or {})
                              if self.store.root / e["superseded"] == aside), None)
                self.emit(ev.Aside(folder=str(aside), moved=tuple(entry["changed"]) if entry else (),
                                   kept=tuple(entry["kept"]) if entry else ()))
                slots = self.store.slots([h.name for h in self.exp.hypotheses])
            self.store.clean()
            if self.decider is not None and hasattr(self.decider, "to_dict") and not self.store.sequential_path.exists():
                self.store.write_plan(self.decider.to_dict())
            new = not any(s.records or s.orphans for s in slots.values())
            if self.opt.preflight or (self.opt.preflight is None and new and self.backend.can_preflight):
                self._preflight()
            return self._run(slots)
        finally:
            self.store.unlock()
            self.backend.close()

    def _preflight(self) -> None:
        """Each distinct command once, stopped at its first step line (harness/run/preflight.py)."""
        groups = preflight.commands(self.exp.hypotheses, lambda h: self._env(h, 0))
        if not self.backend.can_preflight:
            for hyps in groups:
                self.emit(ev.Preflight(arms=tuple(h.name for h in hyps), verdict=preflight.SKIPPED,
                                       why=f"the {self.backend.name} backend cannot stop a run at its "
                                           f"first step line"))
            return
        for hyps in groups:
            found = preflight.check(self.store, self.backend, self.recorder, hyps, self.base,
                                    self._env(hyps[0], 0), self.timeout)
            if found.broken:
                for name in found.arms:
                    self._blocked.setdefault(name, found.record)
            self.emit(ev.Preflight(arms=tuple(found.arms), verdict=found.verdict, why=found.why,
                                   wall_s=round(found.wall_s, 3)))

    def _run(self, slots: dict[tuple[str, int], Slot]) -> dict[tuple[str, int], Slot]:
        running: list[Job] = self.resume.recover(slots)
        for job in running:
            self.emit(ev.Reattach(hypothesis=job.hyp.name, index=job.index, job_id=job.handle.job_id))
        q = _Queue(deque(s for s in self.order if self._needs_attempt(slots.get(s)) and
                         not any((j.hyp.name, j.index) == s for j in running)),
                   {s: i for i, s in enumerate(self.order)}, blocked=self._blocked)
        self.emit(ev.Plan(experiment=self.exp.name, results=str(self.store.root), total=len(self.order),
                          done=sum(1 for s in self.order if slots.get(s) and slots[s].done),
                          pending=len(q.keys) + len(running), pairing=self.pairing_mode))
        self._update_look(slots)
        try:
            while q.keys or running:
                self._launch(q, slots, running)
                if not running:
                    break
                time.sleep(POLL_S)
                for job in list(running):
                    job.tail.read(self._clock(job))   # every attempt: its phases come from the arrivals
                    outcome = self.backend.poll(job.handle)
                    if outcome is not None:
                        self._settle(job, outcome, q, slots, running)
                if self.want_steps and running:
                    self.emit(ev.Tick(jobs=tuple((j.hyp.name, j.index, j.tail.summary.last_step,
                                                  j.tail.summary.total_steps) for j in running)))
        except KeyboardInterrupt as e:
            why = str(e) or "Ctrl-C"
            stopped = self._stop_all(running, f"cancelled by the user ({why})")
            raise Stopped(why, stopped) from None
        except BaseException:
            # disk full, permission...: end every run's tree (no orphan on the GPUs); their
            # folders hold launch.json, so the next invocation records and redoes them
            for job in running:
                self.backend.cancel(job.handle)
            raise
        self.look_done = bool(self.look is not None and self.look.done)
        self.emit(ev.Done(slots=slots, stop_reason=q.stop_reason, look=self.look, without=self.without(slots)))
        return slots

    def _launch(self, q: "_Queue", slots: dict[tuple[str, int], Slot], running: list[Job]) -> None:
        """Start queued runs while the backend has room, passing over the ones not needed."""
        while q.keys and len(running) < self.backend.max_parallel and not q.stop_reason:
            if self.look is not None and self.look.done:
                q.stop_reason = "decided"
                break
            node = None
            if self.pairing is not None:
                pick = self.pairing.pick(q.keys, slots, {(j.hyp.name, j.index) for j in running})
                if pick is None:
                    break   # every queued run waits for its partner to finish
                key, node = pick.key, pick.node
                q.keys.remove(key)
                if pick.broken:
                    self.emit(ev.Unpaired(hypothesis=key[0], index=key[1], why=pick.broken))
            else:
                key = q.keys.popleft()
            if self.look is not None and not self.look.need.get(key[0], True):
                if getattr(self.decider, "revisit", False):   # a sweep may need the arm again
                    q.deferred.append(key)
                    continue
                self.emit(ev.Skip(hypothesis=key[0], index=key[1], why="arm decided"))
                continue
            broken = self._broken_for(key[0], q.blocked)
            if broken is not None:
                self.skipped[key] = broken
                self.emit(ev.Skip(hypothesis=key[0], index=key[1], why=self._why_not(key[0], broken)))
                continue
            slot = slots.setdefault(key, Slot(*key))
            running.append(self._start(key[0], key[1], self._free_attempt(slot), q.order_of[key], node))

    def _settle(self, job: Job, outcome, q: "_Queue", slots: dict[tuple[str, int], Slot],
                running: list[Job]) -> None:
        """Record an attempt that ended; queue its retry; look again at what is still needed."""
        slot = slots.setdefault((job.hyp.name, job.index), Slot(job.hyp.name, job.index))
        rec = self._finish(job, outcome, slot)
        running.remove(job)  # only once its result is stored (Ctrl-C in between)
        slot.records.append(rec)
        again = rec.status not in COMPLETED and self._needs_attempt(slot)
        if rec.status == "failed" and not rec.retryable:
            # a failure a retry cannot fix (a typo in its args): the arm's other runs would fail
            # alike, and the arms compared only with it are launched for nothing
            q.blocked.setdefault(job.hyp.name, rec)
        self.emit(ev.Finish(record=rec, total=len(self.order), settled=not again))
        if again:
            self.emit(ev.Retry(record=rec, failures=slot.failures, retries=self.retries))
            q.keys.appendleft((job.hyp.name, job.index))
        self._update_look(slots)
        if q.deferred and self.look is not None:
            back = [k for k in q.deferred if self.look.need.get(k[0], True)]
            q.deferred = [k for k in q.deferred if k not in back]
            q.keys.extendleft(reversed(back))

    def _broken_for(self, arm: str, blocked: dict) -> RunRecord | None:
        """The failure that leaves ``arm`` nothing to be compared in, else None.

        Every comparison is the control against one treatment: a broken control voids them
        all; a treatment is void when it is broken; the control is void once no treatment
        is left. With several treatments, a broken one stops only itself.
        """
        if not blocked:
            return None
        control = self.exp.control.name
        if arm in blocked:
            return blocked[arm]
        if control in blocked:
            return blocked[control]
        treatments = [h.name for h in self.exp.hypotheses if not h.control]
        if arm == control and all(t in blocked for t in treatments):
            return blocked[treatments[0]]
        return None

    def _why_not(self, arm: str, broken: RunRecord) -> str:
        cause = f"{run_label(broken)} failed in a way a retry cannot fix"
        if broken.error:
            cause += f" ({broken.error})"
        if broken.hypothesis == arm:
            return f"not launched: {cause}"
        if arm == self.exp.control.name:
            return f"not launched: no treatment is left to compare it with; {cause}"
        return f"not launched: its control cannot run; {cause}"

    def broken(self) -> RunRecord | None:
        """The failure that ended this invocation's launches of every arm, if one did."""
        return self._broken_for(self.exp.control.name, self._blocked) if self._blocked else None

    def _stop_all(self, running: list[Job], why: str) -> list[tuple[str, int, int]]:
        for job in running:
            self.backend.cancel(job.handle)
        stopped = []
        for job in running:
            now = self._clock(job)
            job.tail.read(now)
            rec = self.resume.interrupted(job.run_dir, why, job.tail.arrivals if now is not None else None,
                                          now, ended_now=True)
            if rec is None or rec.status not in COMPLETED:
                stopped.append((job.hyp.name, job.index, job.attempt))
        return stopped

    def without(self, slots: dict[tuple[str, int], Slot]) -> list[RunRecord | None]:
        """For every planned run left without a result: its last record (None: never ran).

        Runs the sequential plan no longer needs are not missing: the design stopped them.
        """
        if self.look is not None and self.look.done:
            return []
        out = []
        for key in self.order:
            slot = slots.get(key)
            if slot is not None and slot.done is not None:
                continue
            if self.look is not None and not self.look.need.get(key[0], True):
                continue
            last = slot.records[-1] if slot is not None and slot.records else self.skipped.get(key)
            out.append(last)
        return out

    def _needs_attempt(self, slot: Slot | None) -> bool:
        if slot is None:
            return True
        if slot.done is not None or slot.failures > self.retries:
            return False
        # a deterministic failure is not retried within one invocation; a later one
        # (after the user fixed the cause) tries once more
        last = slot.records[-1] if slot.records else None
        return not (last is not None and not last.retryable and (last.hypothesis, last.run_id) in self.ran_here)

    def _free_attempt(self, slot: Slot) -> int:
        attempt = slot.next_attempt
        while self.store.attempt_dir(slot.hypothesis, slot.index, attempt).exists():
            attempt += 1  # a folder left with neither launch.json nor result.json
        return attempt

    def _update_look(self, slots: dict[tuple[str, int], Slot]) -> None:
        if self.decider is None:
            return
        per_arm: dict[str, list[RunRecord]] = {h.name: [] for h in self.exp.hypotheses}
        done = [s.done for s in slots.values() if s.done is not None]
        for rec in sorted(done, key=lambda r: (r.order if r.order is not None else 0, r.index)):
            per_arm.setdefault(rec.hypothesis, []).append(rec)
        self.look = self.decider.look(per_arm)
        if getattr(self.look, "new", None) and hasattr(self.decider, "to_dict"):
            # decisions are final once made: stored as they are made (issue 12)
            self.store.write_plan(self.decider.to_dict())
        self.emit(ev.Look(look=self.look))

    # -- one attempt -------------------------------------------------------------------------

    # -- one attempt -------------------------------------------------------------------------
    def _start(self, hyp_name: str, index: int, attempt: int, order: int, node: str | None = None) -> Job:
        hyp = self.exp.hypothesis(hyp_name)
        self.ran_here.add((hyp_name, run_id(index, attempt)))
        spec = attempts.prepare(self.store, self.exp, hyp, index, attempt, self.base, self._env(hyp, index),
                                self.timeout, node)
        run_dir = spec.run_dir
        launch = attempts.launch_info(self.backend.name, hyp_name, index, attempt, order, spec,
                                      self.pairing_mode, node)
        # written before the start: a runner killed in between leaves an attempt resume can see
        self.store.write_launch(run_dir, launch)
        t0 = time.monotonic()
        handle = self.backend.start(spec)
        launch["job_id"] = handle.job_id
        launch["started_at"] = handle.extra.get("started_at") or now_iso()
        if "info" in handle.extra:
            launch["worker"] = handle.extra["info"]     # served by a warm worker (docs/workers.md)
        self.store.write_launch(run_dir, launch)
        self.emit(ev.Start(hypothesis=hyp_name, index=index, attempt=attempt, order=order,
                           total=len(self.order), run_dir=str(run_dir)))
        return Job(hyp, index, attempt, order, run_dir, handle, Tail(spec.log_path), t0)

    def _clock(self, job: Job) -> float | None:
        """Seconds since ``job`` was launched; None when an earlier runner launched it."""
        return None if job.t0 is None else self.backend.elapsed(job.handle, job.t0)

    def _finish(self, job: Job, outcome, slot: Slot) -> RunRecord:
        seen = self._clock(job)
        job.tail.read(seen)   # the lines written before the exit and not read yet
        clock = None if job.t0 is None else (lambda: self._clock(job))
        rec = self.recorder.finished(job.hyp, job.index, job.attempt, job.order, job.run_dir, outcome,
                                     job.handle.spec, job.handle.job_id or None, slot.records,
                                     job.tail.arrivals if seen is not None else None, seen, clock)
        self.store.write_record(job.run_dir, rec)
        return rec
