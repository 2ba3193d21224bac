"""CPU tests of the project's trainer (train/train_gpt.py) and data tools (train/data.py).

Everything runs the tiny preset on synthetic shards made in a temporary folder.
"""

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

# The trainer needs torch; CI installs it (.ci/run), so there these tests always run.
# A bare interpreter without the project installed only collects the other tests.
torch = pytest.importorskip("torch", reason="install the project first: pip install torch==2.13.0 -e '.[test]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train", "train_gpt.py")
sys.path.insert(0, ROOT)

from harness.logs.logparse import parse_stream  # noqa: E402
from train import data as tdata  # noqa: E402


def load_trainer_module():
    spec = importlib.util.spec_from_file_location("train_gpt_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tg = load_trainer_module()

VAL_RE = re.compile(r"^step:(\d+)/(\d+) val_loss:([0-9.]+) train_time:(\d+)ms step_avg:([0-9.]+)ms$")
STEP_RE = re.compile(r"^step:(\d+)/(\d+) train_time:(\d+)ms step_avg:([0-9.]+)ms$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    meta = tdata.make_synthetic(out, train_tokens=200_000, train_shards=2, val_tokens=8192)
    return out, meta


def run(args, data_path, nproc=1, env=None, timeout=300):
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.pop("SEED", None)
    e.update(env or {})
    if nproc == 1:
        cmd = [sys.executable, SCRIPT]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", SCRIPT]
    cmd += ["--preset", "tiny", "--data-path", data_path] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT)


def val_losses(stdout):
    return [(int(m.group(1)), float(m.group(3))) for m in map(VAL_RE.match, stdout.splitlines()) if m]


# ---------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("pattern,layers,tables,expect", [
    (".12...012", 11, 3, [None, 1, 2, None, None, None, None, None, 0, 1, 2]),
    (".01...345", 11, 5, [None, 0, 1, None, None, None, None, None, 2, 3, 4]),
    (".12...012", 8, 3, [None, 1, 2, None, None, 0, 1, 2]),
    ("..0", 3, 1, [None, None, 0]),
    ("ab...ba", 4, 2, [0, 1, 1, 0]),
    ("...", 5, 0, [None] * 5),
])
def test_layout_parsing(pattern, layers, tables, expect):
    per_layer, n = tg.parse_ve_layout(pattern, layers)
    assert n == tables and per_layer == expect


@pytest.mark.parametrize("pattern,layers,needle", [
    (".0123456...0123", 11, "needs at least 12 layers"),
    (".012", 11, "no '...'"),
])
def test_layout_errors_name_pattern_and_layers(pattern, layers, needle):
    with pytest.raises(tg.UsageError) as e:
        tg.parse_ve_layout(pattern, layers)
    msg = str(e.value)
    assert needle in msg and repr(pattern) in msg and str(layers) in msg and "\n" not in msg


def test_param_difference_h0_h1_is_two_tables():
    counts = {}
    for layout in (".12...012", ".01...345"):
        cfg = tg.resolve_config(tg.parse_args(["--preset", "tiny", "--ve-layout", layout]), 1)
        model = tg.GPT(cfg)
        counts[layout] = (sum(p.numel() for p in model.parameters()), cfg.ve_tables)
    (n0, t0), (n1, t1) = counts[".12...012"], counts[".01...345"]
    cfg = tg.resolve_config(tg.parse_args(["--preset", "tiny"]), 1)
    assert (t0, t1) == (3, 5)
    assert n1 - n0 == 2 * cfg.vocab_size * cfg.model_dim


def test_full_scale_param_counts_without_building():
    # the speedrun model's value-embedding tables: 3 vs 5 of 50304 x 768
    cfg = tg.resolve_config(tg.parse_args(["--preset", "speedrun"]), 8)
    assert cfg.ve_tables == 3 and cfg.grad_accum_steps == 1
    assert cfg.long_layers == (3, 10) and cfg.attn_skip_layers == (6,)
    assert cfg.unet_layers == (3, 6) and cfg.backout_layer == 7 and cfg.bos_id == 50256
    cfg1 = tg.resolve_config(tg.parse_args(["--preset", "speedrun", "--ve-layout", ".01...345"]), 1)
    assert cfg1.ve_tables == 5 and cfg1.grad_accum_steps == 8


