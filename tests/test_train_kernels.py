"""The trainer's GPU-only code paths against their CPU references, on a CPU.

- The fused soft-capped cross-entropy kernels (Triton) run in Triton's interpreter
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
import torch
warnings.filterwarnings("ignore")
spec = importlib.util.spec_from_file_location("train_gpt_kernels", sys.argv[1])
tg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tg)
out = {}

# 1. the loss and its gradient alone, bf16 logits, against float64 on the same logits
torch.manual_seed(0)
T, V = 45, 2100          # V > CE_BLOCK: the row loops take more than one block, the last partial
logits = (torch.randn(T, V) * 12).bfloat16()
targets = torch.randint(0, V, (T,))
shifted, coef = tg.mtp_targets(targets, torch.tensor([1.0, 0.5, 0.25]))
ref_in = logits.double().requires_grad_()
ref = tg.mtp_loss(tg.softcap(ref_in), shifted, coef.double())
ref.backward(torch.tensor(1.7, dtype=torch.float64))
fused_in = logits.clone().requires_grad_()
loss = tg.fused_softcap_ce(fused_in, shifted, coef)
(1.7 * loss).backward()
err = (fused_in.grad.double() - ref_in.grad).abs()
out["loss"] = [loss.item(), ref.item()]
out["grad_dtype"] = str(fused_in.grad.dtype)
# bf16 keeps 8 significant bits: the gradient may be off by one unit in the last place
# (the interpreter's cast to bf16 truncates; the GPU's rounds to nearest, half a unit)
out["grad_excess"] = (err - ref_in.grad.abs() * 2.0 ** -7 - 1e-12).max().item()
out["grad_scale"] = ref_in.grad.abs().max().item()

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
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, SCRIPT], capture_output=True, text=True,
                       env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_fused_loss_equals_the_plain_loss(interpreted):
    fused, ref = interpreted["loss"]
    assert fused == pytest.approx(ref, rel=1e-6)


def test_fused_gradient_is_the_plain_gradient_to_bf16_rounding(interpreted):
    assert interpreted["grad_dtype"] == "torch.bfloat16"  # written once, in the logits' dtype
    assert interpreted["grad_excess"] <= 1e-6 * interpreted["grad_scale"]


def test_model_with_fused_loss_trains_like_the_plain_one(interpreted):
    a, b = interpreted["model_loss"]
    assert a == pytest.approx(b, rel=1e-5)
    assert interpreted["model_grad_maxrel"] < 1e-4


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
