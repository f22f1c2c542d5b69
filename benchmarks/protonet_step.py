"""How much does episodic training cost on top of a plain training step?

For each episode shape, times (median of interleaved repeats, one process):

* episode: sample the episode from the in-memory training tensor, ProtoNet forward (support and
  query embedded in one batch), prototypes, logits, cross-entropy, backward, Adam step;
* plain:   the same number of images, already in one tensor, through the same Conv-4 with a
  plain linear-classifier cross-entropy, backward, Adam step.

and prints ``episode / plain`` (goal <= 1.05).  Then it runs the same measurement in two child
processes, with glibc's default allocator settings (``METALEARN_LITE_MALLOC_TUNING=0``) and with
the package's tuning (the default), and prints their ratio.

When learn2learn 0.2.0 is importable, the same interleaved rounds also time

* learn2learn: the step a learn2learn user writes for ProtoNet with the same Conv-4 (the same initial
  weights) and the same episodes: support and query embedded in one batch, learn2learn's prototype head
  ``learn2learn.nn.PrototypicalClassifier`` (``fit_(support, labels)``, then ``classifier(query)``: the
  negative squared Euclidean distances), cross-entropy, backward, Adam step,

and a last table gives ``episode / learn2learn`` and the relative difference of the two steps' encoder
gradients on one episode: the same loss, the squared distances computed another way (the package as
``|a|^2 - 2 a.b + |b|^2``, one matrix product; learn2learn as a sum of squared differences), so ~5e-6 in
float32 from rounding alone (1e-14 with both in float64: checked by hand, the script has no float64 option).

What learn2learn 0.2.0 offers for this step, checked: ``learn2learn.algorithms`` has no plain ProtoNet step;
its ``LightningPrototypicalNetworks`` needs PyTorch Lightning (not installed), and its ``meta_learn`` is the
step above plus sorting a batch of learn2learn's own task format by label.  Its Conv-4
(``learn2learn.vision.models``) needs torchvision (``learn2learn.vision`` imports its datasets), and a
different network would measure the network rather than the library, so the encoder is the package's
Conv-4 in both columns: the column measures learn2learn's prototype head and the user's loop around it.
higher offers nothing here (a ProtoNet step has no differentiable inner loop).  metalearn-lite never
depends on learn2learn: install it into a folder of its own as ``benchmarks/peers.py`` shows, then run
``PYTHONPATH=.:/work/peers python benchmarks/protonet_step.py``; without it a line says it is left out.

With ``--compiled`` it measures instead, side by side in one process (with learn2learn's column when it is
importable), the fast training path of
:meth:`~metalearn_lite.algorithms.ProtoNet.compile_training`: the same ProtoNet training step (the same
episode each round: loss, backward, Adam; sampling not timed) eager, eager in ``channels_last``, and
``channels_last`` under ``torch.compile``, for the 60-way 5-shot 5-query and 5-way 1-shot 15-query shapes.
It prints each step's median after warm-up (compiling excluded), the ratios, and, separately, the first
compiled step's time (compiling included; less when TorchInductor's cache, ``TORCHINDUCTOR_CACHE_DIR``,
already holds the kernels from an earlier run).

    python benchmarks/protonet_step.py            # ~2 minutes on 2 cores
    PYTHONPATH=.:/work/peers python benchmarks/protonet_step.py   # with the learn2learn column
    python benchmarks/protonet_step.py --compiled --repeats 10
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import metalearn_lite as ml
from metalearn_lite.algorithms import ProtoNet
from metalearn_lite.compiling import to_channels_last

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (benchmarks/peers.py, next to this script)
from compiled_rounds import compiled_rounds  # noqa: E402

SHAPES = [(20, 5, 5), (60, 5, 5)]
COMPILED_SHAPES = [(60, 5, 5), (5, 1, 15)]


def learn2learn_loss(encoder: torch.nn.Module, head: torch.nn.Module, episode: ml.Episode) -> torch.Tensor:
    """The ProtoNet query loss of a one-task episode with learn2learn's ``PrototypicalClassifier`` as the head."""
    n_support = episode.support_x.shape[1]
    z = encoder(torch.cat([episode.support_x[0], episode.query_x[0]])).flatten(1)
    head.fit_(z[:n_support], episode.support_y[0])
    return F.cross_entropy(head(z[n_support:]), episode.query_y[0])


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b)) ** 0.5
    return num / max(sum(float((y**2).sum()) for y in b) ** 0.5, 1e-30)


