"""Log tailing: the lines a running attempt has written so far, fed to a parser (live
progress), and when the lines that mark its phases arrived (``Arrivals``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.logs.logparse import LogParser, LogSummary


@dataclass
class Arrivals:
    """Seconds from the attempt's launch at which its log's landmark lines were read.

    A line's time is that of the read that found it, so each is late by at most one
    poll of the runner (0.05 s locally). None: not seen (yet).
    """

    first_output: float | None = None   # the first whole line of any kind
    first_step: float | None = None     # the first step line ('step:0/N val_loss...')
    last_step: float | None = None      # the first line at step N (training done), else the latest step line
    last_output: float | None = None    # the latest whole line


class Tail:
    """Reads a growing log from where it stopped; only whole lines reach the parser."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.parser = LogParser(str(path))
        self.pos = 0
        self.arrivals = Arrivals()
        self._at_end = False             # a line at step N has been seen

    @property
    def summary(self) -> LogSummary:
        return self.parser.summary

    def read(self, now: float | None = None) -> None:
        """Feed the new whole lines; ``now``: seconds since the launch (None: arrivals not kept)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return   # not created yet (a queued SLURM job): the next poll reads it
        end = data.rfind(b"\n")
        if end < 0:
            return
        steps_before = self.parser.summary.step_lines
        for line in data[:end].split(b"\n"):
            self.parser.feed(line)
            if now is not None and not self._at_end:
                s = self.parser.summary
                if s.last_step is not None and s.last_step == s.total_steps and s.step_lines:
                    self._at_end = True          # the end of training: what follows is after it
                    self.arrivals.last_step = now
        self.pos += end + 1
        if now is None:
            return
        a, s = self.arrivals, self.parser.summary
        if a.first_output is None:
            a.first_output = now
        a.last_output = now
        if s.step_lines > steps_before:
            if a.first_step is None:
                a.first_step = now
            if not self._at_end:
                a.last_step = now
