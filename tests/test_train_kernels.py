"""The trainer's GPU-only code paths against their CPU references, on a CPU.

- The fused soft-capped cross-entropy kernels and the fused MLP (Triton) run in Triton's interpreter
  (TRITON_INTERPRET=1, CPU tensors), in a child process: the interpreter must be on before
  the kernels are defined, and the custom operators are defined once per process.
- The FlexAttention block masks built from block-level document ids are compared with
  create_block_mask's, block by block.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="install the project first: pip install torch==2.13.0 -e '.[test]'")
# CI installs the [test] extra, which holds triton, so these run there
pytest.importorskip("triton", reason="pip install -e '.[test]' (triton runs the kernels in its interpreter)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train", "train_gpt.py")

CHILD = r"""
import importlib.util, json, sys, warnings
import numpy as np
import torch
import triton.language as tl
import triton.runtime.interpreter as interpreter
warnings.filterwarnings("ignore")
# Triton 3.6's interpreter rounds float32 to float8 without carrying into the exponent
# (30.0 becomes 16.0 in e5m2); the GPU's conversion instruction rounds right. Here torch's
# conversion stands in for the interpreter's, so the kernels' own arithmetic is what is tested.
_convert_float = interpreter._convert_float
def _fixed_convert_float(input, input_dtype, output_dtype, rounding_mode):
    if input_dtype == tl.float32 and output_dtype in (tl.float8e5, tl.float8e4nv):
        to = torch.float8_e5m2 if output_dtype == tl.float8e5 else torch.float8_e4m3fn
        x = torch.from_numpy(np.ascontiguousarray(input).view(np.float32).copy())
        return x.to(to).view(torch.uint8).numpy()
    return _convert_float(input, input_dtype, output_dtype, rounding_mode)
interpreter._convert_float = _fixed_convert_float
# Its tl.dot multiplies bfloat16 operands as the raw uint16 they are stored as; the GPU's
# tensor cores take them as numbers, so here they are converted to float32 first.
_create_dot = interpreter.InterpreterBuilder.create_dot
def _fixed_create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
    def f32(h):
        if h.dtype.scalar != tl.bfloat16:
            return h
        data = _convert_float(h.data, tl.bfloat16, tl.float32, None).view(np.float32)
        return interpreter.TensorHandle(data, tl.float32)
    return _create_dot(self, f32(a), f32(b), d, input_precision, max_num_imprecise_acc)
interpreter.InterpreterBuilder.create_dot = _fixed_create_dot
spec = importlib.util.spec_from_file_location("train_gpt_kernels", sys.argv[1])
tg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tg)
out = {}

# 1. the loss and its gradient alone, bf16 logits, against float64 on the same logits;
# targets drawn from all V columns, and from 3 (so a row's K targets often repeat)
torch.manual_seed(0)
T, V = 45, 2100          # V > CE_BLOCK: the row loops take more than one block, the last partial
logits = (torch.randn(T, V) * 12).bfloat16()
for name, high in (("", V), ("_repeats", 3)):
    targets = torch.randint(0, high, (T,))
    shifted, coef = tg.mtp_targets(targets, torch.tensor([1.0, 0.5, 0.25]))
    ref_in = logits.double().requires_grad_()
    ref = tg.mtp_loss(tg.softcap(ref_in), shifted, coef.double())
    ref.backward(torch.tensor(1.7, dtype=torch.float64))
    fused_in = logits.clone().requires_grad_()
    loss = tg.fused_softcap_ce(fused_in, shifted, coef)
    (1.7 * loss).backward()
    err = (fused_in.grad.double() - ref_in.grad).abs()
    out["loss" + name] = [loss.item(), ref.item()]
    out["grad_dtype"] = str(fused_in.grad.dtype)
    # bf16 keeps 8 significant bits: the gradient may be off by one unit in the last place
    # (the interpreter's cast to bf16 truncates; the GPU's rounds to nearest, half a unit)
    out["grad_excess" + name] = (err - ref_in.grad.abs() * 2.0 ** -7 - 1e-12).max().item()
    out["grad_scale" + name] = ref_in.grad.abs().max().item()
out["repeated_targets"] = int((shifted[:-2, 0] == shifted[:-2, 1]).sum())

# 2. the whole tiny model: loss and every gradient, fused loss on vs off (fp32 on CPU)
cfg = tg.resolve_config(tg.parse_args(["--preset", "tiny", "--device", "cpu"]), 1)
bos = cfg.bos_id
idx = torch.randint(0, bos, (129,))
idx[[0, 40, 41, 100]] = bos
grads, losses = [], []
for fused in (False, True):
    torch.manual_seed(1)
    model = tg.GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn_like(p) * 0.05)
    model.fused_loss, model.backend, model.attend = fused, "sdpa", tg.attend_sdpa
    l = model(idx[:-1], idx[1:], torch.tensor([32, 64]), torch.tensor([0.12, 0.12]),
              torch.tensor([1.0, 0.5, 0.25]))
    l.backward()
    losses.append(l.item())
    grads.append([p.grad.clone() for p in model.parameters()])
