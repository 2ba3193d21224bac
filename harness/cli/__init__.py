"""Command line: ``harness <command> ...``.

Each command lives in its own module, imported only when that command runs (so
``harness analyze`` does not pay for torch, and ``harness run`` not for matplotlib).
A command module exposes ``configure(parser)`` and ``main(args) -> int``.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from harness.errors import UserError

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                  errno.EIO, errno.ENAMETOOLONG)
STORAGE_FIX = ("nothing stored was lost; free space or fix the folder's permissions, "
               "then run the same command again to resume")

# command -> (module, one-line help)
COMMANDS = {
    "run": ("harness.cli.run", "run an experiment file (resumes an interrupted one)"),
    "status": ("harness.cli.status", "list done / failed / diverged / pending runs of a results folder"),
    "demo": ("harness.cli.demo", "run the CPU-sized H0/H1 smoke experiment and print its table"),
    "analyze": ("harness.cli.analyze", "significance table and record gate from results or log folders"),
    "plan": ("harness.cli.plan", "runs per arm needed, fixed and sequential designs"),
    "simulate": ("harness.cli.simulate", "Monte Carlo of the sequential procedure"),
    "extract": ("harness.cli.extract", "rebuild the training script and kernel files a speedrun log embeds"),
    "control": ("harness.cli.control", "the control of a new experiment from the latest record of a speedrun clone"),
    "export": ("harness.cli.export", "a results folder as a record folder of the speedrun repository"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other bad input
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser(argv_command: str | None) -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    from harness import __version__
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == argv_command:  # only the chosen command's module is imported
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None, prog: str = "harness") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    parser.prog = prog
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): no traceback, and none again at exit's flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        # disk full, read-only, permission: the folder, not the code, is at fault
        # a link or a rename names its source first: the file that could not be made is the second
        where = e.filename2 or e.filename or "a results file"
        sys.stderr.write(f"error: {where}: {e.strerror or e}; {STORAGE_FIX}\n")
        return 2