def test_flags_override_presets_and_env_defaults(monkeypatch):
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("DATA_PATH", "/some/where")
    cfg = tg.parse_args(["--preset", "tiny", "--num-iterations", "5", "--no-mtp"])
    assert cfg.seed == 7 and cfg.data_path == "/some/where"
    assert cfg.num_iterations == 5 and cfg.mtp is False and cfg.model_dim == 64
    assert tg.parse_args(["--preset", "tiny", "--seed", "3"]).seed == 3


def test_the_configuration_is_a_dataclass_whose_fields_make_the_flags():
    # issue 18: the flags were written twice (a FIELDS table and add_argument calls) and the
    # derived values were written into the same dict as the inputs
    import dataclasses
    parser = tg.build_parser()
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    inputs = {f.name: f for f in dataclasses.fields(tg.Config)}
    assert set(flags) == set(inputs)
    for name, f in inputs.items():
        if f.metadata["help"] is not None:
            assert flags[name].help.startswith(f.metadata["help"]), name
    derived = {f.name for f in dataclasses.fields(tg.Derived)}
    assert {"ve_per_layer", "ve_tables", "bos_id", "world_size", "grad_accum_steps"} <= derived - set(flags)
    run = tg.resolve_config(tg.parse_args(["--preset", "tiny"]), 2)
    assert run.inputs.long_layers is None and run.long_layers == run.derived.long_layers == (2, 7)
    assert run.inputs.device == "auto" and run.device in ("cpu", "cuda")
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.inputs.num_iterations = 3
    with pytest.raises(AttributeError):
        run.no_such_value
    # the record's values are the defaults; a preset changes some of them
    assert tg.Config().num_iterations == 1600 and tg.parse_args(["--preset", "tiny"]).num_iterations == 30


# ---------------------------------------------------------------------------- schedules

def test_schedules_follow_the_recipe():
    cfg = tg.resolve_config(tg.parse_args(["--preset", "speedrun"]), 8)
    assert [tg.stage_of(s, cfg) for s in (0, 519, 520, 1039, 1040, 1559, 1599)] == [0, 0, 1, 1, 2, 2, 2]
    assert tg.lr_multiplier(0, cfg) == 1.0 and tg.lr_multiplier(600, cfg) == 1.52
    assert tg.lr_multiplier(1560, cfg) == pytest.approx(1.73 * 0.1)
    assert tg.muon_momentum(0, cfg) == pytest.approx(0.85) and tg.muon_momentum(300, cfg) == pytest.approx(0.95)
    assert tg.muon_momentum(1599, cfg) < 0.86
    assert tg.mtp_weights(0, cfg) == [1.0, 0.5, 0.25] and tg.mtp_weights(1200, cfg) == [1.0, 0.0, 0.0]
    # the same length in every third (one compiled graph), the third target off after the first
    w = tg.mtp_weights(600, cfg)
    assert len(w) == 3 and w[2] == 0.0 and 0 < w[1] <= 0.5
    assert tg.split_step(cfg) % 2 == 1 and tg.split_step(cfg) > 2 * 1560 / 3
    assert tg.windows_for(3, cfg) == (192, 384)


def test_polar_express_orthogonalises():
    torch.manual_seed(0)
    for shape in [(64, 64), (96, 32), (32, 96)]:
        X = tg.polar_express(torch.randn(*shape))
        s = torch.linalg.svdvals(X)  # a random square matrix keeps one tiny singular value
        assert 0.5 < s.quantile(0.05) and s.max() < 1.3


def test_bf16_mantissa_side_buffer_is_exact():
    w = torch.randn(1000) * 3
    p = torch.nn.Parameter(torch.zeros(1000, dtype=torch.bfloat16))
    lo = torch.zeros(1000, dtype=torch.int16)
    tg.store_fp32(p.data, lo, w)
    assert torch.equal(tg.fp32_view(p.data, lo), w)
    assert (p.data.float() - w).abs().max() <= w.abs().max() * 2 ** -7