out["model_loss"] = losses
out["model_grad_maxrel"] = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                               for a, b in zip(*grads) if b.abs().max() > 0)

# 3. the FP8 head and the loss in one (the kernel writes the logits' gradient in e5m2) against
# the FP8 head, then the fused loss (bf16 gradient, cast to e5m2 at its own maximum); and
# both against float64 without float8
torch.manual_seed(2)
T, D, V = 64, 32, 2100
x = torch.nn.functional.rms_norm(torch.randn(T, D), (D,)).bfloat16()
w = (torch.randn(D, V) * 0.3).bfloat16()
shifted, coef = tg.mtp_targets(torch.randint(0, V, (T,)), torch.tensor([1.0, 0.5, 0.25]))
runs = {}
for name in ("fused", "apart", "float64"):
    xi = (x.double() if name == "float64" else x.clone()).requires_grad_()
    wi = (w.double() if name == "float64" else w.clone()).requires_grad_()
    if name == "fused":
        loss = tg.FP8HeadLoss.apply(xi, wi, shifted, coef)
    elif name == "apart":
        loss = tg.fused_softcap_ce(tg.FP8Head.apply(xi, wi), shifted, coef)
    else:
        loss = tg.mtp_loss(tg.softcap(xi @ wi), shifted, coef.double())
    (0.125 * loss).backward()
    runs[name] = (loss.item(), xi.grad.double(), wi.grad.double())
def cos(a, b):
    return (a.flatten() @ b.flatten() / a.norm() / b.norm()).item()
out["fp8_loss"] = {k: v[0] for k, v in runs.items()}
out["fp8_cos_apart"] = [cos(a, b) for a, b in zip(runs["fused"][1:], runs["apart"][1:])]
out["fp8_cos_float64"] = [cos(a, b) for a, b in zip(runs["fused"][1:], runs["float64"][1:])]
out["fp8_cos_apart_float64"] = [cos(a, b) for a, b in zip(runs["apart"][1:], runs["float64"][1:])]

# 4. the fused MLP (relu^2 in the matrix products' epilogues) against float64 autograd of the
# plain form, on the same inputs: tile-aligned shapes (the unmasked path) and ragged ones
torch.manual_seed(4)
for shape in ((256, 128, 512), (200, 96, 320)):  # M, d, 4d: MLP_TILE is 128 x 256 x 64
    M, d, N = shape
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.nn.functional.rms_norm(torch.randn(M, d), (d,)).to(dtype)
        w1 = (torch.randn(N, d) * d ** -0.5).to(dtype)
        w2 = (torch.randn(d, N) * N ** -0.5).to(dtype)
        g = torch.randn(M, d).to(dtype)
        res = {}
        for name in ("fused", "float64"):
            ins = [(t.double() if name == "float64" else t.clone()).requires_grad_() for t in (x, w1, w2)]
            if name == "fused":
                y = tg.FusedMLP.apply(*ins)
                fused_dtype = str(y.dtype)
            else:
                y = torch.nn.functional.relu(ins[0] @ ins[1].t()).square() @ ins[2].t()
            y.backward(g.double() if name == "float64" else g)
            res[name] = [y.double()] + [t.grad.double() for t in ins]
        key = f"mlp_{M}x{d}x{N}_{str(dtype)[6:]}"
        out[key + "_dtypes"] = fused_dtype
        out[key + "_relerr"] = [((a - b).abs().max() / b.abs().max()).item()
                                for a, b in zip(res["fused"], res["float64"])]

# 5. the tiny model, fused MLP on vs off: loss and every gradient (fp32)
grads, losses = [], []
for fused in (False, True):
    torch.manual_seed(1)
    model = tg.GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn_like(p) * 0.05)
    model.backend, model.attend = "sdpa", tg.attend_sdpa
    for blk in model.blocks:
        blk.fused_mlp = fused
    l = model(idx[:-1], idx[1:], torch.tensor([32, 64]), torch.tensor([0.12, 0.12]),
              torch.tensor([1.0, 0.5, 0.25]))
    l.backward()
    losses.append(l.item())
    grads.append([p.grad.clone() for p in model.parameters()])
out["mlp_model_loss"] = losses
out["mlp_model_grad_maxrel"] = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                                   for a, b in zip(*grads) if b.abs().max() > 0)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, SCRIPT], capture_output=True, text=True,
                       env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["", "_repeats"])
def test_fused_loss_equals_the_plain_loss(interpreted, case):
    fused, ref = interpreted["loss" + case]
    assert fused == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("case", ["", "_repeats"])
