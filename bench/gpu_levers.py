"""GPU checks and before/after timings of the trainer's speed levers, each on its own.

    python bench/gpu_levers.py [--tokens 49152] [--trainer train/train_gpt.py] [--before OLD.py]

At one record micro-batch (24 x 2048 tokens, vocabulary 50304, width 768), against the
plain form each replaces (the CPU references of tests/test_train_kernels.py):
1. the fused soft-capped cross-entropy kernels vs the compiled plain loss (fp32 T x V);
2. the FP8 head vs the bf16 head matmul (forward and both gradients), and the FP8 head and
   the loss in one (the gradient written in e5m2 by the loss kernel) vs the two apart;
3. block masks from block-level document ids vs create_block_mask;
4. varlen attention over the documents (training) vs FlexAttention with those block masks;
5. the fused MLP (relu^2 in the matrix products' epilogues) vs the compiled plain MLP, and a
   sweep of its tile shapes (--only mlp runs this one alone).
With --before (an older copy of the trainer), the loss kernels of both, side by side, and
a sweep of the kernels' block size and warps.
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
    ap.add_argument("--before", type=Path, help="an older trainer: its loss kernels timed beside these")
    ap.add_argument("--only", choices=("mlp",), help="run this lever's check and timing alone")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    tg = load_trainer(Path(a.trainer))
    before = load_trainer(a.before, "train_gpt_before") if a.before else None
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
    if a.only == "mlp":
        mlp_lever(tg, T, D, check)
        return finish(fails)

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

    def kernels(mod):  # the two kernels alone: no autograd, no clone of the logits
        gl = torch.full((T,), 0.125, device=dev)

        def run():
            _, lse = mod.softcap_ce_forward(logits, shifted, coef)
            mod.softcap_ce_backward(gl, logits, shifted, coef, lse)
        return run
    t_now = timed(kernels(tg))
    if before is not None:
        t_before = timed(kernels(before))
        print(f"loss kernels fwd+bwd: before {t_before:.2f} ms, now {t_now:.2f} ms "
              f"({t_now / t_before - 1:+.1%}); reading the logits twice and writing once at 4.8 TB/s: "
              f"{3 * logits.numel() * 2 / 4.8e12 * 1e3:.2f} ms", flush=True)
        meta = tg._ce_meta
        for block, warps in ((1024, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16)):
            tg._ce_meta = lambda l, t, b=block, w=warps: {**meta(l, t), "BLOCK": b, "num_warps": w}
            print(f"  BLOCK {block} num_warps {warps}: {timed(kernels(tg)):.2f} ms", flush=True)
        tg._ce_meta = meta
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

    # 2b. the FP8 head and the loss in one: the loss kernel writes the logits' gradient in e5m2
    grads = {}
    for name in ("apart", "one"):
        xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
        if name == "apart":
            loss = tg.fused_softcap_ce(tg.FP8Head.apply(xx, ww), shifted, coef)
        else:
            loss = tg.FP8HeadLoss.apply(xx, ww, shifted, coef)
        (0.125 * loss).backward()
        grads[name] = (loss.item(), xx.grad, ww.grad)
    (la, *ga), (lo, *go) = grads["apart"], grads["one"]
    c = [cos(p, q) for p, q in zip(go, ga)]
    check("fp8 head + loss in one = apart (loss rel 1e-5; gradient cosines > 0.995)",
          abs(lo - la) <= 1e-5 * abs(la) and min(c) > 0.995,
          f"loss {lo:.6f} vs {la:.6f}, cosines " + ", ".join(f"{v:.5f}" for v in c))

    def run_head_loss(one):
        def step():
            xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
            loss = (tg.FP8HeadLoss.apply(xx, ww, shifted, coef) if one
                    else tg.fused_softcap_ce(tg.FP8Head.apply(xx, ww), shifted, coef))
            loss.backward()
        return step
    t_apart, t_one = timed(run_head_loss(False)), timed(run_head_loss(True))
    print(f"head + loss fwd+bwd: apart {t_apart:.2f} ms, in one {t_one:.2f} ms "
          f"({t_one / t_apart - 1:+.1%})", flush=True)
    del x, w, g, xr, wr, x8, w8, out_r, out8, grads, go, ga
    torch.cuda.empty_cache()

    # 3. block masks
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    idx = torch.randint(0, 50256, (T,), device=dev)
    # documents of 200 to 2048 tokens (training pieces are cut at 2048)
    starts = torch.cumsum(torch.randint(200, 2049, (T // 200,), device=dev), 0)
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
    del q, k, v
    torch.cuda.empty_cache()

    # 4. varlen attention (training) vs FlexAttention on those masks, fwd + bwd, (T, H, D)
    # as the trainer's blocks call them: rms-normed q and k, q scaled by the attention scale
    from torch.nn.attention.varlen import varlen_attn
    spans = tg.doc_spans(idx.cpu(), 50256, 2048)
    spans = tg.DocSpans(spans.cu.to(dev), spans.max_len)
    q = (F.rms_norm(torch.randn(T, 6, 128, device=dev), (128,)) * 0.12).bfloat16().requires_grad_()
    k = F.rms_norm(torch.randn(T, 6, 128, device=dev), (128,)).bfloat16().requires_grad_()
    v = torch.randn(T, 6, 128, device=dev, dtype=torch.bfloat16).requires_grad_()
    dy = torch.randn(T, 6, 128, device=dev, dtype=torch.bfloat16)
    worst_y, worst_cos = 0.0, 1.0
    for w in (192, 384, 704, 1408):
        outs = []
        for use_varlen in (True, False):
            q.grad = k.grad = v.grad = None
            if use_varlen:
                y = tg.attend_varlen(varlen_attn, q, k, v, (spans, w))
            else:
                y = tg.attend_flex(flex, q, k, v, tg.doc_window_block_mask(docs, torch.tensor(w, device=dev), 128))
            y.backward(dy)
            outs.append((y.detach(), q.grad, k.grad, v.grad))
        (yv, *gv), (yf, *gf) = outs
        worst_y = max(worst_y, (yv.float() - yf.float()).abs().max().item())
        worst_cos = min([worst_cos] + [cos(x, y) for x, y in zip(gv, gf)])

        def run_varlen():
            tg.attend_varlen(varlen_attn, q, k, v, (spans, w)).backward(dy)

        def run_flex():  # the mask is built every forward, as the trainer did
            m = tg.doc_window_block_mask(docs, torch.tensor(w, device=dev), 128)
            tg.attend_flex(flex, q, k, v, m).backward(dy)
        t_flex, t_var = timed(run_flex), timed(run_varlen)
        print(f"attention fwd+bwd, window {w}: flex + mask {t_flex:.2f} ms, varlen {t_var:.2f} ms "
              f"({t_var / t_flex - 1:+.1%})", flush=True)
    check("varlen attention = FlexAttention (output max abs diff < 0.03; gradient cosines > 0.999)",
          worst_y < 0.03 and worst_cos > 0.999, f"output max abs diff {worst_y:.2e}, "
          f"lowest gradient cosine {worst_cos:.6f}")
    torch.cuda.empty_cache()
    mlp_lever(tg, T, D, check)
    return finish(fails)


def finish(fails):
    print("all checks passed" if not fails else f"FAILED: {', '.join(fails)}", flush=True)
    return 1 if fails else 0


MLP_TILES = [dict(BM=bm, BN=bn, BK=64, GROUP=8, num_warps=w, num_stages=st)
             for bm, bn, w, st in ((128, 256, 8, 3), (128, 256, 8, 4), (128, 128, 4, 4),
                                   (128, 128, 8, 4), (256, 128, 8, 3), (64, 256, 4, 4))]


def mlp_lever(tg, T, D, check):
    """5. FusedMLP against the compiled plain MLP, both in bf16, each against float32."""
    dev, H = torch.device("cuda"), 4 * D
    x = F.rms_norm(torch.randn(T, D, device=dev), (D,)).bfloat16()
    w1 = (torch.randn(H, D, device=dev) * D ** -0.5).bfloat16()
    w2 = (torch.randn(D, H, device=dev) * H ** -0.5).bfloat16()
    g = torch.randn(T, D, device=dev).bfloat16()
    plain = torch.compile(lambda x, w1, w2: F.linear(F.relu(F.linear(x, w1)).square(), w2))

    def fwd_bwd(f, dtype=torch.bfloat16):
        ins = [t.to(dtype, copy=True).requires_grad_() for t in (x, w1, w2)]  # fresh leaves
        y = f(*ins)
        y.backward(g.to(dtype))
        return [y.detach()] + [t.grad for t in ins]
    ref = fwd_bwd(plain, torch.float32)
    errs = {}
    for name, f in (("plain", plain), ("fused", tg.FusedMLP.apply)):
        errs[name] = [((a.float() - r).abs().max() / r.abs().max()).item() for a, r in zip(fwd_bwd(f), ref)]
    # bf16 keeps pre and h in bf16 either way: the fused form may differ in rounding, not in size
    ok = all(fe <= 2 * pe + 1e-3 for fe, pe in zip(errs["fused"], errs["plain"]))
    check("fused MLP = plain MLP (output and 3 gradients; error vs fp32 within 2x the plain bf16's)",
          ok, "max rel err vs fp32 (y, dx, dw1, dw2): fused " + ", ".join(f"{e:.1e}" for e in errs["fused"])
          + "; plain " + ", ".join(f"{e:.1e}" for e in errs["plain"]))
    del ref

    def run(f):
        def step():
            fwd_bwd(f)
        return step
    t_plain, t_fused = timed(run(plain)), timed(run(tg.FusedMLP.apply))
    # a gate, not a figure: a lever slower than what it replaces must not reach a long run
    check("fused MLP no slower than the plain one (fwd+bwd)", t_fused <= t_plain,
          f"plain compiled {t_plain:.2f} ms, fused {t_fused:.2f} ms ({t_fused / t_plain - 1:+.1%}) "
          f"at {T} x {D} -> {H}")
    pre = torch.empty(T, H, device=dev, dtype=torch.bfloat16)
    t_mm = timed(lambda: torch.mm(x, w1.t(), out=pre))
    print(f"  cuBLAS x @ w1^T alone: {t_mm:.3f} ms ({2 * T * D * H / t_mm / 1e9:.0f} TFLOP/s)", flush=True)
    tile = dict(tg.MLP_TILE)
    for t in MLP_TILES:
        tg.MLP_TILE.clear()
        tg.MLP_TILE.update(t)
        t_f = timed(lambda: tg.relu2_linear(x, w1))
        t_b = timed(lambda: tg.relu2_linear_backward(g, w2, pre))
        print(f"  tile {t}: forward kernel {t_f:.3f} ms, backward kernel {t_b:.3f} ms", flush=True)
    tg.MLP_TILE.clear()
    tg.MLP_TILE.update(tile)


if __name__ == "__main__":
    sys.exit(main())
