"""GPU checks and before/after timings of the trainer's speed levers, each on its own.

    python bench/gpu_levers.py [--tokens 49152] [--trainer train/train_gpt.py]

At one record micro-batch (24 x 2048 tokens, vocabulary 50304, width 768), against the
plain form each replaces (the CPU references of tests/test_train_kernels.py):
1. the fused soft-capped cross-entropy kernels vs the compiled plain loss (fp32 T x V);
2. the FP8 head vs the bf16 head matmul (forward and both gradients);
3. block masks from block-level document ids vs create_block_mask.
Each check prints PASS or FAIL; the exit code is 1 when any fails (a GPU run then stops
before its expensive part). Timings: median of 20 after 3 warm-ups, CUDA events.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from bench_throughput import load_trainer, time_steps  # the trainer loader and CUDA-event timer

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, reps=20, warm=3):
    """Median of REPS CUDA-event timings in ms, after WARM untimed calls."""
    return statistics.median(time_steps(fn, warm, reps))


def cos(a, b):
    a, b = a.float().flatten(), b.float().flatten()  # (a @ b is limited to 2^31 elements)
    return ((a * b).sum(dtype=torch.float64) / (a.double().norm() * b.double().norm())).item()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=24 * 2048)
    ap.add_argument("--trainer", type=Path, default=ROOT / "train" / "train_gpt.py")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    tg = load_trainer(Path(a.trainer))
    dev = torch.device("cuda")
    T, V, D = a.tokens, 50304, 768
    fails = []

    def check(name, ok, detail):
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            fails.append(name)

    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"triton {tg.triton.__version__ if tg.triton else None}, T={T} V={V} D={D}", flush=True)
    torch.manual_seed(0)

    # 1. fused soft-capped cross-entropy
    logits = (torch.randn(T, V, device=dev) * 4).bfloat16()
    targets = torch.randint(0, V, (T,), device=dev)
    shifted, coef = tg.mtp_targets(targets, torch.tensor([1.0, 0.5, 0.25], device=dev))
    plain = torch.compile(lambda l: tg.mtp_loss(tg.softcap(l.float()), shifted, coef))
    ref_in = logits.clone().requires_grad_()
    ref = plain(ref_in)
    ref.backward()
    fin = logits.clone().requires_grad_()
    loss = tg.fused_softcap_ce(fin, shifted, coef)
    loss.backward()
    rel = abs(loss.item() - ref.item()) / abs(ref.item())
    check("fused loss = plain loss", rel < 1e-5, f"rel err {rel:.2e}")
    # the plain gradient (fp32, rounded to bf16 once) against the kernel's bf16 gradient
    err = (fin.grad.float() - ref_in.grad.float()).abs()
    excess = (err - ref_in.grad.float().abs() * 2.0 ** -7).max().item()
    scale = ref_in.grad.float().abs().max().item()
    check("fused gradient = plain gradient (1 bf16 ulp)", excess <= 1e-6 * scale,
          f"max err {err.max().item():.3e}, gradient max {scale:.3e}")
    del ref_in, fin, ref, loss

    def run_plain():
        l = logits.clone().requires_grad_()
        plain(l).backward()

    def run_fused():
        l = logits.clone().requires_grad_()
        tg.fused_softcap_ce(l, shifted, coef).backward()
    t_plain, t_fused = timed(run_plain), timed(run_fused)
    print(f"loss fwd+bwd: plain compiled {t_plain:.2f} ms, fused {t_fused:.2f} ms "
          f"({t_fused / t_plain - 1:+.1%}); peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    del logits
    torch.cuda.empty_cache()

    # 2. FP8 head
    x = F.rms_norm(torch.randn(T, D, device=dev), (D,)).bfloat16()
    w = (torch.randn(D, V, device=dev) * 0.02).bfloat16()
    g = (torch.randn(T, V, device=dev) * 1e-6).bfloat16()  # the real loss's size
    bf16 = torch.compile(lambda x, w: F.linear(x, w.t()))
    fp8 = torch.compile(lambda x, w: tg.FP8Head.apply(x, w))
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    out_r = bf16(xr, wr)
    out_r.backward(g)
    x8, w8 = x.clone().requires_grad_(), w.clone().requires_grad_()
    out8 = fp8(x8, w8)
    out8.backward(g)
    c = (cos(out8, out_r), cos(x8.grad, xr.grad), cos(w8.grad, wr.grad))
    check("fp8 head = bf16 head (cosine of logits, grad x, grad w > 0.99)", min(c) > 0.99,
          "cosines " + ", ".join(f"{v:.5f}" for v in c))

    def run(f):
        def step():
            xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
            f(xx, ww).backward(g)
        return step
    t_bf16, t_fp8 = timed(run(bf16)), timed(run(fp8))
    print(f"head fwd+bwd: bf16 {t_bf16:.2f} ms, fp8 {t_fp8:.2f} ms ({t_fp8 / t_bf16 - 1:+.1%})", flush=True)
    del x, w, g, xr, wr, x8, w8, out_r, out8
    torch.cuda.empty_cache()

    # 3. block masks
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    idx = torch.randint(0, 50256, (T,), device=dev)
    starts = torch.cumsum(torch.randint(200, 2200, (T // 200,), device=dev), 0)
    idx[starts[starts < T]] = 50256
    idx[0] = 50256
    docs = tg.doc_ids(idx, 50256)
    ok, worst = True, 0.0
    flex = torch.compile(flex_attention, dynamic=False)
    q, k, v = (torch.randn(1, 6, T, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))
    for wblocks in (3, 11):
        wt = torch.tensor(wblocks * 128, device=dev)
        ours = tg.doc_window_block_mask(docs, wt, 128)
        ref = create_block_mask(tg.window_mask_mod(docs, wt), None, None, T, T, device=dev,
                                BLOCK_SIZE=128, _compile=True)
        same = (torch.equal(ours.to_dense(), ref.to_dense())
                and torch.equal(ours.full_kv_num_blocks, ref.full_kv_num_blocks))
        y1, y2 = flex(q, k, v, block_mask=ours), flex(q, k, v, block_mask=ref)
        worst = max(worst, (y1.float() - y2.float()).abs().max().item())
        ok &= same
        t_ref = timed(lambda: create_block_mask(tg.window_mask_mod(docs, wt), None, None, T, T, device=dev,
                                                BLOCK_SIZE=128, _compile=True))
        t_ours = timed(lambda: tg.doc_window_block_mask(docs, wt, 128))
        print(f"block mask, window {wblocks * 128}: create_block_mask {t_ref:.2f} ms, "
              f"from document ids {t_ours:.2f} ms (eager)", flush=True)
    check("block masks = create_block_mask's (layout; attention output)", ok and worst == 0.0,
          f"max attention difference {worst:.2e}")
    print("all checks passed" if not fails else f"FAILED: {', '.join(fails)}", flush=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
