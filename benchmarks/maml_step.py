"""How long does a MAML meta-step take, and how much memory: vmap, per-task loop, or clone-per-task?

A meta-step is: inner adaptation of every task of the meta-batch, query losses, outer backward,
Adam step.  Three ways to run it, on the same weights and tasks:

* ``vmap``:  the package, tasks batched with ``torch.func.vmap`` (``MAML(batching="vmap")``);
* ``loop``:  the package, tasks one after another through ``functional_call`` (``batching="loop"``);
* ``threads``: the package's loop with its tasks shared among worker threads, one intra-op thread each
  (``batching="threads"``; CPU only), printed as an indented row with its ratios against the clone baseline
  and the libraries;
* ``clone``: the way learn2learn and higher work: per task, a copy of the module whose parameters
  are replaced in place by differentiable tensors after each inner step, tasks one after another,
  backward per task.  Written here from that description, so that the table never needs either library.

When learn2learn 0.2.0 or higher 0.2.1 is importable, two more variants run on the same tasks and weights,
in the same interleaved timing process and per-process memory/gradient runs, each as its documentation shows:

* ``learn2learn``: ``l2l.algorithms.MAML(net, lr=inner_lr, first_order=...)``; per task ``clone()``,
  ``adapt(support_loss)`` per inner step, query loss backward per task;
* ``higher``: per task ``higher.innerloop_ctx(net, SGD(lr=inner_lr), copy_initial_weights=False,
  track_higher_grads=not first_order)``, ``diffopt.step(support_loss)`` per inner step, query loss backward;
  first order, higher detaches the fast weights, so (as its maintainers advise, facebookresearch/higher#63) the
  query loss's gradient with respect to the last fast weights is added to the initial weights' ``.grad``.

Each gets an indented line under its shape's row: its time and memory, the package's ratio against it (the
faster strategy's and ``batching="auto"``'s time, the same strategies' memory) and its meta-gradient's relative
difference to the clone baseline's.  metalearn-lite never depends on either library: install them into a
folder of their own as ``benchmarks/peers.py`` shows and put it on the path after the worktree,

    PYTHONPATH=.:/work/peers python benchmarks/maml_step.py --only conv4

Without them the table is the same and a line per library says it is left out and how to install it.

Shapes: Conv-4 (64 filters, batch-statistics norm) on Omniglot 5-way 1-shot 15-query tasks,
meta-batch 32; the sinusoid 40-40 MLP with 10 support and 10 query points, meta-batch 25; a
user-defined module (``UserCNN`` below: what a reader writes, with ``nn.BatchNorm2d`` without running
statistics) on the Conv-4 tasks; 1 and 5 inner steps; first and second order.

Time: the variants of a shape run in one process, interleaved (one meta-step of each in turn,
the order rotated every round, after ``--warmup`` untimed steps each), and the table gives the
median of ``--repeats`` steps.  On a shared 2-core machine the speed of consecutive processes, and
of consecutive steps in one process, drifts by 10 % and more, twice the 5 % Conv-4 target;
interleaving exposes every variant to the same drift.  Memory: every (shape, variant) also runs
alone in its own process, and the table gives that process's high-water mark of resident memory
(CPU) or ``max_memory_allocated`` (CUDA) above what it held before its first meta-step.  That
process also saves the meta-gradient of the first step; the table gives its relative difference
to the clone baseline's.

    python benchmarks/maml_step.py                  # ~15 minutes on 2 CPU cores
    python benchmarks/maml_step.py --all            # also Conv-4 vmap with 5 inner steps (>10 GB on a CPU)
    python benchmarks/maml_step.py --only sinusoid  # ~1 minute
    python benchmarks/maml_step.py --only custom    # the user-defined module
    python benchmarks/maml_step.py --device cuda
    PYTHONPATH=.:/work/peers python benchmarks/maml_step.py --only sinusoid   # with learn2learn and higher rows
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import metalearn_lite as ml
from metalearn_lite.algorithms import MAML

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (benchmarks/peers.py, next to this script)

VARIANTS = ("vmap", "loop", "clone")
PEERS = ("learn2learn", "higher")
#: skipped unless --all: on a CPU these need more than 10 GB (vmap keeps every task's graph of 5 inner steps)
HEAVY = {(f, 5, o, "vmap") for f in ("conv4", "custom") for o in ("second", "first")}
SHAPES = [(family, steps, order) for family in ("conv4", "sinusoid", "custom") for steps in (1, 5)
          for order in ("second", "first")]


class UserCNN(torch.nn.Module):
    """A network as a reader would write it: torch's own layers, batch norm without running statistics."""

    def __init__(self, ways: int = 5) -> None:
        super().__init__()
        blocks = []
        for c_in in (1, 32, 32):
            blocks += [torch.nn.Conv2d(c_in, 32, 3, padding=1), torch.nn.BatchNorm2d(32, track_running_stats=False),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*blocks, torch.nn.Flatten())
        self.classifier = torch.nn.Linear(32 * 3 * 3, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(family: str, **kw) -> MAML:
    """The method a family's rows measure: a meta-learned head (``zero_head=False``, as the course's recipes train
    it), since the clone baseline adapts every parameter of the module."""
    if family == "conv4":
        return MAML(ways=5, inner_lr=0.4, zero_head=False, **kw)
    if family == "custom":
        return MAML(UserCNN(5), ways=5, inner_lr=0.4, zero_head=False, **kw)
    return MAML(ml.MLP(1, (40, 40), 1), loss="mse", inner_lr=0.01, **kw)


def clone_module(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose parameters are differentiable clones of the originals (as in learn2learn)."""
    clone = copy.deepcopy(net)
    for src, dst in zip(net.modules(), clone.modules()):
        for name, p in src._parameters.items():
            if p is not None:
                dst._parameters[name] = p.clone()
    return clone


def patch_module(net: torch.nn.Module, grads: tuple[torch.Tensor, ...], lr: float) -> None:
    """Replace every parameter ``p`` of ``net`` by the tensor ``p - lr * g``, in place (as in learn2learn/higher)."""
    it = iter(grads)
    for m in net.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = p - lr * next(it)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def setup(family: str, steps: int, order: str, variant: str, device: torch.device):
    torch.manual_seed(0)
    first_order = order == "first"
    batching = variant if variant in ("vmap", "loop", "threads") else "loop"
    if family in ("conv4", "custom"):
        data = ml.omniglot_split("train", rotations=True).images
        ep = ml.EpisodeSampler(data, ways=5, shots=1, queries=15, seed=0).sample(32).to(device)
    else:
        ep = ml.SinusoidTasks(seed=0).sample(25, 10, 10).to(device)
    method = build(family, inner_steps=steps, first_order=first_order, batching=batching)
    return method.to(device).train(), ep


def clone_step(method, ep, opt) -> None:
    """One meta-step the learn2learn way (tasks one after another, a patched copy per task)."""
    net, tasks = method.net, ep.num_tasks
    opt.zero_grad(set_to_none=True)
    for i in range(tasks):
        learner = clone_module(net)
        for _ in range(method.inner_steps):
            loss = method.task_loss(learner(ep.support_x[i]), ep.support_y[i])
            grads = torch.autograd.grad(loss, list(learner.parameters()), create_graph=not method.first_order)
            patch_module(learner, grads, method.inner_lr)
        (method.task_loss(learner(ep.query_x[i]), ep.query_y[i]) / tasks).backward()
    opt.step()


def package_step(method, ep, opt) -> None:
    loss, _ = method.loss(ep)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def learn2learn_step(method: MAML):
    """A meta-step as learn2learn's documentation writes it: its ``MAML`` wrapper, per task ``clone()`` and
    ``adapt(loss)`` for every inner step, the query loss backward per task."""
    maml = peers.learn2learn_module("algorithms").MAML(method.net, lr=method.inner_lr, first_order=method.first_order)

    def step(method, ep, opt) -> None:
        tasks = ep.num_tasks
        opt.zero_grad(set_to_none=True)
        for i in range(tasks):
            learner = maml.clone()
            for _ in range(method.inner_steps):
                learner.adapt(method.task_loss(learner(ep.support_x[i]), ep.support_y[i]))
            (method.task_loss(learner(ep.query_x[i]), ep.query_y[i]) / tasks).backward()
        opt.step()

    return step


def higher_step(method: MAML):
    """A meta-step with higher: per task ``innerloop_ctx`` (SGD at the inner rate, the module's own weights as the
    initial fast weights), ``diffopt.step(loss)`` for every inner step, the query loss backward per task.  First
    order (``track_higher_grads=False``) higher detaches every fast weight, so the query gradient is taken with
    respect to the last fast weights and added to the initial weights' ``.grad`` (facebookresearch/higher#63)."""
    higher = peers.higher_module()
    net = method.net
    params = list(net.parameters())
    inner_opt = torch.optim.SGD(params, lr=method.inner_lr)

    def step(method, ep, opt) -> None:
        tasks = ep.num_tasks
        opt.zero_grad(set_to_none=True)
        for i in range(tasks):
            with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False,
                                      track_higher_grads=not method.first_order) as (fnet, diffopt):
                for _ in range(method.inner_steps):
                    diffopt.step(method.task_loss(fnet(ep.support_x[i]), ep.support_y[i]))
                query_loss = method.task_loss(fnet(ep.query_x[i]), ep.query_y[i]) / tasks
                if not method.first_order:
                    query_loss.backward()
                    continue
                for p, g in zip(params, torch.autograd.grad(query_loss, list(fnet.parameters()))):
                    p.grad = g if p.grad is None else p.grad + g
        opt.step()

    return step


def make_step(variant: str, method: MAML):
    """The meta-step function ``step(method, episode, optimiser)`` of a variant."""
    if variant == "learn2learn":
        return learn2learn_step(method)
    if variant == "higher":
        return higher_step(method)
    return clone_step if variant == "clone" else package_step


def child(family: str, steps: int, order: str, variant: str, device: str, grad_file: str) -> None:
    """One variant in a fresh process: its meta-gradient at the initial weights and its peak memory."""
    dev = torch.device(device)
    method, ep = setup(family, steps, order, variant, dev)
    opt = torch.optim.Adam(method.parameters(), 1e-3)
    step = make_step(variant, method)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_bytes()
    opt.param_groups[0]["lr"] = 0.0  # the gradient-recording step leaves the weights unchanged
    step(method, ep, opt)
    torch.save([p.grad.detach().cpu() for p in method.net.parameters()], grad_file)
    opt.param_groups[0]["lr"] = 1e-3
    step(method, ep, opt)
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else peak_rss_bytes()) - before
    print(json.dumps({"peak_mb": peak / 2**20}))