def test_fused_gradient_is_the_plain_gradient_to_bf16_rounding(interpreted, case):
    """Repeated targets in a row: the backward's target patch adds their coefficients."""
    assert interpreted["grad_dtype"] == "torch.bfloat16"  # written once, in the logits' dtype
    assert interpreted["grad_excess" + case] <= 1e-6 * interpreted["grad_scale" + case]
    assert interpreted["repeated_targets"] > 5


def test_model_with_fused_loss_trains_like_the_plain_one(interpreted):
    a, b = interpreted["model_loss"]
    assert a == pytest.approx(b, rel=1e-5)
    assert interpreted["model_grad_maxrel"] < 1e-4


def test_fp8_head_and_loss_in_one_is_the_two_apart(interpreted):
    """The same float8 logits, so the same loss; the gradients differ only by e5m2's rounding
    at two scales (the bound's, the maximum's), so they are as close to float64's."""
    loss = interpreted["fp8_loss"]
    assert loss["fused"] == pytest.approx(loss["apart"], rel=1e-6)
    assert loss["fused"] == pytest.approx(loss["float64"], rel=2e-2)  # e4m3 x and w
    fused, apart = interpreted["fp8_cos_float64"], interpreted["fp8_cos_apart_float64"]
    assert min(fused) > 0.998 and min(interpreted["fp8_cos_apart"]) > 0.998
    assert all(f > a - 5e-4 for f, a in zip(fused, apart)), (fused, apart)


@pytest.mark.parametrize("shape", ["256x128x512", "200x96x320"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_mlp_is_the_plain_mlp(interpreted, shape, dtype):
    """Output and the three gradients against float64 autograd of relu(x w1^T)^2 w2^T:
    fp32 to fp32's rounding; bf16 to a few of bf16's units (pre and h are kept in bf16, as
    the plain form keeps them)."""
    key = f"mlp_{shape}_{dtype}"
    assert interpreted[key + "_dtypes"] == f"torch.{dtype}"
    tol = 1e-5 if dtype == "float32" else 3e-2
    assert max(interpreted[key + "_relerr"]) < tol, interpreted[key + "_relerr"]


def test_model_with_fused_mlp_trains_like_the_plain_one(interpreted):
    a, b = interpreted["mlp_model_loss"]
    assert a == pytest.approx(b, rel=1e-5)
    assert interpreted["mlp_model_grad_maxrel"] < 1e-4


def load_trainer():
    spec = importlib.util.spec_from_file_location("train_gpt_kernels_masks", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_block_masks_from_document_ids_match_create_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask
    tg = load_trainer()
    gen = torch.Generator().manual_seed(3)

    def layout(m):
        def pairs(num, idx):
            return {(q, int(k)) for q in range(num.size(-1)) for k in idx[0, 0, q, :num[0, 0, q]]}
        return pairs(m.kv_num_blocks, m.kv_indices), pairs(m.full_kv_num_blocks, m.full_kv_indices)

    for trial in range(40):
        block = 16
        T = block * int(torch.randint(2, 12, (), generator=gen))
        idx = torch.randint(0, 50, (T,), generator=gen)
        idx[torch.randint(0, T, (int(torch.randint(0, 8, (), generator=gen)),), generator=gen)] = 99
        if trial % 3 == 0:
            idx[0] = 99
        docs = tg.doc_ids(idx, 99)
        w = torch.tensor(int(torch.randint(1, T + 5, (), generator=gen)))
        ours = tg.doc_window_block_mask(docs, w, block)
        ref = create_block_mask(tg.window_mask_mod(docs, w), None, None, T, T, device="cpu",
                                BLOCK_SIZE=block)
        assert layout(ours) == layout(ref), (trial, T, int(w), idx.tolist())


def test_fp8_head_matches_bf16_and_keeps_tiny_gradients():
    """CPU has float8 matrix products too. The logits' gradient of the real loss is about
    1e-6 (means over T tokens and slots): without its own scale, e5m2 flushes it to zero."""
    tg = load_trainer()
    torch.manual_seed(0)
    T, D, V = 256, 64, 512
    x = torch.nn.functional.rms_norm(torch.randn(T, D), (D,)).bfloat16()
    w = (torch.randn(D, V) * 0.05).bfloat16()

    def cos(a, b):
        a, b = a.double().flatten(), b.double().flatten()
        return (a @ b / a.norm() / b.norm()).item()

    for size in (1.0, 1e-6):
        g = (torch.randn(T, V) * size).bfloat16()
        xr, wr = x.double().requires_grad_(), w.double().requires_grad_()
        (xr @ wr).backward(g.double())
        x8, w8 = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = tg.FP8Head.apply(x8, w8)
        out.backward(g)
        assert out.dtype == x8.grad.dtype == w8.grad.dtype == torch.bfloat16
        assert cos(out, x.double() @ w.double()) > 0.995
        assert cos(x8.grad, xr.grad) > 0.995 and cos(w8.grad, wr.grad) > 0.995, size
