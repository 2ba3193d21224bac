"""The project's own NanoGPT speedrun trainer (one self-contained file).

Full scale (the January 2026 record, see train/README.md for what matches it):
    torchrun --standalone --nproc_per_node=8 train/train_gpt.py --preset speedrun --data-path data/fineweb10B
Toy scale on a CPU:
    python -m train.data synthetic --out data/synthetic
    python train/train_gpt.py --preset tiny --data-path data/synthetic

It imports only the standard library, numpy and torch, so a snapshot of this file is the
exact workload. The log format is the one the harness parses (train/README.md).
"""

import argparse
import contextlib
import copy
import glob
import hashlib
import inspect
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import replace
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

PROCESS_START = time.time()  # before torch's import: the warm-up line reports start-up cost

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

try:  # bundled with CUDA builds of torch; absent on CPU-only installs (the fused loss is then off)
    import triton
    import triton.language as tl
except ImportError:
    triton = None


class UsageError(Exception):
    """Bad flags, pattern or data: reported as one line on stderr with exit code 2."""


# -----------------------------------------------------------------------------
# Configuration. ``Config`` holds the inputs: one field per flag (--field-with-dashes),
# its help text in the field's metadata; the defaults of the preset fields are the
# record's, and a preset overrides some of them. ``Derived`` holds what is computed from
# the inputs and the world size, kept apart; ``Run`` is the two together.


# a preset: the values it changes from the record's (the defaults of Config)
PRESETS = {
    "speedrun": {},
    # One rank's share of a record step on one GPU: same model, 1/8 of the batch and of the
    # validation tokens. For measuring step time; not training-equivalent (for that, run
    # --preset speedrun with any number of GPUs: accumulation keeps the batch).
    "speedrun-1gpu": dict(slots=1, val_batch_tokens=4 * 64 * 1024, val_tokens=1310720),
    # CPU-sized: same code path, small vocab matching `python -m train.data synthetic`.
    "tiny": dict(
        num_layers=8, model_dim=64, num_heads=4, head_dim=16, vocab_size=256,
        num_iterations=30, extension_iterations=2, seq_len=64, slots=2,
        batch_schedule=(2, 4, 6), block_size=16, val_tokens=2048, val_batch_tokens=1024,
        val_every=10, momentum_warmup_steps=6, momentum_cooldown_steps=2,
    ),
}


def option(default, help=None, *, preset=True, type=None, choices=None, boolean=False):
    """A Config field. ``preset``: a preset sets it, so its flag defaults to "the preset's"."""
    return field(default=default, metadata={"help": help, "preset": preset, "type": type,
                                            "choices": choices, "boolean": boolean})


@dataclass(frozen=True)
class Config:
    """The trainer's inputs, as the flags and the preset give them."""
    preset: str = option("speedrun", preset=False, choices=tuple(PRESETS))
    data_path: str = option(None, "folder with *train_*.bin and *val_*.bin shards (default: env "
                            "DATA_PATH, else data/fineweb10B)",
                            preset=False)   # None: env DATA_PATH, else data/fineweb10B (read at parse time)
    seed: int = option(None, "init and data-order seed (default: env SEED, else 0)", preset=False, type=int)
    device: str = option("auto", preset=False, choices=("auto", "cpu", "cuda"))
    compile: bool = option(None, "torch.compile the model (default: on for CUDA, off for CPU)",
                           preset=False, boolean=True)
    warmup: bool = option(None, "untimed warm-up of the transition steps, then reset (default: = compile)",
                          preset=False, boolean=True)
    attn: str = option("auto", "training attention: varlen (flash attention over the documents; auto on "
                       "CUDA GPUs that have it), flex (FlexAttention block masks) or sdpa (a boolean mask; "
                       "auto on CPU)", preset=False, choices=("auto", "varlen", "flex", "sdpa"))
    mtp: bool = option(True, "multi-token prediction loss during training", preset=False, boolean=True)
    digest: bool = option(False, "end with a line of the final weights' sha256 and every validation loss "
                          "exactly (reproducibility checks)", preset=False, boolean=True)
    fp8_head: bool = option(None, "training logits through a float8 head (default: on for CUDA GPUs "
                            "with float8 matrix products, compute capability 8.9 and up)",
                            preset=False, boolean=True)
    fused_loss: bool = option(None, "training loss through the fused Triton soft-capped cross-entropy "
                              "kernels (default: on for CUDA when Triton is installed)",
                              preset=False, boolean=True)
    fused_mlp: bool = option(None, "MLP through the fused Triton matrix product with relu^2 in its "
                             "epilogue (default: on for CUDA when Triton is installed)",
                             preset=False, boolean=True)
    # the preset fields: the January 2026 record's values
    ve_layout: str = option(".12...012", "value-embedding pattern, e.g. .12...012 (tied) or .01...345 (untied)",
                            type=str)
    num_iterations: int = option(1600, "total training steps, extension steps included", type=int)
    extension_iterations: int = option(40, "steps after the schedule (scheduled = total - this)", type=int)
    val_every: int = option(250, "validate every N steps (0: only at the start and end)", type=int)
    num_layers: int = option(11, "transformer layers", type=int)
    model_dim: int = option(768, "model width", type=int)
    num_heads: int = option(6, "attention heads", type=int)
    head_dim: int = option(128, "head width", type=int)
    mlp_mult: int = option(4, "MLP hidden = mult x model_dim", type=int)
    vocab_size: int = option(50304, "vocabulary (padded) size", type=int)
    # layer roles; None = derived from the 11-layer record proportionally (Derived)
    long_layers: tuple = option(None, "layers with long windows", type="ints")
    attn_skip_layers: tuple = option(None, "layers without attention", type="ints")
    unet_layers: tuple = option(None, "U-net skip SRC,DST", type="ints")
    backout_layer: int = option(None, "backout layer", type=int)
    seq_len: int = option(2048, "training pieces are cut at this many tokens", type=int)
    slots: int = option(8, "micro-batches per step over all ranks (ranks x accumulation)", type=int)
    batch_schedule: tuple = option((8, 16, 24), "tokens per micro-batch in units of seq_len, per third",
                                   type="ints")
    block_size: int = option(128, "attention window block size in tokens", type=int)
    window_schedule: tuple = option((3, 7, 11), "long window in blocks, per third", type="ints")
    val_window: int = option(13, "long window in blocks for validation", type=int)
    final_long_window: int = option(20, "long window in blocks for the last validation", type=int)
    val_tokens: int = option(10485760, "validation tokens (first N of the val shard)", type=int)
    val_batch_tokens: int = option(4 * 64 * 1024 * 8, "validation tokens per validation step over all ranks",
                                   type=int)
    muon_lr: float = option(0.023, "NorMuon lr", type=float)
    muon_wd: float = option(1.2, "NorMuon cautious weight decay", type=float)
    adam_lr: float = option(0.008, "Adam lr", type=float)
    adam_wd: float = option(0.005, "Adam cautious weight decay", type=float)
    lr_schedule: tuple = option((1.0, 1.52, 1.73), "lr multiplier per third", type="floats")
    cooldown_frac: float = option(0.55, "fraction of scheduled steps with linear lr cooldown", type=float)
    final_lr_frac: float = option(0.1, "lr multiplier at the end of the cooldown", type=float)
    momentum_warmup_steps: int = option(300, "NorMuon momentum 0.85->0.95 over these steps", type=int)
    momentum_cooldown_steps: int = option(50, "NorMuon momentum back to 0.85 over the last steps", type=int)


# the mtp flag is set by the presets too (it has the record's default), but says so in its help
PRESET_FIELDS = tuple(f.name for f in fields(Config) if f.metadata["preset"]) + ("mtp",)


@dataclass(frozen=True)
class Derived:
    """What the run computes from its inputs and the number of processes."""
    long_layers: tuple          # the layer roles, the inputs' None filled in
    attn_skip_layers: tuple
    unet_layers: tuple
    backout_layer: int
    ve_per_layer: list          # per layer: its value-embedding table, or None
    ve_tables: int
    bos_id: int
    world_size: int
    grad_accum_steps: int
    device: str                 # "auto" resolved; compile and warmup their defaults applied
    compile: bool
    warmup: bool
    fused_loss: bool
    fused_mlp: bool
    fp8_head: bool


@dataclass(frozen=True)
class Run:
    """The inputs and the derived values; ``run.x`` reads the derived value where there is one."""
    inputs: Config
    derived: Derived

    def __post_init__(self):
        # one flat namespace for the model code: plain attributes, which torch.compile traces
        # as it traced the old dict's items; the derived value replaces the input's None
        for part in (self.inputs, self.derived):
            for f in fields(part):
                object.__setattr__(self, f.name, getattr(part, f.name))

    def to_dict(self) -> dict:
        """Everything, as the log's config line shows it."""
        return {**asdict(self.inputs), **asdict(self.derived)}


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see: python train/train_gpt.py --help)")


def build_parser():
    """The flags, one per Config field, generated from the fields' metadata."""
    p = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    for f in fields(Config):
        m = f.metadata
        flag = "--" + f.name.replace("_", "-")
        kw = {"help": flag_help(f)}
        if m["choices"]:
            kw["choices"] = sorted(m["choices"])
        if m["boolean"]:
            kw["action"] = argparse.BooleanOptionalAction
        elif m["type"] is not None:
            kw["type"] = {"ints": int_tuple, "floats": float_tuple}.get(m["type"], m["type"])
        # flags of preset fields default to None: "the preset's value"
        default = None if f.name in PRESET_FIELDS else f.default
        if f.name == "data_path":
            default = os.environ.get("DATA_PATH", "data/fineweb10B")
        p.add_argument(flag, default=default, **kw)
    return p


def flag_help(f):
    """A flag's help with its default said once: the help's own "(default: ...)" where it has
    one (a default that depends on the machine or the environment), else the field's."""
    m = f.metadata
    text = m["help"] or ""
    if m["preset"]:
        return f"{text} (default: the preset's; the record's is {format_default(f.default)})".strip()
    if "(default:" in text or f.default is None:
        return text
    return f"{text} (default: {format_default(f.default)})".strip()


def format_default(value):
    if isinstance(value, tuple):
        return ",".join(str(x) for x in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def parse_args(argv):
    """The inputs: the preset's values, then the flags given."""
    args = vars(build_parser().parse_args(argv))
    values = dict(PRESETS[args["preset"]])
    values.update({k: v for k, v in args.items() if v is not None or k not in PRESET_FIELDS})
    if values["seed"] is None:
        env_seed = os.environ.get("SEED", "0")
        try:
            values["seed"] = int(env_seed)
        except ValueError:
            raise UsageError(f"env SEED={env_seed!r} is not an integer; set SEED to an integer")
    return Config(**values)


def int_tuple(s):
    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}")


