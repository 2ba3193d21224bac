"""The speed probe (``speed_probe = true``): time a fixed workload, then exec the training run.

    python harness/run/probe.py --out RUN/probe.json --nproc N -- torchrun ... train_gpt.py ...

The workload measures the machine, not the change: a fixed number of bf16 matrix
products on every GPU the run will use (at once, so the slowest GPU sets the
time), and with several GPUs an all-reduce over NCCL, as the speedrun's gradient
reduction does (a CPU run with several processes: over gloo). Its time (``probe_s``) is a covariate of the run's training time
that no treatment can change: the analysis regresses it out (CUPED) beside the
plain comparison. Without CUDA it multiplies small float32 matrices on the CPU, so
tests and the CPU demo still run the same path.

The probe never fails the run: any error is recorded in the JSON and the training
command starts anyway. It then replaces this process (``exec``), so the command's
exit code, signals and log are exactly what they would be without the probe.

Standalone on purpose (no harness imports): it runs as a file on any node with torch.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time

# workload: thresholds in one place (a few seconds on an H100)
GPU_SIZE, GPU_ITERS, GPU_WARMUP = 8192, 1500, 20          # 1.1 TFLOP per product: ~2.5 s on an H100
ALLREDUCE_MIB, ALLREDUCE_ITERS, ALLREDUCE_WARMUP = 256, 20, 3
CPU_SIZE, CPU_ITERS, CPU_WARMUP = 192, 60, 5
CPU_ALLREDUCE_MIB = 1                                    # gloo, when a CPU run has several processes


def _matmuls(torch, device: str) -> float:
    gpu = device.startswith("cuda")
    size, iters, warm = (GPU_SIZE, GPU_ITERS, GPU_WARMUP) if gpu else (CPU_SIZE, CPU_ITERS, CPU_WARMUP)
    dtype = torch.bfloat16 if gpu else torch.float32
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    for _ in range(warm):
        c = a @ b
    if gpu:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        c = a @ b
    if gpu:
        torch.cuda.synchronize(device)
    del c
    return time.perf_counter() - t0


def _worker(rank: int, nproc: int, port: int, gpu: bool, queue) -> None:
    import torch
    import torch.distributed as dist
    if gpu:
        torch.cuda.set_device(rank)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if gpu else "gloo", rank=rank, world_size=nproc)
    try:
        dev = f"cuda:{rank}" if gpu else "cpu"

        def sync():
            if gpu:
                torch.cuda.synchronize(dev)

        dist.barrier()
        mm = _matmuls(torch, dev)
        mib = ALLREDUCE_MIB if gpu else CPU_ALLREDUCE_MIB
        x = torch.ones(mib * 2 ** 20 // 2, device=dev, dtype=torch.bfloat16 if gpu else torch.float16)
        for _ in range(ALLREDUCE_WARMUP):
            dist.all_reduce(x)
        sync()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(ALLREDUCE_ITERS):
            dist.all_reduce(x)
        sync()
        queue.put((rank, mm, time.perf_counter() - t0))
    finally:
        dist.destroy_process_group()


def measure(nproc: int) -> dict:
    import torch
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = torch.cuda.get_device_name(0) if gpus else "cpu"
    n = min(nproc, gpus) if gpus else nproc
    if n <= 1:
        mm = _matmuls(torch, "cuda:0" if gpus else "cpu")
        return {"probe_s": mm, "matmul_s": mm, "allreduce_s": None, "device": device, "gpus": min(gpus, 1)}
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_worker, args=(n, port, bool(gpus), queue), nprocs=n, join=True, start_method="spawn")
    got = [queue.get() for _ in range(n)]
    mm = max(g[1] for g in got)        # the slowest GPU sets the pace of a data-parallel step
    ar = max(g[2] for g in got)
    return {"probe_s": mm + ar, "matmul_s": mm, "allreduce_s": ar, "device": device,
            "gpus": n if gpus else 0, "processes": n}


def _write(path: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    data = {"host": os.environ.get("SLURMD_NODENAME") or socket.gethostname(), "nproc": a.nproc}
    t0 = time.perf_counter()
    try:
        data.update(measure(a.nproc))
    except Exception as e:  # the probe must never cost the run: record why and train anyway
        data.update(probe_s=None, error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
    data["wall_s"] = time.perf_counter() - t0
    try:
        _write(a.out, data)
    except OSError as e:
        data["error"] = f"could not write {a.out}: {e}"
    shown = f"{data['probe_s']:.4f} s" if data.get("probe_s") is not None else f"failed ({data.get('error')})"
    print(f"harness-probe: {shown} on {data.get('device', '?')}", flush=True)
    if not cmd:
        return 0 if data.get("probe_s") is not None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"harness-probe: could not start {cmd[0]!r}: {e}", flush=True)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
