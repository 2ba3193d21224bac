"""``harness control REPO --out DIR``: the control of a new experiment, from the latest record.

Picks the record folder (harness/data/upstream.py), rebuilds its scripts from one of its
own logs (harness/logs/extract.py) and writes ``DIR/experiment.toml``: H0 is that record
at its step count, ``variance_from`` its logs; the user adds H1 from the commented
template. Each choice is one line on stderr; the files written are listed on stdout.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path

from harness import thresholds as th
from harness.data import upstream
from harness.errors import UserError
from harness.groups import hardware_text
from harness.logs.extract import extract

EXPERIMENT = "experiment.toml"
DEFAULT_GPUS = 8     # the speedrun's node, when the logs do not say


def configure(p) -> None:
    p.add_argument("repo", type=Path, metavar="REPO",
                   help="a clone of the speedrun repository (the folder that holds records/)")
    p.add_argument("--track", default="short",
                   help="the track: records/track_<n>_<TRACK> (default short)")
    p.add_argument("--record", metavar="NAME",
                   help="a record folder of the track (default: the latest by its folder's date)")
    p.add_argument("--log", type=Path, metavar="FILE",
                   help="the record's log to rebuild the scripts from (default: the PR's first)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help=f"folder for the rebuilt scripts and {EXPERIMENT}")


def shown(path: Path) -> str:
    """A path as the experiment file gives it: relative to here when below here, else absolute."""
    rel = os.path.relpath(path.absolute(), Path.cwd())
    return rel if not rel.startswith("..") else str(path.absolute())


def experiment_name(record: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"after-{record}")[:64]


def experiment_text(rec: upstream.Record, choice: upstream.Choice, script: str, today: dt.date) -> str:
    """The starting experiment file: H0 = the record, a commented H1 to fill in."""
    hw = hardware_text(choice.hardware) if choice.hardware else None
    gpus = choice.hardware[1] if choice.hardware else DEFAULT_GPUS
    steps = choice.steps
    q = json.dumps
    h1_script = str(Path(script).with_name("train_gpt_h1.py"))
    lines = [
        f"# Made by `harness control` on {today.isoformat()} from {rec.track}/{rec.path.name}",
        f"# (H0's scripts rebuilt from its log {choice.log.name}).",
        f"# Its logs ran on {hw or 'hardware they do not name'}"
        + (f" with torch {choice.torch_version}" if choice.torch_version else "") + ": run on the same,",
        "# or the borrowed time sigma is not used (the loss sigma still is).",
        "# The record's script takes no flags (its step count is in the script) and reads its data",
        "# (data/fineweb10B/) relative to the folder you run harness from.",
        "",
        "[experiment]",
        f"name = {q(experiment_name(rec.path.name))}",
        f"target_loss = {th.TARGET_LOSS}",
        f"runs = {th.RUNS}",
        f"variance_from = {q(shown(choice.variance_from))}   # the record's logs"
        + (f" ({hw})" if hw else ""),
        "",
        "[defaults]",
        'launcher = "torchrun"',
        f"nproc_per_node = {gpus}" + (f"   # the record's logs: {hw}" if hw else "   # the speedrun's node"),
        "",
        "[[hypothesis]]",
        'name = "H0"',
        "control = true",
        f"description = {q(f'the record {rec.path.name} at its {steps} steps')}",
        f"script = {q(script)}",
        f"steps = {steps}",
        "",
        "# Add your change as H1: copy the script, edit the copy, uncomment these lines, then",
        "# harness run " + shown(Path(script).parent / EXPERIMENT),
        f"#   cp {script} {h1_script}",
        "# [[hypothesis]]",
        '# name = "H1"',
        '# description = "what the change is"',
        f"# script = {q(h1_script)}",
        f"# steps = {steps}",
        "",
    ]
    return "\n".join(lines)


def main(args) -> int:
    if not args.repo.is_dir():
        raise UserError(f"{args.repo}: not a folder; pass a clone of the speedrun repository")
    out_file = args.out / EXPERIMENT
    if out_file.exists():
        raise UserError(f"--out {args.out}: already holds {EXPERIMENT}; pass a new folder "
                        f"(nothing was written)")
    rec, why = upstream.find_record(args.repo, args.track, args.record)
    choice = upstream.choose_logs(rec.path, args.log)
    for line in [why] + choice.why:
        sys.stderr.write(line + "\n")
    extract(choice.log, args.out)     # refuses, before writing, files that differ
    script = shown(args.out / choice.files[0].name)
    text = experiment_text(rec, choice, script, dt.date.today())
    try:
        with open(out_file, "x") as f:     # "x": never over a file that appeared meanwhile
            f.write(text)
    except FileExistsError:
        raise UserError(f"--out {args.out}: {EXPERIMENT} appeared while writing; pass a new folder") from None
    for f in choice.files:
        print(args.out / f.name)
    print(out_file)
    return 0