def test_fused_adam_is_the_eager_adam():
    """The compiled per-tensor update (on by default with compile, on GPUs) gives the eager
    update's weights (bf16 + mantissa buffer) and moments, over steps and lr changes."""
    torch.manual_seed(0)
    shape = (1100, 1000)  # above FUSE_MIN_NUMEL, so the fused path takes it
    assert shape[0] * shape[1] >= tg.Adam.FUSE_MIN_NUMEL
    init = torch.randn(shape).bfloat16()
    # One sign per element across steps: where bf16 gradients cancel in the momentum
    # (m ~ 0), an ulp decides the cautious decay's sign test, in either implementation.
    sign = torch.randn(shape).sign()
    grads = [(sign * torch.rand(shape) * (i + 1)).bfloat16() for i in range(3)]
    runs = []
    for fused in (False, True):
        p = torch.nn.Parameter(init.clone())
        opt = tg.Adam([(p, 75.0, 5.0)], lr=0.008, wd=0.005, fused=fused)
        assert (opt.fused is not None) == fused
        for i, g in enumerate(grads):
            p.grad = g.clone()
            opt.step(lr_mult=1.0 - 0.3 * i)
        st = opt.state[p]
        runs.append((tg.fp32_view(p.data, st["lo"]), st["m"], st["v"]))
    # Fused arithmetic rounds differently (an ulp here and there), nothing more.
    for eager, fused in zip(*runs):
        assert torch.allclose(eager, fused, rtol=1e-5, atol=1e-6)
    assert not torch.equal(runs[0][0], init.float())  # it did step


def test_compiler_report_ranks_torch_compiles_timers_and_counts_its_caches():
    """The warm-up's `warmup compiler:` line: torch.compile's largest timers, largest first,
    then the AOTAutograd and FX graph cache counts."""
    f = torch.compile(lambda x: x * 2 + 1, dynamic=False)
    f(torch.randn(3))
    items = tg.compiler_report(top=3).split()
    timers, caches = items[:3], items[3:]
    assert all(re.fullmatch(r"[\w.]+:\d+\.\ds", i) for i in timers)
    secs = [float(i.rsplit(":", 1)[1][:-1]) for i in timers]
    assert secs == sorted(secs, reverse=True) and secs[0] > 0
    assert [c.split(":")[0] for c in caches] == ["aot_cache", "fx_cache"]
    assert re.fullmatch(r"fx_cache:(\w+=\d+,?)+", caches[1])  # the compile above was counted


# A model with an autograd.Function, as the trainer's GPU graphs have (FP8 head + loss, fused
# MLP), compiled in a fresh process; prints AOTAutograd's cache counts.
AOT_CACHE_CHILD = """
import json, sys, torch
from train import train_gpt as tg
if sys.argv[1] == "configured":
    tg.configure_compile()

class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x

w = torch.nn.Parameter(torch.ones(8))
f = torch.compile(lambda x: Square.apply(x * w).sum(), dynamic=False)
f(torch.randn(8)).backward()
c = torch._dynamo.utils.counters["aot_autograd"]
print(json.dumps({k: c[k] for k in ("autograd_cache_hit", "autograd_cache_miss", "autograd_cache_bypass")}))
"""


