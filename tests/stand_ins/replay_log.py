"""Stand-in trainer that prints a stored log byte for byte: the ``SEED``-th path of the
file named by ``REPLAY_LIST`` (one path a line). The runner then reads the same bytes
that the analysis reads from the log itself."""
import os
import sys

paths = open(os.environ["REPLAY_LIST"]).read().splitlines()
with open(paths[int(os.environ["SEED"])], "rb") as f:
    sys.stdout.buffer.write(f.read())
