"""PyTorch peer benchmark: wall time of one VGG5 training step on CPU.

Model (NCHW, input 1x28x28, 10 classes; every conv is 3x3, stride 1,
padding 1, with bias):

    conv(1->32)  + BatchNorm2d + ReLU + MaxPool2d(2,2)
    conv(32->64) + BatchNorm2d + ReLU + MaxPool2d(2,2)
    conv(64->64) + BatchNorm2d + ReLU
    flatten -> Linear(64*7*7 -> 128) + ReLU -> Linear(128 -> 10)

One step = zero_grad, forward, CrossEntropyLoss (mean), backward,
SGD(lr=0.01, momentum=0.9, weight_decay=0) step, model in train mode.
Input and labels are synthetic, generated once before the loop, so data
loading is not measured.

Usage:
    torch_vgg5.py --threads T --batch B --warmup W --steps S
    (defaults: T=1, B=100, W=5, S=30)

Prints one JSON line on stdout with median/min/p90 step time in seconds,
the analytic GFLOP per step and the resulting GFLOP/s at the median.

Note: the C library's allocator returns large freed blocks to the kernel,
which makes every step pay for fresh page faults. The benchmark runner sets
MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ to large values in the
environment to avoid that; this script does not set them itself.
"""

import argparse
import json
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    a = p.parse_args()
    if a.threads < 1 or a.batch < 1 or a.warmup < 0 or a.steps < 1:
        p.error("threads, batch and steps must be >= 1, warmup >= 0")
    return a


ARGS = parse_args()

import torch  # noqa: E402

# Thread settings must come before any other torch work.
torch.set_num_threads(ARGS.threads)
torch.set_num_interop_threads(1)

import torch.nn as nn  # noqa: E402

H = W = 28
C_IN = 1
N_CLASSES = 10


def build_model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=1, padding=1, bias=True),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, stride=1, padding=1, bias=True),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=True),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, N_CLASSES),
    )


def gflop_per_step(batch):
    # Per sample, multiply-adds (MACs) of the conv and linear layers only:
    #   conv1: 28*28 * 32 * (1*3*3)  =   225,792
    #   conv2: 14*14 * 64 * (32*3*3) = 3,612,672
    #   conv3:  7*7  * 64 * (64*3*3) = 1,806,336
    #   fc1:   3136 * 128            =   401,408
    #   fc2:    128 * 10             =     1,280
    # forward FLOP = 2 * MACs.  backward = 2 * forward (input grad + weight
    # grad) for every layer except conv1, which needs no input gradient:
    #   step FLOP = B * (3 * 2 * sum(MACs) - 2 * MACs(conv1))
    # Bias, BatchNorm, ReLU, pooling, loss and SGD update are not counted.
    conv1 = 28 * 28 * 32 * (1 * 9)
    conv2 = 14 * 14 * 64 * (32 * 9)
    conv3 = 7 * 7 * 64 * (64 * 9)
    fc1 = 64 * 7 * 7 * 128
    fc2 = 128 * N_CLASSES
    macs = conv1 + conv2 + conv3 + fc1 + fc2
    flop = batch * (3 * 2 * macs - 2 * conv1)
    return flop / 1e9


def percentile(sorted_vals, q):
    # Linear interpolation between closest ranks.
    n = len(sorted_vals)
    if n == 1:
        return sorted_vals[0]
    pos = (n - 1) * q
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_vals[lo] * (1.0 - frac) + sorted_vals[hi] * frac


def main():
    torch.manual_seed(1)

    model = build_model()
    model.train()
    loss_fn = nn.CrossEntropyLoss(reduction="mean")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                          weight_decay=0.0)

    x = torch.randn(ARGS.batch, C_IN, H, W)
    y = torch.randint(0, N_CLASSES, (ARGS.batch,))

    def step():
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(ARGS.warmup):
        step()

    times = []
    for _ in range(ARGS.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)

    times.sort()
    median = percentile(times, 0.5)
    g = gflop_per_step(ARGS.batch)

    print(json.dumps({
        "impl": "pytorch",
        "version": torch.__version__,
        "threads": ARGS.threads,
        "batch": ARGS.batch,
        "steps": ARGS.steps,
        "median_s": median,
        "min_s": times[0],
        "p90_s": percentile(times, 0.9),
        "gflop_per_step": g,
        "gflops": g / median,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
