"""Stand-in trainer whose phases take known wall time: sleeps --startup seconds before its
first step line, trains --steps steps of --step seconds (its train_time is the real time
of those steps), then sleeps --after seconds past its last line."""
import argparse
import time

p = argparse.ArgumentParser()
p.add_argument("--num-iterations", type=int, default=4)
p.add_argument("--startup", type=float, default=0.3)
p.add_argument("--step", type=float, default=0.1)
p.add_argument("--after", type=float, default=0.3)
p.add_argument("--base-time", type=float, default=0.0)   # write_experiment's H1 flag: unused
a = p.parse_args()
n = a.num_iterations
print("Running Python 3.11.7", flush=True)
time.sleep(a.startup)
print(f"step:0/{n} val_loss:10.0000 train_time:0ms step_avg:0.03ms", flush=True)
train = 0.0
for k in range(1, n + 1):
    t = time.perf_counter()
    time.sleep(a.step)
    train += time.perf_counter() - t
    print(f"step:{k}/{n} train_time:{1000 * train:.0f}ms step_avg:{1000 * train / k:.2f}ms", flush=True)
print(f"step:{n}/{n} val_loss:3.2700 train_time:{1000 * train:.0f}ms step_avg:{1000 * train / n:.2f}ms",
      flush=True)
time.sleep(a.after)
