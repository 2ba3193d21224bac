"""Adapt a record's rebuilt train_gpt.py + triton_kernels.py to a machine without internet.

    python bench/record_patch.py DIR --scheduled N --extension E

DIR holds the files `harness extract LOG --out DIR` rebuilt. The record's code is data
we run, never code we commit: this script changes, in place, only what the machine forces
(each change found by an anchor that must occur exactly as often as expected, or it stops
with one line naming the anchor, so a record of another shape is not half-patched):

1. flash-attention-3 comes from a kernel hub at import (`get_kernel('varunneal/...')`),
   which an offline machine cannot reach. It is replaced by a stand-in with the same call
   (`flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
   max_seqlen_k, causal, softmax_scale, window_size)`) on torch's own
   `torch.nn.attention.varlen.varlen_attn`, with FA3's window semantics (left, 0).
2. torch 2.11's inductor hands the soft-cap constants A, B, C of the Triton cross-entropy
   kernels to the kernel as fp64, and the compile fails ("Loop-carried variable max_val has
   initial type fp32 but is re-assigned to fp64 in loop"); each such kernel casts them to
   fp32 first thing.
3. The step count lives in its `Hyperparameters` dataclass; the copy gets
   `num_scheduled_iterations = N` and `num_extension_iterations = E`.

(The third environment fact, data, needs no code change: synthetic shards with a
validation shard of >= 25M tokens and documents of >= ~1000 tokens on average, linked
under the record's own file names; bench/record_parity.sh makes them.)
Writes PATCHES.txt into DIR listing each change. Exit 2 with one line on a mismatch.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

STAND_IN = '''# record_patch.py: flash-attention-3 stand-in on torch's varlen attention (offline machine)
import inspect as _inspect
from torch.nn.attention.varlen import varlen_attn as _varlen_attn
_VARLEN_ARGS = _inspect.signature(_varlen_attn).parameters
assert "window_size" in _VARLEN_ARGS, "this torch's varlen_attn has no window_size; the stand-in needs it"
class _VarlenFA3Interface:
    @staticmethod
    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                               causal=True, softmax_scale=None, window_size=(-1, -1)):
        left, right = window_size
        # FA3's (left, right) window; (left, 0) is causal with `left` keys back
        return _varlen_attn(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            scale=softmax_scale, window_size=(left, 0 if causal else right))
flash_attn_interface = _VarlenFA3Interface()
'''
CAST = "    A = tl.cast(A, tl.float32)  # record_patch.py: inductor passes these as fp64, or as Python floats\n" \
       "    B = tl.cast(B, tl.float32)\n" \
       "    C = tl.cast(C, tl.float32)\n"


class PatchError(Exception):
    pass


def _sub(text: str, pattern: str, repl, what: str, count: int | None = 1, flags=re.M) -> tuple[str, int]:
    new, n = re.subn(pattern, repl, text, flags=flags)
    if n == 0 or (count is not None and n != count):
        want = "at least once" if count is None else f"{count} time(s)"
        raise PatchError(f"anchor for {what} found {n} time(s), expected {want}; "
                         "this record's code has another shape, adapt bench/record_patch.py")
    return new, n


def patch_main(text: str, scheduled: int, extension: int) -> tuple[str, list[str]]:
    notes = []
    text, _ = _sub(text, r"^from kernels import get_kernel\n", "", "the kernel-hub import")
    text, _ = _sub(text, r"^flash_attn_interface = get_kernel\([^\n]*\)\.flash_attn_interface\n",
                   lambda m: STAND_IN, "the flash-attention-3 load")
    notes.append("flash-attention-3 from the kernel hub -> stand-in on torch.nn.attention.varlen.varlen_attn")
    text, _ = _sub(text, r"^(\s+num_scheduled_iterations: int = )\d+", rf"\g<1>{scheduled}",
                   "Hyperparameters.num_scheduled_iterations")
    text, _ = _sub(text, r"^(\s+num_extension_iterations: int = )\d+", rf"\g<1>{extension}",
                   "Hyperparameters.num_extension_iterations")
    notes.append(f"Hyperparameters: num_scheduled_iterations = {scheduled}, num_extension_iterations = {extension}")
    return text, notes


def patch_kernels(text: str) -> tuple[str, list[str]]:
    """Cast A, B, C at the top of every @triton.jit kernel whose parameters name them."""
    lines = text.splitlines(keepends=True)
    out, names, i = [], [], 0
    while i < len(lines):
        out.append(lines[i])
        m = re.match(r"def (\w+)\(", lines[i])
        if m and i > 0 and lines[i - 1].strip() == "@triton.jit":
            j = i
            while not lines[j].rstrip().endswith("):"):  # the signature's last line
                j += 1
                out.append(lines[j])
            params = re.sub(r"\s+", "", "".join(lines[i:j + 1]))
            if re.search(r"[(,]A,B,C[,)]", params):
                out.append(CAST)
                names.append(m.group(1))
            i = j
        i += 1
    if not names:
        raise PatchError("anchor for the soft-capped cross-entropy kernels (a @triton.jit kernel with "
                         "parameters A, B, C) found 0 time(s); adapt bench/record_patch.py")
    return "".join(out), [f"{n}: A, B, C cast to fp32 at the top" for n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--scheduled", type=int, required=True)
    ap.add_argument("--extension", type=int, required=True)
    a = ap.parse_args(argv)
    main_py, kern_py = a.dir / "train_gpt.py", a.dir / "triton_kernels.py"
    try:
        if (a.dir / "PATCHES.txt").exists():
            raise PatchError(f"{a.dir} is already patched (PATCHES.txt); extract the log again into a new folder")
        if a.scheduled < 3 or a.extension < 0:
            raise PatchError("--scheduled must be >= 3 (three batch phases) and --extension >= 0")
        for p in (main_py, kern_py):
            if not p.is_file():
                raise PatchError(f"{p} is missing; run `harness extract LOG --out {a.dir}` first")
        m, notes = patch_main(main_py.read_text(), a.scheduled, a.extension)
        k, knotes = patch_kernels(kern_py.read_text())
    except PatchError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    main_py.write_text(m)
    kern_py.write_text(k)
    (a.dir / "PATCHES.txt").write_text("\n".join(notes + knotes) + "\n")
    print("\n".join(notes + knotes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
