"""Log tailing: the lines a running attempt has written so far, fed to a parser (live progress)."""
from __future__ import annotations

from pathlib import Path

from harness.logs.logparse import LogParser, LogSummary


class Tail:
    """Reads a growing log from where it stopped; only whole lines reach the parser."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.parser = LogParser(str(path))
        self.pos = 0

    @property
    def summary(self) -> LogSummary:
        return self.parser.summary

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return   # not created yet (a queued SLURM job): the next poll reads it
        end = data.rfind(b"\n")
        if end < 0:
            return
        for line in data[:end].split(b"\n"):
            self.parser.feed(line)
        self.pos += end + 1