def float_tuple(s):
    try:
        return tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}")


def parse_ve_layout(pattern, num_layers):
    """'.12...012' -> per-layer table index (None = no value embedding) and table count.

    Symbols before '...' are the first layers, symbols after it the last layers, '...'
    fills the middle with '.'. Every distinct symbol other than '.' is its own table.
    """
    if "..." in pattern:
        head, _, tail = pattern.partition("...")
        if len(head) + len(tail) > num_layers:
            raise UsageError(f"--ve-layout {pattern!r} needs at least {len(head) + len(tail)} layers "
                             f"but the model has {num_layers}; shorten the pattern")
        symbols = list(head) + ["."] * (num_layers - len(head) - len(tail)) + list(tail)
    else:
        if len(pattern) != num_layers:
            raise UsageError(f"--ve-layout {pattern!r} has {len(pattern)} symbols and no '...' but the "
                             f"model has {num_layers} layers; write one symbol per layer or use '...'")
        symbols = list(pattern)
    if any(c.isspace() for c in symbols):
        raise UsageError(f"--ve-layout {pattern!r} contains whitespace; use '.' for layers without")
    names = sorted(set(symbols) - {"."})
    return [None if c == "." else names.index(c) for c in symbols], len(names)


def scale_layer(i, num_layers):
    """Map a layer index of the 11-layer record onto a model of num_layers layers."""
    return min(num_layers - 1, int(round(i * (num_layers - 1) / 10)))


