"""``harness extract LOG --out DIR``: write the files a speedrun log embeds (harness/logs/extract.py)."""
from __future__ import annotations

from pathlib import Path

from harness.logs.extract import DEFAULT_MAIN, extract


def configure(parser) -> None:
    parser.add_argument("log", type=Path, help="a speedrun log that begins with its own code")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    parser.add_argument("--main-name", default=DEFAULT_MAIN,
                        help=f"file name for the main script (the log does not record it; default {DEFAULT_MAIN})")


def main(args) -> int:
    files = extract(args.log, args.out, args.main_name)
    for f in files:
        print(f"{f.sha256}  {len(f.data):>8}  {args.out / f.name}")
    return 0