def measure(ways: int, shots: int, queries: int, repeats: int) -> dict[str, float]:
    ml.tune_for_training()  # what ml.train and ml.evaluate do when they start (importing changes nothing)
    torch.manual_seed(0)
    data = ml.omniglot_split("train", rotations=True).images
    sampler = ml.EpisodeSampler(data, ways=ways, shots=shots, queries=queries, seed=0)
    proto = ProtoNet()
    opt_p = torch.optim.Adam(proto.parameters(), 1e-3)
    plain = ml.Conv4(out_features=ways)
    opt_c = torch.optim.Adam(plain.parameters(), 1e-3)
    n = ways * (shots + queries)
    images = sampler.sample(1)
    x = torch.cat([images.support_x[0], images.query_x[0]])
    y = torch.arange(ways).repeat_interleave(shots + queries)
    assert x.shape[0] == n
    # learn2learn's column is printed for the tuned run only: the glibc-defaults run times what it always did
    l2l_nn = peers.learn2learn_module("nn") if ml.malloc_tuned() else None
    out = {}
    if l2l_nn is not None:  # the same initial encoder weights and the same sequence of episodes
        head, encoder = l2l_nn.PrototypicalClassifier(), copy.deepcopy(proto.encoder)
        opt_l = torch.optim.Adam(encoder.parameters(), 1e-3)
        sampler_l = ml.EpisodeSampler(data, ways=ways, shots=shots, queries=queries, seed=0)
        sampler_l.sample(1)  # the episode ``images`` took from ``sampler``
        ours = torch.autograd.grad(proto.loss(images)[0], list(proto.encoder.parameters()))
        theirs = torch.autograd.grad(learn2learn_loss(encoder, head, images), list(encoder.parameters()))
        out["l2l_grad_rel_diff"] = rel_diff(theirs, ours)

    def episode_step() -> None:
        loss, _ = proto.loss(sampler.sample(1))
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()

    def plain_step() -> None:
        loss = F.cross_entropy(plain(x), y)
        opt_c.zero_grad(set_to_none=True)
        loss.backward()
        opt_c.step()

    def l2l_step() -> None:
        loss = learn2learn_loss(encoder, head, sampler_l.sample(1))
        opt_l.zero_grad(set_to_none=True)
        loss.backward()
        opt_l.step()

    steps = {"episode": episode_step, "plain": plain_step}
    if l2l_nn is not None:
        steps["l2l"] = l2l_step
    for _ in range(3):  # warm-up
        for step in steps.values():
            step()
    times = {k: [] for k in steps}
    for _ in range(repeats):
        for k, step in steps.items():
            t = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - t)
    out.update({f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()})
    out["ratio"] = out["episode_ms"] / out["plain_ms"]
    return out


def measure_compiled(ways: int, shots: int, queries: int, repeats: int) -> dict[str, float]:
    """Eager, channels_last eager and channels_last compiled ProtoNet steps on the same episodes, interleaved."""
    ml.tune_for_training()
    data = ml.omniglot_split("train", rotations=True).images
    sampler = ml.EpisodeSampler(data, ways=ways, shots=shots, queries=queries, seed=0)
    models = {}
    for name in ("eager", "channels_last", "compiled"):
        torch.manual_seed(0)  # the same initial weights
        models[name] = ProtoNet()
    to_channels_last(models["channels_last"].encoder)
    models["compiled"].compile_training()
    l2l_nn = peers.learn2learn_module("nn")
    if l2l_nn is not None:  # learn2learn's prototype head on the same initial Conv-4 (see the module docstring)
        models["learn2learn"] = copy.deepcopy(models["eager"].encoder)
        head = l2l_nn.PrototypicalClassifier()
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3) for k, m in models.items()}

    def step(name: str, episode: ml.Episode) -> float:
        t = time.perf_counter()
        if name == "learn2learn":
            loss = learn2learn_loss(models[name], head, episode)
        else:
            loss, _ = models[name].loss(episode)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        return time.perf_counter() - t

    return compiled_rounds(step, models, lambda: sampler.sample(1), repeats)


