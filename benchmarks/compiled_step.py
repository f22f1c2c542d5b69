"""Eager vs ``channels_last`` vs ``channels_last`` + ``torch.compile`` training steps of the embeddings and the
transfer baseline (``compile_training`` of SiameseNet, TripletNet and Pretrained).

For each method the model and its batches are the course recipe's defaults (``train siamese``, ``train
triplet``: 20 classes x 5 drawings, Conv-4 with 64 filters and batch norm; ``train pretrained``: 64 classes x 2
drawings over a 624-class head, running-statistics norm).  Three copies with the same initial weights take
the same batch each round (interleaved, so a change in the machine's load falls on all three): a training step
is the loss, backward and Adam step (sampling not timed).  It prints each copy's median step after warm-up
(compiling excluded), the ratios, and separately the first compiled step (compiling included; less when
TorchInductor's cache, ``TORCHINDUCTOR_CACHE_DIR``, holds the kernels from an earlier run).  ProtoNet's
steps are measured the same way by ``benchmarks/protonet_step.py --compiled``.

    python benchmarks/compiled_step.py --repeats 15           # a few minutes on 2 cores
    python benchmarks/compiled_step.py --methods pretrained --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

import metalearn_lite as ml
from metalearn_lite.compiling import compile_for_training, to_channels_last
from metalearn_lite.recipes import RECIPES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compiled_rounds import compiled_rounds  # noqa: E402  (benchmarks/compiled_rounds.py, next to this script)

METHODS = ("siamese", "triplet", "pretrained")
VARIANTS = ("eager", "channels_last", "compiled")


def models_and_tasks(name: str, device: torch.device) -> tuple[dict[str, Any], Any]:
    """The three copies of recipe ``name``'s default model (same weights) and its default training batches."""
    recipe = RECIPES[name]
    settings = recipe.settings()
    models = {}
    for variant in VARIANTS:
        torch.manual_seed(0)  # the same initial weights
        models[variant] = recipe.make(settings).to(device).train()
    for module in models["channels_last"].children():
        to_channels_last(module)
    # compiled, always: where compiling was measured slower, compile_training() only changes the layout (this
    # measurement is what chose that), so the step is compiled here with choose=False
    compiled = models["compiled"]
    compiled.compile_training()
    if getattr(compiled, "layout_only", False):
        assert name == "pretrained", f"{name}: compiled step not measured"
        compiled._compiled_logits = compile_for_training(compiled, compiled.pretraining_logits, choose=False)
    tasks = recipe.tasks(models["eager"], settings, device, recipe.run_config(val_episodes=1))
    return models, tasks


def measure(name: str, repeats: int, device: torch.device) -> dict[str, float]:
    """Median step of each copy over ``repeats`` interleaved rounds, and the first compiled step."""
    ml.tune_for_training()  # what ml.train does when it starts
    models, tasks = models_and_tasks(name, device)
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(variant: str, batch: Any) -> float:
        sync()
        t = time.perf_counter()
        loss, _ = models[variant].loss(batch)
        opts[variant].zero_grad(set_to_none=True)
        loss.backward()
        opts[variant].step()
        sync()
        return time.perf_counter() - t

    return compiled_rounds(step, VARIANTS, lambda: tasks.sample(1), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per method (median reported)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch's default (/tmp/torchinductor_$USER)")
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, median of {args.repeats} "
          f"interleaved rounds; inductor cache: {cache}\n")
    print(f"{'method':12s} {'eager ms':>9s} {'c_last ms':>10s} {'compiled ms':>12s} {'eager/c_last':>13s} "
          f"{'eager/compiled':>15s} {'first compiled step':>20s}")
    for name in args.methods:
        r = measure(name, args.repeats, device)
        e, c, k = r["eager_ms"], r["channels_last_ms"], r["compiled_ms"]
        print(f"{name:12s} {e:9.1f} {c:10.1f} {k:12.1f} {e / c:12.2f}x {e / k:14.2f}x "
              f"{r['first_compiled_step_s']:18.1f} s", flush=True)


if __name__ == "__main__":
    main()
