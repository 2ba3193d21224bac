"""Render runner events: a live status line on a terminal, one line per event otherwise."""
from __future__ import annotations

import sys
import time

from harness.run import events as ev


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(rec) -> str:
    if rec.status in ("ok", "diverged"):
        t = "-" if rec.train_time_s is None else f"{rec.train_time_s:.3f} s"
        return (f"{rec.status} val_loss {rec.val_loss:.4f} train_time {t} "
                f"(wall {rec.wall_s:.1f} s)")
    return f"{rec.status.upper()}: {rec.message}"


class Progress:
    """Consumes the runner's events (``harness.run.events``). ``live`` redraws one line (for terminals)."""

    def __init__(self, stream=None, live: bool | None = None) -> None:
        self.out = stream or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.t0 = time.monotonic()
        self.total = 0
        self.finished = 0
        self.walls: list[float] = []
        self.current = ""
        self._last_draw = 0.0
        self._drawn = False     # a live status line is on the terminal, without its newline
        # every event type has its handler; one without is a TypeError (events.handler_for)
        self.handlers = {ev.Plan: self.on_plan, ev.Start: self.on_start, ev.Reattach: self.on_reattach,
                         ev.Tick: self.on_tick, ev.Finish: self.on_finish, ev.Retry: self.on_retry,
                         ev.Unpaired: self.on_unpaired, ev.Aside: self.on_aside, ev.Skip: self.on_skip,
                         ev.Look: self.on_look, ev.Note: self.on_note, ev.Done: self.on_done, ev.Preflight: self.on_preflight}

    def __call__(self, event) -> None:
        ev.handler_for(self.handlers, event)(event)

    def _line(self, text: str) -> None:
        if self.live:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self.out.flush()
        self._drawn = False

    def end_line(self) -> None:
        """End a live status line, so what is written next starts a line of its own."""
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False

    def on_plan(self, d: ev.Plan) -> None:
        self.total = d.pending
        self._line(f"experiment {d.experiment}: results in {d.results}; "
                   f"{d.done} of {d.total} runs already done, {d.pending} to run"
                   + ("; paired design: the runs of one index share a node" if d.pairing == "node" else ""))

    def on_start(self, d: ev.Start) -> None:
        self.current = f"{d.hypothesis} #{d.index}" + (f" (attempt {d.attempt})" if d.attempt > 1 else "")
        if not self.live:
            self._line(f"[{self.finished + 1}/{self.total}] start {self.current}  -> {d.run_dir}")

    def on_note(self, d: ev.Note) -> None:
        self._line(d.text)

    def on_reattach(self, d: ev.Reattach) -> None:
        self._line(f"found {d.hypothesis} #{d.index} still running as job {d.job_id}")

    def on_tick(self, d: ev.Tick) -> None:
        now = time.monotonic()
        if not self.live or now - self._last_draw < 0.25:
            return
        self._last_draw = now
        parts = []
        frac_left = 0.0
        for hyp, index, step, total in d.jobs:
            parts.append(f"{hyp} #{index} step {step if step is not None else '-'}/{total or '?'}")
            if step is not None and total:
                frac_left += 1 - step / total
            else:
                frac_left += 1
        elapsed = now - self.t0
        eta = ""
        if self.walls:
            mean = sum(self.walls) / len(self.walls)
            left = max(0, self.total - self.finished - len(d.jobs)) + frac_left
            eta = f"  ETA {_clock(mean * left)}"
        self.out.write(f"\r\033[K[{self.finished + 1}/{self.total}] " + ", ".join(parts)
                       + f"  elapsed {_clock(elapsed)}{eta}")
        self.out.flush()
        self._drawn = True

    def on_finish(self, d: ev.Finish) -> None:
        # the counter counts runs; a retried attempt shows its number beside the run
        rec = d.record
        settled = d.settled
        if settled:
            self.finished += 1
        if rec.wall_s:
            self.walls.append(rec.wall_s)
        shown = self.finished if settled else self.finished + 1
        attempt = f" (attempt {rec.attempt})" if rec.attempt > 1 else ""
        self._line(f"[{shown}/{self.total}] {rec.hypothesis} #{rec.index}{attempt}: {describe(rec)}")

    def on_retry(self, d: ev.Retry) -> None:
        rec = d.record
        self._line(f"  retrying {rec.hypothesis} #{rec.index} (failure {d.failures} of at most "
                   f"{d.retries + 1})")

    def on_unpaired(self, d: ev.Unpaired) -> None:
        self._line(f"  {d.hypothesis} #{d.index} runs on any node: {d.why} (the pair is broken)")

    def on_aside(self, d: ev.Aside) -> None:
        if d.moved:
            kept = f"; the finished runs of {', '.join(d.kept)} are kept" if d.kept else ""
            self._line(f"the spec changed for {', '.join(d.moved)} only: their attempts were moved to "
                       f"{d.folder}{kept} (not interleaved with the new runs: the table says so)")
            return
        self._line(f"no run had a result under the old spec: its attempts were moved to {d.folder}")

    def on_preflight(self, d: ev.Preflight) -> None:
        took = f" in {d.wall_s:.1f} s" if d.wall_s else ""
        verdict = {"passed": "ok", "failed": "FAILED", "skipped": "skipped"}.get(d.verdict, d.verdict)
        self._line(f"preflight {', '.join(d.arms)}: {verdict}{took}: {d.why}")

    def on_skip(self, d: ev.Skip) -> None:
        self._line(f"  skip {d.hypothesis} #{d.index}: {d.why}")

    def on_look(self, d: ev.Look) -> None:
        for line in getattr(d.look, "lines", []) or []:
            self._line("  " + line)

    def on_done(self, d: ev.Done) -> None:
        slots = d.slots.values()
        done = sum(1 for s in slots if s.done is not None)
        gave_up = len(d.without)
        msg = f"finished in {_clock(time.monotonic() - self.t0)}: {done} runs with a result"
        if gave_up:
            msg += f", {gave_up} without (see harness status)"
        if d.stop_reason:
            msg += f"; stopped early ({d.stop_reason})"
        self._line(msg)
