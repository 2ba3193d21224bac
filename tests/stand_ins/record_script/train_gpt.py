import os
import sys
with open(sys.argv[0]) as f:
    code = f.read()  # read the code of this file ASAP, for logging
with open(os.path.join(os.path.dirname(sys.argv[0]), 'triton_kernels.py'), 'r') as f:
    code += f"\n\n{'-'*40}\n# triton_kernels.py\n{'-'*40}\n\n"
    code += f.read()
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
from triton_kernels import MS_PER_STEP, final_loss

# A CPU stand-in of a speedrun record's train_gpt.py (tests only): it takes no flags, logs
# its own code and the kernel file beside it, then the upstream's step lines, and writes
# logs/<uuid>.txt as the records' scripts do. Its figures are made up from SEED and the
# step count; nothing is trained.
num_iterations = 1575
seed = int(os.environ.get("SEED", "0"))
gpus = int(os.environ.get("FAKE_GPUS", "8"))
run_id = str(uuid.uuid4())
os.makedirs("logs", exist_ok=True)
logfile = f"logs/{run_id}.txt"
print(logfile)


def print0(s, console=False):
    with open(logfile, "a") as f:
        if console:
            print(s)
        print(s, file=f)


print0(code)
print0("=" * 100)
print0(f"Running Python {sys.version.split()[0]}")
print0("Running PyTorch 2.10.0 compiled for CUDA 12.6")
for g in range(gpus):
    print0(f"|   {g}  NVIDIA H100 80GB HBM3                   On  |   00000000:{0x19 + 0x10 * g:02X}:00.0 Off |")
print0("=" * 100)
ms = MS_PER_STEP + 0.02 * ((seed * 3) % 7 - 3)
print0(f"step:0/{num_iterations} val_loss:10.8258 train_time:0ms step_avg:0.03ms", console=True)
for step in range(1, num_iterations + 1):
    t = ms * step
    print0(f"step:{step}/{num_iterations} train_time:{t:.0f}ms step_avg:{t / step:.2f}ms", console=True)
loss = final_loss(num_iterations, seed)
t = ms * num_iterations + 7
print0(f"step:{num_iterations}/{num_iterations} val_loss:{loss:.4f} train_time:{t:.0f}ms "
       f"step_avg:{t / num_iterations:.2f}ms", console=True)
print0("peak memory allocated: 30264 MiB reserved: 46240 MiB", console=True)
