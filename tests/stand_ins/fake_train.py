"""Stand-in trainer with flags: prints speedrun log lines, behaviour set by --mode.

Modes: ok, crash (dies mid-run), nan (diverges), hang (sleeps forever), truncate
(stops before the final validation), flaky (crashes on its first attempt only),
fork (leaves a child behind, which writes its pid to $PID_DIR), stubborn (ignores
SIGTERM, then hangs mid-run), linger (prints its final line, then hangs), files
(writes logs of clashing and very long names and a file in its working directory),
linklogs (makes logs/ a link to $LINK_TARGET), missing (opens a file that is not there),
sigkill (SIGKILLs itself before its first step, as the kernel's OOM killer would), oom
(torch's CUDA out-of-memory error before its first step), oom-mid (the same at step n/2),
layout (the trainer's own usage error for a layout the model cannot hold), eagain (a
fork that failed for want of resources, on the first attempt only: $ONCE_DIR).
"""
import argparse
import os
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--num-iterations", type=int, default=20)
p.add_argument("--mode", default="ok")
p.add_argument("--step-sleep", type=float, default=0.0)
p.add_argument("--val-every", type=int, default=10)
p.add_argument("--base-time", type=float, default=10.0)
p.add_argument("--tag", default="")
a = p.parse_args()
seed = int(os.environ.get("SEED", "0"))
n = a.num_iterations
if a.mode == "flaky":
    marker = os.path.join(os.environ["FLAKY_DIR"], f"seed{seed}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        print("step:1/%d train_time:1ms step_avg:1.00ms" % n, flush=True)
        sys.exit(3)
if a.mode == "missing":
    open("data/no_such_shard.bin")
OOM = ("Traceback (most recent call last):\n  File \"train_gpt.py\", line 400, in <module>\n"
       "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
       "capacity of 79.19 GiB of which 1.05 GiB is free.")
if a.mode == "sigkill":
    import signal
    print("Running Python 3.11.7", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if a.mode == "oom":
    print(OOM, flush=True)
    sys.exit(1)
if a.mode == "layout":
    print("usage: train_gpt.py [-h] [--ve-layout VE_LAYOUT]\n"
          "train_gpt.py: error: --ve-layout '.12...012' needs at least 6 layers but the model has 4",
          flush=True)
    sys.exit(2)
if a.mode == "eagain":
    marker = os.path.join(os.environ["ONCE_DIR"], f"eagain{seed}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        print("Traceback (most recent call last):\nBlockingIOError: [Errno 11] Resource temporarily "
              "unavailable", flush=True)
        sys.exit(1)
if a.mode == "stubborn" and os.environ.get("ONCE_DIR"):
    # stubborn on the first attempt only
    marker = os.path.join(os.environ["ONCE_DIR"], f"stubborn{seed}")
    if os.path.exists(marker):
        a.mode = "ok"
    else:
        open(marker, "w").close()
if a.mode == "stubborn":
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if a.mode == "fork":
    if os.fork() == 0:
        os.setsid()  # leaves the process group too: only the run marker finds it
        with open(os.path.join(os.environ["PID_DIR"], f"child-{os.getpid()}"), "w"):
            pass
        time.sleep(3600)
        os._exit(0)
if a.mode == "linklogs":
    os.symlink(os.environ["LINK_TARGET"], "logs")
if a.mode == "files":
    os.makedirs("logs/a", exist_ok=True)
    os.makedirs("logs/b", exist_ok=True)
    with open("logs/a/same.txt", "w") as f:
        f.write("from a\n")
    with open("logs/b/same.txt", "w") as f:
        f.write("from b\n")
    with open("logs/" + "x" * 250 + ".txt", "w") as f:
        f.write("long name\n")
    with open("checkpoint.bin", "wb") as f:
        f.write(b"weights")
print(f"config: {{\"seed\": {seed}, \"tag\": \"{a.tag}\"}}")
print("Running Python 3.11.7")
print("Running PyTorch 2.13.0 compiled for CUDA None")
print("=" * 100, flush=True)
ms_per_step = (a.base_time + 0.01 * seed) * 1000 / n
loss = 10.0
print(f"step:0/{n} val_loss:{loss:.4f} train_time:0ms step_avg:0.03ms", flush=True)
for k in range(1, n + 1):
    if a.step_sleep:
        time.sleep(a.step_sleep)
    if a.mode == "oom-mid" and k == n // 2:
        print(OOM, flush=True)
        sys.exit(1)
    if a.mode == "crash" and k == n // 2:
        print("Traceback (most recent call last):\nRuntimeError: CUDA error: boom", flush=True)
        sys.exit(1)
    if a.mode in ("hang", "stubborn") and k == n // 2:
        time.sleep(3600)
    if a.mode == "truncate" and k == n:
        sys.exit(0)
    t = ms_per_step * k
    print(f"step:{k}/{n} train_time:{t:.0f}ms step_avg:{t / k:.2f}ms", flush=True)
    if k % a.val_every == 0 or k == n:
        loss = 3.0 + 1.0 / k + 0.001 * (seed % 3)
        shown = "nan" if a.mode == "nan" and k == n else f"{loss:.4f}"
        print(f"step:{k}/{n} val_loss:{shown} train_time:{t + 5:.0f}ms step_avg:{t / k:.2f}ms", flush=True)
print("peak memory allocated: 123 MiB reserved: 456 MiB", flush=True)
if a.mode == "linger":
    time.sleep(3600)
