"""bench/record_patch.py: only the three machine-forced changes, each by an anchor that must
be there; a record of another shape is refused with one line, not half-patched."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAIN = '''import torch
from kernels import get_kernel
from triton_kernels import FusedSoftcappedCrossEntropy

flash_attn_interface = get_kernel('varunneal/flash-attention-3').flash_attn_interface

class Hyperparameters:
    num_scheduled_iterations: int = 1560  # number of steps
    num_extension_iterations: int = 40  # extension
    val_tokens: int = 10485760
'''
KERNELS = '''import triton
import triton.language as tl

@triton.jit
def other_kernel(a_ptr, b_ptr, BLOCK: tl.constexpr):
    pass

@triton.jit
def ce_fwd_kernel(
    logits_ptr, n_cols,
    A, B, C,
    BLOCK_SIZE: tl.constexpr
):
    row = tl.program_id(0)

@triton.jit
def ce_bwd_kernel(x_ptr, A, B, C, BLOCK_SIZE: tl.constexpr):
    row = tl.program_id(0)
'''


def run(d: Path, *extra):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "record_patch.py"), str(d),
                           "--scheduled", "60", "--extension", "4", *extra],
                          capture_output=True, text=True)


def test_patches_exactly_the_three_facts(tmp_path):
    (tmp_path / "train_gpt.py").write_text(MAIN)
    (tmp_path / "triton_kernels.py").write_text(KERNELS)
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    main = (tmp_path / "train_gpt.py").read_text()
    assert "get_kernel" not in main and "varlen_attn" in main
    assert "num_scheduled_iterations: int = 60  # number of steps" in main
    assert "num_extension_iterations: int = 4  # extension" in main
    assert "val_tokens: int = 10485760" in main  # everything else untouched
    kern = (tmp_path / "triton_kernels.py").read_text()
    assert kern.count("A = tl.cast(A, tl.float32)") == 2
    # the cast sits right after each CE kernel's signature, not in the other kernel
    assert "BLOCK_SIZE: tl.constexpr\n):\n    A = tl.cast(A, tl.float32)" in kern
    assert "BLOCK_SIZE: tl.constexpr):\n    A = tl.cast(A, tl.float32)" in kern
    assert "def other_kernel(a_ptr, b_ptr, BLOCK: tl.constexpr):\n    pass" in kern
    compile(main, "train_gpt.py", "exec")
    compile(kern, "triton_kernels.py", "exec")
    assert "ce_fwd_kernel" in (tmp_path / "PATCHES.txt").read_text()
    # twice is refused: the step count would be patched over an already patched copy
    r = run(tmp_path)
    assert r.returncode == 2 and "already patched" in r.stderr


def test_a_record_of_another_shape_is_refused_and_left_alone(tmp_path):
    other = MAIN.replace("flash_attn_interface = get_kernel('varunneal/flash-attention-3').flash_attn_interface\n", "")
    (tmp_path / "train_gpt.py").write_text(other)
    (tmp_path / "triton_kernels.py").write_text(KERNELS)
    r = run(tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "flash-attention-3 load" in r.stderr
    assert (tmp_path / "train_gpt.py").read_text() == other
    assert not (tmp_path / "PATCHES.txt").exists()
    r = run(tmp_path / "missing")
    assert r.returncode == 2 and "harness extract" in r.stderr