def resolve_config(cfg, world_size):
    """The run: the inputs checked, the layer roles and everything else derived from them."""
    L = cfg.num_layers
    long_layers = cfg.long_layers if cfg.long_layers is not None else \
        tuple(sorted({scale_layer(3, L), scale_layer(10, L)}))
    attn_skip_layers = cfg.attn_skip_layers if cfg.attn_skip_layers is not None else (scale_layer(6, L),)
    unet_layers = cfg.unet_layers if cfg.unet_layers is not None else (scale_layer(3, L), scale_layer(6, L))
    backout_layer = cfg.backout_layer if cfg.backout_layer is not None else scale_layer(7, L)
    ve_per_layer, ve_tables = parse_ve_layout(cfg.ve_layout, L)
    checks = [
        (cfg.num_iterations >= 1, "--num-iterations must be >= 1"),
        (0 <= cfg.extension_iterations < cfg.num_iterations,
         "--extension-iterations must be >= 0 and below --num-iterations"),
        (cfg.val_every >= 0, "--val-every must be >= 0"),
        (cfg.model_dim >= 12, "--model-dim must be >= 12 (gates read 12 dims)"),
        (cfg.head_dim % 4 == 0, "--head-dim must be a multiple of 4 (half-rotary)"),
        (all(0 <= i < L for i in long_layers + attn_skip_layers),
         f"--long-layers/--attn-skip-layers must be layer indices below {L}"),
        (len(unet_layers) == 2 and 0 <= unet_layers[0] < unet_layers[1] < L,
         f"--unet-layers must be SRC,DST with 0 <= SRC < DST < {L}"),
        (0 <= backout_layer < L, f"--backout-layer must be below {L}"),
        (len(cfg.batch_schedule) == 3 and len(cfg.window_schedule) == 3
         and len(cfg.lr_schedule) == 3, "schedules need three values (one per third)"),
        (cfg.slots % world_size == 0,
         f"--slots {cfg.slots} must be a multiple of the number of processes ({world_size})"),
        (cfg.val_batch_tokens % cfg.slots == 0, "--val-batch-tokens must divide by --slots"),
        (cfg.val_tokens % cfg.val_batch_tokens == 0 and cfg.val_tokens > 0,
         "--val-tokens must be a positive multiple of --val-batch-tokens"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    compiled = cfg.compile if cfg.compile is not None else device == "cuda"
    if cfg.fused_loss and triton is None:
        raise UsageError("--fused-loss needs Triton (pip install triton), which this Python lacks; "
                         "use --no-fused-loss")
    if cfg.fused_mlp and triton is None:
        raise UsageError("--fused-mlp needs Triton (pip install triton), which this Python lacks; "
                         "use --no-fused-mlp")
    fused = cfg.fused_loss if cfg.fused_loss is not None else (device == "cuda" and triton is not None)
    fused_mlp = cfg.fused_mlp if cfg.fused_mlp is not None else (device == "cuda" and triton is not None)
    return Run(cfg, Derived(
        long_layers=long_layers, attn_skip_layers=attn_skip_layers, unet_layers=unet_layers,
        backout_layer=backout_layer, ve_per_layer=ve_per_layer, ve_tables=ve_tables,
        # BOS is GPT-2's <|endoftext|>, or the last id of a small synthetic vocabulary.
        bos_id=50256 if cfg.vocab_size > 50256 else cfg.vocab_size - 1,
        world_size=world_size, grad_accum_steps=cfg.slots // world_size,
        device=device, compile=compiled, warmup=cfg.warmup if cfg.warmup is not None else compiled,
        fused_loss=fused, fused_mlp=fused_mlp, fp8_head=cfg.fp8_head if cfg.fp8_head is not None else (
            device == "cuda" and torch.cuda.get_device_capability() >= (8, 9))))


# -----------------------------------------------------------------------------
# Data: shards of a 256 x int32 header (magic, version, token count) then uint16 tokens.

SHARD_MAGIC, SHARD_VERSION, HEADER_BYTES = 20240520, 1, 256 * 4


def make_data_cmd(path):
    """The command that (re)creates the shard at path."""
    kind = "fineweb" if os.path.basename(path).startswith("fineweb") else "synthetic"
    return f"python -m train.data {kind} --out {os.path.dirname(path) or '.'}"


def check_shard(path):
    """Magic, version and file size against the header's token count; returns the count."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read shard {path} ({e.strerror}); create it with: {make_data_cmd(path)}")
    header = np.frombuffer(raw[:len(raw) // 4 * 4], dtype=np.int32)
    if header.size != 256 or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise UsageError(f"{path} is not a token shard (bad magic/version header); "
                         f"recreate it with: {make_data_cmd(path)}")
    n = int(header[2])
    if size != HEADER_BYTES + 2 * n:
        raise UsageError(f"{path} is {size} bytes but its header says {n} tokens (truncated?); "
                         f"recreate it with: {make_data_cmd(path)}")
    return n


def read_shard(path):
    check_shard(path)
    return np.fromfile(path, dtype=np.uint16, offset=HEADER_BYTES)


def find_shards(data_path, kind):
    pattern = os.path.join(data_path, f"*{kind}_*.bin")
    files = sorted(glob.glob(pattern))
    if not files:
        raise UsageError(f"no shards matching {pattern}; create them with: "
                         f"python -m train.data synthetic --out {data_path}")
    return files


def check_vocab(tokens, path, vocab_size):
    top = int(tokens.max()) if tokens.size else 0
    if top >= vocab_size:
        raise UsageError(f"{path} has token id {top} >= vocab size {vocab_size}; "
                         f"use a preset/--vocab-size that covers it or regenerate the data")


class TrainLoader:
    """BOS-aligned packed micro-batches, the same for any number of ranks.

    A step's batch is `slots` sequences of slot_len+1 tokens, filled in order with pieces
    that start at a BOS and are cut at seq_len tokens (and at the end of the sequence); the
    next sequence starts at the next document. Rank r owns consecutive slots. The seed
    permutes the shards and picks each shard's first document, so data order depends on it.
    """

    def __init__(self, files, cfg, rank):
        self.files, self.bos, self.cut = files, cfg.bos_id, cfg.seq_len
        self.vocab, self.slots = cfg.vocab_size, cfg.slots
        self.mine = range(rank * cfg.grad_accum_steps, (rank + 1) * cfg.grad_accum_steps)
        self.rng = np.random.default_rng([cfg.seed, 1234])
        self.queue = []
        self._next_shard()

    def _next_shard(self):
        if not self.queue:
            self.queue = [self.files[i] for i in self.rng.permutation(len(self.files))]
        path = self.queue.pop(0)
        self.tokens = read_shard(path)
        check_vocab(self.tokens, path, self.vocab)
        self.starts = np.flatnonzero(self.tokens == self.bos)
        self.ends = np.append(self.starts[1:], self.tokens.size)
        if self.starts.size == 0:
            raise UsageError(f"{path} has no BOS token {self.bos}; regenerate it with: {make_data_cmd(path)}")
        offset = int(self.rng.integers(self.starts.size))
        self.order = np.roll(np.arange(self.starts.size), -offset)
        self.pos = 0

    def _next_doc(self):
        if self.pos == self.order.size:
            self._next_shard()
        i = self.order[self.pos]
        self.pos += 1
        return self.starts[i], self.ends[i]

    def next_batch(self, slot_len):
        out = []
        for slot in range(self.slots):
            buf, need = [], slot_len + 1
            while need > 0:
                s, e = self._next_doc()
                piece = self.tokens[s:min(e, s + self.cut, s + need)]
                buf.append(piece)
                need -= piece.size
            if slot in self.mine:
                out.append(torch.from_numpy(np.concatenate(buf).astype(np.int64)))
        return out


def load_val(cfg):
    path = find_shards(cfg.data_path, "val")[0]
    tokens = read_shard(path)
    need = cfg.val_tokens + 1
    if tokens.size < need:
        raise UsageError(f"{path} has {tokens.size} tokens, fewer than --val-tokens+1 = {need}; "
                         f"lower --val-tokens or create more with: python -m train.data synthetic "
                         f"--out {cfg.data_path} --val-tokens {need}")
    tokens = tokens[:need]
    check_vocab(tokens, path, cfg.vocab_size)
    return torch.from_numpy(tokens.astype(np.int64))


# -----------------------------------------------------------------------------
# Fused soft-capped cross-entropy (GPU; Triton). The loss of the multi-token prediction
# head without the fp32 T x V tensors that autograd keeps for the plain form: the forward
# reads the bf16 logits once and keeps one number per row (its logsumexp), the backward
# reads them once more and writes the logits' gradient once, in bf16.
#   z = A * sigmoid((l + B) / C)                     the soft-capped logit (SOFTCAP)
#   row_loss[t] = sum_k coef[t, k] * (lse(z[t]) - z[t, target[t, k]])
#   d row_loss / d l = (sum_k coef[t, k] * (softmax(z)[t] - onehot(target[t, k]))) * dz/dl
# with dz/dl = (A / C) s (1 - s), s the sigmoid. z lies in (0, A), so the sum of exp(z - A)
# neither overflows nor needs a running maximum. CPU runs keep the plain form
# (GPT.mtp_loss), which is the reference the kernels are tested against (in Triton's
# interpreter on CPU, and on the GPU).
# Speed: each element costs two exponentials and one reciprocal, all approximate hardware
# instructions (about 2 ulp); no IEEE division (Triton's `/` is one, about ten instructions),
# and the backward's targets are patched after the row's loop instead of being compared
# with every column. The loops are then close to reading the logits at memory speed.

SOFTCAP = (23.0, 5.0, 7.5)  # A, B, C of the record's soft-cap A * sigmoid((logits + B) / C)
CE_BLOCK = 2048  # columns per iteration of the row loops (V = 50304 takes 25)

if triton is not None:
    @triton.jit
    def _softcap_sigmoid(l, RC: tl.constexpr, BRC: tl.constexpr):
        """s = sigmoid((l + B) / C) with RC = 1 / C and BRC = B / C."""
        return tl.fdiv(tl.full(l.shape, 1.0, tl.float32), 1.0 + tl.exp(-(l * RC + BRC)),
                       ieee_rounding=False)

    @triton.jit
    def _softcap_ce_fwd(logits_ptr, row_stride, tgt_ptr, coef_ptr, loss_ptr, lse_ptr, V: tl.constexpr,
                        K: tl.constexpr, KP: tl.constexpr, A: tl.constexpr, RC: tl.constexpr,
                        BRC: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * row_stride
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < V
            s = _softcap_sigmoid(tl.load(base + cols, mask=inside, other=0.0).to(tl.float32), RC, BRC)
            acc += tl.where(inside, tl.exp(A * s - A), 0.0)
        lse = A + tl.log(tl.sum(acc, axis=0))
        ks = tl.arange(0, KP)
        kin = ks < K
        tgt = tl.load(tgt_ptr + row * K + ks, mask=kin, other=0)
        coef = tl.load(coef_ptr + row * K + ks, mask=kin, other=0.0)
        zt = A * _softcap_sigmoid(tl.load(base + tgt, mask=kin, other=0.0).to(tl.float32), RC, BRC)
        tl.store(loss_ptr + row, tl.sum(coef, axis=0) * lse - tl.sum(coef * zt, axis=0))
        tl.store(lse_ptr + row, lse)

    @triton.jit
    def _softcap_ce_bwd(logits_ptr, row_stride, grad_ptr, grad_stride, tgt_ptr, coef_ptr,
                        lse_ptr, gloss_ptr, scale_ptr, V: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
                        A: tl.constexpr, RC: tl.constexpr, BRC: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * row_stride
        out = grad_ptr + row * grad_stride
        lse = tl.load(lse_ptr + row)
        g = tl.load(gloss_ptr + row) * tl.load(scale_ptr)  # the output's scale (float8) or 1
        ks = tl.arange(0, KP)
        kin = ks < K
        tgt = tl.load(tgt_ptr + row * K + ks, mask=kin, other=0)
        coef = tl.load(coef_ptr + row * K + ks, mask=kin, other=0.0)
        csum = tl.sum(coef, axis=0)
        gk = g * csum * A * RC  # d row_loss / d l = gk * softmax(z) * s (1 - s), off the targets
        for start in range(0, V, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < V
            s = _softcap_sigmoid(tl.load(base + cols, mask=inside, other=0.0).to(tl.float32), RC, BRC)
            dl = gk * tl.exp(A * s - lse) * s * (1.0 - s)
            tl.store(out + cols, dl.to(out.dtype.element_ty), mask=inside)
        # The target columns again, minus their coefficients (a target may repeat: its
        # coefficients add up). The barrier orders these stores after the loop's, which
        # other threads of this program made.
        tl.debug_barrier()
        hit = tl.sum(tl.where(tgt[:, None] == tgt[None, :], coef[None, :], 0.0), axis=1)
        s = _softcap_sigmoid(tl.load(base + tgt, mask=kin, other=0.0).to(tl.float32), RC, BRC)
        dl = g * (csum * tl.exp(A * s - lse) - hit) * A * RC * s * (1.0 - s)
        tl.store(out + tgt, dl.to(out.dtype.element_ty), mask=kin)


def _ce_meta(logits, targets):
    K = targets.size(1)
    A, B, C = SOFTCAP
    return dict(K=K, KP=max(2, 1 << (K - 1).bit_length()), A=A, RC=1 / C, BRC=B / C,
                BLOCK=CE_BLOCK, num_warps=8)


def softcap_ce_forward(logits, targets, coef):
    """(row_loss, lse), each (T,) fp32, for bf16 logits (T, V), targets and coef (T, K)."""
    T, V = logits.shape
    loss = torch.empty(T, device=logits.device, dtype=torch.float32)
    lse = torch.empty_like(loss)
    _softcap_ce_fwd[(T,)](logits, logits.stride(0), targets, coef, loss, lse, V,
                          **_ce_meta(logits, targets))
    return loss, lse


def softcap_ce_backward(grad_loss, logits, targets, coef, lse, scale=None, dtype=None):
    """d(sum_t grad_loss[t] * row_loss[t]) / d logits, in the logits' dtype; or times `scale`
    (a 1-element tensor) in `dtype`, e.g. float8 for the FP8 head's matrix products."""
    T, V = logits.shape
    grad = torch.empty_like(logits, dtype=dtype or logits.dtype)
    if scale is None:
        scale = torch.ones(1, device=logits.device, dtype=torch.float32)
    _softcap_ce_bwd[(T,)](logits, logits.stride(0), grad, grad.stride(0), targets, coef, lse,
                          grad_loss, scale, V, **_ce_meta(logits, targets))
    return grad


def softcap_ce_grad_bound(grad_loss, coef):
    """The largest |d loss / d logit| can be: |g| sum_k coef_k (A / C) max s (1 - s), since
    softmax and the target indicator lie in [0, 1] and s (1 - s) <= 1/4. A scale known before
    the gradient exists, so the kernel can write it in float8 at once."""
    A, _, C = SOFTCAP
    return (grad_loss.abs() * coef.sum(1)).amax() * (A / C / 4)


def _op_defined(qualname):
    ns, name = qualname.split("::")
    return hasattr(getattr(torch.ops, ns), name)


# Custom operators, so that torch.compile keeps each kernel as one opaque call; defined once
# per process (a second copy of this file, e.g. bench --trainer OLD, reuses the first's).
if triton is not None and not _op_defined("speedrun::softcap_ce"):
    @torch.library.custom_op("speedrun::softcap_ce", mutates_args=())
    def _softcap_ce_op(logits: torch.Tensor, targets: torch.Tensor,
                       coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return softcap_ce_forward(logits, targets, coef)

    @_softcap_ce_op.register_fake
    def _(logits, targets, coef):
        row = logits.new_empty(logits.size(0), dtype=torch.float32)
        return row, torch.empty_like(row)

    @torch.library.custom_op("speedrun::softcap_ce_backward", mutates_args=())
    def _softcap_ce_backward_op(grad_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                                coef: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        return softcap_ce_backward(grad_loss, logits, targets, coef, lse)

    @_softcap_ce_backward_op.register_fake
    def _(grad_loss, logits, targets, coef, lse):
        return torch.empty_like(logits)

    def _softcap_ce_setup(ctx, inputs, output):
        logits, targets, coef = inputs
        ctx.save_for_backward(logits, targets, coef, output[1])

    def _softcap_ce_grad(ctx, grad_loss, grad_lse):
        logits, targets, coef, lse = ctx.saved_tensors
        grad = torch.ops.speedrun.softcap_ce_backward(grad_loss.float().contiguous(), logits, targets,
                                                      coef, lse)
        return grad, None, None

    _softcap_ce_op.register_autograd(_softcap_ce_grad, setup_context=_softcap_ce_setup)

    @torch.library.custom_op("speedrun::softcap_ce_backward_e5m2", mutates_args=())
    def _softcap_ce_backward_e5m2_op(grad_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                                     coef: torch.Tensor, lse: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return softcap_ce_backward(grad_loss, logits, targets, coef, lse, scale, torch.float8_e5m2)

    @_softcap_ce_backward_e5m2_op.register_fake
    def _(grad_loss, logits, targets, coef, lse, scale):
        return torch.empty_like(logits, dtype=torch.float8_e5m2)


def fused_softcap_ce(logits, targets, coef):
    """sum_t row_loss[t] (see above) through the kernels; differentiable in logits."""
    loss, _ = torch.ops.speedrun.softcap_ce(logits.contiguous(), targets.contiguous(),
                                            coef.float().contiguous())
    return loss.sum()


# -----------------------------------------------------------------------------
# FP8 head (GPU): the training logits x @ head in float8, as the record's head. Both
# operands in e4m3 at fixed scales (the record's: |x| up to 100, rms-normed inputs; |w| up
# to 1.6); the logits' gradient in e5m2 at a scale taken from its own maximum, because its
# size follows the loss's normalisation (means over T tokens and slots: about 1e-6 here),
# which a fixed scale would flush to zero. Hopper's float8 matrix products take the first
# operand row-major and the second column-major, hence the transposed copies.

FP8_HEAD_SCALES = (100 / 448, 1.6 / 448)  # x, w: their largest magnitude lands on e4m3's 448
FP8_GRAD_TOP = 2.0 ** 14  # the gradient's maximum lands here: e5m2 reaches 57344
E5M2_MAX = 57344.0  # FP8HeadLoss: the gradient's bound lands here (its maximum is below)


def fp8_head_logits(x, w):
    """bf16 logits x @ w from e4m3 copies at the fixed scales; returns them and what the
    backward needs."""
    xs, ws = (torch.tensor(s, dtype=torch.float32, device=x.device) for s in FP8_HEAD_SCALES)
    x8 = (x / xs).to(torch.float8_e4m3fn)
    w8 = (w / ws).to(torch.float8_e4m3fn)
    logits = torch._scaled_mm(x8, w8.t().contiguous().t(), scale_a=xs, scale_b=ws,
                              out_dtype=torch.bfloat16, use_fast_accum=True)
    return logits, (x8, w8, xs, ws)


def fp8_head_grads(g8, gs, x8, w8, xs, ws):
    """Gradients of x and w from the logits' gradient g8 * gs (e5m2, g8 row-major)."""
    grad_x = torch._scaled_mm(g8, w8.t(), scale_a=gs, scale_b=ws, out_dtype=torch.bfloat16)
    grad_w = torch._scaled_mm(x8.t().contiguous(), g8.t().contiguous().t(), scale_a=xs, scale_b=gs,
                              out_dtype=torch.bfloat16)
    return grad_x, grad_w


class FP8Head(torch.autograd.Function):
    """x (T, dim) @ w (dim, V) in float8, bf16 out; differentiable in x and w."""

    @staticmethod
    def forward(ctx, x, w):
        logits, saved = fp8_head_logits(x, w)
        ctx.save_for_backward(*saved)
        return logits

    @staticmethod
    def backward(ctx, grad):
        gs = grad.abs().amax().float().clamp_min(1e-30) / FP8_GRAD_TOP
        return fp8_head_grads((grad / gs).to(torch.float8_e5m2), gs, *ctx.saved_tensors)


class FP8HeadLoss(torch.autograd.Function):
    """The training loss from x: the FP8 head's logits into the fused soft-capped
    cross-entropy, whose backward writes the logits' gradient in e5m2 at once, at a scale
    from softcap_ce_grad_bound. FP8Head then fused_softcap_ce is the same maths, but the
    bf16 gradient costs three more passes over T x V (its maximum, the cast to e5m2, and
    the bf16 write itself is twice the bytes)."""

    @staticmethod
    def forward(ctx, x, w, targets, coef):
        logits, saved = fp8_head_logits(x, w)
        row_loss, lse = torch.ops.speedrun.softcap_ce(logits, targets, coef)
        ctx.save_for_backward(logits, targets, coef, lse, *saved)
        return row_loss.sum()

    @staticmethod
    def backward(ctx, grad):
        logits, targets, coef, lse, *saved = ctx.saved_tensors
        g = grad.float().expand(logits.size(0)).contiguous()
        gs = softcap_ce_grad_bound(g, coef).clamp_min(1e-30) / E5M2_MAX
        g8 = torch.ops.speedrun.softcap_ce_backward_e5m2(g, logits, targets, coef, lse, 1 / gs)
        grad_x, grad_w = fp8_head_grads(g8, gs, *saved)
        return grad_x, grad_w, None, None


# -----------------------------------------------------------------------------
# Fused MLP (GPU; Triton): relu(x W1^T)^2 W2^T with relu^2 done in the first matrix
# product's epilogue, and in the backward the gradient through relu^2 done in the epilogue
# of g W2. The plain form spends one more pass over the T x 4d hidden activations each way
# (inductor cannot fuse an elementwise op into cuBLAS's output). The forward keeps the
# pre-activation for the backward and the post-activation for W2's gradient, as autograd
# does; W2's product and the backward's other products stay with cuBLAS.
#   forward:  pre = x W1^T (rounded to the dtype), h = relu(pre)^2
#   backward: dpre = (g W2) * 2 relu(pre), dW2 = g^T h, dW1 = dpre^T x, dx = dpre W1

MLP_TILE = dict(BM=128, BN=256, BK=64, GROUP=8, num_warps=8, num_stages=4)  # best of gpu_levers sweep, H200

if triton is not None:
    @triton.jit
    def _mm_relu2(a_ptr, b_ptr, out_ptr, pre_ptr, M, N, K: tl.constexpr, s_am, s_ak, s_bk, s_bn,
                  BACKWARD: tl.constexpr, EVEN: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                  BK: tl.constexpr, GROUP: tl.constexpr):
        """out tile = epilogue(a @ b); pre (M, N) contiguous is written (forward) or read."""
        pid = tl.program_id(0)
        tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
        # GROUP row tiles walk the column tiles together, so b's tiles are reused from L2
        per_group = GROUP * tiles_n
        first_m = (pid // per_group) * GROUP
        rows = tl.minimum(tiles_m - first_m, GROUP)
        pm = first_m + (pid % per_group) % rows
        pn = (pid % per_group) // rows
        rm = pm * BM + tl.arange(0, BM)
        rn = pn * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        a = a_ptr + rm.to(tl.int64)[:, None] * s_am + rk[None, :] * s_ak
        b = b_ptr + rk[:, None] * s_bk + rn[None, :] * s_bn
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k in range(0, K, BK):
            if EVEN:
                acc = tl.dot(tl.load(a), tl.load(b), acc)
            else:
                kin = k + rk < K
                acc = tl.dot(tl.load(a, mask=(rm[:, None] < M) & kin[None, :], other=0.0),
                             tl.load(b, mask=kin[:, None] & (rn[None, :] < N), other=0.0), acc)
            a += BK * s_ak
            b += BK * s_bk
        offs = rm.to(tl.int64)[:, None] * N + rn[None, :]
        mask = (rm[:, None] < M) & (rn[None, :] < N)
        if BACKWARD:
            if EVEN:
                pre = tl.load(pre_ptr + offs).to(tl.float32)
            else:
                pre = tl.load(pre_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            out = (acc * 2.0 * tl.maximum(pre, 0.0)).to(out_ptr.dtype.element_ty)
        else:
            pre = acc.to(pre_ptr.dtype.element_ty)
            r = tl.maximum(pre.to(tl.float32), 0.0)
            out = (r * r).to(out_ptr.dtype.element_ty)
            if EVEN:
                tl.store(pre_ptr + offs, pre)
            else:
                tl.store(pre_ptr + offs, pre, mask=mask)
        if EVEN:
            tl.store(out_ptr + offs, out)
        else:
            tl.store(out_ptr + offs, out, mask=mask)


def _mm_relu2_launch(a, b, out, pre, backward):
    """a (M, K) @ b (K, N), any strides, into out and pre (M, N) contiguous."""
    (M, K), N = a.shape, b.size(1)
    t = MLP_TILE
    even = M % t["BM"] == 0 and N % t["BN"] == 0 and K % t["BK"] == 0
    grid = (triton.cdiv(M, t["BM"]) * triton.cdiv(N, t["BN"]),)
    _mm_relu2[grid](a, b, out, pre, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
                    BACKWARD=backward, EVEN=even, **t)
    return out


def relu2_linear(x, w1):
    """(h, pre) = (relu(x w1^T)^2, x w1^T) for x (M, K), w1 (N, K)."""
    pre = x.new_empty(x.size(0), w1.size(0))
    h = torch.empty_like(pre)
    _mm_relu2_launch(x, w1.t(), h, pre, backward=False)
    return h, pre


def relu2_linear_backward(g, w2, pre):
    """(g w2) * 2 relu(pre): the gradient at pre, for g (M, d), w2 (d, N), pre (M, N)."""
    return _mm_relu2_launch(g, w2, torch.empty_like(pre), pre.contiguous(), backward=True)


if triton is not None and not _op_defined("speedrun::relu2_linear"):
    @torch.library.custom_op("speedrun::relu2_linear", mutates_args=())
    def _relu2_linear_op(x: torch.Tensor, w1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return relu2_linear(x, w1)

    @_relu2_linear_op.register_fake
    def _(x, w1):
        h = x.new_empty(x.size(0), w1.size(0))
        return h, torch.empty_like(h)

    @torch.library.custom_op("speedrun::relu2_linear_backward", mutates_args=())
    def _relu2_linear_backward_op(g: torch.Tensor, w2: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        return relu2_linear_backward(g, w2, pre)

    @_relu2_linear_backward_op.register_fake
    def _(g, w2, pre):
        return torch.empty_like(pre)


class FusedMLP(torch.autograd.Function):
    """relu(x w1^T)^2 w2^T for x (M, d), w1 (4d, d), w2 (d, 4d), all one dtype."""

    @staticmethod
    def forward(ctx, x, w1, w2):
        h, pre = torch.ops.speedrun.relu2_linear(x, w1)
        ctx.save_for_backward(x, w1, w2, h, pre)
        return h @ w2.t()

    @staticmethod
    def backward(ctx, g):
        x, w1, w2, h, pre = ctx.saved_tensors
        g = g.contiguous()
        dpre = torch.ops.speedrun.relu2_linear_backward(g, w2, pre)
        return dpre @ w1, dpre.t() @ x, g.t() @ h


# -----------------------------------------------------------------------------
# Model

def norm(x):
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """Rotary on half of each head's dims; the other half has frequency 0 (stationary)."""

    def __init__(self, head_dim):
        super().__init__()
        q = head_dim // 4
        freqs = (1 / 1024) ** torch.linspace(0, 1, q)
        self.register_buffer("freqs", torch.cat([freqs, freqs.new_zeros(q)]), persistent=False)

    def forward(self, x):  # x: (T, H, D)
        theta = torch.arange(x.size(0), device=x.device, dtype=torch.float32)[:, None] * self.freqs
        cos, sin = theta.cos()[:, None, :].type_as(x), theta.sin()[:, None, :].type_as(x)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def stationary_dims(head_dim):
    q = head_dim // 4
    idx = torch.zeros(head_dim, dtype=torch.bool)
    idx[q:2 * q] = True
    idx[3 * q:] = True
    return idx


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        dim, H, D = cfg.model_dim, cfg.num_heads, cfg.head_dim
        self.H, self.D = H, D
        self.has_attn = layer not in cfg.attn_skip_layers
        self.long = layer in cfg.long_layers
        self.has_ve = cfg.ve_per_layer[layer] is not None
        self.fused_mlp = cfg.fused_mlp
        bound = math.sqrt(3) * dim ** -0.5
        if self.has_attn:
            self.qkv_w = nn.Parameter(torch.empty(3, H * D, dim).uniform_(-bound, bound))
            self.o_w = nn.Parameter(torch.zeros(dim, H * D))
            self.attn_gate = nn.Parameter(torch.zeros(H, 12))
            if self.has_ve:
                self.ve_gate = nn.Parameter(torch.zeros(H, 12))
            self.rotary = Rotary(D)
            self.register_buffer("stat", stationary_dims(D), persistent=False)
        hidden = cfg.mlp_mult * dim
        self.fc_w = nn.Parameter(torch.empty(hidden, dim).uniform_(-bound / 2, bound / 2))
        self.proj_w = nn.Parameter(torch.zeros(dim, hidden))

    def attn(self, x, ve, scales, mask, attn_scale, attend):
        T = x.size(0)
        x_in = norm(x)
        # the scalars multiply the weights, not the T-row outputs: their gradients are then
        # sums over a weight matrix instead of over T x 3d activations
        qkv = F.linear(x_in, (scales[0] * self.qkv_w.flatten(0, 1)).type_as(x))
        q, k, v = qkv.view(T, 3, self.H, self.D).unbind(1)
        q, k = self.rotary(norm(q)), self.rotary(norm(k))
        if self.long:  # partial key offset: stationary half of each key comes from t-1
            k_prev = torch.cat([k[:1], k[:-1]])
            k = torch.where(self.stat, k_prev, k)
        if ve is not None:
            g = 2 * torch.sigmoid(F.linear(x_in[:, :12], self.ve_gate.type_as(x)))
            v = v + g[:, :, None] * ve.view(T, self.H, self.D)
        y = attend(q * attn_scale.type_as(q), k, v, mask)  # (T, H, D)
        y = y * torch.sigmoid(F.linear(x_in[:, :12], self.attn_gate.type_as(x)))[:, :, None]
        return F.linear(y.reshape(T, -1), (scales[1] * self.o_w).type_as(x))

    def forward(self, x, ve, scales, masks, attn_scales, attend):
        if self.has_attn:
            kind = 1 if self.long else 0
            x = x + self.attn(x, ve, scales, masks[kind], attn_scales[kind], attend)
        if self.fused_mlp:
            return x + FusedMLP.apply(norm(x), self.fc_w.type_as(x), self.proj_w.type_as(x))
        h = F.relu(F.linear(norm(x), self.fc_w.type_as(x))).square()
        return x + F.linear(h, self.proj_w.type_as(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        V, dim, L = cfg.vocab_size, cfg.model_dim, cfg.num_layers
        self.cfg = cfg
        self.fused_loss, self.fp8_head = cfg.fused_loss, cfg.fp8_head
        self.head = nn.Parameter(torch.empty(dim, V).normal_(0, 0.005))  # stored transposed
        self.embed = nn.Parameter(self.head.detach().t().clone())  # tied phase: copy of head
        self.ve_tables = nn.ParameterList(
            [nn.Parameter(torch.zeros(V, dim)) for _ in range(cfg.ve_tables)])
        self.bigram_rows = 5 * V
        self.bigram = nn.Parameter(torch.zeros(self.bigram_rows, dim))
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(L)])
        # per layer: residual r (1.1), x0 a (0), bigram b (0.1); attention in/out (0.5, 1.0)
        self.resid = nn.Parameter(torch.tensor([[1.1, 0.0, 0.1]] * L))
        self.attn_scalars = nn.Parameter(torch.tensor([[0.5, 1.0]] * L))
        # smear s (0), U-net skip k (-1.5), backout lambda (0.5)
        self.misc = nn.Parameter(torch.tensor([0.0, -1.5, 0.5]))
        self.smear_gate = nn.Parameter(torch.zeros(1, 12))
        self.skip_gate = nn.Parameter(torch.zeros(1, 12))

    def bigram_hash(self, idx):
        rows = self.bigram_rows
        h = torch.bitwise_xor(36313 * idx[1:], 27191 * idx[:-1]) % (rows - 1)
        return torch.cat([idx.new_full((1,), rows - 1), h])

    def forward(self, idx, targets, windows, attn_scales, mtp_weights=None, loss_chunk=None, spans=None):
        """idx, targets: (T,) one packed sequence; windows: (short, long) in tokens, a tensor,
        or ints with spans (the documents for varlen attention, from doc_spans)."""
        cfg, dtype = self.cfg, self.head.dtype
        if spans is not None:
            masks = [(spans, w) for w in windows]
        else:
            masks = make_masks(idx, cfg.bos_id, windows.unbind(), self.backend, cfg.block_size)
        x = F.embedding(idx, self.embed).to(dtype)
        # smear: each position takes a gated copy of the previous token's embedding
        gate = self.misc[0] * torch.sigmoid(F.linear(x[1:, :12], self.smear_gate.type_as(x)))
        x = torch.cat([x[:1], x[1:] + gate.type_as(x) * x[:-1]])
        x = x0 = norm(x)
        bigram = F.embedding(self.bigram_hash(idx), self.bigram).to(dtype)
        ves = [F.embedding(idx, t).to(dtype) for t in self.ve_tables]
        src, dst = cfg.unet_layers
        skip = backout = None
        for i, block in enumerate(self.blocks):
            r, a, b = self.resid[i].type_as(x).unbind()
            x = ((r + a) * x if i == 0 else r * x + a * x0) + b * bigram
            if i == dst:
                g = torch.sigmoid(F.linear(x0[:, :12], self.skip_gate.type_as(x)))
                x = x + torch.sigmoid(self.misc[1]).type_as(x) * 2 * g * skip
            t = cfg.ve_per_layer[i]
            x = block(x, None if t is None else ves[t], self.attn_scalars[i], masks, attn_scales,
                      self.attend)
            if i == src:
                skip = x
            if i == cfg.backout_layer:
                backout = x
        x = norm(x - self.misc[2].type_as(x) * backout)
        if mtp_weights is None:  # evaluation: plain next-token loss, logits in chunks
            chunk = loss_chunk or x.size(0)
            total = x.new_zeros((), dtype=torch.float32)
            for s in range(0, x.size(0), chunk):
                logits = self.logits(x[s:s + chunk])
                total = total + F.cross_entropy(logits, targets[s:s + chunk], reduction="sum")
            return total / x.size(0)
        # multi-token prediction: target t+1+k with weight w_k (the same head for all k)
        shifted, coef = mtp_targets(targets, mtp_weights)
        if self.fp8_head and self.fused_loss:
            return FP8HeadLoss.apply(x, self.head, shifted.contiguous(), coef.float().contiguous())
        logits = FP8Head.apply(x, self.head) if self.fp8_head else F.linear(x, self.head.t().type_as(x))
        if self.fused_loss:  # bf16 logits straight into the kernels
            return fused_softcap_ce(logits, shifted, coef)
        return mtp_loss(softcap(logits.float()), shifted, coef)

    def logits(self, x):
        return softcap(F.linear(x, self.head.t().type_as(x)).float())


def softcap(logits):
    A, B, C = SOFTCAP
    return A * torch.sigmoid((logits + B) / C)


def mtp_targets(targets, weights):
    """(T, K) targets t+1+k and their coefficients: weight k over the T - k positions that
    have a target k ahead, 0 past the end. Full-length rather than slices of length T - k:
    inductor (torch 2.11) fails to compile the sliced form ("49152 v.s. 49151")."""
    T, K = targets.size(0), weights.size(0)
    ks = torch.arange(K, device=targets.device)
    shifted = torch.stack([targets.roll(-k) for k in range(K)], dim=1)
    valid = torch.arange(T, device=targets.device)[:, None] < T - ks
    return shifted, torch.where(valid, weights[None, :] / (T - ks), 0).float()


def mtp_loss(z, shifted, coef):
    """The plain form of the fused kernels' loss, from soft-capped fp32 logits z (T, V).
    One gather of all K targets, so the backward scatters into one T x V buffer, not K."""
    lse = torch.logsumexp(z, dim=-1)
    return (coef * (lse[:, None] - z.gather(1, shifted))).sum()


# -----------------------------------------------------------------------------
# Attention backends, one rule (causal, same document, the last w positions): varlen
# flash attention over the documents (GPU training), FlexAttention block masks (GPU
# validation, or --attn flex) or SDPA with an explicit boolean mask (CPU).
#
# Varlen attention sizes its grid by the longest document it is told of (max_len) and the
# number of documents (the padded cu_seqlens). Training pieces are cut at seq_len, so
# max_len = seq_len; validation reads contiguous tokens, whose documents can be as long as
# the whole sequence (262,144 tokens), so it keeps FlexAttention, which skips empty blocks.

class DocSpans(NamedTuple):
    cu: torch.Tensor  # (N,) int32: each document's start, then T; padded with T (empty documents)
    max_len: int      # no document is longer


def doc_spans(inputs, bos, max_len, unit=128):
    """The documents of a packed sequence (on the host, from its BOS tokens) for varlen
    attention. N is a multiple of `unit` fixed by T alone (room for documents of 256
    tokens on average, as the record's one slot per 300), so every step of one batch size
    runs one compiled graph; more documents than that double it (a rare recompile)."""
    T = inputs.numel()
    starts = torch.nonzero(inputs == bos).flatten()
    if starts.numel() == 0 or starts[0] != 0:  # a sequence that does not begin at a BOS
        starts = torch.cat([starts.new_zeros(1), starts])
    ends = torch.cat([starts[1:], starts.new_full((1,), T)])
    longest = int((ends - starts).max())
    assert longest <= max_len, f"a document of {longest} tokens, above max_len {max_len}"
    n = -(-(T // 256 + 1) // unit) * unit
    while n < starts.numel() + 1:
        n *= 2
    cu = torch.full((n,), T, dtype=torch.int32)
    cu[:starts.numel()] = starts
    return DocSpans(cu, max_len)


def varlen_window(w):
    """Our window w (the last w positions, itself included) as flash attention's (left, right)."""
    return (w - 1, 0)


def attend_varlen(varlen_attn, q, k, v, mask):
    spans, w = mask
    return varlen_attn(q, k, v, spans.cu, spans.cu, spans.max_len, spans.max_len, scale=1.0,
                       window_size=varlen_window(w))


def varlen_available():
    """Flash attention over documents, with a sliding window (torch 2.10+, Ampere and later)."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0):
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return False
    return "window_size" in inspect.signature(varlen_attn).parameters


def doc_ids(idx, bos):
    return torch.cumsum((idx == bos).int(), 0)


def make_masks(idx, bos, windows, backend, block_size):
    """One mask per window size. Built inside the (compiled) forward so that the mask_mod
    closures are traced there; outside compile, CUDA compiles the block-mask builder alone
    (the eager one would materialise T x T)."""
    docs = doc_ids(idx, bos)
    T = idx.size(0)
    masks = []
    for w in windows:
        if backend == "flex":
            w = torch.as_tensor(w, device=idx.device)
            if T % block_size == 0:
                masks.append(doc_window_block_mask(docs, w, block_size))
                continue
            from torch.nn.attention.flex_attention import create_block_mask
            kw = dict(_compile=True) if idx.is_cuda and not torch.compiler.is_compiling() else {}
            masks.append(create_block_mask(window_mask_mod(docs, w), None, None, T, T, device=idx.device,
                                           BLOCK_SIZE=block_size, **kw))
        else:
            pos = torch.arange(T, device=idx.device)
            diff = pos[:, None] - pos[None, :]
            masks.append((diff >= 0) & (diff < w) & (docs[:, None] == docs[None, :]))
    return masks


def doc_window_block_mask(docs, w, block):
    """The FlexAttention block mask of window_mask_mod, built from each block's first and
    last document id (an n x n table, n = T / block) instead of evaluating the rule on all
    T x T pairs as create_block_mask does (2.4 ms per mask at T = 49152 on an H100).
    Document ids never decrease along the sequence, so for key block j before query block
    i the only same-document pairs are the tail of j and the head of i, in the document
    last(j) == first(i), and the closest of them are (i - j - 1) * block + 1 apart."""
    from torch.nn.attention.flex_attention import BlockMask
    n = docs.size(0) // block
    d = docs.view(n, block)
    first, last = d[:, 0], d[:, -1]
    i = torch.arange(n, device=docs.device)[:, None]
    j = torch.arange(n, device=docs.device)[None, :]
    nearest = ((i - j - 1) * block + 1).clamp_min(0)  # closest q - k over the two blocks
    farthest = (i - j + 1) * block - 1
    some = (j == i) | ((j < i) & (last[None, :] == first[:, None]) & (nearest < w))
    full = (j < i) & (first[None, :] == last[:, None]) & (farthest < w)  # one document, all in window
    partial = some & ~full

    def listed(m):  # per query block: how many key blocks, and which (listed first, in order)
        order = torch.sort(torch.where(m, j, j + n), dim=-1).indices
        return m.sum(-1, dtype=torch.int32)[None, None], order.to(torch.int32)[None, None]
    kv_num, kv_idx = listed(partial)
    full_num, full_idx = listed(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block,
                                    mask_mod=window_mask_mod(docs, w))


def window_mask_mod(docs, w):
    """FlexAttention's mask rule. The window is a closure cell, not a default argument: a
    default (`w=w`) gives the traced graph an input whose source inductor's FX-graph cache
    cannot load again on torch 2.11 (`DefaultsSource.__init__() takes from 3 to 4
    positional arguments but 6 were given`), so that graph recompiled in every run."""
    def mask_mod(b, h, q, k):
        return (q >= k) & (docs[q] == docs[k]) & (q - k < w)
    return mask_mod


def attend_sdpa(q, k, v, mask):
    """Masked attention in plain ops (scale is already in q): on CPU this is several times
    faster than scaled_dot_product_attention with a boolean mask."""
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    scores = (q @ k.transpose(1, 2)).float().masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, dim=-1).type_as(v) @ v).transpose(0, 1)


def attend_flex(flex_attention, q, k, v, mask):
    y = flex_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                       block_mask=mask, scale=1.0)
    return y[0].transpose(0, 1)


# -----------------------------------------------------------------------------
# Optimisers

# Polar Express (Amsel et al. 2025, arXiv 2505.16932): 5 iterations, safety factor 1.02.
POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def polar_express(G):
    """Approximate orthogonal polar factor of each matrix in G (..., rows, cols)."""
    X = G.bfloat16() if G.is_cuda else G.float()
    wide = X.size(-2) > X.size(-1)
    if wide:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-7)
    for a, b, c in POLAR_EXPRESS:
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return (X.mT if wide else X).float()


def fp32_view(p, lo):
    """Exact fp32 value of a bf16 weight (tensor p, not a Parameter) plus its 16-bit
    mantissa side buffer."""
    if lo is None:
        return p.float()
    hi = p.view(torch.int16).to(torch.int32) << 16
    return (hi | (lo.to(torch.int32) & 0xFFFF)).view(torch.float32)


def store_fp32(p, lo, w):
    if lo is None:
        p.copy_(w)
        return
    bits = w.view(torch.int32)
    p.copy_((bits >> 16).to(torch.int16).view(torch.bfloat16))
    low = bits & 0xFFFF
    lo.copy_(torch.where(low >= 32768, low - 65536, low).to(torch.int16))


class NorMuon:
    """Muon with Nesterov momentum, Polar Express, per-row variance normalisation and
    cautious weight decay. Matrices of one shape are updated as one batch."""

    def __init__(self, params, lr, wd, beta2=0.95):
        self.lr, self.wd, self.beta2 = lr, wd, beta2
        self.groups = {}
        for p, mult in params:
            self.groups.setdefault((tuple(p.shape), mult), []).append(p)
        self.state = {}
        for key, ps in self.groups.items():
            shape = (len(ps),) + key[0]
            rows, cols = shape[-2], shape[-1]
            red = -1 if rows >= cols else -2  # rows for tall/square, columns for wide
            vshape = list(shape)
            vshape[red] = 1
            self.state[key] = dict(
                buf=torch.zeros(shape, device=ps[0].device),
                v=torch.zeros(vshape, device=ps[0].device), red=red,
                lo=[torch.zeros_like(p, dtype=torch.int16) if p.dtype == torch.bfloat16 else None
                    for p in ps])

    def params(self):
        return [p for ps in self.groups.values() for p in ps]

    @torch.no_grad()
    def step(self, lr_mult, momentum):
        for key, ps in self.groups.items():
            st, (shape, mult) = self.state[key], key
            g = torch.stack([p.grad.float() for p in ps])
            st["buf"].lerp_(g, 1 - momentum)
            u = polar_express(g.lerp_(st["buf"], momentum))
            st["v"].lerp_(u.square().mean(dim=st["red"], keepdim=True), 1 - self.beta2)
            n0 = u.norm(dim=(-2, -1), keepdim=True)
            u = u * st["v"].clamp_min(1e-10).rsqrt()
            u = u * (n0 / u.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-10))
            lr = self.lr * lr_mult * mult * math.sqrt(max(1.0, shape[-2] / shape[-1]))
            for j, p in enumerate(ps):
                w = fp32_view(p.data, st["lo"][j])
                decay = (u[j] * w > 0).float() * (lr * self.wd)  # cautious: only where it shrinks
                w = w - w * decay - lr * u[j]
                store_fp32(p.data, st["lo"][j], w)


def adam_update(w16, lo, g, m, v, c1, c2, lr, wd_scale, b1: float, b2: float, eps: float):
    """One parameter's Adam step, in place. A function of tensors alone so that
    torch.compile can fuse its dozen elementwise passes over the tensor into one or two."""
    g = g.float()
    m.lerp_(g, 1 - b1)
    v.lerp_(g.square(), 1 - b2)
    u = (m / c1) / ((v / c2).sqrt() + eps)
    w = fp32_view(w16, lo)
    w = w - w * ((u * w > 0).float() * wd_scale) - lr * u  # cautious: only where it shrinks
    store_fp32(w16, lo, w)


class Adam:
    """Bias-corrected Adam, eps 1e-10, cautious decoupled weight decay scaled by lr^2.
    With fused=True the update of each large tensor (the embeddings and the head, most of
    the model's parameters) is compiled: eager, it took about 36 ms of every odd step on
    an H100."""

    FUSE_MIN_NUMEL = 1 << 20  # small tensors stay eager: one compiled graph per shape

    def __init__(self, params, lr, wd, betas=(0.8, 0.95), eps=1e-10, fused=False):
        self.lr, self.wd, self.betas, self.eps = lr, wd, betas, eps
        self.params_mult = params  # list of (param, lr_mult, wd_mult)
        self.state = {}
        self.fused = torch.compile(adam_update, dynamic=False) if fused else None

    def params(self):
        return [p for p, _, _ in self.params_mult]

    @torch.no_grad()
    def step(self, lr_mult):
        b1, b2 = self.betas
        for p, lm, wm in self.params_mult:
            if p.grad is None:
                continue
            st = self.state.get(p)
            if st is None:
                st = self.state[p] = dict(
                    step=0, m=torch.zeros_like(p, dtype=torch.float32),
                    v=torch.zeros_like(p, dtype=torch.float32),
                    lo=torch.zeros_like(p, dtype=torch.int16) if p.dtype == torch.bfloat16 else None)
            st["step"] += 1
            lr = self.lr * lr_mult * lm
            scalars = (1 - b1 ** st["step"], 1 - b2 ** st["step"], lr, lr * lr * self.wd * wm)
            update = adam_update
            if self.fused is not None and p.numel() >= self.FUSE_MIN_NUMEL:
                # step-dependent numbers as 0-dim tensors: a changed float would recompile
                scalars = tuple(torch.tensor(x, dtype=torch.float32, device=p.device) for x in scalars)
                update = self.fused
            update(p.data, st["lo"], p.grad, st["m"], st["v"], *scalars, b1, b2, self.eps)


def build_optimizers(model, cfg):
    muon, adam = [], []
    for block in model.blocks:
        for name, p in block.named_parameters():
            if name in ("qkv_w", "o_w", "fc_w"):
                muon.append((p, 1.0))
            elif name == "proj_w":
                muon.append((p, 2.0))  # MLP output matrices at 2x lr
            else:  # gates
                adam.append((p, 1.0, 1.0))
    adam += [(model.head, 1.0, 150.0), (model.embed, 1.0, 150.0), (model.bigram, 75.0, 5.0)]
    adam += [(t, 75.0, 5.0) for t in model.ve_tables]
    adam += [(model.smear_gate, 1.0, 1.0), (model.skip_gate, 1.0, 1.0)]
    adam += [(p, 5.0, 1.0) for p in (model.resid, model.attn_scalars, model.misc)]
    assert len(muon) + len(adam) == len(list(model.parameters()))
    return (NorMuon(muon, cfg.muon_lr, cfg.muon_wd),
            Adam(adam, cfg.adam_lr, cfg.adam_wd, fused=cfg.compile))


def param_counts(model, cfg):
    n = lambda ps: sum(p.numel() for p in ps)
    blocks = model.blocks
    hidden = n(p for b in blocks for k, p in b.named_parameters() if k.endswith("_w"))
    gates = n(p for b in blocks for k, p in b.named_parameters() if k.endswith("gate"))
    gates += n([model.smear_gate, model.skip_gate])
    groups = [
        ("total", n(model.parameters()), ""),
        ("hidden_matrices", hidden, ""),
        ("token_embed", model.embed.numel(), ""),
        ("lm_head", model.head.numel(), ""),
        ("value_embeds", n(model.ve_tables), f" ({cfg.ve_tables} tables)"),
        ("bigram_embed", model.bigram.numel(), ""),
        ("gates", gates, ""),
        ("scalars", n([model.resid, model.attn_scalars, model.misc]), ""),
    ]
    return [f"params {name}: {count}{extra}" for name, count, extra in groups]


# -----------------------------------------------------------------------------
# Schedules (step = index of the training step being taken, 0-based)

def stage_of(step, cfg):
    sched = cfg.num_iterations - cfg.extension_iterations
    return min(3 * step // sched, 2)  # thirds of the scheduled steps; extension keeps the last


def lr_multiplier(step, cfg):
    sched = cfg.num_iterations - cfg.extension_iterations
    t = min(step / sched, 1.0)
    w = 1.0
    if t > 1 - cfg.cooldown_frac:  # linear cooldown to final_lr_frac
        w = 1 - (t - (1 - cfg.cooldown_frac)) / cfg.cooldown_frac * (1 - cfg.final_lr_frac)
    return cfg.lr_schedule[stage_of(step, cfg)] * w


def muon_momentum(step, cfg):
    m = 0.85 + 0.10 * min(1.0, step / max(1, cfg.momentum_warmup_steps))
    left = cfg.num_iterations - step
    if left < cfg.momentum_cooldown_steps:
        m = 0.85 + (m - 0.85) * left / cfg.momentum_cooldown_steps
    return m


def mtp_weights(step, cfg):
    """[1, .5, .25->0] in the first third, [1, .5->0] in the second, [1] after."""
    if not cfg.mtp:
        return [1.0]
    sched = cfg.num_iterations - cfg.extension_iterations
    stage = stage_of(step, cfg)
    frac = min(1.0, max(0.0, 3 * step / sched - stage))  # progress through this third
    # Always three weights (zeros pad the later thirds): one compiled graph per batch shape
    # instead of one per number of targets. A zero-weight target costs a gather over T
    # positions, nothing next to the logits' T x V.
    if step >= sched or stage == 2:
        return [1.0, 0.0, 0.0]
    return [1.0, 0.5, 0.25 * (1 - frac)] if stage == 0 else [1.0, 0.5 * (1 - frac), 0.0]


def windows_for(long_blocks, cfg, short_blocks=None):
    long = long_blocks * cfg.block_size
    short = (short_blocks * cfg.block_size if short_blocks is not None else long) // 2
    return (short, long)


def attn_scales_for(windows, cfg):
    """0.1, rescaled YaRN-style (0.1 ln s + 1) by how much each window grew from the start."""
    w0 = windows_for(cfg.window_schedule[0], cfg)
    return [0.1 * (0.1 * math.log(max(1.0, w / b)) + 1) for w, b in zip(windows, w0)]


def split_step(cfg):
    """First odd step past 2/3 of the scheduled steps: embedding unties from the head."""
    s = (2 * (cfg.num_iterations - cfg.extension_iterations)) // 3 + 1
    return s if s % 2 == 1 else s + 1


# -----------------------------------------------------------------------------
# Training

def initial_model(cfg, device):
    """The run's initial weights from its seed, on the CPU: the same in every process."""
    torch.manual_seed(cfg.seed)
    model = GPT(cfg)
    if device.type == "cuda":  # weights in bf16 (with mantissa side buffers), scalars fp32
        scalars = {id(model.resid), id(model.attn_scalars), id(model.misc)}
        for p in model.parameters():
            if p.ndim >= 2 and id(p) not in scalars:
                p.data = p.data.bfloat16()
    return model


class Trainer:
    def __init__(self, cfg, device, rank, train_files):
        self.cfg, self.device, self.rank = cfg, device, rank
        self.world = cfg.world_size
        self.model = initial_model(cfg, device).to(device)
        self.initial_state = copy.deepcopy(self.model.state_dict())
        self.backend = cfg.attn
        if cfg.attn == "auto":
            self.backend = "sdpa" if device.type != "cuda" else ("varlen" if varlen_available() else "flex")
        # masks from token ids (validation, and training unless varlen): flex on GPUs
        self.model.attend, self.model.backend = attend_sdpa, "sdpa" if self.backend == "sdpa" else "flex"
        if self.model.backend == "flex":
            from torch.nn.attention.flex_attention import flex_attention
            # uncompiled flex_attention materialises the scores; compile it on its own then
            fa = torch.compile(flex_attention, dynamic=False) if device.type == "cuda" and not cfg.compile \
                else flex_attention
            if self.backend == "varlen":
                from torch.nn.attention.varlen import varlen_attn
                self.model.attend = lambda q, k, v, mask: (
                    attend_varlen(varlen_attn, q, k, v, mask) if isinstance(mask, tuple)
                    else attend_flex(fa, q, k, v, mask))
            else:
                self.model.attend = lambda q, k, v, mask: attend_flex(fa, q, k, v, mask)
        if cfg.compile:
            configure_compile()
        self.forward = torch.compile(self.model, dynamic=False) if cfg.compile else self.model
        self.train_files = train_files
        self.reset()

    def reset(self):
        """Initial weights, fresh optimiser state and data order: what the clock measures."""
        self.model.load_state_dict(self.initial_state)
        for p in self.model.parameters():
            p.grad = None
        self.muon = self.adam = None  # the old state goes before the new is built (peak memory)
        self.muon, self.adam = build_optimizers(self.model, self.cfg)
        self.tied = True
        self.loader = TrainLoader(self.train_files, self.cfg, self.rank)

    def start(self, cfg, train_files):
        """Another run in this process (a warm worker): the weights a fresh process would build
        from cfg.seed, copied into the same (compiled) module, then fresh optimisers and data
        order. cfg may differ from the first run's in its seed only."""
        self.cfg, self.train_files = cfg, train_files
        self.model.load_state_dict(initial_model(cfg, self.device).state_dict())
        self.initial_state = copy.deepcopy(self.model.state_dict())
        self.reset()

    def release(self):
        """After a worker's run: drop its optimiser state, gradients and loader, so that an
        idle worker holds only the weights and the compiled graphs."""
        self.muon = self.adam = self.loader = None
        for p in self.model.parameters():
            p.grad = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def all_reduce(self, params):
        grads = [p.grad for p in params if p.grad is not None]
        if self.world == 1 or not grads:
            return
        flat = torch.cat([g.flatten().float() for g in grads])
        dist.all_reduce(flat)
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].view_as(g))
            i += g.numel()

    def train_step(self, step):
        cfg, model = self.cfg, self.model
        if step == split_step(cfg) and self.tied:  # untie: the embedding takes the head's state
            self.tied = False
            head_state = self.adam.state.get(model.head)
            if head_state is not None:
                self.adam.state[model.embed] = dict(
                    step=head_state["step"], m=head_state["m"].t().contiguous(),
                    v=head_state["v"].t().contiguous(),
                    lo=None if head_state["lo"] is None else head_state["lo"].t().contiguous())
        stage = stage_of(step, cfg)
        slot_len = cfg.batch_schedule[stage] * cfg.seq_len
        windows = windows_for(cfg.window_schedule[stage], cfg)
        scales = torch.tensor(attn_scales_for(windows, cfg), device=self.device)
        varlen = self.backend == "varlen"  # its windows are ints: one graph per batch size anyway
        windows = windows if varlen else torch.tensor(windows, device=self.device)
        weights = torch.tensor(mtp_weights(step, cfg), device=self.device)
        for seq in self.loader.next_batch(slot_len):
            spans = doc_spans(seq[:-1], cfg.bos_id, cfg.seq_len) if varlen else None
            if spans is not None:
                spans = DocSpans(to_device(spans.cu, self.device), spans.max_len)
            seq = to_device(seq, self.device)
            inputs, targets = seq[:-1], seq[1:]
            loss = self.forward(inputs, targets, windows, scales, weights, spans=spans)
            (loss / cfg.slots).backward()
        self.all_reduce(self.muon.params())
        self.muon.step(lr_multiplier(step, cfg), muon_momentum(step, cfg))
        for p in self.muon.params():
            p.grad = None
        if step % 2 == 1:  # Adam parameters step on odd steps with two steps of gradient
            if self.tied and model.embed.grad is not None:
                model.head.grad.add_(model.embed.grad.t().to(model.head.grad.dtype))
                model.embed.grad = None
            self.all_reduce(self.adam.params())
            self.adam.step(lr_multiplier(step, cfg))
            for p in self.adam.params():
                p.grad = None
            if self.tied:
                model.embed.data.copy_(model.head.data.t())

    @torch.no_grad()
    def validate(self, val_tokens, long_blocks, forwards=None):
        """Mean loss over the validation tokens; `forwards` stops after that many of this
        rank's forwards (the warm-up's: they only compile the graph) and returns nan."""
        cfg = self.cfg
        windows = windows_for(long_blocks, cfg, short_blocks=cfg.val_window)
        scales = torch.tensor(attn_scales_for(windows, cfg), device=self.device)
        windows = torch.tensor(windows, device=self.device)
        slot = cfg.val_batch_tokens // cfg.slots
        total = torch.zeros((), device=self.device)
        mine = range(self.rank * cfg.grad_accum_steps, (self.rank + 1) * cfg.grad_accum_steps)
        done = 0
        for start in range(0, cfg.val_tokens, cfg.val_batch_tokens):
            for s in mine:
                if forwards is not None and done == forwards:
                    return float("nan")
                seq = to_device(val_tokens[start + s * slot: start + (s + 1) * slot + 1], self.device)
                total += self.forward(seq[:-1], seq[1:], windows, scales, None, 16384).float()
                done += 1
        if self.world > 1:
            dist.all_reduce(total)
        return total.item() / (cfg.val_tokens // slot)


def to_device(t, device):
    """A host tensor on the device without a host sync: from pinned memory the copy is
    queued; from pageable memory CUDA may first wait for the stream to drain, which would
    stop the host from queueing the next micro-batch while the GPU works."""
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def configure_compile():
    """torch.compile's settings for the trainer's graphs, before the first compile."""
    # one graph per batch size / validation shape; leave room so nothing falls back to eager
    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 64)
    # AOTAutograd's cache passes over any graph holding an autograd.Function (the FP8 head with
    # the loss, the fused MLP: every training graph on a GPU) unless told they are safe. Ours
    # are: dynamo traces their forward and backward into the graph, which is the cache's key.
    # Without it a warm-cache start traces and partitions each joint graph again (22-27 s of
    # a 46-53 s warm-up on an H100, 2026-12-08).
    import torch._functorch.config as functorch_config
    if hasattr(functorch_config, "autograd_cache_allow_custom_autograd_functions"):
        functorch_config.autograd_cache_allow_custom_autograd_functions = True


def compiler_report(top=8):
    """One line: torch.compile's largest cumulative timers (nested: a timer includes the ones
    it calls), then AOTAutograd's and inductor's cache counts (hit, miss, bypass, ...). Private
    torch APIs: where they fail, the line says why instead."""
    try:  # a diagnostic: it must never end a run that has just compiled
        names, secs = torch._dynamo.utils.compile_times(repr="csv", aggregate=True)
        counts = torch._dynamo.utils.counters
        aot, fx = (dict(counts[group]) for group in ("aot_autograd", "inductor"))
    except Exception as e:
        return f"unavailable ({type(e).__name__}: {e})"
    ranked = sorted(zip(names, (float(x) for x in secs)), key=lambda kv: -kv[1])[:top]

    def cache(c, prefix):
        return ",".join(f"{k.removeprefix(prefix)}={v}" for k, v in sorted(c.items())
                        if k.startswith(prefix)) or "-"

    return (" ".join(f"{n}:{s:.1f}s" for n, s in ranked)
            + f" aot_cache:{cache(aot, 'autograd_cache_')} fx_cache:{cache(fx, 'fxgraph_cache_')}")


def log0(rank, s):
    if rank == 0:
        print(s, flush=True)


def prepare(argv, world):
    """The run's configuration and data, checked before anything expensive starts (every rank
    fails alike)."""
    cfg = resolve_config(parse_args(argv), world)
    train_files = find_shards(cfg.data_path, "train")
    for f in train_files:
        check_shard(f)
    return cfg, train_files, load_val(cfg)


def setup_device(cfg, local_rank, world):
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA device is available; use --device cpu")
    if cfg.attn == "varlen" and not (cfg.device == "cuda" and varlen_available()):
        raise UsageError("--attn varlen needs a CUDA GPU of compute capability 8.0+ and a torch whose "
                         "torch.nn.attention.varlen.varlen_attn takes window_size (2.10+); "
                         "use --attn flex or sdpa")
    if cfg.device == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(1)  # small CPU models gain nothing from more; a busy box loses a lot
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def header(cfg, device, rank):
    log0(rank, "config: " + json.dumps(cfg.to_dict(), sort_keys=True))
    log0(rank, f"Running Python {platform.python_version()}")
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    log0(rank, f"Running PyTorch {torch.__version__} compiled for {build}")
    if device.type == "cuda":
        try:
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            smi = "nvidia-smi unavailable"
        log0(rank, smi.rstrip())


def synchronizer(device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def warm_up(trainer, cfg, val_tokens, rank):
    """Compile and warm up every shape the run will see (each third's batch and window, the
    extension, validation), then reset weights, optimisers and data order."""
    N = cfg.num_iterations
    sync = synchronizer(trainer.device)
    warmup_start = time.time()
    parts = []  # (what, ms): where a warm-cache start-up still spends its time

    def part(what, fn, *args, **kw):
        t = time.time()
        fn(*args, **kw)
        sync()
        parts.append((what, 1000 * (time.time() - t)))

    sched = N - cfg.extension_iterations
    for step in sorted({0, 1, sched // 3, sched // 3 + 1, 2 * sched // 3, 2 * sched // 3 + 1,
                        split_step(cfg), sched, N - 1}):
        if step < N:
            part(f"step{step}", trainer.train_step, step)
    # one forward compiles a validation graph
    part(f"val{cfg.val_window}", trainer.validate, val_tokens, cfg.val_window, forwards=1)
    part(f"val{cfg.final_long_window}", trainer.validate, val_tokens, cfg.final_long_window, forwards=1)
    part("reset", trainer.reset)
    # Not step lines (parsers skip them): how much of a run's wall time is compilation,
    # the warm-up's parts and the compiler's own largest timers (cumulative seconds).
    log0(rank, "warmup parts: " + " ".join(f"{w}:{ms:.0f}ms" for w, ms in parts))
    if cfg.compile:
        log0(rank, "warmup compiler: " + compiler_report())
    log0(rank, f"warmup: {1000 * (time.time() - warmup_start):.0f}ms compile and untimed warm-up, "
               f"{1000 * (time.time() - PROCESS_START):.0f}ms since process start")


def train(trainer, cfg, val_tokens, rank):
    """The timed run: validation at step 0, every val_every steps and at the end."""
    device, N = trainer.device, cfg.num_iterations
    sync = synchronizer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # The clock runs from one validation to the next with no host sync in between (as the
    # record's loop): the CPU queues step k+1 while the GPU still runs step k. A step line's
    # time is therefore the host's view (it may lead the GPU by the queued work); the
    # validation lines, taken after a sync, are exact, and they are what the harness reads.
    train_ms = 0.0
    losses = []
    sync()
    t0 = time.perf_counter()
    for step in range(N + 1):
        last = step == N
        if last or step == 0 or (cfg.val_every > 0 and step % cfg.val_every == 0):
            sync()  # the clock stops during validation
            train_ms += 1000 * (time.perf_counter() - t0)
            loss = trainer.validate(val_tokens, cfg.final_long_window if last else cfg.val_window)
            losses.append(loss)
            log0(rank, f"step:{step}/{N} val_loss:{loss:.4f} train_time:{train_ms:.0f}ms "
                       f"step_avg:{train_ms / max(step, 1):.2f}ms")
            sync()
            t0 = time.perf_counter()
        if last:
            break
        trainer.train_step(step)
        approx_ms = train_ms + 1000 * (time.perf_counter() - t0)
        log0(rank, f"step:{step + 1}/{N} train_time:{approx_ms:.0f}ms step_avg:{approx_ms / (step + 1):.2f}ms")

    if device.type == "cuda":
        alloc = torch.cuda.max_memory_allocated() // 2**20
        reserved = torch.cuda.max_memory_reserved() // 2**20
    else:
        alloc = reserved = 0
    log0(rank, f"peak memory allocated: {alloc} MiB reserved: {reserved} MiB")
    if cfg.digest:
        log0(rank, f"digest: weights sha256:{weights_sha256(trainer.model)} val_losses:{losses!r}")


def weights_sha256(model):
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_once(argv, rank, world, local_rank):
    """One run in a fresh process."""
    cfg, train_files, val_tokens = prepare(argv, world)
    device = setup_device(cfg, local_rank, world)
    header(cfg, device, rank)
    trainer = Trainer(cfg, device, rank, train_files)
    for line in param_counts(trainer.model, cfg):
        log0(rank, line)
    log0(rank, "=" * 100)
    if cfg.warmup:
        warm_up(trainer, cfg, val_tokens, rank)
    train(trainer, cfg, val_tokens, rank)
    if world > 1:
        dist.destroy_process_group()


# -----------------------------------------------------------------------------
# Warm worker (docs/workers.md): with HARNESS_WORKER_DIR set, one process (group) serves the
# runs the harness asks for, one after another, paying start-up, compile and warm-up once.
# The harness takes this file for a worker only when it contains the protocol's name:
WORKER_PROTOCOL = "harness-worker: v1"
WORKER_DIR_ENV = "HARNESS_WORKER_DIR"
WORKER_POLL_S = 0.01


class Warm(NamedTuple):
    """What a worker keeps from its first run: the configuration it compiled for (seed aside)."""
    inputs: Config
    device: torch.device
    trainer: Trainer


def serve(folder, argv, rank, world, local_rank):
    """Run n starts when run-<n>.json appears in the folder and ends with done-<n>.json (rank
    0 writes it once every rank is done); a file named stop ends the worker. A failed run
    ends the worker too (its state is not to be trusted): the harness starts another."""
    home = os.getcwd()
    warm = None
    for n in itertools.count(1):
        request = next_request(folder, n)
        if request is None:
            break
        code = 0
        with run_output(request, home):
            try:
                warm = worker_run(argv, rank, world, local_rank, warm, n)
            except UsageError as e:
                if rank == 0:
                    print(f"error: {e}", file=sys.stderr, flush=True)
                code = 2
            except Exception:
                traceback.print_exc()  # into the run's log: the record quotes its last line
                code = 1
        if rank == 0:
            write_json(os.path.join(folder, f"done-{n}.json"), {"run": n, "exit_code": code})
        if code:
            sys.exit(code)
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def next_request(folder, n):
    """Run n's request (the harness writes it atomically), or None once told to stop."""
    path, stop = os.path.join(folder, f"run-{n}.json"), os.path.join(folder, "stop")
    while True:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if os.path.exists(stop):
            return None
        time.sleep(WORKER_POLL_S)


@contextlib.contextmanager
def run_output(request, home):
    """The run's environment (its SEED, ...), working directory and log: file descriptors 1
    and 2 go to the run's log, so everything this process prints lands there, as a fresh
    process's output does."""
    os.environ.update(request["env"])
    os.chdir(request["workdir"])
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for target, fd in zip((1, 2), saved):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(home)  # the run's folder is tidied once it is done


def worker_run(argv, rank, world, local_rank, warm, n):
    """One run of a worker: its log as a fresh process writes it; the first run builds,
    compiles and warms up, the later ones start from their own seed's weights."""
    requested = time.time()
    cfg, train_files, val_tokens = prepare(argv, world)
    if warm is None:
        device = setup_device(cfg, local_rank, world)
    elif replace(cfg.inputs, seed=0) != replace(warm.inputs, seed=0):
        raise UsageError("this run's configuration differs from the worker's in more than its seed; "
                         "the harness starts one worker per arm")
    else:
        device = warm.device
    header(cfg, device, rank)
    if warm is None:
        trainer = Trainer(cfg, device, rank, train_files)
    else:
        trainer = warm.trainer
        trainer.start(cfg, train_files)
    for line in param_counts(trainer.model, cfg):
        log0(rank, line)
    log0(rank, "=" * 100)
    if warm is None and cfg.warmup:
        warm_up(trainer, cfg, val_tokens, rank)
    elif warm is not None:
        log0(rank, f"warmup: 0ms compile and untimed warm-up (warm worker: run {n} of this process, "
                   f"compiled in its first), {1000 * (time.time() - requested):.0f}ms since the run request")
    train(trainer, cfg, val_tokens, rank)
    trainer.release()
    if world > 1:
        dist.barrier()  # done-<n> means every rank has finished
    return Warm(cfg.inputs if warm is None else warm.inputs, device, trainer)


def write_json(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main(argv):
    # FlexAttention without compile (CPU checks) works, only slower; say nothing about it.
    warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    warnings.filterwarnings("ignore", message="_compile flag on create_block_mask")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    folder = os.environ.get(WORKER_DIR_ENV)
    if folder:
        serve(folder, argv, rank, world, local_rank)
    else:
        run_once(argv, rank, world, local_rank)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UsageError as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
