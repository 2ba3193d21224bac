"""Step time of the trainer's full-width H0 and H1 against a plain GPT-2-small baseline.

One process, one GPU. For each model: torch.compile, warm-up steps, then CUDA-event
timing of many steps; prints the median ms/step, tokens/s, MFU and peak memory.

    python bench/bench_throughput.py --data-path DIR [--steps 30] [--tokens-per-step 49152]
        [--only h0,h1,baseline] [--slots 1] [--profile] [--trainer OLD_COPY.py]

The trainer is measured at one record rank's share of a step in the record's last
third (24 x 2048 tokens, `--preset speedrun-1gpu`), the shape that dominates a run.
MFU counts 6 x (matmul parameters) FLOPs per token plus causal attention over the
attended context, against the bf16 dense peak of the card (989 TFLOP/s for H100/H200 SXM).
With --slots 8 a step accumulates 8 such micro-batches before one optimizer step: the
optimizer's share of the step is then a record rank's (each of its 8 ranks runs one
micro-batch and an eighth of the optimizer), where --slots 1 gives it 8 times that share.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def load_trainer(path: Path, name: str = "train_gpt"):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dynamo imports a traced function's module by name
    spec.loader.exec_module(mod)
    return mod


def time_steps(step_fn, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step_fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step_fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return times


def trainer_case(tg, layout: str, data_path: str, tokens: int, slots: int = 1):
    seq = 2048
    argv = ["--preset", "speedrun-1gpu", "--ve-layout", layout, "--data-path", data_path, "--slots", str(slots),
            "--batch-schedule", f"{tokens // seq},{tokens // seq},{tokens // seq}", "--num-iterations", "1600",
            "--compile", "--warmup", "--device", "cuda", "--seed", "0"]
    cfg = tg.resolve_config(tg.parse_args(argv), 1)
    files = tg.find_shards(cfg.data_path, "train")
    trainer = tg.Trainer(cfg, torch.device("cuda", 0), 0, files)
    model = trainer.model
    hidden = sum(p.numel() for b in model.blocks for k, p in b.named_parameters() if k.endswith("_w"))
    matmul_params = hidden + model.head.numel()
    windows = tg.windows_for(cfg.window_schedule[2], cfg)  # last third: the long window
    n_attn = cfg.num_layers - len(cfg.attn_skip_layers)
    long_layers = len(cfg.long_layers)
    mean_ctx = (long_layers * min(windows[1], seq) / 2 + (n_attn - long_layers) * min(windows[0], seq) / 2)
    attn_flops = 6 * 2 * mean_ctx * cfg.num_heads * cfg.head_dim  # QK and AV, fwd+bwd, summed over layers
    state = {"step": 2 * 1600 // 3 + 3}  # inside the last third, past the untie step

    def step():
        trainer.train_step(state["step"])
        state["step"] += 1
        if state["step"] >= 1560:
            state["step"] = 2 * 1600 // 3 + 3

    return step, 6 * matmul_params + attn_flops, sum(p.numel() for p in model.parameters())


class Baseline(nn.Module):
    """GPT-2 small at the same width: 12 x 768, 12 heads, learned positions, tied head."""

    def __init__(self, vocab=50304, dim=768, layers=12, heads=12, seq=2048):
        super().__init__()
        self.heads = heads
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(dim), qkv=nn.Linear(dim, 3 * dim), proj=nn.Linear(dim, dim),
            ln2=nn.LayerNorm(dim), fc=nn.Linear(dim, 4 * dim), out=nn.Linear(4 * dim, dim)))
            for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            q, k, v = b["qkv"](b["ln1"](x)).view(B, T, 3, self.heads, -1).transpose(1, 3).unbind(2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + b["proj"](y.transpose(1, 2).reshape(B, T, -1))
            x = x + b["out"](F.gelu(b["fc"](b["ln2"](x))))
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def baseline_case(tokens: int):
    seq = 1024  # GPT-2's context; the same tokens per step as the trainer
    model = Baseline(seq=seq).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, fused=True)
    fwd = torch.compile(model)
    x = torch.randint(0, 50257, (tokens // seq, seq + 1), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    layers = model.blocks
    matmul = sum(p.numel() for b in layers for n, p in b.named_parameters() if n.endswith("weight") and p.ndim == 2)
    matmul += model.wte.weight.numel()
    attn = 6 * 2 * (seq / 2) * 768 * len(layers)
    return step, 6 * matmul + attn, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-path", required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--tokens-per-step", type=int, default=24 * 2048)
    ap.add_argument("--only", default="h0,h1,baseline")
    ap.add_argument("--slots", type=int, default=1, help="micro-batches of --tokens-per-step per optimizer step")
    ap.add_argument("--profile-rows", type=int, default=15)
    ap.add_argument("--profile", action="store_true", help="top CUDA kernels of the H0 step")
    ap.add_argument("--trainer", type=Path, default=ROOT / "train" / "train_gpt.py",
                    help="trainer file to measure (an older copy, for a before/after)")
    a = ap.parse_args()
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), 989e12)
    print(f"device {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{a.tokens_per_step} tokens x {a.slots} slots per step, median of {a.steps} steps after {a.warmup} warm-up")
    print(f"trainer {a.trainer}")
    tg = load_trainer(a.trainer)
    rows = {}
    for case in a.only.split(","):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if case == "baseline":
            step, flops_per_token, params = baseline_case(a.tokens_per_step)
        else:
            layout = ".12...012" if case == "h0" else ".01...345"
            step, flops_per_token, params = trainer_case(tg, layout, a.data_path, a.tokens_per_step, a.slots)
        times = time_steps(step, a.warmup, a.steps)
        ms = statistics.median(times)
        tps = a.tokens_per_step * (a.slots if case != "baseline" else 1) / (ms / 1000)
        mfu = flops_per_token * tps / peak
        mem = torch.cuda.max_memory_allocated() / 2**20
        rows[case] = ms
        print(f"{case:9s} params {params / 1e6:7.1f}M  {ms:8.2f} ms/step (min {min(times):.2f}, "
              f"max {max(times):.2f})  {tps / 1e3:8.1f}k tok/s  MFU {mfu * 100:5.1f}%  peak {mem:8.0f} MiB")
        if a.profile and case == "h0":
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(4):
                    step()
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=a.profile_rows, max_name_column_width=60))
    if "h0" in rows:
        print(f"record average: 541k tok/s per GPU; H0 here: "
              f"{a.tokens_per_step * a.slots / (rows['h0'] / 1000) / 541e3:.2f}x of it")
    if "h0" in rows and "h1" in rows:
        print(f"H1 - H0: {rows['h1'] - rows['h0']:+.2f} ms/step ({(rows['h1'] / rows['h0'] - 1) * 100:+.2f}%)")
    if "h0" in rows and "baseline" in rows:
        print(f"H0 / baseline step time: {rows['h0'] / rows['baseline']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
