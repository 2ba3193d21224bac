"""Rebuild the source files a speedrun log embeds (``harness extract LOG --out DIR``).

A modded-nanogpt log begins with the exact code that produced it: the training script
reads itself (and, since the Triton-kernel records, the kernel files beside it) and logs
that text before anything else. The shape, as the records write it:

    <train_gpt.py>                                   the script itself
    \\n\\n----------------------------------------\\n   40 dashes, then one line per
    # triton_kernels.py\\n                            appended file: its name,
    ----------------------------------------\\n\\n     40 dashes again
    <triton_kernels.py>
    \\n                                               print0(code) ends the text with "\\n"
    ====================================================================================================
    Running Python ...                               the run's own output starts here

Older scripts wrote the text with ``f.write(code)``, which adds no newline; the embedded
script says which it used, so the rebuild is byte for byte either way. Any published
record can then be re-run as a control from its log alone.
"""
from __future__ import annotations

import ast
import hashlib
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.records import umask

RULE = "=" * 100          # the line that ends the embedded code
DASHES = "-" * 40         # the lines around an appended file's name
# "\n\n" + dashes + "\n# NAME\n" + dashes + "\n\n", exactly as the records' f-string makes it
_SEPARATOR = re.compile(r"\n\n" + DASHES + r"\n# ([^\n]+)\n" + DASHES + r"\n\n")
# How the embedded script logged itself: print adds one "\n", a bare write adds none.
_PRINTS_CODE = re.compile(r"\bprint0?\(\s*code\s*[,)]")
_WRITES_CODE = re.compile(r"\.write\(\s*code\s*\)")
DEFAULT_MAIN = "train_gpt.py"


@dataclass(frozen=True)
class Embedded:
    name: str
    text: str

    @property
    def data(self) -> bytes:
        return self.text.encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _code_end(text: str) -> int | None:
    """Offset of the rule line that ends the embedded code, or None.

    The first rule line followed by the environment lines ("Running Python ...") wins, so
    a rule inside the code itself (a docstring, say) does not cut the script short."""
    starts = [m.start() for m in re.finditer("^" + RULE + r"\n", text, re.M)]
    for s in starts:
        if text.startswith("Running", s + len(RULE) + 1):
            return s
    return starts[0] if starts else None


def _is_python(text: str) -> bool:
    with warnings.catch_warnings():  # old scripts' invalid escapes are not our concern
        warnings.simplefilter("ignore")
        try:
            ast.parse(text)
        except (SyntaxError, ValueError):
            return False
    return True


def _check_name(name: str, log: str) -> str:
    p = Path(name)
    if not name.strip() or name != name.strip() or p.is_absolute() or ".." in p.parts:
        raise UserError(f"{log}: an appended file is named {name!r}, which is not a plain "
                        "relative path; the log was edited or is not a speedrun log")
    return name


def parse_embedded(text: str, log: str = "log", main_name: str = DEFAULT_MAIN) -> list[Embedded]:
    """The files embedded at the top of a speedrun log, main script first."""
    end = _code_end(text)
    if end is None or end == 0:
        raise UserError(f"{log}: embeds no source (no line of 100 '=' after code at its top); "
                        "only logs written by a speedrun script that logs its own code can be extracted")
    code = text[:end]
    pieces = _SEPARATOR.split(code)
    main = pieces[0]
    # print(code) ended the text with one "\n" of its own; f.write(code) did not.
    if not _WRITES_CODE.search(main) or _PRINTS_CODE.search(main):
        if not code.endswith("\n"):
            raise UserError(f"{log}: the code at its top does not end in a newline before the "
                            "'=' line; the log was cut or edited")
        pieces[-1] = pieces[-1][:-1]
        main = pieces[0]
    if not _is_python(main):
        raise UserError(f"{log}: the text before its first line of 100 '=' is not Python source, "
                        "so the log embeds no script; pass a log written by the speedrun's train_gpt.py")
    files = [Embedded(main_name, main)]
    for name, body in zip(pieces[1::2], pieces[2::2]):
        files.append(Embedded(_check_name(name, log), body))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise UserError(f"{log}: embeds two files of the same name ({', '.join(names)}); "
                        "if the script's own name collides, extract it under another (harness extract LOG --main-name NAME)")
    return files


def _conflicts(files: list[Embedded], out: Path) -> list[str]:
    bad = []
    for f in files:
        p = out / f.name
        if p.is_dir() or (p.exists() and p.read_bytes() != f.data):
            bad.append(str(p))
    return bad


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes the file 0600; a rebuilt script is an ordinary file (0644 less the umask)
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def extract(log: Path, out: Path, main_name: str = DEFAULT_MAIN) -> list[Embedded]:
    """Rebuild the files of ``log`` under ``out``; refuses before writing if any differ."""
    try:
        raw = log.read_bytes()
    except OSError as e:
        raise UserError(f"{log}: cannot read it ({e.strerror}); pass an existing log file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{log}: is not UTF-8 text; pass a speedrun log") from None
    files = parse_embedded(text, str(log), main_name)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; pass a new or empty folder")
    bad = _conflicts(files, out)
    if bad:
        raise UserError(f"--out {out}: already holds {', '.join(bad)} with other content; "
                        "pass a new folder (nothing was written)")
    for f in files:
        if not (out / f.name).exists():
            _write_atomic(out / f.name, f.data)
    return files

