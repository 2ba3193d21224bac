#!/usr/bin/env python3
"""``python analyze.py ...`` is exactly ``harness analyze ...``."""
import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]], prog="analyze.py"))
