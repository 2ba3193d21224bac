"""Stand-in trainer that implements the warm-worker protocol (harness-worker: v1).

Without HARNESS_WORKER_DIR it prints one run's speedrun log and exits. With it, it serves
run-<n>.json requests until told to stop (docs/workers.md). Every log says who ran it
(`served pid:P worker_run:N`, N = 0 for a fresh process). --die-on-run K: SIGKILL itself in
the middle of its K-th run as a worker; --hang-on-run K: sleep forever there instead;
--quit-after-run K: exit once its K-th run is done (a worker that dies while idle).
"""
import argparse
import json
import os
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--num-iterations", type=int, default=4)
p.add_argument("--die-on-run", type=int, default=0)
p.add_argument("--hang-on-run", type=int, default=0)
p.add_argument("--quit-after-run", type=int, default=0)
p.add_argument("--step-sleep", type=float, default=0.0)
a = p.parse_args()


def one_run(n):
    seed = int(os.environ.get("SEED", "0"))
    steps = a.num_iterations
    print(f"served pid:{os.getpid()} worker_run:{n} seed:{seed} cwd:{os.getcwd()}", flush=True)
    print(f"step:0/{steps} val_loss:5.0000 train_time:0ms step_avg:0.00ms", flush=True)
    for k in range(1, steps + 1):
        print(f"step:{k}/{steps} train_time:{k}ms step_avg:1.00ms", flush=True)
        time.sleep(a.step_sleep)
        if n and k == 2 and a.die_on_run == n:
            os.kill(os.getpid(), signal.SIGKILL)
        if n and k == 2 and a.hang_on_run == n:
            time.sleep(3600)
    loss = 4.0 + (seed % 7) / 1000
    print(f"step:{steps}/{steps} val_loss:{loss:.4f} train_time:{10 + seed % 3}ms step_avg:1.00ms", flush=True)


folder = os.environ.get("HARNESS_WORKER_DIR")
if not folder:
    one_run(0)
    sys.exit(0)
home = os.getcwd()
n = 0
while True:
    n += 1
    path = os.path.join(folder, f"run-{n}.json")
    while not os.path.exists(path):
        if os.path.exists(os.path.join(folder, "stop")):
            sys.exit(0)
        time.sleep(0.01)
    with open(path) as f:
        req = json.load(f)
    os.environ.update(req["env"])
    os.chdir(req["workdir"])
    saved = os.dup(1)
    fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.close(fd)
    one_run(n)
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.chdir(home)
    with open(os.path.join(folder, "tmp"), "w") as f:
        json.dump({"run": n, "exit_code": 0}, f)
    os.replace(os.path.join(folder, "tmp"), os.path.join(folder, f"done-{n}.json"))
    if n == a.quit_after_run:
        os._exit(0)
