import os
import sys
import uuid

# Shaped like the upstream speedrun script: takes no flags, ignores SEED, logs its own
# source first, writes logs/<uuid>.txt relative to the working directory, and prints
# only some lines to the console.
with open(sys.argv[0]) as f:
    code = f.read()

run_id = str(uuid.uuid4())
os.makedirs("logs", exist_ok=True)
logfile = f"logs/{run_id}.txt"


def print0(s, console=False):
    if console:
        print(s, flush=True)
    with open(logfile, "a") as f:
        print(s, file=f)


print0(code)
print0("=" * 100)
print0(f"Running Python {sys.version}")
print0("Running PyTorch 2.13.0 compiled for CUDA 12.8")
print0("""+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.00                 Driver Version: 570.00         CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+""")
print0("=" * 100)
train_steps = 30
for step in range(train_steps + 1):
    training_time_ms = 100 * step
    if step % 10 == 0 or step == train_steps:
        val_loss = 3.5 - step / 100
        if step == train_steps:
            print0(f"step:{step}/{train_steps} train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms/max(step,1):.2f}ms", console=True)
            training_time_ms += 7
        print0(f"step:{step}/{train_steps} val_loss:{val_loss:.4f} train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms/max(step,1):.2f}ms", console=True)
    elif step > 0:
        print0(f"step:{step}/{train_steps} train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms/step:.2f}ms", console=True)
print0("peak memory allocated: 30789 MiB reserved: 46138 MiB", console=True)