def test_warm_cache_skips_autograd_tracing_with_autograd_functions(tmp_path):
    """Finding (2026-12-08, H100): a warm-cache trainer start still spent 22-27 s tracing and
    partitioning joint graphs: AOTAutograd's cache passed over every graph holding one of
    the trainer's autograd.Functions. configure_compile() lets it keep them."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
               TRITON_CACHE_DIR=str(tmp_path / "triton"), PYTHONPATH=ROOT)

    def counts(mode):
        r = subprocess.run([sys.executable, "-c", AOT_CACHE_CHILD, mode], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    assert counts("plain")["autograd_cache_bypass"] >= 1           # the finding, torch's default
    assert counts("configured")["autograd_cache_miss"] >= 1        # cold: compiled and stored
    warm = counts("configured")
    assert warm["autograd_cache_hit"] >= 1 and warm["autograd_cache_bypass"] == 0


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_and_explicit_masks_agree():
    """FlexAttention block masks (GPU path) and the boolean mask (CPU path) are the same rule."""
    cfg = tg.resolve_config(tg.parse_args(["--preset", "tiny"]), 1)
    torch.manual_seed(0)
    model = tg.GPT(cfg)
    with torch.no_grad():  # wake up the zero-initialised parts so attention matters
        for p in model.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn_like(p) * 0.05)
    bos = cfg.bos_id
    idx = torch.randint(0, bos, (256,))
    idx[[0, 37, 90, 91, 200]] = bos
    from torch.nn.attention.flex_attention import flex_attention
    scales = torch.tensor([0.12, 0.12])
    losses = []
    for backend in ("sdpa", "flex"):
        model.backend = backend
        model.attend = tg.attend_sdpa if backend == "sdpa" else (
            lambda q, k, v, m: tg.attend_flex(flex_attention, q, k, v, m))
        with torch.no_grad():
            losses.append(model(idx[:-1], idx[1:], torch.tensor([24, 48]), scales, None, 64).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def reference_varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, *, scale, window_size):
    """torch.nn.attention.varlen.varlen_attn as its documentation defines it, one sequence at
    a time: sequence i is rows cu[i]:cu[i+1]; window (left, 0) lets query t see keys t-left..t."""
    assert torch.equal(cu_q, cu_k) and max_q == max_k and cu_q.dtype == torch.int32
    left, right = window_size
    out = torch.zeros_like(q)
    cu = cu_q.tolist()
    for a, b in zip(cu[:-1], cu[1:]):
        assert 0 <= b - a <= max_q
        if b == a:
            continue
        i = torch.arange(b - a)[:, None]
        j = torch.arange(b - a)[None, :]
        seen = (j <= i + right) & (j >= i - left)
        scores = torch.einsum("thd,shd->hts", q[a:b], k[a:b]).float() * scale
        p = torch.softmax(scores.masked_fill(~seen, float("-inf")), dim=-1)
        out[a:b] = torch.einsum("hts,shd->thd", p.type_as(v), v[a:b])
    return out


@pytest.mark.parametrize("grad", [False, True])
def test_varlen_spans_and_window_are_the_mask_rule(grad):
    """The varlen path (document spans from BOS tokens, our window as flash attention's
    (left, 0)) gives the boolean-mask model's loss and gradients, with torch's varlen_attn
    replaced by its documented semantics (the GPU check is bench/gpu_levers.py)."""
    cfg = tg.resolve_config(tg.parse_args(["--preset", "tiny"]), 1)
    torch.manual_seed(0)
    model = tg.GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn_like(p) * 0.05)
    bos = cfg.bos_id
    idx = torch.randint(0, bos, (257,))
    idx[[0, 37, 90, 91, 200, 255]] = bos
    scales, weights = torch.tensor([0.12, 0.12]), torch.tensor([1.0, 0.5, 0.25])
    results = []
    for varlen in (False, True):
        model.zero_grad(set_to_none=True)
        model.backend = "sdpa"
        model.attend = (lambda q, k, v, m: tg.attend_varlen(reference_varlen_attn, q, k, v, m)) \
            if varlen else tg.attend_sdpa
        spans = tg.doc_spans(idx[:-1], bos, 256) if varlen else None
        windows = (24, 48) if varlen else torch.tensor([24, 48])
        with torch.set_grad_enabled(grad):
            loss = model(idx[:-1], idx[1:], windows, scales, weights if grad else None, 64, spans=spans)
        if grad:
            loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (a, ga), (b, gb) = results
    assert a == pytest.approx(b, rel=1e-5)
    assert len(ga) == len(gb)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-6)


def test_doc_spans_pad_to_a_size_fixed_by_the_length():
    bos = 9
    idx = torch.tensor([9, 1, 2, 9, 3, 4, 5, 9, 6, 7])
    spans = tg.doc_spans(idx, bos, 2048)
    assert spans.cu.dtype == torch.int32 and spans.cu[:4].tolist() == [0, 3, 7, 10]
    assert (spans.cu[4:] == 10).all() and spans.max_len == 2048
    # the same size for any number of documents up to T / 256; no BOS at 0: one starts there
    other = tg.doc_spans(torch.tensor([1] * 9 + [9]), bos, 2048)
    assert other.cu.numel() == spans.cu.numel() and other.cu[:3].tolist() == [0, 9, 10]
    # more documents than that: the size doubles, nothing is dropped
    many = torch.tensor([bos, 1] * 2048)
    s = tg.doc_spans(many, bos, 2)
    assert s.cu.numel() >= 2049 and s.cu[:2048].tolist() == list(range(0, 4096, 2))
    with pytest.raises(AssertionError):
        tg.doc_spans(torch.tensor([bos] + [1] * 9), bos, 4)  # a document longer than max_len


def test_document_mask_never_crosses_documents():
    idx = torch.tensor([9, 1, 2, 9, 3, 4, 5, 9, 6])
    (mask,) = tg.make_masks(idx, 9, (3,), "sdpa", 16)
    docs = tg.doc_ids(idx, 9)
    q, k = torch.nonzero(mask, as_tuple=True)
    assert (docs[q] == docs[k]).all() and (q >= k).all() and (q - k < 3).all()
    assert mask[2, 1] and not mask[3, 2] and not mask[6, 3]


# ---------------------------------------------------------------------------- data tools

def test_synthetic_shards_and_meta(synth):
    out, meta = synth
    files = sorted(os.listdir(out))
    assert files == ["synthetic_meta.json", "synthetic_train_000000.bin", "synthetic_train_000001.bin",
                     "synthetic_val_000000.bin"]
    header = np.fromfile(os.path.join(out, "synthetic_val_000000.bin"), dtype=np.int32, count=256)
    assert header[0] == 20240520 and header[1] == 1 and header[2] == 8192
    val = tdata.read_shard(os.path.join(out, "synthetic_val_000000.bin"))
    assert val[0] == 255 and val.max() <= 255 and (val == 255).sum() > 20
    assert 0.3 < meta["entropy_rate_nats"] < meta["uniform_loss"] - 2
    assert abs(meta["val_oracle_loss"] - meta["entropy_rate_nats"]) < 0.15
    assert json.load(open(os.path.join(out, "synthetic_meta.json")))["bos_id"] == 255


def test_synthetic_is_seeded(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    tdata.make_synthetic(a, train_tokens=5000, train_shards=1, val_tokens=1000)
    tdata.make_synthetic(b, train_tokens=5000, train_shards=1, val_tokens=1000)
    tdata.make_synthetic(c, train_tokens=9000, train_shards=1, val_tokens=1000, seed=5)
    rd = lambda d, f: open(os.path.join(d, f), "rb").read()
    assert rd(a, "synthetic_train_000000.bin") == rd(b, "synthetic_train_000000.bin")
    assert rd(a, "synthetic_val_000000.bin") != rd(c, "synthetic_val_000000.bin")


def test_data_cli_synthetic_and_inspect(tmp_path):
    out = str(tmp_path / "s")
    r = subprocess.run([sys.executable, "-m", "train.data", "synthetic", "--out", out, "--train-tokens", "4000",
                        "--val-tokens", "2000", "--vocab-size", "128"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "entropy rate" in r.stdout
    r = subprocess.run([sys.executable, "-m", "train.data", "inspect", os.path.join(out, "synthetic_val_000000.bin")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "tokens=2000" in r.stdout and "bos_id=127" in r.stdout
    assert int(re.search(r"documents=(\d+)", r.stdout).group(1)) > 5
    r = subprocess.run([sys.executable, "-m", "train.data", "inspect", os.path.join(out, "missing.bin")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_fineweb_download_checks_headers_and_sizes(tmp_path):
    out = str(tmp_path / "fw")
    calls = []

    def fake_download(name, where):  # what hf_hub_download would leave behind
        calls.append(name)
        path = os.path.join(where, name)
        tdata.write_shard(path, np.arange(100) % 50257)
        if name == "fineweb_train_000002.bin" and calls.count(name) == 1:
            with open(path, "r+b") as f:  # first try arrives truncated
                f.truncate(500)
        return path

    with pytest.raises(tdata.DataError, match="fineweb_train_000002.bin"):
        tdata.download_fineweb(out, num_train=2, download=fake_download, log=lambda s: None)
    assert calls == ["fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    # resumed: complete files are kept, the bad one is fetched again
    tdata.download_fineweb(out, num_train=2, download=fake_download, log=lambda s: None)
    assert calls[3:] == ["fineweb_train_000002.bin"]
    assert tdata.read_header(os.path.join(out, "fineweb_train_000002.bin")) == 100
    with open(os.path.join(out, "fineweb_val_000000.bin"), "r+b") as f:
        f.write(np.int32(123).tobytes())  # bad magic
    with pytest.raises(tdata.DataError, match="bad magic"):
        tdata.read_header(os.path.join(out, "fineweb_val_000000.bin"))


# ---------------------------------------------------------------------------- runs

def test_tiny_run_log_format_and_learning(synth):
    out, meta = synth
    r = run(["--num-iterations", "40", "--val-every", "20"], out)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    sep = lines.index("=" * 100)
    header = lines[:sep]
    assert header[0].startswith("config: {") and json.loads(header[0][len("config: "):])["ve_tables"] == 3
    assert any(re.match(r"^Running Python 3\.\d+\.\d+$", l) for l in header)
    assert any(re.match(r"^Running PyTorch 2\.\S+ compiled for (CPU|CUDA \S+)$", l) for l in header)
    assert "params value_embeds: 49152 (3 tables)" in header
    body = lines[sep + 1:]
    assert all(VAL_RE.match(l) or STEP_RE.match(l) for l in body[:-1]), body
    assert re.match(r"^peak memory allocated: \d+ MiB reserved: \d+ MiB$", body[-1])
    assert [int(STEP_RE.match(l).group(1)) for l in body if STEP_RE.match(l)] == list(range(1, 41))
    assert [s for s, _ in val_losses(r.stdout)] == [0, 20, 40]
    assert STEP_RE.match(body[-3]) and VAL_RE.match(body[-2])  # final: timing line, then val
    assert body[-3].startswith("step:40/40 ") and body[-2].startswith("step:40/40 val_loss:")
    losses = [l for _, l in val_losses(r.stdout)]
    assert losses[0] == pytest.approx(meta["uniform_loss"], abs=0.05)
    # well below the start, and a good part of the way down to the source's entropy
    assert losses[-1] < losses[0] - 0.4 * (losses[0] - meta["val_oracle_loss"])
    assert r.stderr.strip() == ""


def test_same_seed_same_losses_different_seed_different(synth):
    out, _ = synth
    a = run(["--num-iterations", "4", "--val-every", "2"], out, env={"SEED": "11"})
    b = run(["--num-iterations", "4", "--val-every", "2", "--seed", "11"], out)
    c = run(["--num-iterations", "4", "--val-every", "2", "--seed", "12"], out)
    la, lb, lc = (val_losses(x.stdout) for x in (a, b, c))
    assert la == lb and len(la) == 3
    assert la[1:] != lc[1:] and la[0] != lc[0]  # different init and data order
    assert json.loads(a.stdout.splitlines()[0][8:])["seed"] == 11


def test_one_and_two_processes_agree(synth):
    out, _ = synth
    args = ["--num-iterations", "6", "--val-every", "3"]
    one = val_losses(run(args, out).stdout)
    r2 = run(args, out, nproc=2)
    assert r2.returncode == 0, r2.stderr
    two = val_losses(r2.stdout)
    assert [s for s, _ in one] == [s for s, _ in two] == [0, 3, 6]
    for (_, x), (_, y) in zip(one, two):
        assert x == pytest.approx(y, abs=2e-4)
    assert r2.stdout.count("=" * 100) == 1  # only rank 0 prints


def test_warmup_then_reset_changes_nothing(synth):
    out, _ = synth
    args = ["--num-iterations", "5", "--val-every", "3"]
    plain_out = run(args + ["--no-warmup"], out).stdout
    warm_out = run(args + ["--warmup"], out).stdout
    plain, warm = val_losses(plain_out), val_losses(warm_out)
    assert plain == warm and [s for s, _ in plain] == [0, 3, 5]
    # The warm-up reports its cost on a line the log parsers skip.
    assert re.search(r"^warmup: \d+ms compile and untimed warm-up, \d+ms since process start$", warm_out, re.M)
    assert "warmup:" not in plain_out
    # ... and where it went: each warm-up step from step 0 on, both validation graphs, the reset
    parts = re.search(r"^warmup parts: (.*)$", warm_out, re.M).group(1).split()
    assert all(re.fullmatch(r"\w+:\d+ms", p) for p in parts)
    names = [p.split(":")[0] for p in parts]
    steps = [n for n in names if re.fullmatch(r"step\d+", n)]
    assert steps[0] == "step0" and len(steps) >= 3 and names[:len(steps)] == steps
    assert [n[:3] for n in names[len(steps):]] == ["val", "val", "res"]
    assert parse_stream(io.BytesIO(warm_out.encode())).val_loss == warm[-1][1]


@pytest.mark.parametrize("args,needle", [
    (["--bogus-flag", "1"], "unrecognized arguments: --bogus-flag"),
    (["--ve-layout", ".0123456789...0123"], "'.0123456789...0123' needs at least 15 layers"),
    (["--ve-layout", ".01"], "no '...'"),
    (["--num-iterations", "many"], "--num-iterations"),
    (["--preset", "huge"], "--preset"),
    (["--vocab-size", "128"], "vocab size 128"),
    (["--val-tokens", "65536", "--val-batch-tokens", "1024"], "--val-tokens"),
    (["--attn", "varlen", "--device", "cpu"], "--attn varlen needs a CUDA GPU"),
])
def test_bad_flags_and_patterns_are_usage_errors(synth, args, needle, monkeypatch):
    # in process: every bad value ends in UsageError before anything is built (the script's
    # entry point turns it into one line and exit 2; checked once below, as a process)
    out, _ = synth
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SEED"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(tg.UsageError) as e:
        tg.main(["--preset", "tiny", "--data-path", out] + list(args))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_bad_flag_is_one_line_and_exit_2_from_the_script(synth):
    out, _ = synth
    r = run(["--ve-layout", ".01"], out)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no '...'" in r.stderr and "Traceback" not in r.stderr


def test_bad_or_missing_data_is_a_one_line_error(synth, tmp_path, monkeypatch):
    out, _ = synth
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    r = run([], str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no shards matching" in r.stderr and "python -m train.data synthetic" in r.stderr
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    with open(bad / "synthetic_train_000001.bin", "r+b") as f:
        f.truncate(3000)
    with pytest.raises(tg.UsageError) as e:  # in process from here: the script's exit 2 is checked above
        tg.main(["--preset", "tiny", "--data-path", str(bad)])
    assert "synthetic_train_000001.bin" in str(e.value) and "truncated" in str(e.value)
    (bad / "synthetic_val_000000.bin").write_bytes(b"not a shard")
    shutil.copy(os.path.join(out, "synthetic_train_000001.bin"), bad / "synthetic_train_000001.bin")
    with pytest.raises(tg.UsageError) as e:
        tg.main(["--preset", "tiny", "--data-path", str(bad)])
    assert "synthetic_val_000000.bin" in str(e.value) and "magic" in str(e.value) and "\n" not in str(e.value)


def test_train_loader_is_bos_aligned_and_rank_independent(synth):
    out, _ = synth
    files = tg.find_shards(out, "train")
    cfg = tg.resolve_config(tg.parse_args(["--preset", "tiny", "--slots", "4"]), 1)
    whole = tg.TrainLoader(files, cfg, 0).next_batch(128)
    cfg2 = tg.resolve_config(tg.parse_args(["--preset", "tiny", "--slots", "4"]), 2)
    halves = tg.TrainLoader(files, cfg2, 0).next_batch(128) + tg.TrainLoader(files, cfg2, 1).next_batch(128)
    assert len(whole) == 4 and all(torch.equal(a, b) for a, b in zip(whole, halves))
    for seq in whole:
        assert seq.numel() == 129 and seq[0] == cfg.bos_id
        starts = torch.nonzero(seq == cfg.bos_id).flatten().tolist() + [129]
        assert max(b - a for a, b in zip(starts, starts[1:])) <= cfg.seq_len


# ---------------------------------------------------------------------------- warm worker

# three steps and a small validation so that five runs stay quick
WORKER_ARGS = ["--num-iterations", "3", "--extension-iterations", "1", "--val-every", "2",
               "--val-tokens", "1024", "--warmup", "--digest"]
DIGEST_RE = re.compile(r"^digest: weights sha256:([0-9a-f]{64}) val_losses:(\[.*\])$", re.M)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def serve_runs(cmd, env, folder, seeds, on_done=lambda worker: None):
    """A worker started with ``cmd`` serves one run per seed (the harness's side of
    docs/workers.md, by hand); returns the runs' logs."""
    worker = subprocess.Popen(cmd, env=dict(env, HARNESS_WORKER_DIR=str(folder)), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = []
    try:
        for n, seed in enumerate(seeds, 1):
            log = folder / f"log-{n}.txt"
            request = {"protocol": 1, "run": n, "env": {"SEED": str(seed)}, "workdir": ROOT, "log": str(log)}
            (folder / "tmp").write_text(json.dumps(request))
            os.replace(folder / "tmp", folder / f"run-{n}.json")   # atomic, as the harness writes it
            done, t0 = folder / f"done-{n}.json", time.monotonic()
            while not done.exists():
                assert worker.poll() is None, f"the worker exited ({worker.returncode}) in run {n}"
                assert time.monotonic() - t0 < 120, f"run {n} did not finish"
                time.sleep(0.02)
            assert json.loads(done.read_text()) == {"run": n, "exit_code": 0}
            on_done(worker)
            logs.append(log.read_text())
        (folder / "stop").touch()
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    return logs


@pytest.fixture(scope="module")
def worker_runs(synth, tmp_path_factory):
    """Five runs of one worker (seeds 1..5) and a fresh process of seed 3, side by side."""
    data, _ = synth
    cmd = [sys.executable, SCRIPT, "--preset", "tiny", "--data-path", data] + WORKER_ARGS
    # large blocks straight from mmap and back on free: the resident size is what is live
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    env.pop("SEED", None)
    fresh = subprocess.Popen(cmd, env=dict(env, SEED="3"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=ROOT)
    rss = []
    try:
        logs = serve_runs(cmd, env, tmp_path_factory.mktemp("worker"), [1, 2, 3, 4, 5],
                          lambda worker: rss.append(rss_bytes(worker.pid)))
        fresh_out = fresh.communicate(timeout=120)[0]
    finally:
        if fresh.poll() is None:
            fresh.kill()
    return logs, rss, fresh_out


def test_a_two_process_worker_run_is_a_fresh_two_process_run(synth, tmp_path):
    data, _ = synth
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", SCRIPT,
           "--preset", "tiny", "--data-path", data] + WORKER_ARGS
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SEED", None)
    fresh = subprocess.Popen(cmd, env=dict(env, SEED="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=ROOT)
    try:
        logs = serve_runs(cmd, env, tmp_path, [2, 1])   # every rank takes each request
        fresh_out = fresh.communicate(timeout=120)[0]
    finally:
        if fresh.poll() is None:
            fresh.kill()
    assert DIGEST_RE.search(logs[1]).groups() == DIGEST_RE.search(fresh_out).groups()
    assert DIGEST_RE.search(logs[0]).group(1) != DIGEST_RE.search(logs[1]).group(1)


def test_a_workers_third_run_is_a_fresh_process_bit_for_bit(worker_runs):
    logs, _, fresh = worker_runs
    third = DIGEST_RE.search(logs[2]).groups()
    assert third == DIGEST_RE.search(fresh).groups()       # final weights and every val loss, exactly
    # other seeds, other runs (the check can fail)
    assert len({DIGEST_RE.search(log).group(1) for log in logs}) == 5
    # each run's log is an ordinary run's: the parser reads it alone, header and all
    for n, log in enumerate(logs, 1):
        s = parse_stream(io.BytesIO(log.encode()))
        assert s.final_step == 3 and s.val_loss == val_losses(log)[-1][1] and s.torch_version
        assert log.startswith("config: ") and json.loads(log.splitlines()[0][8:])["seed"] == n
        assert ("warmup parts:" in log) == (n == 1)        # compile and warm-up: the first run only
    assert re.search(r"^warmup: 0ms compile and untimed warm-up \(warm worker: run 3 of this process, "
                     r"compiled in its first\), \d+ms since the run request$", logs[2], re.M)


def test_a_workers_memory_does_not_grow_from_run_to_run(worker_runs):
    logs, rss, _ = worker_runs
    params = int(re.search(r"^params total: (\d+)", logs[0], re.M).group(1))
    # one run's state (weights, optimiser state, initial copy) is >= 3 x 4 bytes per parameter:
    # a worker that kept any run's state would grow by that much per run, so over runs 2..5
    # (three runs) by >= 3 states; the allocator's own jitter measured here is ~2 MB (a third
    # of one state), so the bound is one state over the whole span
    state = 3 * 4 * params
    assert max(rss[1:]) - min(rss[1:]) < state, (rss, params)


def test_help_says_each_default_once():
    text = tg.build_parser().format_help()
    assert "(default: env SEED, else 0)" in text
    for block in re.split(r"\n  -", text):
        assert block.count("(default:") <= 1, block