def compiled_report(repeats: int) -> None:
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch's default (/tmp/torchinductor_$USER)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {repeats} interleaved rounds; "
          f"inductor cache: {cache}\n")
    print(f"{'shape':26s} {'eager ms':>9s} {'c_last ms':>10s} {'compiled ms':>12s} {'eager/c_last':>13s} "
          f"{'eager/compiled':>15s} {'first compiled step':>20s}")
    rows = []
    for w, s, q in COMPILED_SHAPES:
        r = measure_compiled(w, s, q, repeats)
        e, c, k = r["eager_ms"], r["channels_last_ms"], r["compiled_ms"]
        print(f"{f'{w}-way {s}-shot {q}-query':26s} {e:9.1f} {c:10.1f} {k:12.1f} {e / c:12.2f}x {e / k:14.2f}x "
              f"{r['first_compiled_step_s']:18.1f} s", flush=True)
        rows.append((f"{w}-way {s}-shot {q}-query", r))
    print("\n" + peers.describe({"learn2learn": peers.learn2learn_module("nn") is not None})[0])
    for shape, r in rows:
        if "learn2learn_ms" in r:
            theirs = r["learn2learn_ms"]
            print(f"{shape:26s} learn2learn {theirs:7.1f} ms; learn2learn/compiled {theirs / r['compiled_ms']:.2f}x, "
                  f"learn2learn/eager {theirs / r['eager_ms']:.2f}x")


def child(repeats: int) -> None:
    out = {f"{w}-way {s}-shot {q}-query": measure(w, s, q, repeats) for w, s, q in SHAPES}
    out["malloc_tuned"] = ml.malloc_tuned()
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per shape (median reported)")
    parser.add_argument("--compiled", action="store_true",
                        help="eager vs channels_last vs channels_last + torch.compile ProtoNet steps")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compiled:
        compiled_report(args.repeats)
        return
    if args.child:
        child(args.repeats)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    runs = {}
    for label, tuning in (("glibc defaults", "0"), ("tuned (package default)", "1")):
        env = dict(os.environ, METALEARN_LITE_MALLOC_TUNING=tuning)
        res = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats)],
                             env=env, capture_output=True, text=True, check=True)
        runs[label] = json.loads(res.stdout.strip().splitlines()[-1])
    tuned = runs["tuned (package default)"]
    print("ProtoNet episode vs plain step (package default allocator settings):")
    print(f"{'shape':28s} {'episode ms':>11s} {'plain ms':>9s} {'ratio':>6s}  (goal <= 1.05)")
    for shape, r in tuned.items():
        if isinstance(r, dict):
            print(f"{shape:28s} {r['episode_ms']:11.1f} {r['plain_ms']:9.1f} {r['ratio']:6.3f}")
    print("\nAllocator: episode time with glibc defaults vs with the package's mallopt tuning:")
    print(f"{'shape':28s} {'default ms':>11s} {'tuned ms':>9s} {'speed-up':>9s}")
    base = runs["glibc defaults"]
    for shape, r in tuned.items():
        if isinstance(r, dict):
            d = base[shape]["episode_ms"]
            print(f"{shape:28s} {d:11.1f} {r['episode_ms']:9.1f} {d / r['episode_ms']:8.2f}x")
    print(f"\n(tuning applied: defaults run {base['malloc_tuned']}, tuned run {tuned['malloc_tuned']})")
    l2l = peers.learn2learn_module("nn") is not None
    print("\n" + peers.describe({"learn2learn": l2l})[0])
    if l2l:
        print("ProtoNet episode vs learn2learn's PrototypicalClassifier head (same Conv-4 weights, episodes, Adam; "
              "package default allocator settings):")
        print(f"{'shape':28s} {'episode ms':>11s} {'l2l ms':>9s} {'episode/l2l':>12s} {'grad rel. diff':>15s}")
        for shape, r in tuned.items():
            if isinstance(r, dict):
                print(f"{shape:28s} {r['episode_ms']:11.1f} {r['l2l_ms']:9.1f} {r['episode_ms'] / r['l2l_ms']:12.3f} "
                      f"{r['l2l_grad_rel_diff']:15.1e}")


if __name__ == "__main__":
    main()
