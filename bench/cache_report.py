"""Where each run's wall time went, in launch order: start-up, compile (the trainer's
untimed warm-up), train_time, and the rest (validation, torchrun, exit).

    python bench/cache_report.py RESULTS_DIR [--markdown]

Reads every attempt's result.json (wall_s, train_time_s, started_at) and the trainer's
`warmup:` line from its log. The first run of an experiment with the shared compile cache
compiles cold; later runs show what the cache saves (issue 5). An interrupted attempt
has no wall time (its runner was stopped).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.records import RunRecord  # noqa: E402

WARMUP = re.compile(r"^warmup: (\d+)ms compile and untimed warm-up, (\d+)ms since process start$", re.M)


def rows(root: Path) -> list[dict]:
    out = []
    for path in root.glob("*/*/result.json"):
        rec = RunRecord.load(path)
        log = path.parent / rec.log
        m = WARMUP.search(log.read_text(errors="replace")) if log.exists() else None
        warm = since = None
        if m:
            warm, since = int(m.group(1)) / 1000, int(m.group(2)) / 1000
        out.append(dict(run=f"{rec.hypothesis} {rec.run_id}", status=rec.status,
                        wall=rec.wall_s or None, startup=None if m is None else since - warm, warmup=warm,
                        train=rec.train_time_s, started=rec.started_at or ""))
    # Launch order across resumed calls: a resumed runner numbers its own launches from 0.
    return sorted(out, key=lambda r: r["started"])


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args(argv)
    root = Path(a.results)
    if not root.is_dir():
        print(f"error: {root} is not a results folder; give the folder `harness run` wrote", file=sys.stderr)
        return 2
    table = rows(root)
    head = ["#", "run", "status", "wall s", "start-up s", "compile + warm-up s", "train_time s", "train_time / wall"]
    body = []
    for i, r in enumerate(table, 1):
        share = None if not (r["wall"] and r["train"]) else 100 * r["train"] / r["wall"]
        body.append([str(i), r["run"], r["status"], fmt(r["wall"]), fmt(r["startup"]), fmt(r["warmup"]),
                     fmt(r["train"], ".3f"), "-" if share is None else f"{share:.1f}%"])
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for b in body:
            print("| " + " | ".join(b) + " |")
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        for line in [head] + body:
            print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