def timing_child(family: str, steps: int, order: str, variants: list[str], repeats: int, warmup: int,
                 device: str) -> None:
    """Time the variants in one process, interleaved: round ``r`` runs one meta-step of each, in an order
    rotated every round, so that drift of the machine's speed reaches every variant alike."""
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    runs = {}
    for v in variants:
        method, ep = setup(family, steps, order, v, dev)
        opt = torch.optim.Adam(method.parameters(), 1e-3)
        runs[v] = (method, ep, opt, make_step(v, method))
    for _ in range(warmup):  # untimed: the first steps of a process run slower (allocator, caches)
        for method, ep, opt, step in runs.values():
            step(method, ep, opt)
    times = {v: [] for v in variants}
    for r in range(repeats):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            method, ep, opt, step = runs[v]
            sync()
            t = time.perf_counter()
            step(method, ep, opt)
            sync()
            times[v].append(1e3 * (time.perf_counter() - t))
    print(json.dumps(times))


def run_child(args_list: list[str], device: str) -> dict | str:
    cmd = [sys.executable, __file__, *args_list, "--device", device]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or ["failed"])[-1][:60]
    return json.loads(res.stdout.strip().splitlines()[-1])


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b)) ** 0.5
    den = sum(float((y**2).sum()) for y in b) ** 0.5
    return num / max(den, 1e-30)


