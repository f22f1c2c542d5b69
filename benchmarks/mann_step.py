"""What does one MANN training step cost, eager and compiled, and with the shipped model's memory?

Times a full training step (forward over 50 time steps, cross-entropy, backward, gradient clipping,
Adam) on a meta-batch of 64 episodes of frozen 64-number features, for

* the paper's 128 x 40 memory with keys from the controller's state (the previous ``mann-omniglot``),
* the shipped 128 x 64 memory with keys that also see the step's input (``keys_see_input=True``),

each eager and after ``model.compile_training()`` (``torch.compile`` of one time step; ``--compile``
of ``train``).  Prints the median of interleaved repeats in one process, the compile time, and the
ratio eager / compiled (how many more steps a time-limited run gets).  Compiling needs a C++ compiler
on a CPU.

    python benchmarks/mann_step.py            # ~3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from metalearn_lite.algorithms.mann import MANN

CONFIGS = {
    "128 x 40, keys from h_t": dict(memory_width=40),
    "128 x 64, keys see the input (shipped)": dict(memory_width=64, keys_see_input=True),
}


def make_step(config: dict, compiled: bool, batch: int):
    torch.manual_seed(0)
    model = MANN(encoder="pretrained", normalize_features=True, **config).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 50, 64, generator=g)
    y = torch.randint(0, 5, (batch, 50), generator=g)
    if compiled:
        model.compile_training()

    def step() -> None:
        loss, _ = model.loss((x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    start = time.perf_counter()
    step()  # the first call compiles
    return step, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.batch} episodes x 50 steps")
    steps, first = {}, {}
    for name, config in CONFIGS.items():
        for compiled in (False, True):
            key = (name, compiled)
            steps[key], first[key] = make_step(config, compiled, args.batch)
            steps[key]()  # warm-up
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):  # interleaved, so that machine noise hits every variant alike
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    print(f"{'configuration':42s} {'eager s/step':>13s} {'compiled s/step':>16s} {'compile s':>10s} {'ratio':>6s}")
    for name in CONFIGS:
        eager = statistics.median(times[(name, False)])
        comp = statistics.median(times[(name, True)])
        print(f"{name:42s} {eager:13.3f} {comp:16.3f} {first[(name, True)]:10.1f} {eager / comp:6.2f}")


if __name__ == "__main__":
    main()