def peers_available() -> dict[str, bool]:
    """Whether learn2learn (its ``algorithms``) and higher import in this environment."""
    return {"learn2learn": peers.learn2learn_module("algorithms") is not None,
            "higher": peers.higher_module() is not None}


def peer_line(peer: str, res: dict, grads: dict, best: str, auto: str) -> str:
    """A library's time and memory, the package's ratios against it, its gradient's difference to the clone's."""
    r = res[peer]

    def ratios(key: str, fmt: str) -> str:
        cells = [f"{v}/{peer} {res[v][key] / r[key]:{fmt}}" for v in dict.fromkeys((best, auto))
                 if isinstance(res.get(v), dict) and key in res[v]]
        return ", ".join(cells) or "-"

    diff = f"{rel_diff(grads[peer], grads['clone']):.1e}" if peer in grads and "clone" in grads else "-"
    return (f"    {peer:>11s} {r['ms']:9.1f} ms {r['peak_mb']:8.1f} MB | time {ratios('ms', '.3f')} | memory "
            f"{ratios('peak_mb', '.2f')} | grad {diff}")


def threads_line(res: dict, grads: dict, ok: list[str]) -> str:
    """``batching="threads"``: its time and memory, its speed-up over the clone baseline, the loop and each library
    (above 1: threads faster), and its gradient's difference to the clone's."""
    r = res["threads"]
    faster = ", ".join(f"{v}/threads {res[v]['ms'] / r['ms']:.3f}" for v in ("clone", "loop", *PEERS) if v in ok)
    memory = ", ".join(f"threads/{v} {r['peak_mb'] / res[v]['peak_mb']:.2f}" for v in ("clone", "loop", *PEERS)
                       if v in ok)
    diff = f"{rel_diff(grads['threads'], grads['clone']):.1e}" if "threads" in grads and "clone" in grads else "-"
    return f"    {'threads':>11s} {r['ms']:9.1f} ms {r['peak_mb']:8.1f} MB | {faster} | memory {memory} | grad {diff}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed meta-steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-steps per variant before timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=["conv4", "sinusoid", "custom"], help="run one family only")
    parser.add_argument("--all", action="store_true", help="include the Conv-4 vmap runs with 5 inner steps")
    parser.add_argument("--steps", type=int, choices=[1, 5], help="only the rows with this many inner steps")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--timing-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--grad-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        family, steps, order, variant = args.child
        child(family, int(steps), order, variant, args.device, args.grad_file)
        return
    if args.timing_child:
        family, steps, order, variants = args.timing_child
        timing_child(family, int(steps), order, variants.split(","), args.repeats, args.warmup, args.device)
        return
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads; time: median of "
          f"{args.repeats} meta-steps (forward, inner adaptation, outer backward, Adam step) per variant, the "
          f"variants interleaved in one process after {args.warmup} untimed steps each")
    available = peers_available()
    print("\n".join(peers.describe(available)) + "\n")
    threads = ("threads",) if args.device == "cpu" and torch.get_num_threads() > 1 else ()
    variants = VARIANTS + threads + tuple(p for p in PEERS if available[p])
    header = (f"{'model':9s} {'steps':>5s} {'order':>6s} | {'vmap ms':>9s} {'loop ms':>9s} {'clone ms':>9s} | "
              f"{'vmap MB':>8s} {'loop MB':>8s} {'clone MB':>8s} | {'best/clone':>10s} {'best':>5s} "
              f"{'auto/clone':>10s} {'auto':>5s} | grad rel. diff")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for shape in SHAPES:
            if (args.only and shape[0] != args.only) or (args.steps and shape[1] != args.steps):
                continue
            family, steps, order = shape
            res, grads = {}, {}
            for v in variants:
                gf = str(Path(tmp) / f"{v}.pt")
                if (*shape, v) in HEAVY and not args.all and args.device == "cpu":
                    res[v] = "skipped: needs > 10 GB on a CPU (--all runs it)"
                    continue
                res[v] = run_child(["--child", family, str(steps), order, v, "--grad-file", gf], args.device)
                if isinstance(res[v], dict):
                    grads[v] = torch.load(gf)
            ok = [v for v in variants if isinstance(res[v], dict)]
            times = run_child(["--timing-child", family, str(steps), order, ",".join(ok), "--repeats",
                               str(args.repeats), "--warmup", str(args.warmup)], args.device) if ok else {}
            if isinstance(times, str):
                print(f"{family:9s} {steps:5d} {order:>6s} | timing failed: {times}")
                continue
            for v in ok:
                res[v]["ms"] = statistics.median(times[v])

            def cell(v, key, width, res=res, ok=ok):
                return f"{res[v][key]:{width}.1f}" if v in ok else f"{'-':>{width}s}"

            def ratio(v, res=res, ok=ok):
                return f"{res[v]['ms'] / res['clone']['ms']:10.3f}" if v in ok and "clone" in ok else f"{'-':>10s}"

            pkg = {v: res[v]["ms"] for v in ("vmap", "loop") if v in ok}
            best = min(pkg, key=pkg.get) if pkg else "-"
            model = build(family)
            auto = model.resolve_batching(order == "first", torch.device(args.device))
            diffs = " ".join(f"{v} {rel_diff(grads[v], grads['clone']):.1e}" for v in ("vmap", "loop")
                             if v in grads and "clone" in grads)
            print(f"{family:9s} {steps:5d} {order:>6s} | {cell('vmap', 'ms', 9)} {cell('loop', 'ms', 9)} "
                  f"{cell('clone', 'ms', 9)} | {cell('vmap', 'peak_mb', 8)} {cell('loop', 'peak_mb', 8)} "
                  f"{cell('clone', 'peak_mb', 8)} | {ratio(best)} {best:>5s} {ratio(auto)} {auto:>5s} | {diffs}",
                  flush=True)
            if "threads" in ok:
                print(threads_line(res, grads, ok), flush=True)
            for v in PEERS:
                if v in ok:
                    print(peer_line(v, res, grads, best, auto), flush=True)
            for v in variants:
                if v not in ok:
                    print(f"    {v}: {res[v]}")
    print("\nbest/clone: the faster package strategy's time over the clone-per-task baseline's; auto/clone: the "
          "strategy batching='auto' picks on this device (targets: sinusoid <= 0.2, i.e. >= 5x; Conv-4 <= 1.05;\n"
          "a user-defined module runs in a loop unless asked for vmap: it should cost no more than the clone "
          "baseline).")
    print("MB: peak resident memory above the process's memory before the first meta-step (one process per "
          "variant).")
    if threads:
        print("threads row: batching='threads' (the loop on worker threads); x/threads: another variant's time over "
              "its time (above 1: threads faster); memory: its peak over the others'.")
    if any(available.values()):
        print("Indented rows: a library's own MAML step on the same tasks and weights; x/lib: the package's time or "
              "memory over the library's (x = the faster strategy, then batching='auto''s); grad: its meta-gradient's "
              "relative difference to the clone baseline's.")


if __name__ == "__main__":
    main()
